// avgpool2d, adaptive_avgpool2d, global_avgpool2d, upsample_nearest2d (docs/ops.md, §5), matching
// host/reference/pool.cpp:
//   avgpool2d: one thread per output. The window [oy*sh - ph, + kh) x [ox*sw - pw, + kw) is
//     clipped to x and its elements summed in row-major order -- left to right in the non-strict
//     modes (the CPU's order, so fp32 and fp64 even match it bitwise), the §5.1 lanes and tree over
//     that order in strict (the shared strict_reduce itself, per thread: windows are small). The
//     divisor is the clipped window's size or, with count_include_pad, the window clipped to the
//     padded input [-ph, H + ph) x [-pw, W + pw).
//   global_avgpool2d: one block per plane, the §5.1 order in every mode but fp64, which sums
//     left to right as the CPU (kernels/row_reduce.cuh), then / (H*W).
//   adaptive_avgpool2d: as avgpool2d with PyTorch's adaptive windows, rows
//     [floor(oy*H/OH), ceil((oy+1)*H/OH)) (columns likewise), divided by the window's size.
//   upsample_nearest2d: a copy, y[oy][ox] = x[oy / fy][ox / fx]; exact in every mode.
#include <algorithm>

#include "host/strict_math.h"
#include "kernels/device.cuh"
#include "kernels/kernels.h"
#include "kernels/row_reduce.cuh"

namespace divscope {
namespace {

constexpr int kBlock = 256;
constexpr long long kMaxBlocks = 8192;          // grid-stride cap, see relu_gelu_add.cu
constexpr long long kMaxPlaneBlocks = 1 << 20;  // planes beyond this loop inside the block

int grid_for(int64_t n) { return static_cast<int>(std::min<long long>(ceil_div(n, kBlock), kMaxBlocks)); }

template <class T>
__device__ T store(Mode m, T y) {
  return sizeof(T) == 4 ? T(round_storage(m, float(y))) : y;
}

// Element i of a clipped window, row-major: x[(y0 + i / ww) * W + x0 + i % ww].
struct WindowElem {
  const float* x;
  long long W, y0, x0, ww;
  DS_HD float operator()(long long i) const { return x[(y0 + i / ww) * W + x0 + i % ww]; }
};

template <class T, bool kStrict>
__global__ void avgpool2d_kernel(Mode m, Pool2dDesc d, bool include_pad, const T* __restrict__ x,
                                 T* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ox = i % d.OW, oy = (i / d.OW) % d.OH, plane = i / (d.OW * d.OH);
    const T* xp = x + plane * d.H * d.W;
    int64_t y0 = oy * d.stride_h - d.pad_h, x0 = ox * d.stride_w - d.pad_w;
    int64_t y1 = min(y0 + d.kh, d.H + d.pad_h), x1 = min(x0 + d.kw, d.W + d.pad_w);
    const int64_t padded = (y1 - y0) * (x1 - x0);
    y0 = max(y0, int64_t(0));
    x0 = max(x0, int64_t(0));
    y1 = min(y1, d.H);
    x1 = min(x1, d.W);
    const int64_t ww = x1 - x0, count = (y1 - y0) * ww;
    const int64_t divisor = include_pad ? padded : count;
    if constexpr (kStrict) {
      const float s = strict_reduce(count, WindowElem{xp, d.W, y0, x0, ww});
      y[i] = s_div(s, static_cast<float>(divisor));
    } else {
      T s = T(0);
      for (int64_t r = y0; r < y1; ++r)
        for (int64_t c = x0; c < x1; ++c) s = s + xp[r * d.W + c];
      y[i] = store(m, s / static_cast<T>(divisor));
    }
  }
}

// The window of output (oy, ox) is y0..y1 x x0..x1 (end exclusive); rows and columns alike.
__device__ inline int64_t adaptive_start(int64_t o, int64_t in, int64_t out) { return o * in / out; }
__device__ inline int64_t adaptive_end(int64_t o, int64_t in, int64_t out) {
  return ((o + 1) * in + out - 1) / out;
}

template <class T, bool kStrict>
__global__ void adaptive_avgpool2d_kernel(Mode m, const T* __restrict__ x, T* __restrict__ y,
                                          int64_t n, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ox = i % OW, oy = (i / OW) % OH, plane = i / (OW * OH);
    const T* xp = x + plane * H * W;
    const int64_t y0 = adaptive_start(oy, H, OH), y1 = adaptive_end(oy, H, OH);
    const int64_t x0 = adaptive_start(ox, W, OW), x1 = adaptive_end(ox, W, OW);
    const int64_t ww = x1 - x0, count = (y1 - y0) * ww;
    if constexpr (kStrict) {
      const float s = strict_reduce(count, WindowElem{xp, W, y0, x0, ww});
      y[i] = s_div(s, static_cast<float>(count));
    } else {
      T s = T(0);
      for (int64_t r = y0; r < y1; ++r)
        for (int64_t c = x0; c < x1; ++c) s = s + xp[r * W + c];
      y[i] = store(m, s / static_cast<T>(count));
    }
  }
}

template <class T, class Add, bool kStrict, class Order>
__global__ void global_avgpool_kernel(Mode m, const T* __restrict__ x, T* __restrict__ y,
                                      int64_t planes, int64_t S) {
  __shared__ T s[kRowBlock];
  const Add add;
  const int lane = static_cast<int>(threadIdx.x);
  for (int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    const T* xp = x + p * S;
    const T sum = Order::reduce(S, T(0), add, [&](int64_t i) { return xp[i]; }, s);
    if (lane == 0) {
      if constexpr (kStrict)
        y[p] = s_div(sum, static_cast<float>(S));
      else
        y[p] = store(m, sum / static_cast<T>(S));
    }
  }
}

template <class T>
__global__ void upsample_nearest_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n,
                                        int64_t H, int64_t W, int64_t fy, int64_t fx) {
  const int64_t OH = H * fy, OW = W * fx;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ox = i % OW, oy = (i / OW) % OH, plane = i / (OW * OH);
    y[i] = x[(plane * H + oy / fy) * W + ox / fx];
  }
}

template <class T, bool kStrict>
void launch_avgpool(Mode m, const Pool2dDesc& d, bool include_pad, const void* x, void* y,
                    int64_t n, const std::string& layer) {
  avgpool2d_kernel<T, kStrict><<<grid_for(n), kBlock>>>(m, d, include_pad, static_cast<const T*>(x),
                                                        static_cast<T*>(y), n);
  check_launch(kStrict ? "avgpool2d_kernel_strict" : "avgpool2d_kernel", layer);
}

template <class T, class Add, bool kStrict, class Order = RowOrder<false>>
void launch_global(Mode m, int64_t planes, int64_t S, const void* x, void* y,
                   const std::string& layer) {
  const int blocks = static_cast<int>(std::min<long long>(planes, kMaxPlaneBlocks));
  global_avgpool_kernel<T, Add, kStrict, Order><<<blocks, Order::kThreads>>>(
      m, static_cast<const T*>(x), static_cast<T*>(y), planes, S);
  check_launch("global_avgpool_kernel", layer);
}

}  // namespace

void avgpool2d(Mode mode, const Pool2dDesc& d, bool count_include_pad, const void* x, void* y,
               const std::string& layer) {
  if (d.kh < 1 || d.kw < 1 || d.stride_h < 1 || d.stride_w < 1 || d.dil_h != 1 || d.dil_w != 1 ||
      d.pad_h < 0 || d.pad_w < 0)
    throw RuntimeFault("avgpool2d: bad window geometry (layer '" + layer + "')");
  const int64_t n = d.N * d.C * d.OH * d.OW;
  if (n == 0) return;
  if (mode == Mode::fp64)
    launch_avgpool<double, false>(mode, d, count_include_pad, x, y, n, layer);
  else if (mode == Mode::strict)
    launch_avgpool<float, true>(mode, d, count_include_pad, x, y, n, layer);
  else
    launch_avgpool<float, false>(mode, d, count_include_pad, x, y, n, layer);
}

void adaptive_avgpool2d(Mode mode, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                        const void* x, void* y, const std::string& layer) {
  if (OH < 1 || OW < 1 || H < 1 || W < 1)
    throw RuntimeFault("adaptive_avgpool2d: bad sizes (layer '" + layer + "')");
  const int64_t n = planes * OH * OW;
  if (n == 0) return;
  if (mode == Mode::fp64)
    adaptive_avgpool2d_kernel<double, false><<<grid_for(n), kBlock>>>(
        mode, static_cast<const double*>(x), static_cast<double*>(y), n, H, W, OH, OW);
  else if (mode == Mode::strict)
    adaptive_avgpool2d_kernel<float, true><<<grid_for(n), kBlock>>>(
        mode, static_cast<const float*>(x), static_cast<float*>(y), n, H, W, OH, OW);
  else
    adaptive_avgpool2d_kernel<float, false><<<grid_for(n), kBlock>>>(
        mode, static_cast<const float*>(x), static_cast<float*>(y), n, H, W, OH, OW);
  check_launch("adaptive_avgpool2d_kernel", layer);
}

void global_avgpool2d(Mode mode, int64_t planes, int64_t S, const void* x, void* y,
                      const std::string& layer) {
  if (planes == 0) return;
  if (mode == Mode::fp64)
    launch_global<double, F64Add, false, RowOrder<true>>(mode, planes, S, x, y, layer);
  else if (mode == Mode::strict)
    launch_global<float, StrictAdd, true>(mode, planes, S, x, y, layer);
  else
    launch_global<float, PlainAdd, false>(mode, planes, S, x, y, layer);
}

void upsample_nearest2d(Mode mode, int64_t planes, int64_t H, int64_t W, int64_t fy, int64_t fx,
                        const void* x, void* y, const std::string& layer) {
  if (fy < 1 || fx < 1) throw RuntimeFault("upsample_nearest2d: bad scale_factor (layer '" + layer + "')");
  const int64_t n = planes * H * fy * W * fx;
  if (n == 0) return;
  if (mode == Mode::fp64)
    upsample_nearest_kernel<<<grid_for(n), kBlock>>>(static_cast<const double*>(x),
                                                     static_cast<double*>(y), n, H, W, fy, fx);
  else
    upsample_nearest_kernel<<<grid_for(n), kBlock>>>(static_cast<const float*>(x),
                                                     static_cast<float*>(y), n, H, W, fy, fx);
  check_launch("upsample_nearest_kernel", layer);
}

}  // namespace divscope
