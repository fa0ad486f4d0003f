// embedding (docs/ops.md): y[i][d] = weight[idx[i]][d]. Indices arrive as values of the mode's
// element type (the int64 graph input converted, as on the CPU); each must be an integer in
// [0, V) -- the CPU reference's test, v >= 0 && v < V && floor(v) == v, which NaN fails.
// One pass: every thread gathers its outputs and remembers the smallest flat index position it
// saw rejected; each block reduces those to one value (a fixed shared-memory tree, no atomics),
// and the host takes the minimum over the blocks and throws InputError for it. A gather moves
// values without rounding, so every mode is exact.
#include <algorithm>
#include <sstream>

#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

constexpr int kBlock = 256;
constexpr long long kMaxBlocks = 8192;   // grid-stride cap, see relu_gelu_add.cu

template <class T>
__global__ void embedding_kernel(const T* __restrict__ idx, const T* __restrict__ w,
                                 T* __restrict__ y, int64_t n, int64_t V, int64_t D,
                                 int64_t* __restrict__ block_bad) {
  __shared__ int64_t s[kBlock];
  int64_t bad = n;   // "none"
  const int64_t total = n * D;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / D, d = e - i * D;
    const double v = static_cast<double>(idx[i]);
    if (v >= 0 && v < static_cast<double>(V) && floor(v) == v) {
      y[e] = w[static_cast<int64_t>(v) * D + d];
    } else {
      y[e] = T(NAN);
      bad = min(bad, i);
    }
  }
  const int t = static_cast<int>(threadIdx.x);
  s[t] = bad;
  for (int w2 = kBlock / 2; w2 > 0; w2 /= 2) {
    __syncthreads();
    if (t < w2) s[t] = min(s[t], s[t + w2]);
  }
  if (t == 0) block_bad[blockIdx.x] = s[0];
}

template <class T>
void launch(int64_t n, int64_t V, int64_t D, const void* idx, const void* w, void* y,
            const std::string& layer) {
  const int blocks = static_cast<int>(std::min<long long>(ceil_div(n * D, kBlock), kMaxBlocks));
  DeviceBuffer<int64_t> block_bad(static_cast<size_t>(blocks), layer + " index check");
  embedding_kernel<T><<<blocks, kBlock>>>(static_cast<const T*>(idx), static_cast<const T*>(w),
                                          static_cast<T*>(y), n, V, D, block_bad.get());
  check_launch("embedding_kernel", layer);
  std::vector<int64_t> bad(static_cast<size_t>(blocks));
  copy_to_host(bad.data(), block_bad.get(), bad.size() * sizeof(int64_t), layer);
  const int64_t first = *std::min_element(bad.begin(), bad.end());
  if (first >= n) return;
  T v{};
  copy_to_host(&v, static_cast<const T*>(idx) + first, sizeof(T), layer);
  std::ostringstream msg;
  msg.precision(17);
  msg << "layer '" << layer << "': index " << static_cast<double>(v) << " at flat position "
      << first << " is not an integer in [0, " << V << ")";
  throw InputError(msg.str());
}

}  // namespace

void embedding(Mode mode, int64_t n, int64_t V, int64_t D, const void* idx, const void* weight,
               void* y, const std::string& layer) {
  if (n <= 0 || D <= 0) return;
  if (mode == Mode::fp64)
    launch<double>(n, V, D, idx, weight, y, layer);
  else
    launch<float>(n, V, D, idx, weight, y, layer);
}

}  // namespace divscope
