// The FP64 reference's arithmetic, written once for the CPU reference (host/reference/policy.h,
// Fp64Policy) and the device FP64 kernels (kernels/gemm_tiles.cuh, kernels/row_reduce.cuh), so
// that the device reference equals the CPU's bit for bit wherever no libm function is involved
// (docs/ops.md, FP64 on a device). Each step is one IEEE RN rounding: plain operators on the
// host (compiled with -ffp-contract=off), __dadd_rn/__dmul_rn on the device, which no compiler
// flag may fuse into an fma.
#pragma once

#include "precision.h"

namespace divscope {

DS_HD inline double d_add(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
DS_HD inline double d_mul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// One dot-product step: the product rounded, then the sum rounded -- never an fma (a fused step
// differs from this one by up to half an ulp of the product, which cancellation turns into any
// relative error of the result).
DS_HD inline double d_madd(double a, double b, double acc) { return d_add(d_mul(a, b), acc); }

// elem(0) + elem(1) + ... + elem(n-1), left to right from +0.0: the order of every FP64 sum
// (norm statistics, softmax denominators, pools, reduce_*). Inherently sequential: a kernel
// gives it to one thread per row (kernels/row_reduce.cuh, RowOrder<true>).
template <class F>
DS_HD inline double d_sum(long long n, F elem) {
  double s = 0.0;
  for (long long i = 0; i < n; ++i) s = d_add(s, elem(i));
  return s;
}

}  // namespace divscope
