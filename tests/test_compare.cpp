// LayerStats on hand-computed tensors (README, What divscope run computes).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "analysis/compare.h"

using namespace divscope;

namespace {

LayerStats stats(const std::vector<float>& c, const std::vector<double>& r, Shape shape,
                 double atol = 0, double rtol = 0, Mode m = Mode::fp32) {
  CompareOptions o;
  o.storage = m;
  o.atol = atol;
  o.rtol = rtol;
  return compare_tensors(c.data(), r.data(), shape, o);
}

}  // namespace

TEST(Compare, HandComputedMetrics) {
  // c - r = {0, 0.5, -1, 0}; |r| = {1, 2, 4, 8}
  std::vector<double> r = {1, 2, -4, 8};
  std::vector<float> c = {1, 2.5f, -5, 8};
  LayerStats s = stats(c, r, {2, 2}, 0.25, 0.1);
  EXPECT_EQ(s.count, 4);
  EXPECT_EQ(s.nan, 0);
  EXPECT_EQ(s.inf, 0);
  EXPECT_DOUBLE_EQ(s.max_abs, 1.0);
  EXPECT_EQ(s.max_abs_index, (std::vector<int64_t>{1, 0}));
  EXPECT_DOUBLE_EQ(s.max_rel, 0.25);           // 0.5/2 and 1/4
  EXPECT_DOUBLE_EQ(s.mean_abs(), 1.5 / 4);
  EXPECT_DOUBLE_EQ(s.rel_l2(), std::sqrt(1.25) / std::sqrt(85.0));
  const double dot = 1 + 5 + 20 + 64, nc = std::sqrt(1 + 6.25 + 25 + 64);
  EXPECT_NEAR(s.cosine(), dot / (std::sqrt(85.0) * nc), 1e-15);
  // allclose: 0.5 > 0.25 + 0.2 -> mismatch; 1 > 0.25 + 0.4 -> mismatch
  EXPECT_EQ(s.mismatch, 2);
  EXPECT_NEAR(s.sqnr_db(), 20 * std::log10(std::sqrt(85.0) / std::sqrt(1.25)), 1e-12);
  EXPECT_DOUBLE_EQ(s.min_atol(), 1.0);
  EXPECT_DOUBLE_EQ(s.min_rtol, 0.25);
  // fp32 ulp at 2 is 2^-22: 0.5 / 2^-22 = 2^21 ulps; at 4: 1 / 2^-21 = 2^21
  EXPECT_DOUBLE_EQ(s.max_ulp, std::ldexp(1.0, 21));
  EXPECT_EQ(s.ulp_hist[0], 2);
  EXPECT_EQ(s.ulp_hist[22], 2);   // [2^21, 2^22)
  EXPECT_DOUBLE_EQ(s.ref_min, -4);
  EXPECT_DOUBLE_EQ(s.ref_max, 8);
  EXPECT_DOUBLE_EQ(s.ref_mean(), 7.0 / 4);
  EXPECT_NEAR(s.ref_std(), std::sqrt(85.0 / 4 - 49.0 / 16), 1e-12);
  EXPECT_EQ(s.err_hist[0], 2);
  EXPECT_DOUBLE_EQ(s.err_percentile(0.5), 0.0);
  EXPECT_DOUBLE_EQ(s.err_percentile(0.99), 2.0);   // 1.0 lies in [1, 2)
}

TEST(Compare, ZeroReference) {
  LayerStats same = stats({0, 0, 0}, {0, 0, 0}, {3});
  EXPECT_EQ(same.rel_l2(), 0);
  EXPECT_EQ(same.mismatch, 0);
  EXPECT_TRUE(std::isinf(same.sqnr_db()));
  EXPECT_EQ(same.cosine(), 1);
  EXPECT_DOUBLE_EQ(same.ref_std(), 0);
  LayerStats s = stats({0, 1e-3f, 0}, {0, 0, 0}, {3}, 0, 0.5);
  EXPECT_TRUE(std::isinf(s.rel_l2()));
  EXPECT_TRUE(std::isinf(s.min_rtol));
  EXPECT_EQ(s.mismatch, 1);   // rtol alone cannot pass a zero reference
  EXPECT_EQ(s.ref_zero, 3);
}

TEST(Compare, NanAndInf) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const double dinf = std::numeric_limits<double>::infinity();
  const double dnan = std::numeric_limits<double>::quiet_NaN();
  LayerStats s = stats({nan, inf, 1, nan, inf}, {1, 2, 1, dnan, dinf}, {5}, 1e-3, 1e-3);
  EXPECT_EQ(s.nan, 2);
  EXPECT_EQ(s.inf, 2);
  EXPECT_EQ(s.ref_nan, 1);
  EXPECT_EQ(s.ref_inf, 1);
  EXPECT_EQ(s.nonfinite_new, 2);   // NaN and Inf where the reference is finite
  EXPECT_EQ(s.mismatch, 2);        // NaN==NaN and inf==inf count as agreeing
  EXPECT_DOUBLE_EQ(s.max_abs, 0);  // finite pairs only
  EXPECT_EQ(s.ref_finite, 3);
}

TEST(Compare, SingleElement) {
  LayerStats s = stats({1.5f}, {1.0}, {1}, 0.1, 0.1);
  EXPECT_EQ(s.count, 1);
  EXPECT_EQ(s.mismatch, 1);
  EXPECT_DOUBLE_EQ(s.max_abs, 0.5);
  EXPECT_DOUBLE_EQ(s.rel_l2(), 0.5);
  EXPECT_EQ(s.max_abs_index, (std::vector<int64_t>{0}));
  EXPECT_DOUBLE_EQ(s.ref_std(), 0);
}

TEST(Compare, UlpsInStorageFormat) {
  // 1 + 2^-10 is one fp16 ulp above 1 and 2^13 fp32 ulps.
  const float c = 1.0f + std::ldexp(1.0f, -10);
  EXPECT_DOUBLE_EQ(stats({c}, {1.0}, {1}, 0, 0, Mode::fp16).max_ulp, 1.0);
  EXPECT_DOUBLE_EQ(stats({c}, {1.0}, {1}, 0, 0, Mode::fp32).max_ulp, 8192.0);
}

TEST(Compare, HealthFlagsOverflowAndUnderflowRisk) {
  LayerStats s = stats({0, 0, 0, 0}, {70000.0, 1e-6, 1e-40, 0.0}, {4});
  EXPECT_EQ(s.over_fp16, 1);
  EXPECT_EQ(s.over_bf16, 0);
  EXPECT_EQ(s.under_fp16, 2);   // 1e-6 and 1e-40 are below fp16's min normal
  EXPECT_EQ(s.under_bf16, 1);   // only 1e-40
  EXPECT_EQ(s.ref_zero, 1);
}

TEST(Compare, PerSampleMergesToWhole) {
  std::vector<double> r = {1, 2, 3, 4, 5, 6};
  std::vector<float> c = {1, 2.25f, 3, 4, 5, 7};
  CompareOptions o;
  o.atol = 0.1;
  o.rel_floor = 1e-6;
  auto per = compare_per_sample(c.data(), r.data(), {2, 3}, o);
  ASSERT_EQ(per.size(), 2u);
  EXPECT_EQ(per[0].mismatch, 1);
  EXPECT_EQ(per[1].max_abs_index, (std::vector<int64_t>{1, 2}));
  LayerStats merged;
  merged.merge(per[0], 0);
  merged.merge(per[1], 0);
  LayerStats whole = compare_tensors(c.data(), r.data(), {2, 3}, o);
  EXPECT_EQ(merged.mismatch, whole.mismatch);
  EXPECT_EQ(merged.max_abs_index, whole.max_abs_index);
  EXPECT_DOUBLE_EQ(merged.rel_l2(), whole.rel_l2());
  EXPECT_DOUBLE_EQ(merged.ref_std(), whole.ref_std());
}

TEST(Compare, SampleErrorsGatheredInTheSamePassMatchPerSampleStats) {
  std::vector<double> r = {1, 2, 3, 4, 5, 6, 0, 0, 1};
  std::vector<float> c = {1, 2.25f, 3, 4, 5, 7, 0, std::numeric_limits<float>::infinity(), 1};
  CompareOptions o;
  o.atol = 0.1;
  o.rel_floor = 1e-6;
  SampleErrors se;
  LayerStats whole = compare_tensors(c.data(), r.data(), {3, 3}, o, &se);
  auto per = compare_per_sample(c.data(), r.data(), {3, 3}, o);
  ASSERT_EQ(se.mismatch.size(), 3u);
  int64_t total = 0;
  for (int s = 0; s < 3; ++s) {
    EXPECT_EQ(se.mismatch[s], per[s].mismatch) << s;
    EXPECT_EQ(se.nonfinite_new[s], per[s].nonfinite_new) << s;
    EXPECT_DOUBLE_EQ(se.err2[s], per[s].sum_err2) << s;
    EXPECT_DOUBLE_EQ(se.ref2[s], per[s].sum_ref2) << s;
    total += se.mismatch[s];
  }
  EXPECT_EQ(total, whole.mismatch);
  EXPECT_EQ(se.nonfinite_new[2], 1);
}

TEST(Compare, HealthComputedOnceEqualsHealthInThePass) {
  std::vector<double> r = {70000.0, -1e-6, 0.0, 3.0, std::numeric_limits<double>::quiet_NaN()};
  std::vector<float> c = {1, 2, 3, 4, 5};
  LayerStats with = stats(c, r, {5});
  CompareOptions o;
  o.health = false;
  LayerStats without = compare_tensors(c.data(), r.data(), {5}, o);
  copy_health(without, reference_health(r.data(), 5));
  EXPECT_EQ(without.ref_finite, with.ref_finite);
  EXPECT_EQ(without.ref_nan, 1);
  EXPECT_EQ(without.over_fp16, with.over_fp16);
  EXPECT_EQ(without.under_fp16, with.under_fp16);
  EXPECT_DOUBLE_EQ(without.ref_min, with.ref_min);
  EXPECT_DOUBLE_EQ(without.ref_std(), with.ref_std());
}

// New NaN/Inf make the norm-wise statistics non-finite (they must never look healthy over the
// finite elements alone); a float32-extreme sentinel (finfo.min as a mask fill) stored as the
// infinity of its sign is not a new Inf; a real overflow is; exact zeros count as flushed.
TEST(Compare, NonfiniteStatisticsSentinelsAndFlushes) {
  const double fmin = -3.4028234663852886e38;
  std::vector<double> r = {fmin, 1, 2, 3e-8, 70000};
  std::vector<float> c = {-INFINITY, 1, 2, 0, 1};
  LayerStats s = stats(c, r, {5}, 0, 0);
  EXPECT_EQ(s.nonfinite_new, 0);          // the sentinel
  EXPECT_EQ(s.flushed, 1);                // 3e-8 -> 0
  EXPECT_TRUE(std::isfinite(s.rel_l2()));
  c[4] = INFINITY;                        // 70000 overflows fp16: a real new Inf
  s = stats(c, r, {5}, 0, 0);
  EXPECT_EQ(s.nonfinite_new, 1);
  EXPECT_TRUE(std::isinf(s.rel_l2()));
  EXPECT_TRUE(std::isnan(s.cosine()));
  EXPECT_EQ(s.sqnr_db(), -INFINITY);
  c[0] = INFINITY;                        // the sentinel with the wrong sign is new
  c[4] = 1;
  EXPECT_EQ(stats(c, r, {5}, 0, 0).nonfinite_new, 1);
}

// Every sum and count bit for bit, whole tensor and per sample (the block sums' lanes are
// added in one fixed order on either path).
void expect_same_sums(const LayerStats& a, const LayerStats& b, const SampleErrors& sa, const SampleErrors& sb) {
  for (auto f : {&LayerStats::sum_abs, &LayerStats::sum_err2, &LayerStats::sum_ref2, &LayerStats::sum_cand2,
                 &LayerStats::sum_dot, &LayerStats::max_abs})
    EXPECT_EQ(std::memcmp(&(a.*f), &(b.*f), sizeof(double)), 0) << a.*f << " " << b.*f;
  EXPECT_EQ(a.mismatch, b.mismatch);
  EXPECT_EQ(a.flushed, b.flushed);
  EXPECT_EQ(a.nan, b.nan);
  EXPECT_EQ(a.nonfinite_new, b.nonfinite_new);
  EXPECT_EQ(a.max_abs_index, b.max_abs_index);
  EXPECT_EQ(sa.mismatch, sb.mismatch);
  EXPECT_EQ(std::memcmp(sa.err2.data(), sb.err2.data(), sa.err2.size() * sizeof(double)), 0);
  EXPECT_EQ(std::memcmp(sa.ref2.data(), sb.ref2.data(), sa.ref2.size() * sizeof(double)), 0);
  EXPECT_EQ(sa.max_abs, sb.max_abs);
}

// The AVX2 comparison (the block sums, and for the float formats the tail: histograms, max_rel,
// min_rtol, ULPs) gives the scalar pass's statistics bit for bit, on data that reaches every
// bucket edge: exact pairs, zeros and subnormals in the reference, errors from 1e-320 to 1e300,
// references beyond each format's range, odd lengths (the scalar remainder) and blocks with
// NaN/Inf (the element path); float and double candidates.
TEST(Compare, SimdTailIsTheScalarTail) {
  std::mt19937_64 g(11);
  std::uniform_real_distribution<double> unit(-1, 1);
  std::uniform_int_distribution<int> expo(-330, 300);
  for (int64_t n : {1, 3, 255, 256, 257, 1001, 4099}) {
    // Three samples of n elements (blocks never cross a sample).
    Tensor ref({3, n});
    TensorF cand({3, n});
    for (int64_t i = 0; i < 3 * n; ++i) {
      const double r = unit(g) * std::pow(2.0, expo(g) / 4);
      ref.data[i] = i % 17 == 0 ? 0.0 : i % 29 == 0 ? 5e-324 * (i % 7) : r;
      const int kind = static_cast<int>(g() % 6);
      const float c = kind == 0 ? static_cast<float>(ref.data[i])
                    : kind == 1 ? 0.0f
                    : kind == 2 ? static_cast<float>(ref.data[i] * (1 + 1e-3 * unit(g)))
                    : kind == 3 ? static_cast<float>(unit(g) * std::pow(2.0, expo(g) / 8))
                    : kind == 4 ? static_cast<float>(ref.data[i]) * (1 + 0x1p-20f)
                                : std::nextafter(static_cast<float>(ref.data[i]), 1e30f);
      cand.data[i] = c;
    }
    if (n > 300) {   // blocks with NaN/Inf take the element path
      cand.data[n / 2] = std::numeric_limits<float>::quiet_NaN();
      cand.data[n + n / 3] = std::numeric_limits<float>::infinity();
    }
    for (Mode m : {Mode::fp32, Mode::fp16, Mode::bf16}) {
      for (double floor : {-1.0, 0.0, 1e-3}) {
        SCOPED_TRACE(std::to_string(n) + " " + mode_name(m) + " floor " + std::to_string(floor));
        const CompareOptions opt{m, 1e-6, 1e-3, floor, true};
        SampleErrors se_s, se_v;
        compare_force_scalar(true);
        const LayerStats a = compare_tensors(cand.ptr(), ref.ptr(), ref.shape, opt, &se_s);
        compare_force_scalar(false);
        const LayerStats b = compare_tensors(cand.ptr(), ref.ptr(), ref.shape, opt, &se_v);
        EXPECT_EQ(a.err_hist, b.err_hist);
        EXPECT_EQ(a.ulp_hist, b.ulp_hist);
        EXPECT_EQ(std::memcmp(&a.max_rel, &b.max_rel, sizeof(double)), 0) << a.max_rel << " " << b.max_rel;
        EXPECT_EQ(std::memcmp(&a.min_rtol, &b.min_rtol, sizeof(double)), 0) << a.min_rtol << " " << b.min_rtol;
        EXPECT_EQ(std::memcmp(&a.max_ulp, &b.max_ulp, sizeof(double)), 0) << a.max_ulp << " " << b.max_ulp;
        EXPECT_EQ(a.max_abs, b.max_abs);
        EXPECT_EQ(a.mismatch, b.mismatch);
        expect_same_sums(a, b, se_s, se_v);
        int64_t sum = 0;
        for (int64_t c : a.ulp_hist) sum += c;
        EXPECT_GT(sum, 0);
      }
    }
    // A double candidate (the probe, graph inputs): the vector block sums, the scalar fp64 tail.
    Tensor cand_d({3, n});
    for (int64_t i = 0; i < 3 * n; ++i) cand_d.data[i] = ref.data[i] * (1 + 1e-9 * unit(g)) + (i % 5 == 0 ? 1e-12 : 0);
    if (n > 300) cand_d.data[n / 2] = std::numeric_limits<double>::quiet_NaN();
    const CompareOptions opt{Mode::fp64, 1e-12, 1e-9, -1, false};
    SampleErrors se_s, se_v;
    compare_force_scalar(true);
    const LayerStats a = compare_tensors(cand_d.ptr(), ref.ptr(), ref.shape, opt, &se_s);
    compare_force_scalar(false);
    const LayerStats b = compare_tensors(cand_d.ptr(), ref.ptr(), ref.shape, opt, &se_v);
    SCOPED_TRACE(std::to_string(n) + " fp64");
    expect_same_sums(a, b, se_s, se_v);
    EXPECT_EQ(a.err_hist, b.err_hist);
  }
}
