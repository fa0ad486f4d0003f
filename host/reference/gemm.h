// The one GEMM core of the CPU reference (linear, matmul, conv2d, conv_transpose2d, attention).
#pragma once
#include <cstdint>

namespace divscope {

// A strided matrix: element (i, j) is p[i * rs + j * cs].
template <class T>
struct MatView {
  const T* p = nullptr;
  int64_t rs = 0, cs = 0;
  T operator()(int64_t i, int64_t j) const { return p[i * rs + j * cs]; }
};

// C[m * ldc + n] = P::store(P::add(dot(m, n), bias(m, n)))   for m < M, n < N, where
//   dot(m, n): acc = 0; for k = 0, 1, ..., K-1: acc = P::madd(P::operand(a(m, k)),
//                                                             P::operand(b(k, n)), acc)
// and the bias add is skipped when bias.p is null (a broadcast bias has rs or cs 0).
// Cache blocking, the SIMD kernels (gemm_kernels.h: each lane does exactly P::madd) and the
// threads (each owns whole outputs) never change any output's value: its one accumulator,
// parked in c between k blocks, sees k strictly ascending. c must not overlap a, b or bias.
template <class P>
void gemm(int64_t M, int64_t N, int64_t K, MatView<typename P::T> a, MatView<typename P::T> b,
          MatView<typename P::T> bias, typename P::T* c, int64_t ldc);

}  // namespace divscope
