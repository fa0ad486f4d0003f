// Shape ops (docs/ops.md): reshape/flatten (a device copy: row-major order is unchanged) and
// permute (one thread per output element gathers its source). Values are moved, never rounded,
// so every mode is exact.
#include <algorithm>

#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

constexpr int kBlock = 256;
constexpr long long kMaxBlocks = 8192;   // grid-stride cap, see relu_gelu_add.cu

struct Permutation {
  int rank = 0;
  int64_t out[kMaxBroadcastRank] = {};    // output shape
  int64_t step[kMaxBroadcastRank] = {};   // stride in x of output dim d: x stride of dims[d]
};

template <class T>
__global__ void permute_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, Permutation p) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t src = 0, rem = i;
    for (int d = p.rank - 1; d >= 0; --d) {
      src += (rem % p.out[d]) * p.step[d];
      rem /= p.out[d];
    }
    y[i] = x[src];
  }
}

}  // namespace

void reshape_copy(Mode mode, int64_t n, const void* x, void* y, const std::string& layer) {
  if (n <= 0) return;
  copy_on_device(y, x, static_cast<size_t>(n) * (mode == Mode::fp64 ? sizeof(double) : sizeof(float)),
                 layer);
}

void permute(Mode mode, const std::vector<int64_t>& x_shape, const std::vector<int64_t>& dims,
             const void* x, void* y, const std::string& layer) {
  const int rank = static_cast<int>(x_shape.size());
  if (rank > kMaxBroadcastRank || static_cast<int>(dims.size()) != rank)
    throw RuntimeFault("permute: rank " + std::to_string(rank) + " with " +
                       std::to_string(dims.size()) + " dims not supported (layer '" + layer + "')");
  Permutation p;
  p.rank = rank;
  std::vector<int64_t> stride(rank, 1);
  for (int d = rank - 2; d >= 0; --d) stride[d] = stride[d + 1] * x_shape[d + 1];
  std::vector<bool> seen(rank, false);
  int64_t n = 1;
  for (int d = 0; d < rank; ++d) {
    const int64_t s = dims[d];
    if (s < 0 || s >= rank || seen[s])
      throw RuntimeFault("permute: dims is not a permutation (layer '" + layer + "')");
    seen[s] = true;
    p.out[d] = x_shape[s];
    p.step[d] = stride[s];
    n *= x_shape[s];
  }
  if (n == 0) return;
  const int blocks = static_cast<int>(std::min<long long>(ceil_div(n, kBlock), kMaxBlocks));
  if (mode == Mode::fp64)
    permute_kernel<<<blocks, kBlock>>>(static_cast<const double*>(x), static_cast<double*>(y), n, p);
  else
    permute_kernel<<<blocks, kBlock>>>(static_cast<const float*>(x), static_cast<float*>(y), n, p);
  check_launch("permute_kernel", layer);
}

}  // namespace divscope
