// Subcommand implementations behind the CLI (tools/divscope.cpp only parses and dispatches).
#pragma once
#include <ostream>
#include <string>

namespace divscope {

struct InspectArgs {
  std::string file;
  std::string model;   // optional: validate a recording against this model
};

int run_inspect(const InspectArgs& a, std::ostream& out);
int run_env(std::ostream& out, std::ostream& err);

}  // namespace divscope
