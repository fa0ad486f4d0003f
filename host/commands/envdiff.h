// `divscope env-diff A B` (README, Comparing two machines; docs/environment.md): two environment
// records — each from a JSON report, a dump, a recording, a record written by `divscope env`, or
// `-` for this machine — compared field by field, grouped, the differences known to change
// numerics first with a note each.
#pragma once
#include <ostream>
#include <string>

namespace divscope {

struct EnvDiffArgs {
  std::string a, b;        // files, or "-" for this machine
  std::string report;      // JSON output path ("-": stdout instead of the table)
};

// Exit codes as `diff`: 0 the same environment (the hostname aside), 1 differences, 2 bad input.
int run_env_diff(const EnvDiffArgs& a, std::ostream& out, std::ostream& err);

}  // namespace divscope
