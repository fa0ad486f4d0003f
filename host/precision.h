// Precision modes and the roundings that define them (docs/ops.md, Precision modes).
//
// Every rounding here is integer arithmetic on the bit pattern, written once and compiled by both
// g++ (CPU emulation) and nvcc (kernels), so a value rounded on the CPU and on the GPU has the same
// bits. Nothing here uses _Float16, __half or cuda_bf16: their host emulations and device
// instructions are separate code paths we would then have to prove equal.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#ifdef __CUDACC__
#define DS_HD __host__ __device__
#else
#define DS_HD
#endif

namespace divscope {

enum class Mode { fp64, fp32, tf32, fp16, bf16, strict };

DS_HD inline const char* mode_name(Mode m) {
  switch (m) {
    case Mode::fp64: return "fp64";
    case Mode::fp32: return "fp32";
    case Mode::tf32: return "tf32";
    case Mode::fp16: return "fp16";
    case Mode::bf16: return "bf16";
    case Mode::strict: return "strict";
  }
  return "?";
}

// Host only (std::string). Returns false and leaves *out alone for an unknown name.
inline bool parse_mode(const std::string& s, Mode* out) {
  static const Mode all[] = {Mode::fp64, Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict};
  for (Mode m : all) {
    if (s == mode_name(m)) {
      *out = m;
      return true;
    }
  }
  return false;
}

// The modes that trade precision for speed (tf32, fp16, bf16) against fp32: what the baseline
// criterion judges against fp32 and what bisect can move back to fp32.
inline bool reduced_precision(Mode m) { return m == Mode::tf32 || m == Mode::fp16 || m == Mode::bf16; }

// ---- bit casts -------------------------------------------------------------------------------
DS_HD inline uint32_t f32_bits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
DS_HD inline float bits_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}
DS_HD inline uint64_t f64_bits(double x) {
#ifdef __CUDA_ARCH__
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
DS_HD inline double bits_f64(uint64_t u) {
#ifdef __CUDA_ARCH__
  return __longlong_as_double(static_cast<long long>(u));
#else
  double x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// ---- format limits (for activation-health statistics, README, What divscope run computes) -----------------------------
constexpr double kFp16Max = 65504.0;
constexpr double kFp16MinNormal = 6.103515625e-05;     // 2^-14
constexpr double kBf16Max = 3.3895313892515355e+38;    // (2 - 2^-7) * 2^127
constexpr double kBf16MinNormal = 1.1754943508222875e-38;  // 2^-126, as float

// ---- TF32 ------------------------------------------------------------------------------------
// cvt.rna.tf32.f32: keep the top 10 of the 23 fraction bits, round to nearest, ties away from
// zero. On the magnitude bits that is "add half of the dropped range (0x1000), clear the low 13
// bits": a carry out of the fraction bumps the exponent, which is exactly the next binade, and a
// carry out of the largest finite exponent lands on the infinity pattern. This is also how the
// hardware does it: SASS for cvt.rna.tf32.f32 (published disassembly for sm_86) is an integer add
// of 0x1000 skipped for |x| >= inf or NaN, then an AND with 0xffffe000.
// Subnormals: cvt.rna without .ftz keeps them, and the same bit arithmetic rounds the 23-bit
// subnormal fraction to its top 10 bits (TF32's own subnormal grid, spacing 2^-136); rounding up
// from the largest one gives 2^-126 correctly. We do not flush.
// NaN: stays NaN with its sign, quieted (bit 22 set) so that a payload held only in the cleared
// low bits cannot turn into infinity. (The hardware sequence above would mask such a NaN to inf;
// no framework produces one -- PyTorch's NaN is 0x7fc00000 -- and "NaN in, NaN out" is what the
// statistics need.) Infinity passes through unchanged.
DS_HD inline float round_tf32(float x) {
  uint32_t u = f32_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) {
    if (u & 0x007fffffu) u |= 0x00400000u;
    return bits_f32(u & 0xffffe000u);
  }
  return bits_f32((u + 0x1000u) & 0xffffe000u);
}

// ---- IEEE binary16 ---------------------------------------------------------------------------
// Round to nearest, ties to even; gradual underflow; |x| >= 65520 (halfway between 65504 and the
// next binade) goes to infinity; NaN -> quiet NaN keeping the sign and the top payload bits.
DS_HD inline uint16_t float_to_half_bits(float x) {
  const uint32_t u = f32_bits(x);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x03ffu));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520, or inf
  if (a >= 0x38800000u) {  // result is a normal half: rebias 127 -> 15, round away 13 bits
    uint32_t m = a - (112u << 23);
    m += 0x0fffu + ((m >> 13) & 1u);
    return static_cast<uint16_t>(sign | (m >> 13));
  }
  if (a < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25: rounds to zero
  // Subnormal half: count units of 2^-24. x = mant * 2^(e-150), so shift mant by 126 - e.
  const uint32_t e = a >> 23;
  const uint32_t mant = (a & 0x007fffffu) | 0x00800000u;
  const uint32_t shift = 126u - e;  // 14..24
  uint32_t r = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (r & 1u))) ++r;  // r == 0x400 is the smallest normal: fine
  return static_cast<uint16_t>(sign | r);
}

DS_HD inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x03ffu;
  if (e == 0x1fu) return bits_f32(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    if (m == 0) return bits_f32(sign);
    // Subnormal half -> normal float: shift the leading one up to bit 10.
    int ee = 1;
    while (!(m & 0x0400u)) {
      m <<= 1;
      --ee;
    }
    return bits_f32(sign | (static_cast<uint32_t>(ee + 112) << 23) | ((m & 0x03ffu) << 13));
  }
  return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

DS_HD inline float round_fp16(float x) { return half_bits_to_float(float_to_half_bits(x)); }

// ---- bfloat16 --------------------------------------------------------------------------------
// Round to nearest even on the top 16 bits. The NaN test must come first: a NaN whose payload sits
// only in the low 16 bits (0x7f800001) would otherwise be truncated to the infinity pattern 0x7f80.
DS_HD inline uint16_t float_to_bf16_bits(float x) {
  uint32_t u = f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

DS_HD inline float bf16_bits_to_float(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }

DS_HD inline float round_bf16(float x) { return bf16_bits_to_float(float_to_bf16_bits(x)); }

// ---- per-mode rounding -----------------------------------------------------------------------
// Storage: what a tensor holds between layers. TF32 is a compute format; its tensors are float.
DS_HD inline float round_storage(Mode m, float x) {
  switch (m) {
    case Mode::fp16: return round_fp16(x);
    case Mode::bf16: return round_bf16(x);
    default: return x;
  }
}

// GEMM-like operands (linear, matmul, conv inputs and weights) as the tensor cores see them.
DS_HD inline float round_operand(Mode m, float x) {
  switch (m) {
    case Mode::tf32: return round_tf32(x);
    case Mode::fp16: return round_fp16(x);
    case Mode::bf16: return round_bf16(x);
    default: return x;
  }
}

// ---- ULPs (README, What divscope run computes max_ulp and histogram) ---------------------------------------------------
// ulp_of(m, r): spacing of the mode's storage format at |r| -- float for fp32/tf32/strict,
// binary16 for fp16, bfloat16 for bf16, double for fp64 -- i.e. 2^(max(floor(log2|r|), emin) -
// (p-1)). Below the smallest normal it is the subnormal spacing (also for r = 0); above the
// format's largest finite value the exponent keeps growing as if it were unbounded, so an
// out-of-range reference still gets a finite, meaningful unit.
DS_HD inline double ulp_of(Mode m, double r) {
  int p, emin;  // precision (with the implicit bit) and minimum normal exponent
  switch (m) {
    case Mode::fp16: p = 11; emin = -14; break;
    case Mode::bf16: p = 8; emin = -126; break;
    case Mode::fp64: p = 53; emin = -1022; break;
    default: p = 24; emin = -126; break;
  }
  const uint64_t u = f64_bits(r) & 0x7fffffffffffffffull;
  int e = static_cast<int>(u >> 52) - 1023;  // floor(log2|r|) for a normal double
  if ((u >> 52) == 0) e = -1023;             // zero or double subnormal: below every emin used
  if (e < emin) e = emin;
  const int k = e - (p - 1);  // >= -1074 for every format here
  // 2^k as a double, built from bits (k >= -1022: normal; else the subnormal 2^k).
  if (k >= -1022) return bits_f64(static_cast<uint64_t>(k + 1023) << 52);
  return bits_f64(1ull << (k + 1074));
}

// |c - r| / ulp_of(storage, r). Equal values (including equal infinities) give 0; a NaN in
// either gives NaN; an infinity against anything else gives +inf. The caller counts NaN/inf
// separately (they are their own LayerStats fields).
DS_HD inline double ulp_distance(Mode storage, double c, double r) {
  if (c == r) return 0.0;
  if (c != c || r != r) return c - r;  // NaN
  const double d = c > r ? c - r : r - c;
  return d / ulp_of(storage, r);       // inf - finite = inf, and inf / finite = inf
}

}  // namespace divscope
