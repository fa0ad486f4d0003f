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
// Cache blocking (k blocks outermost, B panel packed) never changes the order of any
// output's sum: each output owns one accumulator that sees k strictly ascending.
template <class P>
void gemm(int64_t M, int64_t N, int64_t K, MatView<typename P::T> a, MatView<typename P::T> b,
          MatView<typename P::T> bias, typename P::T* c, int64_t ldc);

}  // namespace divscope
