// What conv2d (kernels/conv.cu) and conv_transpose2d (kernels/conv_transpose.cu) share as implicit
// GEMMs on gemm_common.cuh: the B operand's source (x and the convolution's geometry), the decode
// of a GEMM column into an output pixel, and the NCHW output with its per-channel bias. Only the
// gather itself (which input a tap of an output pixel reads) differs between the two.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/gemm_common.cuh"

namespace divscope {
namespace conv_detail {

// The entry points' first check: a negative size is a RuntimeFault naming `op` and the layer;
// true when the output is empty, so that there is nothing to launch.
template <class Desc>
bool conv_output_empty(const char* op, const Desc& d, const std::string& layer) {
  if (d.N < 0 || d.C < 0 || d.H < 0 || d.W < 0 || d.Co < 0 || d.kh < 0 || d.kw < 0 || d.OH < 0 ||
      d.OW < 0)
    throw RuntimeFault(std::string(op) + ": negative size in layer '" + layer + "'");
  return d.N == 0 || d.Co == 0 || d.OH == 0 || d.OW == 0;
}

// Index math is 32-bit (the launchers check the ranges); element offsets are 64-bit.
template <class T>
struct ConvSrc {
  const T* x;
  int64_t img_stride, group_stride;  // C*H*W, Cg*H*W
  int H, W, OW, OHW, P;              // P = N*OH*OW
  int khw, kw, sh, sw, ph, pw, dh, dw;
};

// Desc: Conv2dDesc or ConvTranspose2dDesc (the same fields); cg = C/groups, ohw = OH*OW,
// P = N*ohw, all checked to fit an int by the caller.
template <class T, class Desc>
ConvSrc<T> conv_src(const Desc& d, const void* x, int64_t cg, int64_t ohw, int64_t P) {
  return ConvSrc<T>{static_cast<const T*>(x),
                    d.C * d.H * d.W,
                    cg * d.H * d.W,
                    static_cast<int>(d.H),
                    static_cast<int>(d.W),
                    static_cast<int>(d.OW),
                    static_cast<int>(ohw),
                    static_cast<int>(P),
                    static_cast<int>(d.kh * d.kw),
                    static_cast<int>(d.kw),
                    static_cast<int>(d.stride_h),
                    static_cast<int>(d.stride_w),
                    static_cast<int>(d.pad_h),
                    static_cast<int>(d.pad_w),
                    static_cast<int>(d.dil_h),
                    static_cast<int>(d.dil_w)};
}

// GEMM column p (< s.P) of group z: (oy, ox) of its output pixel, and the returned start of its
// image's channels of the group in x.
template <class T>
__device__ __forceinline__ const T* pixel_origin(const ConvSrc<T>& s, int64_t z, int64_t p,
                                                 int& oy, int& ox) {
  const int pi = static_cast<int>(p), n = pi / s.OHW, pix = pi - n * s.OHW;
  oy = pix / s.OW;
  ox = pix - oy * s.OW;
  return s.x + n * s.img_stride + z * s.group_stride;
}

// out[n][g*Cog + m][pixel] for GEMM row m (output channel in the group), column p.
template <class T>
struct ConvOut {
  T* y;
  const T* bias;
  int64_t Co, Cog;
  int OHW;
  __device__ bool has_bias() const { return bias != nullptr; }
  __device__ T bias_at(int64_t z, int64_t m, int64_t) const { return bias[z * Cog + m]; }
  __device__ void store(int64_t z, int64_t m, int64_t p, T v) const {
    const int pi = static_cast<int>(p), n = pi / OHW, pix = pi - n * OHW;
    y[(n * Co + z * Cog + m) * OHW + pix] = v;
  }
};

template <class T, class Desc>
ConvOut<T> conv_out(const Desc& d, const void* bias, void* y, int64_t cog, int64_t ohw) {
  return ConvOut<T>{static_cast<T*>(y), static_cast<const T*>(bias), d.Co, cog,
                    static_cast<int>(ohw)};
}

}  // namespace conv_detail
}  // namespace divscope
