// Environment records (docs/environment.md): what machine, build, libraries, numerics switches and
// environment variables produced a result; written by `divscope env`, embedded in every report
// and dump, and (by tools/env_record.py) in every recording; compared by `divscope env-diff`.
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace divscope {

constexpr int kEnvRecordVersion = 1;

// This machine and this build: {"divscope_env": 1, "producer", "host", "hardware", "runtime",
// "libraries", "flags", "environment"}.
nlohmann::json environment_json();

// Convenience readers of a record (this version or an older flat one): whether CUDA was
// available, and why not.
bool env_cuda_available(const nlohmann::json& env);
std::string env_cuda_reason(const nlohmann::json& env);

// A record in the current schema: v1 as is; the flat records of older divscope versions
// ({"divscope_version", "host", "compiler", "cuda"}) and of capture_torch.py before records were
// versioned ({"python", "torch", "cuda", "flags", "gpus", "packages", ...}) mapped field by field.
nlohmann::json normalize_env(const nlohmann::json& env);

// One line each, from any record: "NVIDIA H100 80GB HBM3 (sm 9.0, driver 13.0, runtime 13.0)" or
// "no CUDA device: <why>"; "gpu7 · Linux 6.1 x86_64 · <cpu> (2 cores)"; "divscope 0.1 (abc1234,
// Release, sm 90), GNU 12.2" or "capture_torch.py: python 3.11, torch 1.13.1; flags on: ...".
std::string env_gpu_line(const nlohmann::json& env);
std::string env_host_line(const nlohmann::json& env);
std::string env_software_line(const nlohmann::json& env);
// "NVIDIA H100 80GB HBM3 on host gpu7" / "host laptop (no CUDA device)".
std::string env_machine(const nlohmann::json& env);

struct EnvDifference {
  std::string group;     // hardware | runtime | libraries | flags | environment | host
  std::string field;     // e.g. "gpus[0].name", "torch.backends.cuda.matmul.allow_tf32"
  std::string a, b;      // JSON text of each side; "(absent)" when missing
  std::string note;      // why it matters for numerics; empty when it is not known to
};

// Every field that differs between two records (both normalized first), the known
// numerics-relevant ones first, then by group and field. `host` differences (the hostname) are
// listed last: they are expected between two machines.
std::vector<EnvDifference> diff_environments(const nlohmann::json& a, const nlohmann::json& b);

// [{"group", "field", "a", "b", "note"}] (a and b as JSON text, "(absent)" when missing).
nlohmann::json env_diff_json(const std::vector<EnvDifference>& d);
// Console form: the known numerics-relevant differences with their notes first, then the others
// (at most `max_other` of them, then a count); "no differences" when there are none.
void print_env_diff(const std::vector<EnvDifference>& d, std::ostream& out, size_t max_other = 1000);

// The record stored in a file: a JSON report (its "environment"), a dump (root attribute
// environment), a recording (root attribute capture_environment), or "-" for this machine.
// InputError naming the file when it holds none. `what` is set to a description of the source.
nlohmann::json load_environment(const std::string& path, std::string* what = nullptr);

}  // namespace divscope
