// The Turing (sm_75) paths of the tensor-core GEMM (docs/cuda.md), run on whatever GPU runs the
// tests (tests/gemm_fallback_kernels.cu): the SIMT loop of tf32 and bf16 bitwise against its
// definition -- operands rounded as packed, acc = fma(a_k, b_k, acc) in float for k ascending,
// one bias add, the storage rounding -- and fp16 as two mma.m16n8k8 exact on small integers and
// within float-summation error of that definition on reals. Several tiles in M and N, K not a
// multiple of the k tile, both B layouts, batch > 1, M = N = K = 1.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernel_test_util.h"
#include "strict_math.h"
#ifdef DIVSCOPE_HAVE_CUDA
#include "tests/gemm_fallback.h"
#endif

namespace divscope {
namespace {

#ifdef DIVSCOPE_HAVE_CUDA
struct Case {
  int64_t batch, M, N, K;
  bool b_trans, bias;
};
const Case kCases[] = {
    {1, 300, 300, 37, false, true}, {1, 300, 300, 37, true, true}, {2, 1, 1, 1, false, false},
    {3, 129, 7, 64, true, false},   {1, 17, 260, 100, false, true},
};

enum class Regime { integers, real };

struct Path {
  const char* name;
  float (*operand)(float);
  float (*finish)(float);
};
float same(float x) { return x; }

// The definition, in the obvious loops; also returns sum_k |a_k b_k| per output for the bound.
std::vector<float> reference(const Path& p, const Case& c, const std::vector<float>& a,
                             const std::vector<float>& b, const std::vector<float>& bias,
                             std::vector<double>* magnitude) {
  std::vector<float> out(c.batch * c.M * c.N);
  magnitude->assign(out.size(), 0.0);
  for (int64_t z = 0; z < c.batch; ++z)
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) {
        float acc = 0.0f;
        double mag = 0.0;
        for (int64_t k = 0; k < c.K; ++k) {
          const float av = p.operand(a[(z * c.M + m) * c.K + k]);
          const float bv = p.operand(c.b_trans ? b[(z * c.N + n) * c.K + k] : b[(z * c.K + k) * c.N + n]);
          acc = s_fma(av, bv, acc);
          mag += std::fabs(double(av) * bv);
        }
        if (c.bias) acc = s_add(acc, bias[n]);
        out[(z * c.M + m) * c.N + n] = p.finish(acc);
        (*magnitude)[(z * c.M + m) * c.N + n] = mag;
      }
  return out;
}

std::vector<float> values(size_t n, Regime r, std::mt19937& rng) {
  std::uniform_int_distribution<int> small(-3, 3);
  std::uniform_real_distribution<float> real(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = r == Regime::integers ? float(small(rng)) : real(rng);
  v[0] = 2.0f;   // never all zero
  return v;
}

void check(GemmFallback path, Regime regime) {
  const Path p = path == GemmFallback::tf32_simt   ? Path{"tf32", round_tf32, same}
                 : path == GemmFallback::bf16_simt ? Path{"bf16", round_bf16, round_bf16}
                                                   : Path{"fp16", round_fp16, round_fp16};
  for (const Case& c : kCases) {
    const unsigned seed = 1300u + unsigned(c.M * 7 + c.N * 3 + c.K) + (c.b_trans ? 1u : 0u);
    std::mt19937 rng(seed);
    const auto a = values(c.batch * c.M * c.K, regime, rng);
    const auto b = values(c.batch * c.K * c.N, regime, rng);
    const auto bias = values(c.N, regime, rng);
    std::vector<double> mag;
    const auto want = reference(p, c, a, b, bias, &mag);
    double norm = 0;
    for (float x : want) norm += double(x) * x;
    ASSERT_GT(norm, 0.0);

    GemmDesc d;
    d.batch = c.batch, d.M = c.M, d.N = c.N, d.K = c.K, d.b_trans = c.b_trans;
    d.lda = c.K, d.stride_a = c.M * c.K;
    d.ldb = c.b_trans ? c.K : c.N, d.stride_b = c.K * c.N;
    d.ldc = c.N, d.stride_c = c.M * c.N;
    const TestDevMem da = to_device(a), db = to_device(b), dbias = to_device(bias);
    TestDevMem dc(want.size() * sizeof(float));
    device_fill_nan(dc.get(), want.size(), false);
    gemm_fallback(path, d, da.get(), db.get(), c.bias ? dbias.get() : nullptr, dc.get(), "fallback");
    device_synchronize("gemm_fallback");
    const auto got = from_device<float>(dc, want.size());

    const std::string what = std::string(p.name) + " batch=" + std::to_string(c.batch) +
                             " M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) +
                             " K=" + std::to_string(c.K) + " b_trans=" + std::to_string(c.b_trans) +
                             " seed=" + std::to_string(seed);
    if (path != GemmFallback::fp16_k8x2 || regime == Regime::integers) {
      const int64_t i = first_bit_difference(got, want);
      EXPECT_EQ(i, -1) << what << ": element " << i << " GPU " << (i >= 0 ? got[i] : 0.f)
                       << " definition " << (i >= 0 ? want[i] : 0.f);
      continue;
    }
    // The tensor core sums in its own order: float summation error, then one fp16 rounding.
    for (size_t i = 0; i < want.size(); ++i) {
      const double bound = 2.0 * c.K * std::ldexp(mag[i], -24) +
                           std::ldexp(std::fmax(std::fabs(want[i]), std::fabs(got[i])), -10) + 1e-30;
      ASSERT_LE(std::fabs(double(got[i]) - want[i]), bound) << what << ": element " << i;
    }
  }
}
#endif

class GemmFallbackGpu : public ::testing::TestWithParam<int> {};

TEST_P(GemmFallbackGpu, IntegersExact) {
  DIVSCOPE_REQUIRE_GPU();
#ifdef DIVSCOPE_HAVE_CUDA
  check(static_cast<GemmFallback>(GetParam()), Regime::integers);
#endif
}

TEST_P(GemmFallbackGpu, RealAsDefined) {
  DIVSCOPE_REQUIRE_GPU();
#ifdef DIVSCOPE_HAVE_CUDA
  check(static_cast<GemmFallback>(GetParam()), Regime::real);
#endif
}

std::string path_name(const ::testing::TestParamInfo<int>& i) {
  static const char* const kNames[] = {"Tf32Simt", "Bf16Simt", "Fp16K8x2"};
  return kNames[i.param];
}
INSTANTIATE_TEST_SUITE_P(Turing, GemmFallbackGpu, ::testing::Values(0, 1, 2), path_name);

}  // namespace
}  // namespace divscope
