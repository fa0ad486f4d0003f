// Precision policies of the CPU reference loops (docs/ops.md, Precision modes).
//
// Every reference op is written once, as a template over a policy P; the FP64 reference is
// that template with Fp64Policy. A precision mode (fp32, tf32, fp16, bf16, strict) is another
// policy with the same members, so the CPU emulation of a mode runs exactly the loops of the
// reference and differs only where the policy says so. A policy has:
//
//   using T         element type of tensors the op reads and writes (double | float)
//   using Acc       accumulator: GEMM dot products, reductions, transcendental arguments
//   store(Acc)      round a result to the storage format (fp16: RNE to binary16, held in float)
//   operand(T)      round a GEMM operand as the tensor core sees it (tf32: cvt.rna)
//   madd(a, b, acc) one dot-product step. The GEMM core calls it for k = 0..K-1 ascending from
//                   acc = 0 for every output, whatever its blocking; strict makes it
//                   fmaf(a, b, acc) (docs/ops.md, Precision modes: strict formulas)
//   add(a, b)       the one rounding that adds a bias to a finished dot product
//   sum(n, f)       f(0) + f(1) + ... + f(n-1) in the policy's order (strict: the 256-lane
//                   tree of docs/ops.md, Precision modes: strict reductions); used by norms, softmax and average pools
//   exp log sqrt tanh erf   transcendentals (strict: host/strict_math.h)
//
// To add a policy: define it here and list it in DIVSCOPE_REFERENCE_POLICIES; every op family
// instantiates its loops for each listed policy.
#pragma once
#include <cmath>
#include <cstdint>

#include "fp64_order.h"

namespace divscope {

// Plain arithmetic in Acc: sums left to right, a dot-product step a * b + acc with two roundings
// (the host is compiled with -ffp-contract=off, so it is never fused behind our back), libm
// transcendentals. The FP64 reference and the fp32-family modes share it.
template <class Acc>
struct PlainArithmetic {
  static Acc madd(Acc a, Acc b, Acc acc) { return a * b + acc; }
  static Acc add(Acc a, Acc b) { return a + b; }
  template <class F>
  static Acc sum(int64_t n, F&& f) {
    Acc s = 0;
    for (int64_t i = 0; i < n; ++i) s += f(i);
    return s;
  }
  static Acc exp(Acc x) { return std::exp(x); }
  static Acc log(Acc x) { return std::log(x); }
  static Acc sqrt(Acc x) { return std::sqrt(x); }
  static Acc tanh(Acc x) { return std::tanh(x); }
  static Acc erf(Acc x) { return std::erf(x); }
};

// The truth. FP64 needs no fused step: its error is ~1e-16 relative, far below any mode's.
// Its dot-product step and its sums are fp64_order.h's d_madd and d_sum -- the same steps as
// PlainArithmetic<double>, written once with the device FP64 kernels, which call them too.
struct Fp64Policy : PlainArithmetic<double> {
  using T = double;
  using Acc = double;
  static constexpr const char* kName = "fp64";

  static T store(Acc x) { return x; }
  static T operand(T x) { return x; }
  static Acc madd(Acc a, Acc b, Acc acc) { return d_madd(a, b, acc); }
  template <class F>
  static Acc sum(int64_t n, F&& f) {
    return d_sum(static_cast<long long>(n), [&](long long i) { return f(static_cast<int64_t>(i)); });
  }
};

}  // namespace divscope

#include "reference/mode_policies.h"

namespace divscope {

#define DIVSCOPE_REFERENCE_POLICIES(X) \
  X(Fp64Policy) X(Fp32Policy) X(Tf32Policy) X(Fp16Policy) X(Bf16Policy) X(StrictPolicy)

}  // namespace divscope
