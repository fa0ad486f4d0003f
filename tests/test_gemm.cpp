// The CPU GEMM core (host/reference/gemm.cpp): blocked, SIMD and threaded, yet per output the
// plain loop of its policy -- acc = 0; acc = madd(operand(a_k), operand(b_k), acc) for k
// ascending; bias in one rounding; store. Every policy's SIMD step is exactly P::madd
// (gemm_kernels.h), so the check is bitwise for all of them, on sizes that are not multiples
// of any tile or block (MR 6, NR 8/16, KC 384/512, MC 96/192, NC 2048), K = 1, M or N = 1.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "reference/gemm.h"
#include "reference/gemm_kernels.h"
#include "reference/policy.h"

using namespace divscope;

namespace {

struct Shape3 {
  int64_t M, N, K;
};

// Ragged shapes; the large ones also take the threaded path (split N, or M when M > N).
const Shape3 kShapes[] = {
    {1, 1, 1},     {1, 37, 1},     {37, 1, 5},     {7, 9, 3},      {6, 16, 1},
    {13, 17, 600}, {97, 35, 385},  {1, 33, 1100},  {200, 3, 70},   {7, 2061, 5},
    {97, 130, 385}, {301, 50, 513}, {195, 41, 1025},
};

// A problem: a (M x K, stored transposed when `a_transposed`), b (K x N), bias broadcast
// along M (per column, like linear) or along N (per row, like conv), or none.
template <class T>
struct Problem {
  Shape3 s;
  unsigned seed;
  bool a_transposed;
  int bias_kind;   // 0 none, 1 per column n, 2 per row m
  std::vector<T> a, b, bias;
  MatView<T> av() const {
    return a_transposed ? MatView<T>{a.data(), 1, s.M} : MatView<T>{a.data(), s.K, 1};
  }
  MatView<T> bv() const { return {b.data(), s.N, 1}; }
  MatView<T> biasv() const {
    if (bias_kind == 0) return {};
    return bias_kind == 1 ? MatView<T>{bias.data(), 0, 1} : MatView<T>{bias.data(), 1, 0};
  }
  std::string describe() const {
    std::ostringstream o;
    o << "M=" << s.M << " N=" << s.N << " K=" << s.K << " seed=" << seed
      << " a_transposed=" << a_transposed << " bias_kind=" << bias_kind;
    return o.str();
  }
};

// Values: small integers in [-3, 3] (sums exact in float), or uniform reals in [-1, 1], first
// element forced non-zero so that an all-zero fill cannot pass.
template <class T>
Problem<T> make_problem(Shape3 s, unsigned seed, bool small_ints) {
  Problem<T> p{s, seed, seed % 2 == 1, static_cast<int>(seed % 3), {}, {}, {}};
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> ints(-3, 3);
  std::uniform_real_distribution<double> reals(-1, 1);
  auto fill = [&](std::vector<T>& v, int64_t n) {
    v.resize(static_cast<size_t>(n));
    for (T& x : v) x = static_cast<T>(small_ints ? ints(rng) : reals(rng));
    v[0] = T(1);
  };
  fill(p.a, s.M * s.K);
  fill(p.b, s.K * s.N);
  fill(p.bias, p.bias_kind == 1 ? s.N : s.M);
  return p;
}

template <class P>
std::vector<typename P::T> run_gemm(const Problem<typename P::T>& p) {
  std::vector<typename P::T> c(static_cast<size_t>(p.s.M * p.s.N), std::nan(""));   // poisoned
  gemm<P>(p.s.M, p.s.N, p.s.K, p.av(), p.bv(), p.biasv(), c.data(), p.s.N);
  return c;
}

// The definition, one output at a time.
template <class P>
std::vector<typename P::T> naive(const Problem<typename P::T>& p) {
  using Acc = typename P::Acc;
  std::vector<typename P::T> c(static_cast<size_t>(p.s.M * p.s.N));
  MatView<typename P::T> a = p.av(), b = p.bv(), bias = p.biasv();
  for (int64_t m = 0; m < p.s.M; ++m)
    for (int64_t n = 0; n < p.s.N; ++n) {
      Acc acc = 0;
      for (int64_t k = 0; k < p.s.K; ++k)
        acc = P::madd(P::operand(a(m, k)), P::operand(b(k, n)), acc);
      if (bias.p) acc = P::add(acc, Acc(bias(m, n)));
      c[static_cast<size_t>(m * p.s.N + n)] = P::store(acc);
    }
  return c;
}

// "" when bitwise equal, else the first differing output.
template <class T>
std::string bit_difference(const std::vector<T>& got, const std::vector<T>& want, int64_t N) {
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) {
      std::ostringstream o;
      o.precision(17);
      o << "first difference at (m=" << i / N << ", n=" << i % N << "): got " << got[i]
        << ", want " << want[i];
      return o.str();
    }
  return "";
}

double norm2(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

struct PolicyNames {
  template <class P>
  static std::string GetName(int) {
    return P::kName;
  }
};

template <class P>
class Gemm : public ::testing::Test {};
using Policies = ::testing::Types<Fp64Policy, Fp32Policy, Tf32Policy, Fp16Policy, Bf16Policy,
                                  StrictPolicy>;
TYPED_TEST_SUITE(Gemm, Policies, PolicyNames);

// Real-valued inputs: bitwise the policy's own loop, whatever blocking, kernel or threads.
TYPED_TEST(Gemm, RaggedBitwiseEqualsNaiveLoop) {
  using T = typename TypeParam::T;
  unsigned seed = 100;
  for (Shape3 s : kShapes) {
    Problem<T> p = make_problem<T>(s, ++seed, false);
    SCOPED_TRACE(p.describe());
    std::vector<T> got = run_gemm<TypeParam>(p), want = naive<TypeParam>(p);
    EXPECT_EQ(bit_difference(got, want, s.N), "");
  }
}

// Small integers: every sum is exact in float, so every mode gives the exact integer result
// (rounded once to the storage format), tf32/fp16/bf16 included.
TYPED_TEST(Gemm, SmallIntegersExact) {
  using P = TypeParam;
  using T = typename P::T;
  unsigned seed = 200;
  for (Shape3 s : kShapes) {
    Problem<T> p = make_problem<T>(s, ++seed, true);
    SCOPED_TRACE(p.describe());
    std::vector<T> got = run_gemm<P>(p), want(got.size());
    std::vector<double> exact(got.size());
    MatView<T> a = p.av(), b = p.bv(), bias = p.biasv();
    for (int64_t m = 0; m < s.M; ++m)
      for (int64_t n = 0; n < s.N; ++n) {
        int64_t sum = 0;
        for (int64_t k = 0; k < s.K; ++k)
          sum += static_cast<int64_t>(a(m, k)) * static_cast<int64_t>(b(k, n));
        if (bias.p) sum += static_cast<int64_t>(bias(m, n));
        exact[m * s.N + n] = static_cast<double>(sum);
        want[m * s.N + n] = P::store(static_cast<typename P::Acc>(sum));
      }
    ASSERT_GT(norm2(exact), 0);
    EXPECT_EQ(bit_difference(got, want, s.N), "");
  }
}

// Real-valued inputs against an FP64 (long double for fp64 itself) loop, within the mode's
// rounding: |c - r| <= tol * (sum_k |a_k b_k| + |bias|) + storage rounding of r (+ fp16's
// subnormal spacing per term).
TYPED_TEST(Gemm, WithinModeToleranceOfHigherPrecision) {
  using P = TypeParam;
  using T = typename P::T;
  const double u32 = std::ldexp(1.0, -24);
  double operand_u = 0, store_u = 0;   // relative roundings of operands / of the output
  double subnormal = 0;                 // absolute rounding below fp16's smallest normal
  std::string name = P::kName;
  if (name == "tf32") operand_u = std::ldexp(1.0, -11);
  if (name == "fp16") operand_u = store_u = std::ldexp(1.0, -11), subnormal = std::ldexp(1.0, -24);
  if (name == "bf16") operand_u = store_u = std::ldexp(1.0, -8);
  unsigned seed = 300;
  for (Shape3 s : kShapes) {
    Problem<T> p = make_problem<T>(s, ++seed, false);
    SCOPED_TRACE(p.describe());
    std::vector<T> got = run_gemm<P>(p);
    MatView<T> a = p.av(), b = p.bv(), bias = p.biasv();
    double sum_step = name == "fp64" ? 1e-13 / (s.K + 1) : u32;
    int64_t bad = 0;
    for (int64_t m = 0; m < s.M; ++m)
      for (int64_t n = 0; n < s.N; ++n) {
        long double r = 0, mag = 0;
        for (int64_t k = 0; k < s.K; ++k) {
          long double t = static_cast<long double>(a(m, k)) * static_cast<long double>(b(k, n));
          r += t;
          mag += std::fabs(t);
        }
        if (bias.p) {
          r += bias(m, n);
          mag += std::fabs(static_cast<long double>(bias(m, n)));
        }
        double tol = static_cast<double>(mag) * (2 * operand_u + (s.K + 1) * sum_step) +
                     std::fabs(static_cast<double>(r)) * store_u + (s.K + 1) * subnormal;
        double err = std::fabs(static_cast<double>(got[m * s.N + n]) - static_cast<double>(r));
        if (!(err <= tol) && bad++ == 0)
          ADD_FAILURE() << "(m=" << m << ", n=" << n << "): got " << got[m * s.N + n] << ", r "
                        << static_cast<double>(r) << ", err " << err << " > tol " << tol;
      }
    EXPECT_EQ(bad, 0);
  }
}

// The SIMD (AVX-512 and AVX2) and the scalar kernels are the same arithmetic (strict: fmaf per
// lane; the others a * b + acc): bitwise equal. Threads own whole outputs: the count changes nothing.
TYPED_TEST(Gemm, ScalarSimdAndThreadCountsBitwiseEqual) {
  using T = typename TypeParam::T;
  if (!gemm_simd()) GTEST_SKIP() << "this CPU has no AVX2+FMA: only the scalar path runs";
  unsigned seed = 400;
  for (Shape3 s : kShapes) {
    Problem<T> p = make_problem<T>(s, ++seed, false);
    SCOPED_TRACE(p.describe());
    std::vector<T> simd = run_gemm<TypeParam>(p);
    gemm_force_scalar(true);
    std::vector<T> scalar = run_gemm<TypeParam>(p);
    gemm_force_scalar(false);
    EXPECT_EQ(bit_difference(scalar, simd, s.N), "") << "scalar vs SIMD";
    if (gemm_avx512()) {   // the default was AVX-512: AVX2 too
      gemm_force_avx2(true);
      std::vector<T> avx2 = run_gemm<TypeParam>(p);
      gemm_force_avx2(false);
      EXPECT_EQ(bit_difference(avx2, simd, s.N), "") << "AVX2 vs AVX-512";
    }
    for (int threads : {1, 3}) {
      gemm_set_max_threads(threads);
      std::vector<T> t = run_gemm<TypeParam>(p);
      gemm_set_max_threads(0);
      EXPECT_EQ(bit_difference(t, simd, s.N), "") << threads << " thread(s) vs default";
    }
  }
}

// The two definitions written out independently of the policies: strict is fmaf from 0 in
// k order, then one add; fp64 is a * b + acc in k order (docs/ops.md, Precision modes: strict formulas, policy.h).
TEST(GemmDefinition, StrictIsAnFmafLoopFp64AMulAddLoop) {
  const Shape3 s{41, 35, 1031};
  const unsigned seed = 500;
  SCOPED_TRACE("seed " + std::to_string(seed));
  Problem<float> pf = make_problem<float>(s, seed, false);
  Problem<double> pd = make_problem<double>(s, seed, false);
  std::vector<float> strict = run_gemm<StrictPolicy>(pf), want_f(strict.size());
  std::vector<double> fp64 = run_gemm<Fp64Policy>(pd), want_d(fp64.size());
  for (int64_t m = 0; m < s.M; ++m)
    for (int64_t n = 0; n < s.N; ++n) {
      float af = 0;
      double ad = 0;
      for (int64_t k = 0; k < s.K; ++k) {
        af = std::fmaf(pf.av()(m, k), pf.bv()(k, n), af);
        ad = pd.av()(m, k) * pd.bv()(k, n) + ad;
      }
      if (pf.bias_kind) af = af + pf.biasv()(m, n);
      if (pd.bias_kind) ad = ad + pd.biasv()(m, n);
      want_f[m * s.N + n] = af;
      want_d[m * s.N + n] = ad;
    }
  EXPECT_EQ(bit_difference(strict, want_f, s.N), "");
  EXPECT_EQ(bit_difference(fp64, want_d, s.N), "");
}

// K = 0: no products; outputs are the bias (or 0), never the poison.
TEST(GemmDefinition, EmptyKGivesBias) {
  std::vector<double> bias = {1.5, -2.0, 3.0}, c(6, std::nan(""));
  gemm<Fp64Policy>(2, 3, 0, {nullptr, 0, 1}, {nullptr, 3, 1}, {bias.data(), 0, 1}, c.data(), 3);
  EXPECT_EQ(c, (std::vector<double>{1.5, -2.0, 3.0, 1.5, -2.0, 3.0}));
}

}  // namespace
