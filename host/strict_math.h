// The strict mode's arithmetic, written once (docs/ops.md, Precision modes: strict reductions, §5.2).
//
// Every function is `DS_HD` and spells out each rounding: + - * / sqrt and fma through the s_*
// wrappers, which are the correctly rounded (RN) IEEE operations on both sides -- plain operators
// and std::fma/std::sqrt on the host (compiled with -ffp-contract=off, SSE float, denormals kept),
// __fadd_rn & co. on the device (never contracted, never flushed). A strict result is therefore a
// pure function of its inputs and has the same bits on any CPU and any GPU. No libm call except
// sqrt; exp/log/tanh/erf/sigmoid are our own range reductions and polynomials (coefficients:
// weighted least-squares fits at Chebyshev nodes in 40-digit mpmath, rounded to float).
// Accuracy: the kStrict*MaxUlp constants below (measured exhaustively, held by the tests).
#pragma once

#include <cmath>

#include "precision.h"

#if defined(__FAST_MATH__) || defined(__USE_FAST_MATH__)
#error "strict_math.h must not be compiled with fast math (docs/ops.md, Precision modes, STYLE 8)"
#endif
#if !defined(__CUDA_ARCH__) && defined(__FLT_EVAL_METHOD__) && __FLT_EVAL_METHOD__ != 0
#error "strict_math.h needs float expressions evaluated in float (SSE, not x87)"
#endif

namespace divscope {

// ---- the only roundings strict code may use ------------------------------------------------------
DS_HD inline float s_add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
DS_HD inline float s_sub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
DS_HD inline float s_mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DS_HD inline float s_div(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
DS_HD inline float s_fma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
DS_HD inline float s_sqrt(float a) {
#ifdef __CUDA_ARCH__
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}

// ---- the one NaN (docs/ops.md, Precision modes: NaN) ------------------------------------------
// Hardware disagrees on the bits of a NaN: x86 passes an operand's payload through and makes
// 0xffc00000 for an invalid operation (inf - inf, 0 * inf), NVIDIA's float add/mul/fma make
// 0x7fffffff. So every strict layer output goes through strict_canonical on both sides (the CPU
// strict path in mode_forward, the GPU in cuda_launch_layer): a NaN leaves as 0x7fc00000 -- the
// default quiet NaN (std::numeric_limits<float>::quiet_NaN(), PyTorch's and NumPy's nan) --
// whatever made it, and strict outputs, their dumps and their comparisons are bitwise again.
// Inside a layer the payload never matters: no strict formula reads a NaN's bits (they compare,
// select or return early).
constexpr uint32_t kStrictNanBits = 0x7fc00000u;
DS_HD inline float strict_canonical(float x) { return x != x ? bits_f32(kStrictNanBits) : x; }

// Exact bit operations (no rounding).
DS_HD inline float s_abs(float x) { return bits_f32(f32_bits(x) & 0x7fffffffu); }
DS_HD inline float s_copysign(float mag, float sgn) {
  return bits_f32((f32_bits(mag) & 0x7fffffffu) | (f32_bits(sgn) & 0x80000000u));
}
DS_HD inline float s_inf() { return bits_f32(0x7f800000u); }
DS_HD inline float s_nan() { return bits_f32(kStrictNanBits); }

// Error bounds in float ULPs of the exact value (a correctly rounded function would be 0.5),
// held by the tests. Measured exhaustively over all 2^32 inputs against glibc's double functions
// (x86-64, g++ -O2 -ffp-contract=off): exp 0.988 (at 59.275), log 0.835 (at 1.40546),
// tanh 1.349 (at 0.6054, just past the polynomial range), erf 1.070 (at 0.93311, just past the
// polynomial range), sigmoid 1.967 (at -6.2377). NaN gives NaN, and where the double result is
// beyond float's range the strict one is exactly the double rounded to float (inf).
constexpr double kStrictExpMaxUlp = 1.0;
constexpr double kStrictLogMaxUlp = 1.0;
constexpr double kStrictTanhMaxUlp = 1.5;
constexpr double kStrictErfMaxUlp = 1.25;
constexpr double kStrictSigmoidMaxUlp = 2.0;

// ---- exp -------------------------------------------------------------------------------------
// Cody-Waite: x = k ln2 + r, |r| <= ~ln2/2, exp(x) = 2^k (1 + r + r^2 q(r)).
// kLn2Hi has 15 significant bits, so k * kLn2Hi is exact for |k| <= 256 and x - k * kLn2Hi is exact
// (Sterbenz); the rounding of r comes only from the kLn2Lo step.
constexpr float kLog2e = 1.44269502e+00f;
constexpr float kLn2Hi = 6.93145752e-01f;  // 0x3f317200
constexpr float kLn2Lo = 1.42860677e-06f;  // ln 2 - kLn2Hi

DS_HD inline float strict_exp(float x) {
  if (x != x) return s_add(x, x);
  if (x > 88.8f) return s_inf();       // ln(FLT_MAX) = 88.72284
  if (x < -104.0f) return 0.0f;        // e^-104 < 2^-150: rounds to +0
  const float kf = s_sub(s_add(s_mul(x, kLog2e), 12582912.0f), 12582912.0f);  // rint via 1.5*2^23
  float r = s_fma(-kf, kLn2Hi, x);
  r = s_fma(-kf, kLn2Lo, r);
  float q = 1.989927550e-04f;
  q = s_fma(q, r, 1.393364393e-03f);
  q = s_fma(q, r, 8.333298378e-03f);
  q = s_fma(q, r, 4.166646674e-02f);
  q = s_fma(q, r, 1.666666716e-01f);
  q = s_fma(q, r, 5.000000000e-01f);
  const float p = s_add(1.0f, s_fma(s_mul(r, r), q, r));
  // 2^k in two factors so that neither over- nor underflows (k in [-150, 128]); only the second
  // product can round, and only when the result is subnormal.
  const int k = static_cast<int>(kf);
  const int k1 = k / 2, k2 = k - k1;
  const float s1 = bits_f32(static_cast<uint32_t>(k1 + 127) << 23);
  const float s2 = bits_f32(static_cast<uint32_t>(k2 + 127) << 23);
  return s_mul(s_mul(p, s1), s2);
}

// ---- log -------------------------------------------------------------------------------------
// x = 2^k m, m in [sqrt(1/2), sqrt(2)), f = m - 1 (exact), s = f / (2 + f):
// log(1 + f) = 2s + s R(s^2) = f - hfsq + s (hfsq + R), hfsq = f^2 / 2 -- the fdlibm arrangement,
// where the inexact s only enters a term that is a few percent of the result.
DS_HD inline float strict_log(float x) {
  if (x != x) return s_add(x, x);
  if (x < 0.0f) return s_nan();
  if (x == 0.0f) return -s_inf();
  if (x == s_inf()) return x;
  uint32_t u = f32_bits(x);
  int k = 0;
  if (u < 0x00800000u) {  // subnormal: scale by 2^23 (exact)
    u = f32_bits(s_mul(x, 8388608.0f));
    k = -23;
  }
  k += static_cast<int>(u >> 23) - 127;
  uint32_t mb = (u & 0x007fffffu) | 0x3f800000u;  // m in [1, 2)
  if (mb >= 0x3fb504f3u) {                         // m >= sqrt(2): use m / 2
    mb -= 0x00800000u;
    k += 1;
  }
  const float f = s_sub(bits_f32(mb), 1.0f);
  const float s = s_div(f, s_add(2.0f, f));
  const float z = s_mul(s, s);
  float R = 2.333136797e-01f;
  R = s_fma(R, z, 2.855077982e-01f);
  R = s_fma(R, z, 4.000012279e-01f);
  R = s_fma(R, z, 6.666666865e-01f);
  R = s_mul(R, z);
  const float hfsq = s_mul(s_mul(0.5f, f), f);
  const float dk = static_cast<float>(k);
  float t = s_fma(s, s_add(hfsq, R), s_mul(dk, kLn2Lo));
  t = s_sub(s_sub(hfsq, t), f);
  return s_sub(s_mul(dk, kLn2Hi), t);
}

// ---- tanh ------------------------------------------------------------------------------------
// |x| < 0.6: x + x^3 P(x^2). Else 1 - 2 / (exp(2|x|) + 1) with the sign put back; |x| >= 10 is
// +-1 to the last bit (1 - tanh(10) = 4e-9 < 2^-25).
DS_HD inline float strict_tanh(float x) {
  if (x != x) return s_add(x, x);
  const float a = s_abs(x);
  if (a >= 10.0f) return s_copysign(1.0f, x);
  if (a < 2.44140625e-04f) return x;  // |x| < 2^-12: x^3/3 is below half an ULP of x; keeps -0
  if (a < 0.6f) {
    const float z = s_mul(x, x);
    float P = 2.373515163e-03f;
    P = s_fma(P, z, -8.412553929e-03f);
    P = s_fma(P, z, 2.178910747e-02f);
    P = s_fma(P, z, -5.396165326e-02f);
    P = s_fma(P, z, 1.333331317e-01f);
    P = s_fma(P, z, -3.333333433e-01f);
    return s_fma(s_mul(x, z), P, x);
  }
  const float e = strict_exp(s_add(a, a));
  return s_copysign(s_sub(1.0f, s_div(2.0f, s_add(e, 1.0f))), x);
}

// ---- erf -------------------------------------------------------------------------------------
// |x| < 0.921875: x + x Q(x^2). Else erf = 1 - erfc with log(erfc(|x|)) a polynomial in
// u = |x| - 0.921875 (exact subtraction), fitted with weight erfc so that its error is small
// where it matters (erfc <= 0.19 there, so exp's error is scaled down too). |x| >= 4: +-1.
DS_HD inline float strict_erf(float x) {
  if (x != x) return s_add(x, x);
  const float a = s_abs(x);
  if (a < 0.921875f) {
    const float z = s_mul(x, x);
    float Q = 8.392696327e-05f;
    Q = s_fma(Q, z, -8.148506167e-04f);
    Q = s_fma(Q, z, 5.201591644e-03f);
    Q = s_fma(Q, z, -2.685964666e-02f);
    Q = s_fma(Q, z, 1.128370017e-01f);
    Q = s_fma(Q, z, -3.761263490e-01f);
    Q = s_fma(Q, z, 1.283791661e-01f);
    return s_fma(x, Q, x);
  }
  if (a >= 4.0f) return s_copysign(1.0f, x);
  const float u = s_sub(a, 0.921875f);
  float p = -2.730484425e-07f;
  p = s_fma(p, u, -1.970953053e-05f);
  p = s_fma(p, u, 2.956984681e-04f);
  p = s_fma(p, u, -2.142082667e-03f);
  p = s_fma(p, u, 1.085245982e-02f);
  p = s_fma(p, u, -4.482556880e-02f);
  p = s_fma(p, u, -8.329886794e-01f);
  p = s_fma(p, u, -2.508012533e+00f);
  p = s_fma(p, u, -1.648561835e+00f);
  return s_copysign(s_sub(1.0f, strict_exp(p)), x);
}

// ---- sigmoid ---------------------------------------------------------------------------------
// e = exp(-|x|) in (0, 1]; sigmoid = num / (1 + e) with num = 1 (x >= 0) or e (x < 0), so nothing
// overflows and tiny results keep their relative accuracy. d = 1 + e rounds; its error
// err = e - (d - 1) is exact (Fast2Sum, 1 >= e), and num / (d + err) = q (1 - err / d) to first
// order, so y = fma(-q, err / d, q) removes that rounding from the result.
DS_HD inline float strict_sigmoid(float x) {
  if (x != x) return s_add(x, x);
  const float e = strict_exp(-s_abs(x));
  const float d = s_add(1.0f, e);
  const float err = s_sub(e, s_sub(d, 1.0f));
  const float q = s_div(x >= 0.0f ? 1.0f : e, d);
  return s_fma(-q, s_div(err, d), q);
}

// ---- activations (each a fixed sequence of the roundings above) -------------------------------
// relu: x > 0 ? x : 0; NaN propagates (as torch.relu).
DS_HD inline float strict_relu(float x) { return x > 0.0f ? x : (x != x ? x : 0.0f); }

// leaky_relu: x > 0 ? x : x * slope (one rounding), as PyTorch; NaN propagates.
DS_HD inline float strict_leaky_relu(float x, float slope) { return x > 0.0f ? x : s_mul(x, slope); }

// silu: x * sigmoid(x) (one rounding after the sigmoid). silu(-inf) = -inf * 0 = NaN, as PyTorch.
DS_HD inline float strict_silu(float x) { return s_mul(x, strict_sigmoid(x)); }

// gelu (exact): t = x * (1/sqrt 2); e = erf(t); y = (x * 0.5) * (1 + e).
// The order of PyTorch's definition x * 0.5 * (1 + erf(x * M_SQRT1_2)). For x << 0 the 1 + e
// cancels, so the relative error there is large although the absolute error stays below float's
// epsilon -- inherent to the formula, not to erf.
constexpr float kInvSqrt2 = 7.07106769e-01f;
DS_HD inline float strict_gelu_erf(float x) {
  const float e = strict_erf(s_mul(x, kInvSqrt2));
  return s_mul(s_mul(x, 0.5f), s_add(1.0f, e));
}

// gelu (tanh): x3 = (x * x) * x; u = sqrt(2/pi) * (x + 0.044715 * x3); t = tanh(u);
// y = (x * 0.5) * (1 + t). Each product and sum rounds once, no fma.
constexpr float kSqrt2OverPi = 7.97884583e-01f;
constexpr float kGeluTanhC = 4.47150005e-02f;
DS_HD inline float strict_gelu_tanh(float x) {
  const float x3 = s_mul(s_mul(x, x), x);
  const float u = s_mul(kSqrt2OverPi, s_add(x, s_mul(kGeluTanhC, x3)));
  const float t = strict_tanh(u);
  return s_mul(s_mul(x, 0.5f), s_add(1.0f, t));
}

// ---- dot product and bias (§5.2) -------------------------------------------------------------
// acc = 0; acc = fma(a_k, b_k, acc) for k = 0..K-1 ascending. Conv passes its (ci, kh, kw)
// reduction index, last fastest, through the same loop.
DS_HD inline float strict_dot(const float* a, long long sa, const float* b, long long sb, long long K) {
  float acc = 0.0f;
  for (long long k = 0; k < K; ++k) acc = s_fma(a[k * sa], b[k * sb], acc);
  return acc;
}
DS_HD inline float strict_bias(float acc, float bias) { return s_add(acc, bias); }

// ---- reductions (§5.1) -----------------------------------------------------------------------
// A row of n elements is split over 256 lanes: lane j sums j, j+256, j+512, ... in order from
// 0.0f; then the partials are added as a fixed binary tree: (0,1),(2,3),..., then (0,2),(4,6),...
// i.e. at width w, p[i] += p[i+w] for i a multiple of 2w. A kernel reproduces this with 256
// threads (thread j = lane j) and a shared-memory tree with the same pairing -- interleaved
// addressing `if (j % (2*w) == 0) s[j] += s[j + w]` for w = 1, 2, ..., 128 -- and NOT the usual
// `s[j] += s[j + 128]` halving tree, which adds different pairs.
constexpr int kStrictLanes = 256;

DS_HD inline float strict_lane_sum(const float* x, long long stride, long long n, int lane) {
  float acc = 0.0f;
  for (long long i = lane; i < n; i += kStrictLanes) acc = s_add(acc, x[i * stride]);
  return acc;
}

DS_HD inline float strict_tree_reduce(float partials[kStrictLanes]) {
  for (int w = 1; w < kStrictLanes; w *= 2)
    for (int i = 0; i < kStrictLanes; i += 2 * w) partials[i] = s_add(partials[i], partials[i + w]);
  return partials[0];
}

// Sum of elem(i), i in [0, n), in the §5.1 order; elem must itself be deterministic. Lets variance
// and the softmax denominator be summed without a temporary buffer.
template <class F>
DS_HD inline float strict_reduce(long long n, F elem) {
  float p[kStrictLanes];
  for (int j = 0; j < kStrictLanes; ++j) {
    float acc = 0.0f;
    for (long long i = j; i < n; i += kStrictLanes) acc = s_add(acc, elem(i));
    p[j] = acc;
  }
  return strict_tree_reduce(p);
}

// Element functions for strict_reduce (structs rather than lambdas so that they are DS_HD).
struct StrictStrided {  // x[i]
  const float* x;
  long long stride;
  DS_HD float operator()(long long i) const { return x[i * stride]; }
};
struct StrictSquare {  // x[i] * x[i]
  const float* x;
  long long stride;
  DS_HD float operator()(long long i) const { return s_mul(x[i * stride], x[i * stride]); }
};
struct StrictSquaredDev {  // (x[i] - mean) * (x[i] - mean)
  const float* x;
  long long stride;
  float mean;
  DS_HD float operator()(long long i) const {
    const float d = s_sub(x[i * stride], mean);
    return s_mul(d, d);
  }
};

// Whole-row conveniences for the CPU path (a kernel uses strict_lane_sum per thread + the
// shared-memory tree instead of the 1 KiB partials array of strict_reduce).
DS_HD inline float strict_sum(const float* x, long long n, long long stride = 1) {
  return strict_reduce(n, StrictStrided{x, stride});
}

// ---- norms (layernorm, groupnorm, batchnorm, rmsnorm) ----------------------------------------
// mean = sum(x) / n; var = sum((x - mean) * (x - mean)) / n (two-pass, biased); per row
// denom = sqrt(var + eps); per element y = fma((x - mean) / denom, w, b) -- one rounding for the
// affine step, and w = 1, b = 0 (no affine parameters) leaves (x - mean) / denom unchanged.
// n converts to float with one RN rounding (exact below 2^24). batchnorm (inference) is
// strict_norm_elem(x, running_mean, strict_norm_denom(running_var, eps), w, b).
DS_HD inline float strict_norm_denom(float var, float eps) { return s_sqrt(s_add(var, eps)); }
DS_HD inline float strict_norm_elem(float x, float mean, float denom, float w, float b) {
  return s_fma(s_div(s_sub(x, mean), denom), w, b);
}
// rmsnorm: ms = sum(x * x) / n; denom = sqrt(ms + eps); y = (x / denom) * w.
DS_HD inline float strict_rms_elem(float x, float denom, float w) { return s_mul(s_div(x, denom), w); }

DS_HD inline float strict_mean(const float* x, long long n, long long stride = 1) {
  return s_div(strict_sum(x, n, stride), static_cast<float>(n));
}
DS_HD inline float strict_variance(const float* x, long long n, long long stride, float mean) {
  return s_div(strict_reduce(n, StrictSquaredDev{x, stride, mean}), static_cast<float>(n));
}
DS_HD inline float strict_mean_square(const float* x, long long n, long long stride = 1) {
  return s_div(strict_reduce(n, StrictSquare{x, stride}), static_cast<float>(n));
}

// ---- softmax / log_softmax -------------------------------------------------------------------
// m = max (any order: the step propagates NaN whatever its position, and strict_max_finish turns
// a -0 maximum into +0 so that the sign of a zero max cannot depend on the order);
// e_i = exp(x_i - m); s = sum(e) (§5.1 order); softmax y_i = e_i / s;
// log_softmax y_i = (x_i - m) - log(s).
DS_HD inline float strict_max_step(float m, float v) { return (v > m || v != v) && m == m ? v : m; }
DS_HD inline float strict_max_finish(float m) { return s_add(m, 0.0f); }
DS_HD inline float strict_softmax_exp(float x, float m) { return strict_exp(s_sub(x, m)); }
DS_HD inline float strict_softmax_elem(float e, float s) { return s_div(e, s); }
DS_HD inline float strict_log_softmax_elem(float x, float m, float log_s) { return s_sub(s_sub(x, m), log_s); }

struct StrictSoftmaxExp {  // exp(x[i] - m)
  const float* x;
  long long stride;
  float m;
  DS_HD float operator()(long long i) const { return strict_softmax_exp(x[i * stride], m); }
};
DS_HD inline float strict_row_max(const float* x, long long n, long long stride = 1) {
  float m = -s_inf();
  for (long long i = 0; i < n; ++i) m = strict_max_step(m, x[i * stride]);
  return strict_max_finish(m);
}
DS_HD inline float strict_softmax_sum(const float* x, long long n, long long stride, float m) {
  return strict_reduce(n, StrictSoftmaxExp{x, stride, m});
}

// ---- v2 element-wise ops (model format v2, notes/new_ops_contract.md) -------------------------
// Exact sign flip (neg): s_sub(0, x) would turn +0 into +0 instead of -0, torch.neg flips the bit.
DS_HD inline float s_neg(float x) { return bits_f32(f32_bits(x) ^ 0x80000000u); }

// hardtanh: min(max(x, lo), hi) by selection (exact); NaN stays NaN (both comparisons false).
DS_HD inline float strict_hardtanh(float x, float lo, float hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}
// hardsigmoid: min(max(x + 3, 0), 6) / 6 -- one rounding for + 3, one for the IEEE division
// (PyTorch's CPU order; dividing rather than multiplying by a rounded 1/6).
DS_HD inline float strict_hardsigmoid(float x) {
  return s_div(strict_hardtanh(s_add(x, 3.0f), 0.0f, 6.0f), 6.0f);
}
// hardswish: (x * min(max(x + 3, 0), 6)) / 6, left to right as PyTorch's CPU kernel.
DS_HD inline float strict_hardswish(float x) {
  return s_div(s_mul(x, strict_hardtanh(s_add(x, 3.0f), 0.0f, 6.0f)), 6.0f);
}
// rsqrt: 1 / sqrt(x), two IEEE roundings (no approximate rsqrt, docs/ops.md, Precision modes: strict formulas).
DS_HD inline float strict_rsqrt(float x) { return s_div(1.0f, s_sqrt(x)); }

// maximum / minimum: selection only (bitwise deterministic); a NaN operand wins (a's first), as
// torch.maximum/minimum. Between -0 and +0 the first operand wins, as std::max / std::min.
DS_HD inline float strict_maximum(float a, float b) {
  return a != a ? a : (b != b ? b : (a < b ? b : a));
}
DS_HD inline float strict_minimum(float a, float b) {
  return a != a ? a : (b != b ? b : (b < a ? b : a));
}

// pow: the exponents models use get their exact short forms; otherwise exp(b * log|a|) with
// powf's special values (C99 F.9.4.4): b == 0 or a == 1 gives 1 (even with NaN), a < 0 finite
// with non-integer b gives NaN, an odd integer b keeps a's sign (a == -0 included), a == 0
// gives +inf (b < 0) or 0 (b > 0), |a| == 1 with b = +-inf gives 1. Accuracy: the relative error
// of log's result is multiplied by |b log a|, so large exponents lose bits (an fp32 powf is
// correctly rounded to ~1 ulp; this is not) -- deterministic, not accurate.
DS_HD inline float strict_pow(float a, float b) {
  if (b == 2.0f) return s_mul(a, a);
  if (b == 0.5f) return s_sqrt(a);
  if (b == 1.0f) return a;
  if (b == 3.0f) return s_mul(s_mul(a, a), a);
  if (b == -1.0f) return s_div(1.0f, a);
  if (b == 0.0f || a == 1.0f) return 1.0f;
  if (a != a) return a;
  if (b != b) return b;
  const float ab = s_abs(b), aa = s_abs(a);
  // |b| >= 2^23 (inf included) is an even integer; below, rint via 1.5*2^23-style rounding.
  const bool integer = ab >= 8388608.0f || s_sub(s_add(ab, 8388608.0f), 8388608.0f) == ab;
  const bool odd = integer && ab < 16777216.0f && (static_cast<long long>(ab) & 1) != 0;
  if (a < 0.0f && !integer && aa != s_inf()) return s_nan();
  float r;
  if (aa == 1.0f) r = 1.0f;
  else if (aa == 0.0f) r = b < 0.0f ? s_inf() : 0.0f;
  else r = strict_exp(s_mul(b, strict_log(aa)));
  return odd ? s_copysign(r, a) : r;
}
// sqrt, exp, log, erf, abs: s_sqrt, strict_exp, strict_log, strict_erf, s_abs; neg: s_neg.
// sub/div: s_sub/s_div. where: selection (cond != 0 ? a : b), exact.

// ---- v2 reductions (reduce_sum / reduce_mean / reduce_max) -------------------------------------
// The reduced elements of one output, taken in row-major order of the reduced axes (last axis
// fastest), are the row i = 0..n-1 of §5.1: reduce_sum = strict_reduce over that row, reduce_mean
// = that sum s_div n (n converted to float once, RN), reduce_max = strict_max_step over the row in
// any order then strict_max_finish. adaptive_avgpool2d: the window's elements in row-major order
// (row i / ww, column i % ww) are the row of §5.1, divided by the window size as avgpool2d.
DS_HD inline float strict_mean_of_sum(float sum, long long n) { return s_div(sum, static_cast<float>(n)); }

}  // namespace divscope
