// `divscope env-diff` (envdiff.h).
#include "commands/envdiff.h"

#include <nlohmann/json.hpp>

#include "commands/paths.h"
#include "env.h"
#include "errors.h"
#include "report/report.h"

namespace divscope {

int run_env_diff(const EnvDiffArgs& a, std::ostream& out, std::ostream& err) {
  if (a.a == "-" && a.b == "-") err << "divscope: env-diff: both sides are this machine\n";
  check_output_paths("env-diff", {{"A", a.a}, {"B", a.b}}, {{"--report", a.report}});
  std::string what_a, what_b;
  const nlohmann::json ea = load_environment(a.a, &what_a);
  const nlohmann::json eb = load_environment(a.b, &what_b);
  const std::vector<EnvDifference> d = diff_environments(ea, eb);
  size_t numerics = 0, outside_host = 0;
  for (const EnvDifference& e : d) {
    numerics += !e.note.empty() && e.group != "host";
    outside_host += e.group != "host";
  }
  const bool same = outside_host == 0;
  nlohmann::json j = {{"divscope_env_diff", 1},
                      {"a", {{"source", what_a}, {"machine", env_machine(ea)}, {"record", ea}}},
                      {"b", {{"source", what_b}, {"machine", env_machine(eb)}, {"record", eb}}},
                      {"same", same},
                      {"numerics_differences", numerics},
                      {"differences", env_diff_json(d)}};
  if (!a.report.empty() && a.report != "-") write_json(j, a.report);
  if (a.report == "-") {
    out << j.dump(2) << "\n";
    return same ? kExitOk : kExitDiverged;
  }
  out << "divscope env-diff\n";
  out << "A: " << what_a << " — " << env_machine(ea) << "\n   " << env_software_line(ea) << "\n";
  out << "B: " << what_b << " — " << env_machine(eb) << "\n   " << env_software_line(eb) << "\n";
  print_env_diff(d, out);
  if (same)
    out << "result: the same environment" << (d.empty() ? "" : " (the hostname aside)") << "\n";
  else
    out << "result: " << outside_host << " difference(s), " << numerics << " known to change numerics\n";
  return same ? kExitOk : kExitDiverged;
}

}  // namespace divscope
