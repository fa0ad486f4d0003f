// host/strict_math.h: the §5.1 reduction order against an independent rewrite, the dot product
// against an explicit fma loop, and the transcendentals against glibc's double functions.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "strict_math.h"

using namespace divscope;

namespace {

// §5.1 written a second way: deal the elements into 256 vectors, sum each left to right, then
// add the 256 partials by recursive halving (which pairs (0,1),(2,3),... first, like the spec).
float pairwise(const std::vector<float>& v, size_t lo, size_t hi) {
  if (hi - lo == 1) return v[lo];
  const size_t mid = lo + (hi - lo) / 2;
  const float left = pairwise(v, lo, mid);
  const float right = pairwise(v, mid, hi);
  return left + right;
}
float spec_sum(const std::vector<float>& x, size_t n, size_t stride) {
  std::vector<std::vector<float>> lanes(256);
  for (size_t i = 0; i < n; ++i) lanes[i % 256].push_back(x[i * stride]);
  std::vector<float> partial(256);
  for (size_t j = 0; j < 256; ++j) {
    float acc = 0.0f;
    for (float v : lanes[j]) acc = acc + v;
    partial[j] = acc;
  }
  return pairwise(partial, 0, 256);
}

// Values of very different magnitudes, so that every change of order changes the bits.
std::vector<float> wild_values(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> expo(-20, 20);
  std::vector<float> v(count);
  for (auto& x : v) x = std::ldexp(mant(rng), expo(rng));
  return v;
}

struct Worst {
  double ulp = 0;
  float at = 0;
};

// Max error in float ULPs of the true value, over a stride through all 2^32 bit patterns plus
// random patterns. NaN inputs must give NaN; results the double function puts beyond float's
// range must round exactly as the double does (to inf or to the max).
Worst sweep(const std::function<float(float)>& strict, const std::function<double(double)>& ref,
            uint32_t seed) {
  Worst w;
  std::mt19937 rng(seed);
  auto check = [&](uint32_t bits) {
    const float x = bits_f32(bits);
    const float c = strict(x);
    if (x != x) {
      EXPECT_TRUE(c != c) << "NaN input gave " << c;
      return;
    }
    const double r = ref(static_cast<double>(x));
    if (r != r) {
      EXPECT_TRUE(c != c) << "x = " << x << " should give NaN, got " << c;
      return;
    }
    if (std::fabs(r) > FLT_MAX) {
      EXPECT_EQ(c, static_cast<float>(r)) << "x = " << x;
      return;
    }
    const double u = ulp_distance(Mode::fp32, c, r);
    if (u > w.ulp) w = {u, x};
  };
  for (uint64_t b = 0; b < (1ull << 32); b += 2039) check(static_cast<uint32_t>(b));
  for (int i = 0; i < 500000; ++i) check(rng());
  return w;
}

}  // namespace

TEST(StrictMath, Constants) {
  EXPECT_EQ(f32_bits(kLn2Hi), 0x3f317200u);
  EXPECT_EQ(kLn2Lo, static_cast<float>(std::log(2.0) - static_cast<double>(kLn2Hi)));
  EXPECT_EQ(kLog2e, static_cast<float>(1.0 / std::log(2.0)));
  EXPECT_EQ(kStrictLanes, 256);
}

TEST(StrictMath, SumMatchesIndependentOrder) {
  const uint32_t seed = 1234;
  SCOPED_TRACE("seed " + std::to_string(seed));
  const auto x = wild_values(3 * 4097, seed);
  bool order_mattered = false;
  for (size_t n : {1, 7, 255, 256, 257, 1000, 4097}) {
    for (size_t stride : {1, 3}) {
      SCOPED_TRACE("n " + std::to_string(n) + " stride " + std::to_string(stride));
      const float got = strict_sum(x.data(), static_cast<long long>(n), static_cast<long long>(stride));
      ASSERT_EQ(f32_bits(got), f32_bits(spec_sum(x, n, stride)));
      // A kernel's decomposition: 256 threads each own one lane, then the shared tree.
      float partials[kStrictLanes];
      for (int j = 0; j < kStrictLanes; ++j)
        partials[j] = strict_lane_sum(x.data(), static_cast<long long>(stride), static_cast<long long>(n), j);
      ASSERT_EQ(f32_bits(strict_tree_reduce(partials)), f32_bits(got));
      // strict_reduce with an element function sums in the same order.
      const float via_reduce = strict_reduce(static_cast<long long>(n),
                                             [&](long long i) { return x[static_cast<size_t>(i) * stride]; });
      ASSERT_EQ(f32_bits(via_reduce), f32_bits(got));
      float sequential = 0.0f;
      for (size_t i = 0; i < n; ++i) sequential = sequential + x[i * stride];
      order_mattered = order_mattered || sequential != got;
    }
  }
  EXPECT_TRUE(order_mattered) << "the data are too tame to tell summation orders apart";
}

TEST(StrictMath, DotIsAnFmaLoopInIndexOrder) {
  const auto a = wild_values(3 * 777, 5), b = wild_values(2 * 777, 6);
  for (long long K : {0LL, 1LL, 2LL, 33LL, 777LL}) {
    float want = 0.0f;
    for (long long k = 0; k < K; ++k) want = std::fma(a[static_cast<size_t>(3 * k)], b[static_cast<size_t>(2 * k)], want);
    EXPECT_EQ(f32_bits(strict_dot(a.data(), 3, b.data(), 2, K)), f32_bits(want)) << "K " << K;
  }
  // Small integers: exact, so the result is known.
  const float p[] = {1, 2, 3, 4}, q[] = {5, 6, 7, 8};
  EXPECT_EQ(strict_dot(p, 1, q, 1, 4), 70.0f);
  EXPECT_EQ(strict_bias(strict_dot(p, 1, q, 1, 4), -0.5f), 69.5f);
}

TEST(StrictMath, ExpAccuracy) {
  const Worst w = sweep([](float x) { return strict_exp(x); }, [](double x) { return std::exp(x); }, 1);
  EXPECT_LE(w.ulp, kStrictExpMaxUlp) << "at x = " << w.at;
  EXPECT_EQ(strict_exp(0.0f), 1.0f);
  EXPECT_EQ(strict_exp(-0.0f), 1.0f);
  EXPECT_EQ(strict_exp(INFINITY), INFINITY);
  EXPECT_EQ(strict_exp(-INFINITY), 0.0f);
  EXPECT_TRUE(std::isnan(strict_exp(NAN)));
  EXPECT_LE(ulp_distance(Mode::fp32, strict_exp(88.72283f), std::exp(static_cast<double>(88.72283f))), kStrictExpMaxUlp);
  EXPECT_EQ(strict_exp(88.7229f), INFINITY);
  EXPECT_EQ(strict_exp(-103.2789f), std::ldexp(1.0f, -149));  // smallest subnormal
  EXPECT_EQ(strict_exp(-103.98f), 0.0f);
}

TEST(StrictMath, LogAccuracy) {
  const Worst w = sweep([](float x) { return strict_log(x); }, [](double x) { return std::log(x); }, 2);
  EXPECT_LE(w.ulp, kStrictLogMaxUlp) << "at x = " << w.at;
  EXPECT_EQ(f32_bits(strict_log(1.0f)), 0u);
  EXPECT_EQ(strict_log(0.0f), -INFINITY);
  EXPECT_EQ(strict_log(-0.0f), -INFINITY);
  EXPECT_EQ(strict_log(INFINITY), INFINITY);
  EXPECT_TRUE(std::isnan(strict_log(-1.0f)));
  EXPECT_TRUE(std::isnan(strict_log(-INFINITY)));
  EXPECT_TRUE(std::isnan(strict_log(NAN)));
  EXPECT_LE(ulp_distance(Mode::fp32, strict_log(std::ldexp(1.0f, -149)), std::log(std::ldexp(1.0, -149))),
            kStrictLogMaxUlp);
}

TEST(StrictMath, TanhAccuracy) {
  const Worst w = sweep([](float x) { return strict_tanh(x); }, [](double x) { return std::tanh(x); }, 3);
  EXPECT_LE(w.ulp, kStrictTanhMaxUlp) << "at x = " << w.at;
  EXPECT_EQ(f32_bits(strict_tanh(-0.0f)), 0x80000000u);
  EXPECT_EQ(strict_tanh(INFINITY), 1.0f);
  EXPECT_EQ(strict_tanh(-INFINITY), -1.0f);
  EXPECT_EQ(strict_tanh(1e-40f), 1e-40f);
  EXPECT_TRUE(std::isnan(strict_tanh(NAN)));
}

TEST(StrictMath, ErfAccuracy) {
  const Worst w = sweep([](float x) { return strict_erf(x); }, [](double x) { return std::erf(x); }, 4);
  EXPECT_LE(w.ulp, kStrictErfMaxUlp) << "at x = " << w.at;
  EXPECT_EQ(f32_bits(strict_erf(-0.0f)), 0x80000000u);
  EXPECT_EQ(strict_erf(INFINITY), 1.0f);
  EXPECT_EQ(strict_erf(-INFINITY), -1.0f);
  EXPECT_TRUE(std::isnan(strict_erf(NAN)));
}

TEST(StrictMath, SigmoidAccuracy) {
  const Worst w = sweep([](float x) { return strict_sigmoid(x); },
                        [](double x) { return 1.0 / (1.0 + std::exp(-x)); }, 5);
  EXPECT_LE(w.ulp, kStrictSigmoidMaxUlp) << "at x = " << w.at;
  EXPECT_EQ(strict_sigmoid(0.0f), 0.5f);
  EXPECT_EQ(strict_sigmoid(INFINITY), 1.0f);
  EXPECT_EQ(strict_sigmoid(-INFINITY), 0.0f);
  EXPECT_GT(strict_sigmoid(-100.0f), 0.0f);  // e^-100: no overflow on the way
  EXPECT_TRUE(std::isnan(strict_sigmoid(NAN)));
}

TEST(StrictMath, Activations) {
  EXPECT_EQ(strict_relu(-3.0f), 0.0f);
  EXPECT_EQ(strict_relu(2.5f), 2.5f);
  EXPECT_TRUE(std::isnan(strict_relu(NAN)));
  EXPECT_EQ(strict_leaky_relu(-2.0f, 0.25f), -0.5f);
  EXPECT_EQ(strict_leaky_relu(3.0f, 0.25f), 3.0f);
  EXPECT_EQ(strict_gelu_erf(0.0f), 0.0f);
  EXPECT_EQ(strict_gelu_tanh(0.0f), 0.0f);
  EXPECT_EQ(strict_gelu_tanh(1e30f), 1e30f);
  EXPECT_EQ(strict_silu(INFINITY), INFINITY);
  // Away from the cancellation at x << 0, the composed functions stay within a few float ULPs.
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> dist(-1.5f, 8.0f);
  for (int i = 0; i < 100000; ++i) {
    const float x = dist(rng);
    const double d = x;
    SCOPED_TRACE("x = " + std::to_string(x));
    ASSERT_LE(ulp_distance(Mode::fp32, strict_gelu_erf(x), 0.5 * d * (1.0 + std::erf(d / std::sqrt(2.0)))), 64.0);
    ASSERT_LE(ulp_distance(Mode::fp32, strict_gelu_tanh(x),
                           0.5 * d * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (d + 0.044715 * d * d * d)))),
              64.0);
    ASSERT_LE(ulp_distance(Mode::fp32, strict_silu(x), d / (1.0 + std::exp(-d))), 4.0);
  }
}

TEST(StrictMath, NormAndSoftmaxPieces) {
  const float x[] = {1, 2, 3, 4};  // exact throughout
  const float mean = strict_mean(x, 4);
  EXPECT_EQ(mean, 2.5f);
  const float var = strict_variance(x, 4, 1, mean);
  EXPECT_EQ(var, 1.25f);
  EXPECT_EQ(strict_mean_square(x, 4), 7.5f);
  const float denom = strict_norm_denom(var, 0.0f);
  EXPECT_EQ(strict_norm_elem(x[0], mean, denom, 1.0f, 0.0f), s_div(-1.5f, s_sqrt(1.25f)));
  EXPECT_EQ(strict_norm_elem(x[3], mean, denom, 2.0f, 1.0f), std::fma(s_div(1.5f, s_sqrt(1.25f)), 2.0f, 1.0f));
  EXPECT_EQ(strict_rms_elem(3.0f, 2.0f, 4.0f), 6.0f);

  const float z[] = {-0.0f, -1.0f, -0.0f};
  EXPECT_EQ(f32_bits(strict_row_max(z, 3)), 0u);  // a zero max is +0 whatever the order
  const float withnan[] = {1.0f, NAN, 3.0f};
  const float nanfirst[] = {NAN, 1.0f, 3.0f};
  EXPECT_TRUE(std::isnan(strict_row_max(withnan, 3)));
  EXPECT_TRUE(std::isnan(strict_row_max(nanfirst, 3)));
  EXPECT_EQ(strict_row_max(x, 4), 4.0f);

  const float same[] = {3.0f, 3.0f, 3.0f, 3.0f};
  const float m = strict_row_max(same, 4);
  const float s = strict_softmax_sum(same, 4, 1, m);
  EXPECT_EQ(s, 4.0f);
  EXPECT_EQ(strict_softmax_elem(strict_softmax_exp(same[0], m), s), 0.25f);
  EXPECT_EQ(strict_log_softmax_elem(same[0], m, strict_log(s)), -strict_log(4.0f));
}

namespace divscope {
namespace {

bool same_or_both_nan(float a, float b) {
  return (a != a && b != b) || std::memcmp(&a, &b, sizeof a) == 0;
}

// v2 formulas (notes/new_ops_contract.md): the selections are exact and keep NaN; neg flips the
// sign bit (0 - x would give +0 for +0).
TEST(StrictMath, V2SelectionsAndSignOps) {
  const float nan = s_nan(), inf = s_inf();
  EXPECT_TRUE(std::signbit(s_neg(0.0f)));
  EXPECT_FALSE(std::signbit(s_neg(-0.0f)));
  EXPECT_EQ(s_neg(inf), -inf);
  EXPECT_TRUE(std::isnan(strict_hardtanh(nan, 0.0f, 6.0f)));
  EXPECT_EQ(strict_hardtanh(7.0f, 0.0f, 6.0f), 6.0f);
  EXPECT_EQ(strict_hardtanh(-inf, -1.0f, 6.0f), -1.0f);
  EXPECT_EQ(strict_hardtanh(2.5f, 0.0f, 6.0f), 2.5f);
  for (float a : {nan, 1.0f})
    for (float b : {nan, 2.0f}) {
      const bool any_nan = a != a || b != b;
      EXPECT_EQ(std::isnan(strict_maximum(a, b)), any_nan);
      EXPECT_EQ(std::isnan(strict_minimum(a, b)), any_nan);
    }
  EXPECT_EQ(strict_maximum(-inf, 3.0f), 3.0f);
  EXPECT_EQ(strict_minimum(-inf, 3.0f), -inf);
  EXPECT_EQ(strict_hardsigmoid(-3.0f), 0.0f);
  EXPECT_EQ(strict_hardsigmoid(3.0f), 1.0f);
  EXPECT_EQ(strict_hardsigmoid(0.0f), s_div(3.0f, 6.0f));
  EXPECT_EQ(strict_hardswish(3.0f), 3.0f);
  EXPECT_EQ(strict_hardswish(1.0f), s_div(4.0f, 6.0f));
  EXPECT_TRUE(std::signbit(strict_hardswish(-4.0f)));   // -4 * 0 / 6 = -0, as PyTorch
  EXPECT_EQ(strict_rsqrt(4.0f), 0.5f);
  EXPECT_EQ(strict_rsqrt(0.0f), inf);
  EXPECT_TRUE(std::isnan(strict_rsqrt(-1.0f)));
}

// pow: the short forms are exact sequences; the special values are powf's (C99 F.9.4.4).
TEST(StrictMath, PowShortFormsAndSpecialValues) {
  const float x = 1.7182817f;
  EXPECT_EQ(strict_pow(x, 2.0f), s_mul(x, x));
  EXPECT_EQ(strict_pow(x, 3.0f), s_mul(s_mul(x, x), x));
  EXPECT_EQ(strict_pow(x, 0.5f), s_sqrt(x));
  EXPECT_EQ(strict_pow(x, 1.0f), x);
  EXPECT_EQ(strict_pow(x, -1.0f), s_div(1.0f, x));
  EXPECT_EQ(strict_pow(x, 2.5f), strict_exp(s_mul(2.5f, strict_log(x))));
  const float inf = s_inf(), nan = s_nan();
  const float as[] = {nan, -inf, -3.0f, -1.0f, -0.5f, -0.0f, 0.0f, 0.5f, 1.0f, 2.0f, inf};
  const float bs[] = {nan, -inf, -5.0f, -4.0f, -2.5f, -0.0f, 0.0f, 0.25f, 4.0f, 5.0f, 7.5f, 16777218.0f, inf};
  for (float a : as)
    for (float b : bs) {
      const float want = std::pow(a, b), got = strict_pow(a, b);
      if (!std::isfinite(want) || want == 0.0f || std::fabs(a) == 1.0f) {
        EXPECT_TRUE(same_or_both_nan(got, want)) << "pow(" << a << ", " << b << ") = " << got << ", powf " << want;
      } else {
        EXPECT_NEAR(got, want, std::fabs(want) * 1e-5) << "pow(" << a << ", " << b << ")";
        EXPECT_EQ(std::signbit(got), std::signbit(want)) << "pow(" << a << ", " << b << ")";
      }
    }
}

// pow away from the special values: exp(b log|a|) within the error its steps allow, against
// glibc's double pow. With y = b log|a|: log's 1 ulp and the product's half ulp are each up to
// 2^-23 |y| absolute in exp's argument, i.e. up to 2 |y| ulps of the result apiece (an ulp is
// 2^-24..2^-23 relative), plus exp's own 1 ulp.
TEST(StrictMath, PowAccuracy) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> ua(0.01f, 50.0f), ub(-6.0f, 6.0f);
  for (int i = 0; i < 200000; ++i) {
    const float a = ua(rng), b = ub(rng);
    const double want = std::pow(double(a), double(b));
    if (want > FLT_MAX || want < FLT_MIN) continue;
    const double ulp = std::ldexp(1.0, std::ilogb(want) - 23);
    const double allowed = 1.5 + 3.0 * std::fabs(b * std::log(double(a)));
    ASSERT_LE(std::fabs(strict_pow(a, b) - want) / ulp, allowed) << "pow(" << a << ", " << b << ")";
  }
}

}  // namespace
}  // namespace divscope
