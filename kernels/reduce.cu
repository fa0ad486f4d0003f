// reduce_mean, reduce_sum, reduce_max over a set of axes (contract, model format v2).
//
// x is split into kept dims (which index the outputs, in order) and reduced dims; the R reduced
// elements of one output are numbered row-major over the reduced dims -- the CPU reference's
// order. Runs of adjacent dims of the same kind are merged first (a run is contiguous in x), so a
// reduction over trailing dims costs no index arithmetic per element.
//   R < kRowBlock, and fp64 at any R: one thread per output. Non-strict modes sum left to right
//     from 0 (the CPU's order: fp32 and fp64 match it bitwise -- fp64 must, so that the device
//     FP64 reference equals the CPU's, docs/ops.md, FP64 on a device); strict calls strict_reduce
//     itself (the §5.1 lanes and tree, per thread: R is small).
//   otherwise: one block of kRowBlock threads per output, thread j = lane j of §5.1, the partials
//     combined by row_tree_reduce (kernels/row_reduce.cuh) -- the strict order, used by every
//     float mode as global_avgpool2d does.
// fp16/bf16 accumulate in float and round once at the end; mean is sum / R (strict: s_div).
// max lets NaN win (NanMax; strict: strict_max_step and strict_max_finish, whose result does not
// depend on the visiting order) and never rounds.
#include <algorithm>
#include <type_traits>

#include "host/strict_math.h"
#include "kernels/device.cuh"
#include "kernels/kernels.h"
#include "kernels/row_reduce.cuh"

namespace divscope {
namespace {

constexpr int kBlock = 256;
constexpr long long kMaxBlocks = 8192;         // grid-stride cap, see relu_gelu_add.cu
constexpr long long kMaxRowBlocks = 1 << 20;   // outputs beyond this loop inside the block

struct ReduceMap {
  int kept_rank = 0, red_rank = 0;
  int64_t kept_dim[kMaxBroadcastRank] = {}, kept_stride[kMaxBroadcastRank] = {};
  int64_t red_dim[kMaxBroadcastRank] = {}, red_stride[kMaxBroadcastRank] = {};
  int64_t outputs = 1, R = 1;

  __device__ int64_t base(int64_t o) const {   // offset in x of output o's first element
    int64_t off = 0;
    for (int d = kept_rank - 1; d >= 0; --d) {
      off += (o % kept_dim[d]) * kept_stride[d];
      o /= kept_dim[d];
    }
    return off;
  }
  __device__ int64_t offset(int64_t r) const {   // of reduced element r from the base
    if (red_rank == 1) return r * red_stride[0];
    int64_t off = 0;
    for (int d = red_rank - 1; d >= 0; --d) {
      off += (r % red_dim[d]) * red_stride[d];
      r /= red_dim[d];
    }
    return off;
  }
};

// Element r of one output's reduction, for strict_reduce.
template <class T>
struct ReducedElem {
  const T* x;
  const ReduceMap* map;
  __device__ float operator()(long long r) const { return x[map->offset(r)]; }
};

// Per mode and op: the combine step, its identity and the final step.
template <class T>
struct PlainSum {
  using Op = PlainAdd;
  static constexpr bool kMax = false;
  Mode m;
  bool mean;
  __device__ T init() const { return T(0); }
  __device__ T finish(T s, int64_t R) const {
    const T y = mean ? s / static_cast<T>(R) : s;
    return sizeof(T) == 4 ? T(round_storage(m, float(y))) : y;
  }
};
struct StrictSum {
  using Op = StrictAdd;
  static constexpr bool kMax = false;
  Mode m;
  bool mean;
  __device__ float init() const { return 0.0f; }
  __device__ float finish(float s, int64_t R) const {
    return mean ? strict_mean_of_sum(s, R) : s;
  }
};
template <class T>
struct PlainMax {
  using Op = NanMax;
  static constexpr bool kMax = true;
  Mode m;
  bool mean;
  __device__ T init() const { return -T(INFINITY); }
  __device__ T finish(T v, int64_t) const { return v; }
};
struct StrictMaxOp {
  using Op = StrictMax;
  static constexpr bool kMax = true;
  Mode m;
  bool mean;
  __device__ float init() const { return -s_inf(); }
  __device__ float finish(float v, int64_t) const { return strict_max_finish(v); }
};

template <class T, class F, bool kStrictSum>
__global__ void reduce_thread_kernel(F f, const T* __restrict__ x, T* __restrict__ y,
                                     ReduceMap map) {
  const typename F::Op op;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < map.outputs;
       o += int64_t(gridDim.x) * blockDim.x) {
    const T* xo = x + map.base(o);
    T acc = f.init();
    if constexpr (kStrictSum) {
      acc = strict_reduce(map.R, ReducedElem<T>{xo, &map});
    } else {
      for (int64_t r = 0; r < map.R; ++r) acc = op(acc, xo[map.offset(r)]);
    }
    y[o] = f.finish(acc, map.R);
  }
}

template <class T, class F>
__global__ void reduce_block_kernel(F f, const T* __restrict__ x, T* __restrict__ y,
                                    ReduceMap map) {
  __shared__ T s[kRowBlock];
  const typename F::Op op;
  const int lane = static_cast<int>(threadIdx.x);
  for (int64_t o = blockIdx.x; o < map.outputs; o += gridDim.x) {
    const T* xo = x + map.base(o);
    T acc = f.init();
    for (int64_t r = lane; r < map.R; r += kRowBlock) acc = op(acc, xo[map.offset(r)]);
    const T total = row_tree_reduce(acc, s, op);
    if (lane == 0) y[o] = f.finish(total, map.R);
  }
}

template <class T, class F>
void launch_reduce(F f, const ReduceMap& map, const void* x, void* y, const std::string& layer) {
  const T* xt = static_cast<const T*>(x);
  T* yt = static_cast<T*>(y);
  constexpr bool kStrictSum = std::is_same<F, StrictSum>::value;
  if (map.R < kRowBlock || sizeof(T) == 8) {
    const int blocks = static_cast<int>(std::min<long long>(ceil_div(map.outputs, kBlock), kMaxBlocks));
    reduce_thread_kernel<T, F, kStrictSum><<<blocks, kBlock>>>(f, xt, yt, map);
    check_launch(F::kMax ? "reduce_max_thread_kernel" : "reduce_sum_thread_kernel", layer);
  } else {
    const int blocks = static_cast<int>(std::min<long long>(map.outputs, kMaxRowBlocks));
    reduce_block_kernel<T, F><<<blocks, kRowBlock>>>(f, xt, yt, map);
    check_launch(F::kMax ? "reduce_max_block_kernel" : "reduce_sum_block_kernel", layer);
  }
}

// Kept and reduced dims of x, adjacent dims of one kind merged.
ReduceMap make_map(const std::vector<int64_t>& xs, const std::vector<int64_t>& axes,
                   const std::string& layer) {
  const int rank = static_cast<int>(xs.size());
  if (rank > kMaxBroadcastRank || axes.empty())
    throw RuntimeFault("reduce: rank " + std::to_string(rank) + " with " +
                       std::to_string(axes.size()) + " axes not supported (layer '" + layer + "')");
  std::vector<bool> reduced(rank, false);
  for (int64_t a : axes) {
    if (a < 0 || a >= rank || reduced[a])
      throw RuntimeFault("reduce: bad axes (layer '" + layer + "')");
    reduced[a] = true;
  }
  ReduceMap map;
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; --d) {   // walk from the last dim, merging runs
    const bool same_run = d < rank - 1 && reduced[d] == reduced[d + 1];
    int& n = reduced[d] ? map.red_rank : map.kept_rank;
    int64_t* dims = reduced[d] ? map.red_dim : map.kept_dim;
    int64_t* strides = reduced[d] ? map.red_stride : map.kept_stride;
    if (same_run) {
      dims[n - 1] *= xs[d];
    } else {
      dims[n] = xs[d];
      strides[n] = stride;
      ++n;
    }
    stride *= xs[d];
    (reduced[d] ? map.R : map.outputs) *= xs[d];
  }
  std::reverse(map.red_dim, map.red_dim + map.red_rank);   // collected last dim first
  std::reverse(map.red_stride, map.red_stride + map.red_rank);
  std::reverse(map.kept_dim, map.kept_dim + map.kept_rank);
  std::reverse(map.kept_stride, map.kept_stride + map.kept_rank);
  return map;
}

}  // namespace

void reduce(Mode mode, ReduceOp op, const std::vector<int64_t>& x_shape,
            const std::vector<int64_t>& axes, const void* x, void* y, const std::string& layer) {
  const ReduceMap map = make_map(x_shape, axes, layer);
  if (map.outputs == 0) return;
  if (map.R == 0)
    throw RuntimeFault("reduce: empty reduction (layer '" + layer + "')");
  const bool mean = op == ReduceOp::mean;
  if (op == ReduceOp::max) {
    if (mode == Mode::fp64) return launch_reduce<double>(PlainMax<double>{mode, false}, map, x, y, layer);
    if (mode == Mode::strict) return launch_reduce<float>(StrictMaxOp{mode, false}, map, x, y, layer);
    return launch_reduce<float>(PlainMax<float>{mode, false}, map, x, y, layer);
  }
  if (mode == Mode::fp64) return launch_reduce<double>(PlainSum<double>{mode, mean}, map, x, y, layer);
  if (mode == Mode::strict) return launch_reduce<float>(StrictSum{mode, mean}, map, x, y, layer);
  launch_reduce<float>(PlainSum<float>{mode, mean}, map, x, y, layer);
}

}  // namespace divscope
