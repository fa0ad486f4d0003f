// concat, slice, expand (contract, model format v2): data movement, one thread per output element
// (grid-stride) reading its one source. Values are copied, never rounded, so every mode is exact
// and the same kernels serve double (fp64) and float (every other mode).
//   concat: x viewed as [outer, d_k, inner] around the axis; one launch per input writes its
//     block of y [outer, D, inner] at offset sum(d_j, j < k).
//   slice:  y[o][k][r] = x[o][start + k*step][r].
//   expand: x broadcast to the output shape (kernels/broadcast.cuh's GatherMap): a size-1 dim of x,
//     the batch dim of a constant included, repeats.
#include <algorithm>

#include "kernels/broadcast.cuh"
#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

using namespace broadcast_detail;

constexpr int kBlock = 256;
constexpr long long kMaxBlocks = 8192;   // grid-stride cap, see relu_gelu_add.cu

int grid_for(int64_t n) { return static_cast<int>(std::min<long long>(ceil_div(n, kBlock), kMaxBlocks)); }

// Input block [outer, d, inner] into y [outer, D, inner] at dim offset `at`.
template <class T>
__global__ void concat_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, int64_t d,
                              int64_t inner, int64_t D, int64_t at) {
  const int64_t row = d * inner;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[(i / row) * D * inner + at * inner + i % row] = x[i];
}

template <class T>
__global__ void slice_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, int64_t dim,
                             int64_t out_dim, int64_t inner, int64_t start, int64_t step) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i % inner, k = (i / inner) % out_dim, o = i / (inner * out_dim);
    y[i] = x[(o * dim + start + k * step) * inner + r];
  }
}

template <class T>
__global__ void expand_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n,
                              GatherMap<1> g) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1];
    gather_offsets(g, i, off);
    y[i] = x[off[0]];
  }
}

struct AxisSplit3 {
  int64_t outer = 1, inner = 1;
};
AxisSplit3 around(const std::vector<int64_t>& s, int64_t axis) {
  AxisSplit3 a;
  for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) {
    if (d < axis) a.outer *= s[d];
    if (d > axis) a.inner *= s[d];
  }
  return a;
}

template <class T>
void launch_concat(const std::vector<std::vector<int64_t>>& shapes, const std::vector<const void*>& in,
                   int64_t axis, int64_t D, void* y, const std::string& layer) {
  int64_t at = 0;
  for (size_t k = 0; k < shapes.size(); ++k) {
    const AxisSplit3 a = around(shapes[k], axis);
    const int64_t d = shapes[k][axis], n = a.outer * d * a.inner;
    if (n > 0) {
      concat_kernel<<<grid_for(n), kBlock>>>(static_cast<const T*>(in[k]), static_cast<T*>(y), n,
                                             d, a.inner, D, at);
      check_launch("concat_kernel", layer);
    }
    at += d;
  }
}

}  // namespace

void concat(Mode mode, const std::vector<std::vector<int64_t>>& in_shapes,
            const std::vector<const void*>& in, int64_t axis, void* y, const std::string& layer) {
  if (in_shapes.empty() || in_shapes.size() != in.size())
    throw RuntimeFault("concat: " + std::to_string(in.size()) + " inputs with " +
                       std::to_string(in_shapes.size()) + " shapes (layer '" + layer + "')");
  const std::vector<int64_t>& first = in_shapes[0];
  const int64_t rank = static_cast<int64_t>(first.size());
  if (axis < 0 || axis >= rank) throw RuntimeFault("concat: bad axis (layer '" + layer + "')");
  int64_t D = 0;
  for (const auto& s : in_shapes) {
    bool same = static_cast<int64_t>(s.size()) == rank;
    for (int64_t d = 0; same && d < rank; ++d) same = d == axis || s[d] == first[d];
    if (!same) throw RuntimeFault("concat: input shapes differ off the axis (layer '" + layer + "')");
    D += s[axis];
  }
  if (mode == Mode::fp64)
    launch_concat<double>(in_shapes, in, axis, D, y, layer);
  else
    launch_concat<float>(in_shapes, in, axis, D, y, layer);
}

void slice(Mode mode, const std::vector<int64_t>& x_shape, int64_t axis, int64_t start,
           int64_t step, int64_t out_dim, const void* x, void* y, const std::string& layer) {
  const int64_t rank = static_cast<int64_t>(x_shape.size());
  if (axis < 0 || axis >= rank || step < 1 || start < 0 || out_dim < 0 ||
      (out_dim > 0 && start + (out_dim - 1) * step >= x_shape[axis]))
    throw RuntimeFault("slice: bad axis/start/step (layer '" + layer + "')");
  const AxisSplit3 a = around(x_shape, axis);
  const int64_t n = a.outer * out_dim * a.inner;
  if (n == 0) return;
  if (mode == Mode::fp64)
    slice_kernel<<<grid_for(n), kBlock>>>(static_cast<const double*>(x), static_cast<double*>(y), n,
                                          x_shape[axis], out_dim, a.inner, start, step);
  else
    slice_kernel<<<grid_for(n), kBlock>>>(static_cast<const float*>(x), static_cast<float*>(y), n,
                                          x_shape[axis], out_dim, a.inner, start, step);
  check_launch("slice_kernel", layer);
}

void expand(Mode mode, const std::vector<int64_t>& x_shape, const std::vector<int64_t>& out_shape,
            const void* x, void* y, const std::string& layer) {
  const std::vector<int64_t>* const shapes[1] = {&x_shape};
  int64_t n = 0;
  const GatherMap<1> g = make_gather_map<1>("expand", out_shape, shapes, n, layer);
  if (n == 0) return;
  if (mode == Mode::fp64)
    expand_kernel<<<grid_for(n), kBlock>>>(static_cast<const double*>(x), static_cast<double*>(y), n, g);
  else
    expand_kernel<<<grid_for(n), kBlock>>>(static_cast<const float*>(x), static_cast<float*>(y), n, g);
  check_launch("expand_kernel", layer);
}

}  // namespace divscope
