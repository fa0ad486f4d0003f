// PyTorch bridge: tools/capture_torch.py -> model.h5 + recording.h5 -> divscope inspect / run.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli_util.h"

using namespace divscope::testing;

TEST(Capture, RoundTripThroughInspectAndRun) {
  const std::string dir = temp_path("capture");
  std::filesystem::create_directories(dir);
  const std::string log = dir + "/python.log";
  const std::string cmd = std::string(DIVSCOPE_PYTHON) + " " + DIVSCOPE_SOURCE_DIR +
                          "/tests/python/capture_roundtrip.py " + dir + " >" + log + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_file(log);
  // The unmappable module's error names the fx node and its target.
  EXPECT_NE(read_file(log).find("cumsum"), std::string::npos) << read_file(log);

  CliResult m = run_cli("inspect " + dir + "/net.model.h5");
  ASSERT_EQ(m.code, 0) << m.err;
  for (const char* s : {"conv", "conv2d", "batchnorm2d", "relu", "flatten", "linear", "softmax",
                        "[4, 3, 3]", "[5]", "stride=[2,2]"})
    EXPECT_NE(m.out.find(s), std::string::npos) << s << "\n" << m.out;
  EXPECT_EQ(m.out.find("dropout"), std::string::npos) << "dropout is identity at inference";

  CliResult r = run_cli("inspect " + dir + "/net.recording.h5 --model " + dir + "/net.model.h5");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("2 batches, 6 samples"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("activations/fc"), std::string::npos) << r.out;

  // The FP64 reference reproduces the module's own float64 activations.
  const std::string report = dir + "/report.json";
  CliResult run = run_cli("run --backend cpu --quiet --modes fp32 --model " + dir +
                          "/net.model.h5 --recording " + dir + "/net.recording.h5 --report " + report);
  ASSERT_TRUE(run.code == 0 || run.code == 1) << run.err;
  auto j = nlohmann::json::parse(read_file(report));
  ASSERT_FALSE(j["recorded"].empty());
  for (const auto& l : j["recorded"]) EXPECT_LE(l["rel_l2"].get<double>(), 1e-12) << l["name"];
  std::filesystem::remove_all(dir);
}
