// The GPU statistics pass (kernels/compare.cu) against host/compare.cpp on the same tensors
// (STYLE 4): counts, maxima, indices and histograms exactly; sums to 1e-12 relative (CUB adds
// in another order). Tensors carry the awkward cases on purpose: NaN and Inf in either tensor,
// zeros in the reference (min_rtol = inf), values beyond fp16's range and below its normals.
// Also: the same call twice gives the same bits.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <tuple>

#include "analysis/compare.h"
#include "kernel_test_util.h"

namespace divscope {
namespace {

struct Pair {
  std::vector<float> cand;
  std::vector<double> ref;
};

Pair make_pair(const Shape& shape, Mode storage, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(-3, 3);
  std::uniform_int_distribution<int> kind(0, 99);
  const int64_t n = numel(shape);
  Pair p;
  p.ref.resize(n);
  p.cand.resize(n);
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  for (int64_t i = 0; i < n; ++i) {
    double r = u(g);
    const int k = kind(g);
    if (k == 0) r = 0;                       // min_rtol = inf where the candidate is not 0
    if (k == 1) r = 1e5 * u(g);              // over fp16
    if (k == 2) r = 1e-6 * u(g);             // under fp16's normals
    p.ref[i] = r;
    float c = round_storage(storage, static_cast<float>(r * (1 + 1e-3 * u(g))));
    if (k == 3) c = static_cast<float>(r);   // exact pairs
    if (k == 4) c = std::numeric_limits<float>::quiet_NaN();
    if (k == 5) c = std::numeric_limits<float>::infinity();
    p.cand[i] = c;
  }
  if (n > 7) {   // reference non-finite: matching and not
    p.ref[1] = nan;
    p.cand[1] = std::numeric_limits<float>::quiet_NaN();
    p.ref[2] = inf;
    p.cand[2] = std::numeric_limits<float>::infinity();
    p.ref[3] = -inf;
    p.cand[3] = 1.0f;
    p.ref[4] = 0;
    p.cand[4] = 0.5f;
    p.ref[5] = 2.0;   // a tie for max_abs with [6]: the first index must win
    p.cand[5] = 3.0f;
    p.ref[6] = -2.0;
    p.cand[6] = -3.0f;
  }
  return p;
}

void expect_near_rel(double cpu, double gpu, double scale, const char* what) {
  EXPECT_LE(std::fabs(cpu - gpu), 1e-12 * std::max({std::fabs(cpu), std::fabs(gpu), scale}))
      << what << ": cpu " << cpu << " gpu " << gpu;
}

void expect_same_stats(const LayerStats& c, const LayerStats& g) {
  EXPECT_EQ(c.count, g.count);
  EXPECT_EQ(c.nan, g.nan);
  EXPECT_EQ(c.inf, g.inf);
  EXPECT_EQ(c.ref_nan, g.ref_nan);
  EXPECT_EQ(c.ref_inf, g.ref_inf);
  EXPECT_EQ(c.nonfinite_new, g.nonfinite_new);
  EXPECT_EQ(c.mismatch, g.mismatch);
  EXPECT_EQ(c.max_abs, g.max_abs);
  EXPECT_EQ(c.max_abs_index, g.max_abs_index);
  EXPECT_EQ(c.max_rel, g.max_rel);
  EXPECT_EQ(c.min_rtol, g.min_rtol);
  EXPECT_EQ(c.max_ulp, g.max_ulp);
  EXPECT_EQ(c.err_hist, g.err_hist);
  EXPECT_EQ(c.ulp_hist, g.ulp_hist);
  EXPECT_EQ(c.ref_min, g.ref_min);
  EXPECT_EQ(c.ref_max, g.ref_max);
  EXPECT_EQ(c.ref_finite, g.ref_finite);
  EXPECT_EQ(c.ref_zero, g.ref_zero);
  EXPECT_EQ(c.over_fp16, g.over_fp16);
  EXPECT_EQ(c.over_bf16, g.over_bf16);
  EXPECT_EQ(c.under_fp16, g.under_fp16);
  EXPECT_EQ(c.under_bf16, g.under_bf16);
  // Sums: each bounded by a sum of magnitudes, which is the scale of its rounding error.
  const double abs_ref = std::sqrt(static_cast<double>(c.count) * c.ref_sumsq);
  expect_near_rel(c.sum_abs, g.sum_abs, 0, "sum_abs");
  expect_near_rel(c.sum_err2, g.sum_err2, 0, "sum_err2");
  expect_near_rel(c.sum_ref2, g.sum_ref2, 0, "sum_ref2");
  expect_near_rel(c.sum_cand2, g.sum_cand2, 0, "sum_cand2");
  expect_near_rel(c.sum_dot, g.sum_dot, std::sqrt(c.sum_ref2 * c.sum_cand2), "sum_dot");
  expect_near_rel(c.ref_sum, g.ref_sum, abs_ref, "ref_sum");
  expect_near_rel(c.ref_sumsq, g.ref_sumsq, 0, "ref_sumsq");
}

bool same_bits(const LayerStats& a, const LayerStats& b) {
  auto eq = [](double x, double y) { return std::memcmp(&x, &y, sizeof x) == 0; };
  return a.mismatch == b.mismatch && a.err_hist == b.err_hist && a.ulp_hist == b.ulp_hist &&
         eq(a.sum_abs, b.sum_abs) && eq(a.sum_err2, b.sum_err2) && eq(a.sum_ref2, b.sum_ref2) &&
         eq(a.sum_cand2, b.sum_cand2) && eq(a.sum_dot, b.sum_dot) && eq(a.ref_sum, b.ref_sum) &&
         eq(a.ref_sumsq, b.ref_sumsq) && a.max_abs_index == b.max_abs_index;
}

using Param = std::tuple<int, Mode, bool>;   // shape index, storage, explicit floor
const Shape kShapes[] = {{3, 5, 7}, {1, 1000}, {4, 33333}, {7, 1}};

class KernelCompare : public ::testing::TestWithParam<Param> {};

TEST_P(KernelCompare, DeviceEqualsCpu) {
  DIVSCOPE_REQUIRE_GPU();
  const Shape& shape = kShapes[std::get<0>(GetParam())];
  const Mode storage = std::get<1>(GetParam());
  const uint64_t seed = 1000 + std::get<0>(GetParam()) * 10 + static_cast<int>(storage);
  SCOPED_TRACE("shape " + shape_str(shape) + ", storage " + mode_name(storage) + ", seed " +
               std::to_string(seed));
  const Pair p = make_pair(shape, storage, seed);
  CompareOptions opt{storage, 1e-3, 1e-3, std::get<2>(GetParam()) ? 1e-4 : -1.0};
  TestDevMem dc = to_device(p.cand), dr = to_device(p.ref);
  const auto* c = static_cast<const float*>(dc.get());
  const auto* r = static_cast<const double*>(dr.get());

  const LayerStats cpu = compare_tensors(p.cand.data(), p.ref.data(), shape, opt);
  ASSERT_GT(cpu.sum_ref2, 0);
  const LayerStats gpu = compare_device(storage, c, r, shape, opt, "test");
  expect_same_stats(cpu, gpu);
  EXPECT_TRUE(same_bits(gpu, compare_device(storage, c, r, shape, opt, "test")))
      << "second run differs";

  const auto cpu_s = compare_per_sample(p.cand.data(), p.ref.data(), shape, opt);
  const auto gpu_s = compare_device_per_sample(storage, c, r, shape, opt, "test");
  ASSERT_EQ(cpu_s.size(), gpu_s.size());
  for (size_t s = 0; s < cpu_s.size(); ++s) {
    SCOPED_TRACE("sample " + std::to_string(s));
    expect_same_stats(cpu_s[s], gpu_s[s]);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Kernels, KernelCompare,
    ::testing::Combine(::testing::Range(0, 4), ::testing::Values(Mode::fp32, Mode::fp16, Mode::bf16),
                       ::testing::Bool()),
    [](const ::testing::TestParamInfo<Param>& info) {
      return "shape" + std::to_string(std::get<0>(info.param)) + "_" +
             mode_name(std::get<1>(info.param)) + (std::get<2>(info.param) ? "_floor" : "_autofloor");
    });

// A double candidate (the CUDA fp64 path against the CPU reference) through the same pass.
TEST(KernelCompareFp64, DoubleCandidateEqualsCpu) {
  DIVSCOPE_REQUIRE_GPU();
  const Shape shape{2, 513};
  const Pair p = make_pair(shape, Mode::fp32, 77);
  std::vector<double> cand(p.ref.size());
  for (size_t i = 0; i < cand.size(); ++i)
    cand[i] = std::isfinite(p.ref[i]) ? p.ref[i] * (1 + 1e-14 * ((i % 7) - 3.0)) + 1.0 : p.ref[i];
  CompareOptions opt{Mode::fp64, 0, 0, -1};
  TestDevMem dc = to_device(cand), dr = to_device(p.ref);
  expect_same_stats(compare_tensors(cand.data(), p.ref.data(), shape, opt),
                    compare_device(Mode::fp64, static_cast<const double*>(dc.get()),
                                   static_cast<const double*>(dr.get()), shape, opt, "test"));
}

}  // namespace
}  // namespace divscope
