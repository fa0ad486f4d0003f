// How one block reduces one row (kernels/batchnorm_layernorm.cu, groupnorm_rmsnorm.cu,
// softmax.cu, avgpool_upsample.cu's global_avgpool2d).
//
// RowOrder<false>, the §5.1 order (strict, and the fp32-family modes): 256 threads, thread j =
// lane j of docs/ops.md, Precision modes: strict reductions: each thread folds its own elements
// j, j+256, ... in index order, then the 256 partials are combined in shared memory with the
// pairing of strict_tree_reduce -- interleaved addressing, p[i] = op(p[i], p[i+w]) for i a
// multiple of 2w, w = 1, 2, ..., 128. No warp shuffles: the usual halving tree (p[i] += p[i+128])
// pairs different elements and would not reproduce the CPU's bits. (Only strict needs it; for
// fp32/tf32/fp16/bf16 it makes every run bit-identical at no cost.)
//
// RowOrder<true>, the CPU FP64 reference's order (fp64): one warp per row; lane 0 folds the
// elements 0, 1, ..., n-1 from the identity (host/fp64_order.h d_sum for sums: left to right,
// unfused), the other lanes wait and then share the per-element work. A left-to-right sum is
// sequential, so the row's statistics take n dependent adds (~4 cycles each); rows run in
// parallel, up to 32 warps of this kind per SM. That is the price of a device reference that
// equals the CPU's bit for bit instead of drifting from it by the tree's rounding, which with
// cancellation (layernorm on 1e6 + N(0, 1), D = 4096) reached 1.7e-9.
#pragma once
#include "host/fp64_order.h"
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

// reduce(n, init, op, elem, s): op-fold of elem(0..n-1) from init in the order above, returned
// in every thread of the block; every thread must call it. kThreads is the block size the
// kernel is launched with, and the stride of its per-element loops.
template <bool kSerial>
struct RowOrder;

template <>
struct RowOrder<false> {
  static constexpr int kThreads = kRowBlock;
  template <class T, class Op, class F>
  __device__ static T reduce(int64_t n, T init, Op op, F elem, T* s) {
    T acc = init;
    for (int64_t i = threadIdx.x; i < n; i += kThreads) acc = op(acc, elem(i));
    return row_tree_reduce(acc, s, op);
  }
};

template <>
struct RowOrder<true> {
  static constexpr int kThreads = 32;   // one warp
  template <class T, class Op, class F>
  __device__ static T reduce(int64_t n, T init, Op op, F elem, T*) {
    T acc = init;
    if (threadIdx.x == 0)
      for (int64_t i = 0; i < n; ++i) acc = op(acc, elem(i));
    return __shfl_sync(0xffffffffu, acc, 0);
  }
};

// Row arithmetic of one mode. fp64: d_add (fp64_order.h, the CPU reference's rounding);
// fp32/tf32/fp16/bf16: float, each operation one RN rounding (kernels are compiled with
// --fmad=false); strict: the s_* roundings of strict_math.h.
struct PlainAdd {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct F64Add {
  __device__ double operator()(double a, double b) const { return d_add(a, b); }
};
struct StrictAdd {
  __device__ float operator()(float a, float b) const { return s_add(a, b); }
};
// Max that lets NaN win, as the CPU reference's scan does (from -inf, the scan's result from
// x[0] too: -inf is below every other value and loses to a NaN).
struct NanMax {
  template <class T>
  __device__ T operator()(T m, T v) const { return (v > m || v != v) ? v : m; }
};
struct StrictMax {
  __device__ float operator()(float m, float v) const { return strict_max_step(m, v); }
};

}  // namespace divscope
