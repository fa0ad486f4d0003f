// The CPU emulation of every precision mode (docs/ops.md, Precision modes) as policies of the reference loops
// (see policy.h for the members a policy has). Storage is float; fp16/bf16 values are floats
// that are exactly representable in the 16-bit format.
#pragma once
#include <cmath>
#include <cstdint>

#include "precision.h"
#include "strict_math.h"

namespace divscope {

// fp32: float products and sums in the CPU's order. The GPU may fuse (FMA allowed, order
// free), so the two agree within rounding, not bitwise.
template <Mode M>
struct FloatPolicyBase : PlainArithmetic<float> {
  using T = float;
  using Acc = float;
  static constexpr Mode kMode = M;
  static T store(Acc x) { return round_storage(M, x); }
  static T operand(T x) { return round_operand(M, x); }
};

// fp32: operands as stored.            tf32: each GEMM operand rounded by cvt.rna.tf32.
// fp16/bf16: every result rounded to the 16-bit format (RNE); GEMM operands are the stored
// 16-bit values, products and sums in float, bias added in float, output rounded once.
struct Fp32Policy : FloatPolicyBase<Mode::fp32> { static constexpr const char* kName = "fp32"; };
struct Tf32Policy : FloatPolicyBase<Mode::tf32> { static constexpr const char* kName = "tf32"; };
struct Fp16Policy : FloatPolicyBase<Mode::fp16> { static constexpr const char* kName = "fp16"; };
struct Bf16Policy : FloatPolicyBase<Mode::bf16> { static constexpr const char* kName = "bf16"; };

// strict (docs/ops.md, Precision modes: strict reductions, §5.2): dot products acc = fma(a, b, acc) for k ascending from 0, the
// bias in one rounding, reductions in the fixed 256-lane tree, transcendentals from
// strict_math.h. Bitwise identical to the GPU strict kernels.
struct StrictPolicy {
  using T = float;
  using Acc = float;
  static constexpr Mode kMode = Mode::strict;
  static constexpr const char* kName = "strict";
  static T store(Acc x) { return x; }
  static T operand(T x) { return x; }
  static Acc madd(Acc a, Acc b, Acc acc) { return s_fma(a, b, acc); }
  static Acc add(Acc a, Acc b) { return s_add(a, b); }
  template <class F>
  static Acc sum(int64_t n, F&& f) {
    return strict_reduce(static_cast<long long>(n), [&](long long i) { return f(static_cast<int64_t>(i)); });
  }
  static Acc exp(Acc x) { return strict_exp(x); }
  static Acc log(Acc x) { return strict_log(x); }
  static Acc sqrt(Acc x) { return s_sqrt(x); }
  static Acc tanh(Acc x) { return strict_tanh(x); }
  static Acc erf(Acc x) { return strict_erf(x); }
};

}  // namespace divscope
