// Output paths checked before any work (issue "Hostile files, killed runs and careless paths"):
// an output may not be an input or another output (compared by device and inode when the file
// exists, by normalized absolute path when it does not), its directory must exist and be
// writable, and an existing output must be a writable regular file.
#pragma once
#include <string>
#include <vector>

namespace divscope {

struct NamedPath {
  std::string flag;   // "--report", "--model", "recording", ...
  std::string path;   // empty: not given (skipped)
};

// InputError naming the command, both flags and the path on the first conflict.
void check_output_paths(const std::string& command, const std::vector<NamedPath>& inputs,
                        const std::vector<NamedPath>& outputs);

}  // namespace divscope
