// run --profile and run --threads (issue 15): where the time goes, and the same answer for any
// thread count through the CLI.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_util.h"

using namespace divscope::testing;

namespace {
std::string run_args(const std::string& ex) {
  return "run --backend cpu -q --model " + data_file(ex + ".model.h5") + " --recording " + data_file(ex + ".recording.h5");
}
}  // namespace

TEST(Profile, EveryPassTimedAndTheReportUnchanged) {
  const std::string prof = temp_path("profile.json"), r1 = temp_path("t1.json"), r2 = temp_path("t2.json");
  const CliResult a = run_cli(run_args("cnn") + " --threads 1 --profile " + prof + " --report " + r1);
  const CliResult b = run_cli(run_args("cnn") + " --threads 2 --report " + r2);
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(read_file(r1), read_file(r2)) << "the thread count changed the report";
  const nlohmann::json p = nlohmann::json::parse(read_file(prof));
  EXPECT_EQ(p["threads"], 1);
  EXPECT_EQ(p["batches"], 3);
  double passes = 0;
  for (const char* k : {"read_s", "reference_s", "probe_s", "checks_s"}) {
    ASSERT_TRUE(p[k].is_number()) << k;
    EXPECT_GE(p[k].get<double>(), 0) << k;
    passes += p[k].get<double>();
  }
  for (const char* m : {"fp32", "tf32", "fp16", "bf16", "strict"})
    for (const char* k : {"chained_s", "isolated_s", "compare_s"}) {
      ASSERT_TRUE(p["modes"][m][k].is_number()) << m << " " << k;
      EXPECT_GT(p["modes"][m][k].get<double>(), 0) << m << " " << k;
      passes += p["modes"][m][k].get<double>();
    }
  // One thread: the passes are sequential parts of the run.
  EXPECT_LE(passes, p["wall_s"].get<double>() * 1.01 + 1e-3);
  EXPECT_GT(p["reference_s"].get<double>(), 0);
}

TEST(Profile, BadThreadCountsAndPathsRefused) {
  for (const char* t : {"-1", "5000", "x"}) {
    const CliResult r = run_cli(run_args("mlp") + " --threads " + t);
    EXPECT_EQ(r.code, 2) << t << ": " << r.err;
  }
  const CliResult r = run_cli(run_args("mlp") + " --profile " + data_file("mlp.model.h5"));
  EXPECT_EQ(r.code, 2) << "--profile over the model: " << r.err;
}
