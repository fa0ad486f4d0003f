// Environment records (env.h, docs/environment.md).
#include "env.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <google/protobuf/stubs/common.h>
#include <hdf5.h>

#include "errors.h"
#include "io/h5io.h"
#include "io/h5wrap.h"
#include "kernels/kernels.h"

#ifndef DIVSCOPE_GIT_COMMIT
#define DIVSCOPE_GIT_COMMIT "unknown"
#endif
#ifndef DIVSCOPE_BUILD_TYPE
#define DIVSCOPE_BUILD_TYPE "unknown"
#endif
#ifndef DIVSCOPE_CUDA_ARCHS
#define DIVSCOPE_CUDA_ARCHS "none"
#endif

namespace divscope {
namespace {

using json = nlohmann::json;

// The CPU features that change which code paths numeric libraries take (vector width, FMA,
// reduced-precision units).
const char* const kCpuFlags[] = {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                                 "avx512vl", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile"};

// Environment variables that change numerics or determinism (or which device runs).
bool secret_variable(const std::string& k) {
  std::string u = k;
  for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const char* w : {"TOKEN", "SECRET", "PASSW", "CREDENTIAL", "APIKEY", "API_KEY", "PRIVATE", "AUTH"})
    if (u.find(w) != std::string::npos) return true;
  for (const char* p : {"TF_VAR_", "TF_TOKEN_", "TF_CLI_"})
    if (u.rfind(p, 0) == 0) return true;
  return false;
}

bool numerics_variable(const std::string& k) {
  if (secret_variable(k)) return false;   // never copied into a report (tools/env_record.py does the same)
  static const char* const prefixes[] = {"NVIDIA_TF32", "CUBLAS_", "CUBLASLT_", "CUDNN_", "CUDA_",
                                         "NCCL_ALGO", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "TORCH_",
                                         "PYTORCH_", "ORT_", "TF_", "XLA_", "DIVSCOPE_"};
  for (const char* p : prefixes)
    if (k.rfind(p, 0) == 0) return true;
  return false;
}

std::string cpuinfo_field(const std::string& key) {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) {
      auto pos = line.find(':');
      if (pos != std::string::npos && pos + 1 < line.size())
        return line.substr(line.find_first_not_of(" \t", pos + 1));
    }
  return "";
}

json cpu_flags() {
  std::istringstream in(cpuinfo_field("flags"));
  std::set<std::string> have;
  for (std::string f; in >> f;) have.insert(f);
  json out = json::array();
  for (const char* f : kCpuFlags)
    if (have.count(f)) out.push_back(f);
  return out;
}

json distribution() {
  std::ifstream f("/etc/os-release");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("PRETTY_NAME=", 0) == 0) {
      std::string v = line.substr(12);
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
  return nullptr;
}

std::string version_str(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

json or_null(int v) { return v ? json(v) : json(nullptr); }

}  // namespace

json environment_json() {
  char name[256] = {0};
  gethostname(name, sizeof(name) - 1);
  struct utsname u {};
  uname(&u);
  const DeviceInfo d = query_device();

  json hw;
  const std::string cpu = cpuinfo_field("model name");
  hw["cpu"] = cpu.empty() ? json(nullptr) : json(cpu);
  hw["cpu_flags"] = cpu_flags();
  hw["cores"] = std::thread::hardware_concurrency();
  hw["arch"] = u.machine;
  hw["gpus"] = json::array();
  for (size_t i = 0; i < d.gpus.size(); ++i) {
    const GpuInfo& g = d.gpus[i];
    hw["gpus"].push_back({{"index", i},
                          {"name", g.name},
                          {"compute_capability", std::to_string(g.cc_major) + "." + std::to_string(g.cc_minor)},
                          {"multiprocessors", g.multiprocessors},
                          {"memory_bytes", g.total_memory},
                          {"clock_mhz", or_null(g.clock_mhz)},
                          {"memory_clock_mhz", or_null(g.memory_clock_mhz)},
                          {"ecc", g.ecc < 0 ? json(nullptr) : json(g.ecc == 1)},
                          {"mig", g.mig}});
  }

  json rt;
  rt["os"] = std::string(u.sysname) + " " + u.release;
  rt["distribution"] = distribution();
  rt["cuda_available"] = d.available;
  if (!d.available) rt["cuda_unavailable_reason"] = d.reason;
  rt["cuda_driver"] = d.driver_version ? json(version_str(d.driver_version)) : json(nullptr);
  rt["cuda_runtime"] = d.runtime_version ? json(version_str(d.runtime_version)) : json(nullptr);

  unsigned h5maj = 0, h5min = 0, h5rel = 0;
  H5get_libversion(&h5maj, &h5min, &h5rel);
  const int pb = GOOGLE_PROTOBUF_VERSION;
  json lib;
  lib["divscope"] = DIVSCOPE_VERSION;
  lib["divscope_commit"] = DIVSCOPE_GIT_COMMIT;
  lib["build_type"] = DIVSCOPE_BUILD_TYPE;
  lib["cuda_architectures"] = DIVSCOPE_CUDA_ARCHS;
  lib["compiler"] = DIVSCOPE_COMPILER;
  lib["hdf5"] = std::to_string(h5maj) + "." + std::to_string(h5min) + "." + std::to_string(h5rel);
  lib["protobuf"] = std::to_string(pb / 1000000) + "." + std::to_string(pb / 1000 % 1000) + "." +
                    std::to_string(pb % 1000);

  json flags;
  // How this build computes on the host (DESIGN: no contraction, no fast math), and how many
  // threads the CPU paths use (results do not depend on it).
  flags["divscope.fp_contract"] = "off";
  flags["divscope.fast_math"] = false;
  flags["divscope.threads"] = std::thread::hardware_concurrency();   // the CPU task pool's default

  json env = json::object();
  for (char** e = environ; e && *e; ++e) {
    const std::string kv = *e;
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) continue;
    const std::string k = kv.substr(0, eq);
    if (numerics_variable(k)) env[k] = kv.substr(eq + 1);
  }

  return {{"divscope_env", kEnvRecordVersion},
          {"producer", std::string("divscope ") + DIVSCOPE_VERSION},
          {"host", {{"hostname", name}}},
          {"hardware", hw},
          {"runtime", rt},
          {"libraries", lib},
          {"flags", flags},
          {"environment", env}};
}

namespace {

// Typed reads of a record that came from a file (a report, a recording's capture_environment, a
// colleague's `divscope env`): a missing or mistyped field gives the default. A damaged or
// hand-edited record must neither throw nlohmann's type_error (exit 3) nor reach its unchecked
// const operator[] on a missing key (a read past the end of the map; found by
// fuzz/fuzz_json.cpp).
json field(const json& o, const char* k) { return o.is_object() && o.contains(k) ? o[k] : json(); }
std::string str_field(const json& o, const char* k, const std::string& def) {
  const json v = field(o, k);
  return v.is_string() ? v.get<std::string>() : def;
}
bool true_field(const json& o, const char* k) {
  const json v = field(o, k);
  return v.is_boolean() && v.get<bool>();
}
json obj_field(const json& o, const char* k) {
  const json v = field(o, k);
  return v.is_object() ? v : json::object();
}
json num_field(const json& o, const char* k) {
  const json v = field(o, k);
  return v.is_number() ? v : json(0);
}

// A current record as the readers below expect it, whatever the file held: every group an
// object, hardware.gpus (when present) an array, producer (when present) a string.
json checked_record(const json& e) {
  json n = e;
  for (const char* g : {"host", "hardware", "runtime", "libraries", "flags", "environment"})
    if (!n[g].is_object()) n[g] = json::object();
  if (n["hardware"].contains("gpus") && !n["hardware"]["gpus"].is_array()) n["hardware"]["gpus"] = json::array();
  if (n.contains("producer") && !n["producer"].is_string()) n["producer"] = n["producer"].dump();
  return n;
}

}  // namespace

json normalize_env(const json& e) {
  if (!e.is_object()) return json::object();
  if (e.contains("divscope_env")) return checked_record(e);
  json n = {{"divscope_env", kEnvRecordVersion}, {"host", json::object()}, {"hardware", json::object()},
            {"runtime", json::object()}, {"libraries", json::object()}, {"flags", json::object()},
            {"environment", json::object()}};
  auto copy = [&](const char* from, const char* group, const char* to) {
    if (e.contains(from) && !e[from].is_null()) n[group][to] = e[from];
  };
  if (e.contains("divscope_version") || (e.contains("cuda") && e["cuda"].is_object())) {
    // divscope before records were versioned
    n["producer"] = "divscope " + str_field(e, "divscope_version", "?");
    const json h = obj_field(e, "host");
    if (h.contains("hostname")) n["host"]["hostname"] = h["hostname"];
    if (h.contains("cpu")) n["hardware"]["cpu"] = h["cpu"];
    if (h.contains("cores")) n["hardware"]["cores"] = h["cores"];
    if (h.contains("arch")) n["hardware"]["arch"] = h["arch"];
    if (h.contains("os")) n["runtime"]["os"] = h["os"];
    copy("compiler", "libraries", "compiler");
    if (e.contains("divscope_version")) n["libraries"]["divscope"] = e["divscope_version"];
    const json c = obj_field(e, "cuda");
    n["runtime"]["cuda_available"] = true_field(c, "available");
    if (c.contains("reason")) n["runtime"]["cuda_unavailable_reason"] = c["reason"];
    if (c.contains("driver")) n["runtime"]["cuda_driver"] = c["driver"];
    if (c.contains("runtime")) n["runtime"]["cuda_runtime"] = c["runtime"];
    n["hardware"]["gpus"] = json::array();
    if (true_field(c, "available"))
      n["hardware"]["gpus"].push_back({{"index", 0},
                                       {"name", str_field(c, "gpu", "")},
                                       {"compute_capability", str_field(c, "compute_capability", "")},
                                       {"multiprocessors", num_field(c, "multiprocessors")},
                                       {"memory_bytes", num_field(c, "memory_bytes")}});
    return n;
  }
  // The flat records of capture_torch.py / capture_onnx.py (recording format 2 before env records).
  n["producer"] = str_field(e, "framework", "") == "onnxruntime" ? "capture_onnx.py" : "capture_torch.py";
  if (e.contains("host") && e["host"].is_string()) n["host"]["hostname"] = e["host"];
  copy("python", "runtime", "python");
  copy("platform", "runtime", "os");
  copy("cuda", "runtime", "cuda_runtime");
  copy("cudnn", "runtime", "cudnn");
  copy("torch", "libraries", "torch");
  if (e.contains("packages") && e["packages"].is_object())
    for (const auto& kv : e["packages"].items()) n["libraries"][kv.key()] = kv.value();
  if (e.contains("default_dtype")) n["flags"]["torch.default_dtype"] = e["default_dtype"];
  static const std::map<std::string, std::string> flag_names = {
      {"matmul_allow_tf32", "torch.backends.cuda.matmul.allow_tf32"},
      {"cudnn_allow_tf32", "torch.backends.cudnn.allow_tf32"},
      {"cudnn_benchmark", "torch.backends.cudnn.benchmark"},
      {"cudnn_deterministic", "torch.backends.cudnn.deterministic"},
      {"deterministic_algorithms", "torch.deterministic_algorithms"},
      {"autocast_gpu", "torch.autocast_gpu"},
      {"autocast_cpu", "torch.autocast_cpu"}};
  if (e.contains("flags") && e["flags"].is_object())
    for (const auto& kv : e["flags"].items()) {
      auto it = flag_names.find(kv.key());
      n["flags"][it == flag_names.end() ? kv.key() : it->second] = kv.value();
    }
  n["hardware"]["gpus"] = json::array();
  if (e.contains("gpus") && e["gpus"].is_array())
    for (size_t i = 0; i < e["gpus"].size(); ++i) {
      const json& g = e["gpus"][i];
      n["hardware"]["gpus"].push_back({{"index", i},
                                       {"name", str_field(g, "name", "")},
                                       {"compute_capability", str_field(g, "capability", "")},
                                       {"multiprocessors", num_field(g, "sms")},
                                       {"memory_bytes", num_field(g, "memory")}});
    }
  n["runtime"]["cuda_available"] = !n["hardware"]["gpus"].empty();
  if (e.contains("environment") && e["environment"].is_object()) n["environment"] = e["environment"];
  return n;
}

bool env_cuda_available(const json& env) {
  const json n = normalize_env(env);
  return true_field(n["runtime"], "cuda_available");
}

std::string env_cuda_reason(const json& env) {
  const json n = normalize_env(env);
  return str_field(n["runtime"], "cuda_unavailable_reason", "");
}

namespace {

std::string text(const json& j, std::initializer_list<const char*> keys) {
  const json* p = &j;
  for (const char* k : keys) {
    if (!p->is_object() || !p->contains(k)) return "";
    p = &(*p)[k];
  }
  if (p->is_null()) return "";
  return p->is_string() ? p->get<std::string>() : p->dump();
}

}  // namespace

std::string env_gpu_line(const json& env) {
  const json n = normalize_env(env);
  const json gpus = n["hardware"].value("gpus", json::array());
  if (gpus.empty()) {
    const std::string why = text(n, {"runtime", "cuda_unavailable_reason"});
    return "no CUDA device" + (why.empty() ? std::string() : ": " + why);
  }
  std::string s;
  for (const json& g : gpus) {
    if (!s.empty()) s += "; ";
    s += text(g, {"name"}) + " (sm " + text(g, {"compute_capability"}) + ")";
  }
  const std::string drv = text(n, {"runtime", "cuda_driver"}), rt = text(n, {"runtime", "cuda_runtime"});
  return s + ", driver " + (drv.empty() ? "?" : drv) + ", runtime " + (rt.empty() ? "?" : rt);
}

std::string env_host_line(const json& env) {
  const json n = normalize_env(env);
  return text(n, {"host", "hostname"}) + " · " + text(n, {"runtime", "os"}) + " " + text(n, {"hardware", "arch"}) +
         " · " + text(n, {"hardware", "cpu"}) + " (" + text(n, {"hardware", "cores"}) + " cores)";
}

std::string env_software_line(const json& env) {
  const json n = normalize_env(env);
  const json& lib = n["libraries"];
  std::string s = str_field(n, "producer", "?");
  if (lib.contains("divscope_commit"))
    s += " (" + text(lib, {"divscope_commit"}) + ", " + text(lib, {"build_type"}) + ", CUDA architectures " +
         text(lib, {"cuda_architectures"}) + "), " + text(lib, {"compiler"});
  std::vector<std::string> parts;
  if (!text(n, {"runtime", "python"}).empty()) parts.push_back("python " + text(n, {"runtime", "python"}));
  for (const char* k : {"torch", "onnxruntime", "onnx"})
    if (lib.contains(k)) parts.push_back(std::string(k) + " " + text(lib, {k}));
  if (!parts.empty()) {
    s += ":";
    for (size_t i = 0; i < parts.size(); ++i) s += (i ? ", " : " ") + parts[i];
  }
  std::vector<std::string> on;
  if (n["flags"].is_object())
    for (const auto& kv : n["flags"].items())
      if (kv.value().is_boolean() && kv.value().get<bool>() && kv.key().rfind("divscope.", 0) != 0) on.push_back(kv.key());
  if (!on.empty()) {
    s += "; flags on:";
    for (size_t i = 0; i < on.size(); ++i) s += (i ? ", " : " ") + on[i];
  }
  return s;
}

std::string env_machine(const json& env) {
  if (!env.is_object() || env.empty()) return "unknown machine (no environment record)";
  const json n = normalize_env(env);
  std::string host = text(n, {"host", "hostname"});
  if (host.empty()) host = "unknown";
  const json gpus = n["hardware"].value("gpus", json::array());
  if (!gpus.empty()) return text(gpus[0], {"name"}) + " on host " + host;
  return "host " + host + " (no CUDA device)";
}

namespace {

// Why a field matters for numerics; empty when it is not known to.
std::string note_for(const std::string& group, const std::string& field) {
  auto has = [&](const char* s) { return field.find(s) != std::string::npos; };
  if (group == "flags") {
    if (field == "torch.backends.cuda.matmul.allow_tf32")
      return "TF32 allowed on one side: float32 matmuls round their operands to 10 mantissa bits";
    if (field == "torch.backends.cudnn.allow_tf32")
      return "TF32 in cuDNN on one side: convolution operands rounded to 10 mantissa bits";
    if (field == "torch.float32_matmul_precision")
      return "'high'/'medium' let float32 matmuls run in TF32 or bfloat16";
    if (field == "torch.backends.cudnn.benchmark")
      return "cuDNN autotuning: the convolution algorithm, and its summation order, is chosen per run";
    if (field == "torch.backends.cudnn.deterministic" || field == "torch.deterministic_algorithms")
      return "nondeterministic kernels (atomic adds) allowed on one side: results differ run to run";
    if (has("autocast")) return "autocast runs matmuls and convolutions in float16/bfloat16";
    if (field == "torch.default_dtype") return "tensors created without a dtype have another precision";
    if (has("reduced_precision_reduction")) return "float16/bfloat16 GEMMs may accumulate in reduced precision";
    if (has("num_threads") || has("intra_op")) return "CPU thread count: reductions are split differently";
    if (field == "onnxruntime.graph_optimization_level")
      return "graph fusions change where values are rounded";
    if (field == "onnxruntime.execution_provider") return "another execution provider runs other kernels";
    if (field == "divscope.fp_contract" || field == "divscope.fast_math")
      return "the host code's floating-point contraction differs";
    return "";
  }
  if (group == "environment") {
    if (field == "NVIDIA_TF32_OVERRIDE")
      return "overrides TF32 in cuBLAS and cuDNN for every framework: 0 forbids it, 1 allows it";
    if (field == "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE") return "forces TF32 in PyTorch's cuBLAS calls";
    if (field == "CUBLAS_WORKSPACE_CONFIG")
      return "cuBLAS reproducibility: ':4096:8' or ':16:8' makes its reductions deterministic";
    if (field == "CUDA_VISIBLE_DEVICES") return "selects which GPU runs";
    if (field == "CUDA_LAUNCH_BLOCKING") return "synchronous launches: timing only, the numbers do not change";
    if (has("NUM_THREADS")) return "CPU thread count: reductions are split differently";
    if (field.rfind("CUBLAS", 0) == 0 || field.rfind("CUDNN", 0) == 0)
      return "changes cuBLAS/cuDNN algorithm selection";
    if (field.rfind("DIVSCOPE_", 0) == 0) return "a divscope setting";
    return "";
  }
  if (group == "hardware") {
    if (has(".name") || has("compute_capability") || field == "gpus")
      return "a different GPU: other kernels, tensor-core paths and summation orders";
    if (field == "cpu_flags")
      return "CPU vector width (AVX2, AVX-512): CPU libraries sum in different orders";
    if (field == "cpu") return "a different CPU: CPU libraries may choose other code paths";
    if (has(".ecc")) return "ECC off on one side: memory errors go undetected";
    if (has(".mig")) return "a MIG slice: fewer SMs, kernels may be configured differently";
    return "";
  }
  if (group == "runtime") {
    if (field == "cuda_driver" || field == "cuda_runtime")
      return "CUDA version: library kernels and their selection change between versions";
    if (field == "cudnn") return "cuDNN version: convolution algorithms change between versions";
    if (field == "cuda_available") return "one side ran without a GPU";
    return "";
  }
  if (group == "libraries") {
    if (field == "torch") return "PyTorch version: op implementations and defaults change";
    if (field == "onnxruntime") return "ONNX Runtime version: kernels and fusions change";
    if (field.rfind("nvidia-", 0) == 0) return "CUDA library wheel version: kernels change";
    if (field == "divscope" || field == "divscope_commit") return "divscope itself differs";
    if (field == "cuda_architectures") return "another set of compiled GPU architectures";
    if (field == "tensorrt" || field == "triton" || field == "jax" || field == "tensorflow")
      return "another version of a compiler of kernels";
    return "";
  }
  return "";
}

void flatten(const json& v, const std::string& prefix, std::map<std::string, json>* out) {
  if (v.is_object() && !v.empty()) {
    for (const auto& kv : v.items()) flatten(kv.value(), prefix.empty() ? kv.key() : prefix + "." + kv.key(), out);
    return;
  }
  if (v.is_array() && !v.empty() && v[0].is_object()) {   // gpus: one entry per device
    for (size_t i = 0; i < v.size(); ++i) flatten(v[i], prefix + "[" + std::to_string(i) + "]", out);
    (*out)[prefix.empty() ? "count" : prefix + ".count"] = v.size();
    return;
  }
  if (v.is_null() || (v.is_object() && v.empty())) return;   // unknown or empty: the same as absent
  (*out)[prefix] = v;        // scalars, lists of scalars (cpu_flags) compare whole
}

std::string producer_kind(const json& n) {
  const std::string p = str_field(n, "producer", "");
  if (p.rfind("divscope", 0) == 0) return "divscope";
  return p;
}

}  // namespace

std::vector<EnvDifference> diff_environments(const json& a0, const json& b0) {
  const json a = normalize_env(a0), b = normalize_env(b0);
  // Libraries and flags of different producers (the capturing framework vs divscope) are not
  // comparable one-sidedly: only fields both sides have are compared there.
  const bool same_kind = producer_kind(a) == producer_kind(b);
  static const char* const groups[] = {"hardware", "runtime", "libraries", "flags", "environment", "host"};
  std::vector<EnvDifference> out;
  for (const char* g : groups) {
    std::map<std::string, json> fa, fb;
    if (a.contains(g)) flatten(a[g], "", &fa);
    if (b.contains(g)) flatten(b[g], "", &fb);
    std::set<std::string> keys;
    for (const auto& kv : fa) keys.insert(kv.first);
    for (const auto& kv : fb) keys.insert(kv.first);
    const std::string group = g;
    for (const std::string& k : keys) {
      const bool ia = fa.count(k), ib = fb.count(k);
      if (ia && ib && fa[k] == fb[k]) continue;
      if ((!ia || !ib) && !same_kind) {
        // One-sided fields of another program are noise, except a numerics switch that is on
        // (e.g. TF32 allowed when the recording was captured).
        if (group == "libraries") continue;
        if (group == "flags" && !((ia ? fa[k] : fb[k]) == json(true) && !note_for(group, k).empty())) continue;
      }
      if ((!ia || !ib) && group == "runtime" && (k == "python" || k == "cuda_unavailable_reason")) continue;
      EnvDifference d;
      d.group = group;
      d.field = k;
      d.a = ia ? fa[k].dump() : "(absent)";
      d.b = ib ? fb[k].dump() : "(absent)";
      d.note = note_for(group, k);
      out.push_back(d);
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const EnvDifference& x, const EnvDifference& y) {
    const bool nx = !x.note.empty() && x.group != "host", ny = !y.note.empty() && y.group != "host";
    if (nx != ny) return nx;
    const bool hx = x.group == "host", hy = y.group == "host";
    return hx < hy;
  });
  return out;
}

json env_diff_json(const std::vector<EnvDifference>& d) {
  json out = json::array();
  for (const EnvDifference& e : d)
    out.push_back({{"group", e.group}, {"field", e.field}, {"a", e.a}, {"b", e.b}, {"note", e.note}});
  return out;
}

void print_env_diff(const std::vector<EnvDifference>& d, std::ostream& out, size_t max_other) {
  if (d.empty()) {
    out << "  no differences\n";
    return;
  }
  size_t wf = 0, wa = 0;
  for (const EnvDifference& e : d) {
    wf = std::max(wf, e.group.size() + 1 + e.field.size());
    wa = std::max(wa, e.a.size());
  }
  wf = std::min<size_t>(wf, 48);
  wa = std::min<size_t>(wa, 28);
  auto line = [&](const EnvDifference& e) {
    std::string f = e.group + " " + e.field;
    std::string a = e.a;
    out << "  " << f << std::string(f.size() < wf ? wf - f.size() : 1, ' ') << "  A: " << a
        << std::string(a.size() < wa ? wa - a.size() : 1, ' ') << "  B: " << e.b;
    if (!e.note.empty() && e.group != "host") out << "\n" << std::string(wf + 4, ' ') << "-> " << e.note;
    out << "\n";
  };
  size_t numerics = 0;
  for (const EnvDifference& e : d) numerics += !e.note.empty() && e.group != "host";
  if (numerics) out << "  known to change numerics (" << numerics << "):\n";
  size_t shown_other = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    const bool num = !d[i].note.empty() && d[i].group != "host";
    if (!num && i == numerics) out << "  other differences (" << d.size() - numerics << "):\n";
    if (!num && shown_other++ >= max_other) continue;
    line(d[i]);
  }
  if (shown_other > max_other) out << "  ... and " << shown_other - max_other << " more (divscope env-diff, or the JSON report)\n";
}

namespace {

// A current record read by env-diff: its groups objects (null or absent: unknown), hardware.gpus
// an array, producer a string; anything else is a damaged file (exit 2 naming the JSON pointer).
// Older records are mapped field by field (normalize_env) and need no check.
void check_record(const json& r, const std::string& path, const std::string& pointer) {
  if (!r.contains("divscope_env")) return;
  for (const char* g : {"host", "hardware", "runtime", "libraries", "flags", "environment"})
    if (r.contains(g) && !r[g].is_null() && !r[g].is_object())
      throw InputError(path, pointer + "/" + g, "must be an object (a damaged environment record)");
  const json gpus = field(field(r, "hardware"), "gpus");
  if (!gpus.is_null() && !gpus.is_array())
    throw InputError(path, pointer + "/hardware/gpus", "must be an array (a damaged environment record)");
  if (r.contains("producer") && !r["producer"].is_null() && !r["producer"].is_string())
    throw InputError(path, pointer + "/producer", "must be a string (a damaged environment record)");
}

}  // namespace

json load_environment(const std::string& path, std::string* what) {
  if (path == "-") {
    if (what) *what = "this machine";
    return environment_json();
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot open");
  char c = 0;
  while (f.get(c) && std::isspace(static_cast<unsigned char>(c))) {
  }
  if (c == '{') {   // a JSON report, or a record written by `divscope env`
    f.seekg(0);
    std::stringstream text;
    text << f.rdbuf();
    const json j = json::parse(text.str(), nullptr, false);
    if (!j.is_object()) throw InputError(path, "/", "not valid JSON");
    if (j.contains("divscope_env") || j.contains("divscope_version")) {
      check_record(j, path, "");
      if (what) *what = "environment record " + path;
      return normalize_env(j);
    }
    if (j.contains("environment") && j["environment"].is_object()) {
      check_record(j["environment"], path, "/environment");
      if (what) *what = "report " + path;
      return normalize_env(j["environment"]);
    }
    throw InputError(path, "/environment", "the JSON holds no environment record (a divscope report or `divscope env` output)");
  }
  const std::string fmt = file_format(path);
  h5::File h = h5::File::open(path);
  h5::Object root = h.root();
  const char* attr = fmt == "dump" ? "environment" : fmt == "recording" ? "capture_environment" : nullptr;
  if (!attr) throw InputError(path, "/", "a '" + fmt + "' file holds no environment record (reports, dumps and recordings do)");
  if (!root.has_attr(attr))
    throw InputError(path, std::string("/") + attr, "the " + fmt + " has no environment record (it was written without one)");
  const json j = json::parse(root.attr_string(attr), nullptr, false);
  if (!j.is_object()) throw InputError(path, std::string("/") + attr, "not a JSON object");
  check_record(j, path, std::string("/") + attr);
  if (what) *what = fmt + " " + path;
  return normalize_env(j);
}

}  // namespace divscope
