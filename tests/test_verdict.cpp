// Tolerance policy, glob patterns and the divergence rule (README, What divscope run computes).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "errors.h"
#include "analysis/verdict.h"

using namespace divscope;

namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST(Verdict, DefaultsPerMode) {
  TolerancePolicy p;
  EXPECT_DOUBLE_EQ(p.for_layer(Mode::fp32, "x").atol, 1e-5);
  EXPECT_DOUBLE_EQ(p.for_layer(Mode::fp32, "x").rtol, 1e-4);
  EXPECT_DOUBLE_EQ(p.for_layer(Mode::tf32, "x").atol, 1e-3);
  EXPECT_DOUBLE_EQ(p.for_layer(Mode::tf32, "x").rtol, 1e-2);
  EXPECT_DOUBLE_EQ(p.for_layer(Mode::fp16, "x").rtol, 1e-2);
  EXPECT_DOUBLE_EQ(p.for_layer(Mode::bf16, "x").rtol, 4e-2);
  EXPECT_DOUBLE_EQ(p.for_layer(Mode::bf16, "x").max_mismatch, 0);
}

TEST(Verdict, GlobalFlagsOverrideDefaults) {
  TolerancePolicy p;
  ToleranceOverride o;
  o.atol = 0.5;
  p.set_global(o);
  EXPECT_DOUBLE_EQ(p.for_layer(Mode::fp16, "fc1").atol, 0.5);
  EXPECT_DOUBLE_EQ(p.for_layer(Mode::fp16, "fc1").rtol, 1e-2);   // untouched
}

TEST(Verdict, ToleranceFilePatternsAndModeSections) {
  TolerancePolicy p;
  p.load_file(write_temp("tol.json", R"({
    "all":  {"encoder.*": {"atol": 0.1}, "encoder.conv?": {"rtol": 0.2}},
    "fp16": {"*": {"max_mismatch": 0.01}, "encoder.conv1": {"atol": 0.3}}
  })"));
  Tolerance t = p.for_layer(Mode::fp16, "encoder.conv1");
  EXPECT_DOUBLE_EQ(t.atol, 0.3);          // mode section wins over "all"
  EXPECT_DOUBLE_EQ(t.rtol, 0.2);
  EXPECT_DOUBLE_EQ(t.max_mismatch, 0.01);
  Tolerance u = p.for_layer(Mode::fp32, "encoder.conv12");
  EXPECT_DOUBLE_EQ(u.atol, 0.1);
  EXPECT_DOUBLE_EQ(u.rtol, 1e-4);         // "conv?" matches one character only
  Tolerance v = p.for_layer(Mode::fp32, "decoder.fc");
  EXPECT_DOUBLE_EQ(v.atol, 1e-5);
}

TEST(Verdict, ToleranceFileErrorsNameFileAndKey) {
  TolerancePolicy p;
  std::string bad = write_temp("bad_tol.json", R"({"fp99": {"*": {"atol": 1}}})");
  try {
    p.load_file(bad);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("bad_tol.json"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("fp99"), std::string::npos);
  }
  std::string typo = write_temp("typo_tol.json", R"({"all": {"*": {"atoll": 1}}})");
  EXPECT_THROW(p.load_file(typo), InputError);
  std::string junk = write_temp("junk_tol.json", "{not json");
  EXPECT_THROW(p.load_file(junk), InputError);
}

TEST(Verdict, GlobMatch) {
  EXPECT_TRUE(glob_match("*", "a.b.c"));
  EXPECT_TRUE(glob_match("layer[0-9]", "layer7"));
  EXPECT_FALSE(glob_match("layer[0-9]", "layerx"));
  EXPECT_FALSE(glob_match("fc", "fc1"));
}

TEST(Verdict, BreaksOnMismatchFractionAndNewNonFinite) {
  LayerStats s;
  s.count = 100;
  s.mismatch = 2;
  Tolerance t;
  EXPECT_TRUE(breaks(s, t));
  t.max_mismatch = 0.02;
  EXPECT_FALSE(breaks(s, t));
  s.nonfinite_new = 1;   // NaN/Inf the reference lacks always diverges
  EXPECT_TRUE(breaks(s, t));
}

TEST(Verdict, BaselineLimitScalesFp32ErrorByRoundingUnits) {
  const double u32 = std::ldexp(1.0, -24), u16 = std::ldexp(1.0, -11), ubf = std::ldexp(1.0, -8);
  // A layer where fp32 lost 100 of its units allows fp16 3 x 100 of fp16's units.
  EXPECT_DOUBLE_EQ(baseline_limit(Mode::fp16, 3, 100 * u32), 300 * u16);
  EXPECT_DOUBLE_EQ(baseline_limit(Mode::tf32, 2, 100 * u32), 200 * u16);
  EXPECT_DOUBLE_EQ(baseline_limit(Mode::bf16, 3, 100 * u32), 300 * ubf);
  // Floor: fp32 exact (or under one unit) still allows one rounding per factor.
  EXPECT_DOUBLE_EQ(baseline_limit(Mode::fp16, 3, 0), 3 * u16);
  EXPECT_DOUBLE_EQ(baseline_limit(Mode::fp16, 3, 0.5 * u32), 3 * u16);
  // fp32 itself overflowed: nothing finite can be judged against it.
  EXPECT_EQ(baseline_limit(Mode::fp16, 3, HUGE_VAL), HUGE_VAL);

  EXPECT_FALSE(breaks_baseline(1e-3, 0, 2e-3));
  EXPECT_TRUE(breaks_baseline(3e-3, 0, 2e-3));
  EXPECT_TRUE(breaks_baseline(0, 1, 2e-3));          // new NaN/Inf always diverges
  EXPECT_TRUE(breaks_baseline(NAN, 0, HUGE_VAL));    // a NaN error is never within a limit
  EXPECT_TRUE(judged_by_baseline(Mode::fp16));
  EXPECT_FALSE(judged_by_baseline(Mode::fp32));
  EXPECT_FALSE(judged_by_baseline(Mode::strict));
}

TEST(Verdict, BaselineFactorDefaultsAndFileOverride) {
  EXPECT_EQ(default_tolerance(Mode::tf32).baseline_factor, 2);
  EXPECT_EQ(default_tolerance(Mode::fp16).baseline_factor, 3);
  EXPECT_EQ(default_tolerance(Mode::bf16).baseline_factor, 3);
  const std::string path = ::testing::TempDir() + "baseline_tol.json";
  std::ofstream(path) << R"({"fp16": {"head*": {"baseline_factor": 8}}})";
  TolerancePolicy p;
  p.set_global(ToleranceOverride{std::nullopt, std::nullopt, std::nullopt, 5.0});
  p.load_file(path);
  EXPECT_EQ(p.for_layer(Mode::fp16, "head.0").baseline_factor, 8);
  EXPECT_EQ(p.for_layer(Mode::fp16, "body").baseline_factor, 5);
  EXPECT_EQ(p.for_layer(Mode::bf16, "head.0").baseline_factor, 5);
}
