// host/env and `divscope env-diff`: the environment record's schema, records of older producers
// normalized, and two hand-made records diffed field by field into the right groups, the
// numerics-relevant fields first with their note; exit codes as `diff`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "commands/envdiff.h"
#include "env.h"
#include "errors.h"

using namespace divscope;
using json = nlohmann::json;

namespace {

std::string temp_json(const std::string& name, const json& j) {
  const std::string p = ::testing::TempDir() + "divscope_env_" + std::to_string(getpid()) + "_" + name;
  std::ofstream(p) << j.dump(2);
  return p;
}

json record() {
  return {{"divscope_env", 1},
          {"producer", "capture_torch.py"},
          {"host", {{"hostname", "a"}}},
          {"hardware", {{"cpu", "Xeon"}, {"cpu_flags", {"avx2", "fma"}}, {"cores", 8}, {"arch", "x86_64"},
                        {"gpus", {{{"index", 0}, {"name", "NVIDIA A100"}, {"compute_capability", "8.0"},
                                   {"multiprocessors", 108}, {"memory_bytes", 1}, {"ecc", true}, {"mig", false}}}}}},
          {"runtime", {{"os", "Linux 6.1"}, {"cuda_available", true}, {"cuda_driver", "12.4"},
                       {"cuda_runtime", "12.1"}, {"cudnn", nullptr}, {"python", "3.11.2"}}},
          {"libraries", {{"torch", "2.3.0"}, {"numpy", "1.26.4"}}},
          {"flags", {{"torch.backends.cuda.matmul.allow_tf32", false}, {"torch.backends.cudnn.benchmark", false}}},
          {"environment", json::object()}};
}

const EnvDifference* find(const std::vector<EnvDifference>& d, const std::string& field) {
  for (const EnvDifference& e : d)
    if (e.field == field) return &e;
  return nullptr;
}

TEST(Env, RecordHasEveryGroup) {
  const json e = environment_json();
  EXPECT_EQ(e.at("divscope_env"), kEnvRecordVersion);
  for (const char* g : {"host", "hardware", "runtime", "libraries", "flags", "environment"})
    EXPECT_TRUE(e.at(g).is_object()) << g;
  EXPECT_TRUE(e["hardware"]["gpus"].is_array());
  EXPECT_TRUE(e["hardware"]["cpu_flags"].is_array());
  EXPECT_TRUE(e["runtime"]["cuda_available"].is_boolean());
  for (const char* k : {"divscope", "divscope_commit", "build_type", "cuda_architectures", "compiler", "hdf5"})
    EXPECT_TRUE(e["libraries"].contains(k)) << k;
  // A record of this machine against itself: no differences.
  EXPECT_TRUE(diff_environments(e, environment_json()).empty());
}

TEST(Env, NamesEachDifferenceInItsGroupNumericsFirst) {
  json a = record(), b = record();
  b["host"]["hostname"] = "b";
  b["hardware"]["gpus"][0]["name"] = "NVIDIA H100";
  b["hardware"]["gpus"][0]["compute_capability"] = "9.0";
  b["hardware"]["cpu_flags"] = {"avx2", "fma", "avx512f"};
  b["runtime"]["cuda_driver"] = "13.0";
  b["libraries"]["numpy"] = "2.1.0";
  b["flags"]["torch.backends.cuda.matmul.allow_tf32"] = true;
  b["environment"]["NVIDIA_TF32_OVERRIDE"] = "0";
  b["runtime"]["cudnn"] = nullptr;   // null on both sides: unknown, not a difference
  const std::vector<EnvDifference> d = diff_environments(a, b);
  struct Want { const char* field; const char* group; bool numerics; };
  for (const Want& w : {Want{"gpus[0].name", "hardware", true}, Want{"gpus[0].compute_capability", "hardware", true},
                        Want{"cpu_flags", "hardware", true}, Want{"cuda_driver", "runtime", true},
                        Want{"numpy", "libraries", false}, Want{"torch.backends.cuda.matmul.allow_tf32", "flags", true},
                        Want{"NVIDIA_TF32_OVERRIDE", "environment", true}, Want{"hostname", "host", false}}) {
    const EnvDifference* e = find(d, w.field);
    ASSERT_NE(e, nullptr) << w.field;
    EXPECT_EQ(e->group, w.group) << w.field;
    EXPECT_EQ(!e->note.empty() && e->group != "host", w.numerics) << w.field;
  }
  std::string all;
  for (const EnvDifference& e : d) all += e.group + "." + e.field + " ";
  EXPECT_EQ(d.size(), 8u) << all;
  EXPECT_EQ(find(d, "NVIDIA_TF32_OVERRIDE")->a, "(absent)");
  EXPECT_EQ(find(d, "NVIDIA_TF32_OVERRIDE")->b, "\"0\"");
  // Numerics-relevant first, the hostname last.
  bool seen_plain = false;
  for (const EnvDifference& e : d) {
    const bool num = !e.note.empty() && e.group != "host";
    EXPECT_FALSE(num && seen_plain) << e.field << " after a difference without a note";
    seen_plain |= !num;
  }
  EXPECT_EQ(d.back().group, "host");
}

TEST(Env, OlderFlatRecordsAreNormalized) {
  const json old_capture = {{"python", "3.11.2"}, {"torch", "1.13.1"}, {"cuda", "11.7"}, {"cudnn", 8500},
                            {"default_dtype", "torch.float32"},
                            {"flags", {{"matmul_allow_tf32", true}, {"cudnn_benchmark", false}}},
                            {"gpus", {{{"name", "NVIDIA T4"}, {"capability", "7.5"}, {"memory", 16}, {"sms", 40}}}},
                            {"packages", {{"numpy", "1.24.2"}}},
                            {"environment", {{"CUBLAS_WORKSPACE_CONFIG", ":4096:8"}}}};
  const json n = normalize_env(old_capture);
  EXPECT_EQ(n["producer"], "capture_torch.py");
  EXPECT_EQ(n["flags"]["torch.backends.cuda.matmul.allow_tf32"], true);
  EXPECT_EQ(n["hardware"]["gpus"][0]["compute_capability"], "7.5");
  EXPECT_EQ(n["libraries"]["torch"], "1.13.1");
  EXPECT_EQ(n["environment"]["CUBLAS_WORKSPACE_CONFIG"], ":4096:8");
  const json old_divscope = {{"divscope_version", "0.1"},
                             {"host", {{"hostname", "gpu7"}, {"os", "Linux 5.15"}, {"cpu", "EPYC"}, {"cores", 64}}},
                             {"compiler", "GNU 12.2.0"},
                             {"cuda", {{"available", true}, {"gpu", "NVIDIA H100"}, {"compute_capability", "9.0"},
                                       {"driver", "13.0"}, {"runtime", "13.0"}}}};
  EXPECT_EQ(env_machine(old_divscope), "NVIDIA H100 on host gpu7");
  EXPECT_TRUE(env_cuda_available(old_divscope));
}

TEST(Env, EnvDiffExitsLikeDiff) {
  json a = record(), b = record();
  std::ostringstream out, err;
  const std::string pa = temp_json("a.json", a);
  EXPECT_EQ(run_env_diff({pa, temp_json("same.json", a), ""}, out, err), 0);
  b["host"]["hostname"] = "other";   // only the hostname: still the same environment
  EXPECT_EQ(run_env_diff({pa, temp_json("host.json", b), ""}, out, err), 0);
  b["flags"]["torch.backends.cudnn.benchmark"] = true;
  const std::string pb = temp_json("b.json", b);
  const std::string rep = ::testing::TempDir() + "divscope_env_" + std::to_string(getpid()) + "_diff.json";
  std::ostringstream table;
  EXPECT_EQ(run_env_diff({pa, pb, rep}, table, err), 1);
  EXPECT_NE(table.str().find("cuDNN autotuning"), std::string::npos) << table.str();
  std::ifstream in(rep);
  const json j = json::parse(in);
  EXPECT_FALSE(j["same"].get<bool>());
  EXPECT_EQ(j["numerics_differences"], 1);
  // A report holds its environment; a file that holds none is an input error naming it.
  const std::string report = temp_json("report.json", {{"divscope_report", 2}, {"environment", b}});
  EXPECT_EQ(run_env_diff({report, pb, ""}, out, err), 0);
  const std::string bad = temp_json("bad.json", {{"something", 1}});
  EXPECT_THROW(run_env_diff({bad, pb, ""}, out, err), InputError);
}

}  // namespace
