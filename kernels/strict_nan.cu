// The one NaN of strict outputs (host/strict_math.h strict_canonical; docs/ops.md, Precision
// modes: NaN): every NaN of a strict layer's output becomes kStrictNanBits, as the CPU strict
// path's does (mode_forward). One read per element and a write only where there is a NaN: a
// layer without NaN costs one pass of reads.
#include <algorithm>

#include "host/strict_math.h"
#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

constexpr int kBlock = 256;
constexpr long long kMaxBlocks = 8192;   // grid-stride cap, see relu_gelu_add.cu

__global__ void canonical_nan_kernel(float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = y[i];
    if (v != v) y[i] = strict_canonical(v);
  }
}

}  // namespace

void strict_canonical_nan(void* y, int64_t n, const std::string& layer) {
  if (n <= 0) return;
  const int blocks = static_cast<int>(std::min<long long>((n + kBlock - 1) / kBlock, kMaxBlocks));
  canonical_nan_kernel<<<blocks, kBlock>>>(static_cast<float*>(y), n);
  check_launch("canonical_nan_kernel", layer);
}

}  // namespace divscope
