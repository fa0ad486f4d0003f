// Running the divscope binary from tests: exit code, stdout and stderr.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace divscope::testing {

struct CliResult {
  int code = -1;
  std::string out, err;
};

inline std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "divscope_" + std::to_string(getpid()) + "_" + name;
}

// `args` is appended to the binary path as given (shell words).
inline CliResult run_cli(const std::string& args) {
  static int n = 0;
  const std::string base = temp_path("cli" + std::to_string(n++));
  const std::string cmd = std::string(DIVSCOPE_BINARY) + " " + args + " >" + base + ".out 2>" +
                          base + ".err </dev/null";
  int status = std::system(cmd.c_str());
  CliResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_file(base + ".out");
  r.err = read_file(base + ".err");
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return r;
}

inline std::string data_file(const std::string& name) {
  return std::string(DIVSCOPE_SOURCE_DIR) + "/data/" + name;
}

}  // namespace divscope::testing
