// Every input with which a fuzz target of fuzz/ found a bug in divscope (docs/testing.md,
// Fuzzing), kept in tests/data/fuzz-regressions/<target>/ in the target's own format, run
// through the divscope binary as a user would meet it: exit 2 and one line naming the file —
// or, for an input named ok-*, one that is valid and once crashed, exit 0 or 1 and no error.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include <hdf5.h>

#include "cli_util.h"

using namespace divscope::testing;
namespace fs = std::filesystem;

namespace {

// The example models the recording and JSON targets pick with their first byte (fuzz_util.h).
const std::vector<std::string> kModels = {
    "mlp", "cnn", "resnet", "transformer", "dcgan", "ops", "planted_fp16_overflow",
    "planted_attention_overflow", "planted_bf16_offset", "planted_conv_cancellation",
    "planted_fp16_underflow", "planted_layernorm_offset", "planted_tf32_cancellation"};

std::string bytes_of(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// The command that reads the input the way its fuzz target does; `file` receives the input.
std::string command_for(const std::string& target, const std::string& input, const std::string& file) {
  const std::string model = [&] {
    const unsigned char b = input.empty() ? 0 : static_cast<unsigned char>(input[0]);
    const unsigned pick = target == "json" ? b >> 2 : b;
    return data_file(kModels[pick % kModels.size()] + ".model.h5");
  }();
  if (target == "model" || target == "onnx") {
    write(file, input);
    return "inspect " + file;
  }
  write(file, input.substr(1));
  if (target == "recording")
    return "run --backend cpu --quiet --modes fp32 --model " + model + " --recording " + file;
  const unsigned kind = input.empty() ? 0 : static_cast<unsigned char>(input[0]) & 3u;
  if (kind == 0) return "merge " + file + " --model " + model;
  if (kind == 1)
    return "run --backend cpu --quiet --modes fp32 --batches 0:1 --model " + data_file("mlp.model.h5") +
           " --recording " + data_file("mlp.recording.h5") + " --tolerances " + file;
  return "env-diff " + file + " " + file;
}

}  // namespace

TEST(Fuzz, Regressions) {
  const fs::path dir = fs::path(DIVSCOPE_SOURCE_DIR) / "tests" / "data" / "fuzz-regressions";
  std::vector<fs::path> inputs;
  for (const char* target : {"model", "recording", "onnx", "json"})
    if (fs::is_directory(dir / target))
      for (const auto& e : fs::directory_iterator(dir / target))
        if (e.is_regular_file()) inputs.push_back(e.path());
  std::sort(inputs.begin(), inputs.end());
  if (inputs.empty()) GTEST_SKIP() << "no fuzz regression inputs in " << dir;
  for (const fs::path& p : inputs) {
    const std::string target = p.parent_path().filename().string();
    const std::string file = temp_path("fuzz_" + target + "_" + p.filename().string());
    const std::string args = command_for(target, bytes_of(p), file);
    SCOPED_TRACE(p.string() + ": divscope " + args);
    CliResult r = run_cli(args);
    if (p.filename().string().rfind("ok-", 0) == 0) {
      EXPECT_TRUE(r.code == 0 || r.code == 1) << r.err;
      EXPECT_EQ(r.err, "");
    } else {
      EXPECT_EQ(r.code, 2) << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
      EXPECT_NE(r.err.find(file), std::string::npos) << r.err;
    }
    EXPECT_EQ(r.err.find("internal error"), std::string::npos) << r.err;
    std::remove(file.c_str());
  }
}

// The same environment records inside a recording (capture_environment, format 2): `run` and
// `inspect` take the capturing machine as information and never fail on it (before: nlohmann's
// type errors, exit 3, and a read past a map's end for a record without its groups); env-diff
// reads it as a record: a group of the wrong type is exit 2 naming the attribute.
TEST(Fuzz, DamagedCaptureEnvironmentIsInformationOnly) {
  const struct {
    const char* record;
    bool valid;
  } cases[] = {{R"({"divscope_env": 1})", true},
               {R"({"divscope_env": 1, "hardware": 5, "runtime": {"cuda_available": "yes"}})", false},
               {R"({"divscope_env": 1, "hardware": {"gpus": 3}, "producer": 7})", false},
               {R"({"divscope_version": 7, "cuda": {"available": 1, "gpu": 2}})", true},
               {R"({"framework": 1, "gpus": [3, {"name": 4, "sms": "x"}], "flags": []})", true}};
  const std::string rec = temp_path("damaged_env.recording.h5");
  for (const auto& c : cases) {
    SCOPED_TRACE(c.record);
    { std::ifstream src(data_file("mlp.recording.h5"), std::ios::binary);
      std::ofstream(rec, std::ios::binary) << src.rdbuf(); }
    hid_t f = H5Fopen(rec.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    if (H5Aexists(f, "capture_environment") > 0) H5Adelete(f, "capture_environment");
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "capture_environment", type, space, H5P_DEFAULT, H5P_DEFAULT);
    const char* text = c.record;
    ASSERT_GE(H5Awrite(a, type, &text), 0);
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    H5Fclose(f);
    const std::string out = temp_path("damaged_env");
    CliResult r = run_cli("run --backend cpu --quiet --modes fp32 --model " + data_file("mlp.model.h5") +
                          " --recording " + rec + " --report " + out + ".json --html " + out + ".html --junit " +
                          out + ".xml");
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(run_cli("inspect " + rec).code, 0);
    r = run_cli("env-diff " + rec + " -");
    if (c.valid) {
      EXPECT_TRUE(r.code == 0 || r.code == 1) << r.err;
    } else {
      EXPECT_EQ(r.code, 2) << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
      EXPECT_NE(r.err.find("/capture_environment/"), std::string::npos) << r.err;
    }
    for (const char* ext : {".json", ".html", ".xml"}) std::remove((out + ext).c_str());
  }
  std::remove(rec.c_str());
}
