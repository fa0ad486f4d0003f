// The §5.1 reduction of one row by one block (kernels/batchnorm_layernorm.cu, kernels/softmax.cu).
//
// 256 threads, thread j = lane j of docs/ops.md, Precision modes: strict reductions: each thread folds its own elements j, j+256, ...
// in index order, then the 256 partials are combined in shared memory with the pairing of
// strict_tree_reduce -- interleaved addressing, p[i] = op(p[i], p[i+w]) for i a multiple of 2w,
// w = 1, 2, ..., 128. No warp shuffles: the usual halving tree (p[i] += p[i+128]) pairs different
// elements and would not reproduce the CPU's bits. Every mode uses this order (only strict needs
// it; for the others it makes every run bit-identical at no cost).
#pragma once
#include "host/strict_math.h"

namespace divscope {

constexpr int kRowBlock = kStrictLanes;   // one thread per lane

// All kRowBlock threads must call it (it synchronizes); returns the reduced value in every
// thread. `s` is a shared array of kRowBlock elements, free again when this returns.
template <class T, class Op>
__device__ T row_tree_reduce(T v, T* s, Op op) {
  const int j = static_cast<int>(threadIdx.x);
  s[j] = v;
  for (int w = 1; w < kRowBlock; w *= 2) {
    __syncthreads();
    if (j % (2 * w) == 0) s[j] = op(s[j], s[j + w]);
  }
  __syncthreads();
  const T r = s[0];
  __syncthreads();   // the caller may reuse s at once
  return r;
}

// Row arithmetic of one mode. fp64: double; fp32/tf32/fp16/bf16: float (each operation one RN
// rounding: kernels are compiled with --fmad=false); strict: the s_* roundings of strict_math.h.
struct PlainAdd {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct StrictAdd {
  __device__ float operator()(float a, float b) const { return s_add(a, b); }
};
// Max that lets NaN win, as the CPU reference's scan does.
struct NanMax {
  template <class T>
  __device__ T operator()(T m, T v) const { return (v > m || v != v) ? v : m; }
};
struct StrictMax {
  __device__ float operator()(float m, float v) const { return strict_max_step(m, v); }
};

}  // namespace divscope
