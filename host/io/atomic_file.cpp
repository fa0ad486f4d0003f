// AtomicPath (atomic_file.h).
#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "errors.h"

namespace divscope {

AtomicPath::AtomicPath(std::string dest) : dest_(std::move(dest)) {
  struct stat st {};
  if (::stat(dest_.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    in_place_ = true;
    temp_ = dest_;
    return;
  }
  const std::filesystem::path p(dest_);
  const std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
  temp_ = (dir / ("." + p.filename().string() + ".divscope-tmp-" + std::to_string(::getpid()))).string();
  std::remove(temp_.c_str());
}

AtomicPath::AtomicPath(std::string dest, std::string temp)
    : dest_(std::move(dest)), temp_(std::move(temp)), kept_(true) {}

AtomicPath::~AtomicPath() {
  if (!committed_ && !in_place_ && !kept_) std::remove(temp_.c_str());
}

std::string AtomicPath::keep(const std::string& to) {
  kept_ = true;
  if (in_place_ || to.empty() || to == temp_) return temp_;
  if (std::rename(temp_.c_str(), to.c_str()) != 0)
    throw InputError(to + ": cannot keep the partial output: " + std::strerror(errno));
  temp_ = to;
  return temp_;
}

void AtomicPath::commit() {
  if (in_place_) {
    committed_ = true;
    return;
  }
  const int fd = ::open(temp_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    throw InputError(dest_ + ": cannot write: " + why);
  }
  ::close(fd);
  if (std::rename(temp_.c_str(), dest_.c_str()) != 0)
    throw InputError(dest_ + ": cannot replace it: " + std::strerror(errno));
  committed_ = true;
}

void write_text_atomically(const std::string& path, const std::string& what,
                           const std::function<void(std::ostream&)>& write) {
  AtomicPath out(path);
  {
    std::ofstream f(out.temp(), std::ios::binary | std::ios::trunc);
    if (!f) throw InputError(path + ": cannot write " + what + ": " + std::strerror(errno));
    write(f);
    f.flush();
    if (!f) throw InputError(path + ": cannot write " + what + ": " + std::strerror(errno));
    f.close();
    if (!f) throw InputError(path + ": cannot write " + what + ": " + std::strerror(errno));
  }
  out.commit();
}

}  // namespace divscope
