// The broadcasting of add (kernels/relu_gelu_add.cu), mul (kernels/activations_mul.cu) and the
// binary ops of kernels/binary_where.cu: one rule, one index map, one grid-stride kernel; each op
// brings only its per-element functor. GatherMap is the same rule for K inputs against a given
// output shape (where: three inputs; expand: one).
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace broadcast_detail {

struct Broadcast {
  int rank = 0;
  int64_t out[kMaxBroadcastRank] = {};   // output shape
  int64_t sa[kMaxBroadcastRank] = {};    // element strides of a, 0 along a broadcast dim
  int64_t sb[kMaxBroadcastRank] = {};
};

// The index map of a_shape op b_shape (equal ranks, each dim equal or 1 on one side); n gets the
// output's element count. Errors name `op` and the layer.
inline Broadcast make_broadcast(const char* op, const std::vector<int64_t>& a_shape,
                                const std::vector<int64_t>& b_shape, int64_t& n,
                                const std::string& layer) {
  const int rank = static_cast<int>(a_shape.size());
  if (rank != static_cast<int>(b_shape.size()) || rank > kMaxBroadcastRank)
    throw RuntimeFault(std::string(op) + ": ranks " + std::to_string(a_shape.size()) + " and " +
                       std::to_string(b_shape.size()) + " not supported (layer '" + layer + "')");
  Broadcast bc;
  bc.rank = rank;
  int64_t stride_a = 1, stride_b = 1;
  n = 1;
  for (int d = rank - 1; d >= 0; --d) {
    if (a_shape[d] != b_shape[d] && a_shape[d] != 1 && b_shape[d] != 1)
      throw RuntimeFault(std::string(op) + ": shapes do not broadcast (layer '" + layer + "')");
    bc.out[d] = std::max(a_shape[d], b_shape[d]);
    bc.sa[d] = a_shape[d] == 1 ? 0 : stride_a;
    bc.sb[d] = b_shape[d] == 1 ? 0 : stride_b;
    stride_a *= a_shape[d];
    stride_b *= b_shape[d];
    n *= bc.out[d];
  }
  if (a_shape == b_shape) {   // no broadcast: one flat dimension, no index arithmetic
    bc.rank = 1;
    bc.out[0] = n;
    bc.sa[0] = bc.sb[0] = 1;
  }
  return bc;
}

// y[i] = op(a[ia], b[ib]) with (ia, ib) the broadcast sources of output element i.
template <class T, class Op>
__global__ void broadcast_kernel(const T* __restrict__ a, const T* __restrict__ b,
                                 T* __restrict__ y, int64_t n, Broadcast bc, Op op) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t ia = 0, ib = 0, rem = i;
    for (int d = bc.rank - 1; d >= 0; --d) {
      const int64_t idx = rem % bc.out[d];
      rem /= bc.out[d];
      ia += idx * bc.sa[d];
      ib += idx * bc.sb[d];
    }
    y[i] = op(a[ia], b[ib]);
  }
}

// K inputs broadcast to `out` (same rank; each input dim equal to the output's or 1).
template <int K>
struct GatherMap {
  int rank = 0;
  int64_t out[kMaxBroadcastRank] = {};
  int64_t s[K][kMaxBroadcastRank] = {};   // element strides of input k, 0 along a broadcast dim
};

// Errors name `op` and the layer; n gets the output's element count.
template <int K>
GatherMap<K> make_gather_map(const char* op, const std::vector<int64_t>& out,
                             const std::vector<int64_t>* const (&in)[K], int64_t& n,
                             const std::string& layer) {
  const int rank = static_cast<int>(out.size());
  bool ok = rank <= kMaxBroadcastRank;
  for (int k = 0; k < K; ++k) ok = ok && static_cast<int>(in[k]->size()) == rank;
  if (!ok)
    throw RuntimeFault(std::string(op) + ": rank " + std::to_string(rank) +
                       " or input ranks not supported (layer '" + layer + "')");
  GatherMap<K> g;
  g.rank = rank;
  n = 1;
  for (int d = 0; d < rank; ++d) g.out[d] = out[d];
  for (int k = 0; k < K; ++k) {
    int64_t stride = 1;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t dim = (*in[k])[d];
      if (dim != out[d] && dim != 1)
        throw RuntimeFault(std::string(op) + ": shapes do not broadcast (layer '" + layer + "')");
      g.s[k][d] = dim == 1 ? 0 : stride;
      stride *= dim;
    }
  }
  for (int d = 0; d < rank; ++d) n *= out[d];
  return g;
}

// The source offsets of output element i, one per input.
template <int K>
__device__ void gather_offsets(const GatherMap<K>& g, int64_t i, int64_t (&off)[K]) {
  for (int k = 0; k < K; ++k) off[k] = 0;
  for (int d = g.rank - 1; d >= 0; --d) {
    const int64_t idx = i % g.out[d];
    i /= g.out[d];
    for (int k = 0; k < K; ++k) off[k] += idx * g.s[k][d];
  }
}

}  // namespace broadcast_detail
}  // namespace divscope
