// check_output_paths (paths.h).
#include "commands/paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "errors.h"

namespace divscope {
namespace {

namespace fs = std::filesystem;

struct Identity {
  bool exists = false;
  dev_t dev = 0;
  ino_t ino = 0;
  std::string normal;   // weakly canonical absolute path
};

Identity identify(const std::string& p) {
  Identity id;
  std::error_code ec;
  fs::path abs = fs::absolute(p, ec);
  fs::path canon = fs::weakly_canonical(ec ? fs::path(p) : abs, ec);
  id.normal = (ec ? abs : canon).lexically_normal().string();
  struct stat st {};
  if (::stat(p.c_str(), &st) == 0) {
    id.exists = true;
    id.dev = st.st_dev;
    id.ino = st.st_ino;
  }
  return id;
}

bool same(const Identity& a, const Identity& b) {
  if (a.exists && b.exists) return a.dev == b.dev && a.ino == b.ino;
  return a.normal == b.normal;
}

}  // namespace

void check_output_paths(const std::string& command, const std::vector<NamedPath>& inputs,
                        const std::vector<NamedPath>& outputs) {
  std::vector<std::pair<const NamedPath*, Identity>> in, out;
  for (const NamedPath& p : inputs)
    if (!p.path.empty() && p.path != "-") in.push_back({&p, identify(p.path)});
  for (const NamedPath& o : outputs) {
    if (o.path.empty() || o.path == "-") continue;
    const Identity id = identify(o.path);
    for (const auto& i : in)
      if (same(id, i.second))
        throw InputError(command + ": " + o.flag + " " + o.path + " is " + i.first->flag + " (" + i.first->path +
                         "): refusing to overwrite an input");
    for (const auto& prev : out)
      if (same(id, prev.second))
        throw InputError(command + ": " + o.flag + " and " + prev.first->flag + " are the same file (" + o.path +
                         "): each output needs its own path");
    std::error_code ec;
    if (fs::is_directory(o.path, ec))
      throw InputError(command + ": " + o.flag + " " + o.path + " is a directory, not a file");
    fs::path dir = fs::path(id.normal).parent_path();
    if (dir.empty()) dir = ".";
    if (!fs::is_directory(dir, ec))
      throw InputError(command + ": " + o.flag + " " + o.path + ": the directory " + dir.string() + " does not exist");
    if (::access(dir.c_str(), W_OK | X_OK) != 0)
      throw InputError(command + ": " + o.flag + " " + o.path + ": the directory " + dir.string() + " is not writable");
    if (id.exists && ::access(o.path.c_str(), W_OK) != 0)
      throw InputError(command + ": " + o.flag + " " + o.path + " exists and is not writable");
    out.push_back({&o, id});
  }
}

}  // namespace divscope
