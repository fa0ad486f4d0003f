// maxpool2d (docs/ops.md): PyTorch's window geometry with padding, dilation and ceil_mode (the op
// table folds ceil_mode into OH/OW). One thread per output; taps outside x are skipped (padding
// is -inf), taps are visited in the CPU reference's order (row, then column) with the same
// NaN-wins step, so every mode -- a max never rounds -- matches the CPU bit for bit.
#include <algorithm>

#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

constexpr int kBlock = 256;
constexpr long long kMaxBlocks = 8192;   // grid-stride cap, see relu_gelu_add.cu

template <class T>
__global__ void maxpool2d_kernel(Pool2dDesc d, const T* __restrict__ x, T* __restrict__ y,
                                 int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ox = i % d.OW, oy = (i / d.OW) % d.OH, plane = i / (d.OW * d.OH);
    const T* xp = x + plane * d.H * d.W;
    T m = -T(INFINITY);
    for (int64_t ky = 0; ky < d.kh; ++ky) {
      const int64_t iy = oy * d.stride_h - d.pad_h + ky * d.dil_h;
      if (iy < 0 || iy >= d.H) continue;
      for (int64_t kx = 0; kx < d.kw; ++kx) {
        const int64_t ix = ox * d.stride_w - d.pad_w + kx * d.dil_w;
        if (ix < 0 || ix >= d.W) continue;
        const T v = xp[iy * d.W + ix];
        if (v > m || v != v) m = v;
      }
    }
    y[i] = m;
  }
}

}  // namespace

void maxpool2d(Mode mode, const Pool2dDesc& d, const void* x, void* y, const std::string& layer) {
  if (d.kh < 1 || d.kw < 1 || d.stride_h < 1 || d.stride_w < 1 || d.dil_h < 1 || d.dil_w < 1 ||
      d.pad_h < 0 || d.pad_w < 0)
    throw RuntimeFault("maxpool2d: bad window geometry (layer '" + layer + "')");
  const int64_t n = d.N * d.C * d.OH * d.OW;
  if (n == 0) return;
  const int blocks = static_cast<int>(std::min<long long>(ceil_div(n, kBlock), kMaxBlocks));
  if (mode == Mode::fp64)
    maxpool2d_kernel<<<blocks, kBlock>>>(d, static_cast<const double*>(x), static_cast<double*>(y), n);
  else
    maxpool2d_kernel<<<blocks, kBlock>>>(d, static_cast<const float*>(x), static_cast<float*>(y), n);
  check_launch("maxpool2d_kernel", layer);
}

}  // namespace divscope
