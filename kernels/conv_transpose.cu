// conv_transpose2d as a gather implicit GEMM (kernels/kernels.h), on the tile kernels of
// gemm_common.cuh, in the form of host/reference/conv.cpp:
// per group g: out[m][p] = sum_k A[m][k] * col[k][p] (+ bias[m]) with m < Co/groups, p over the
// output pixels of all images, k = (c, ky, kx), kx fastest, and
//   A[g][m][(c, ky, kx)] = w[g*Cg + c][m][ky][kx]         (regroup_kernel, once per call)
//   col[(c, ky, kx)][p]  = x[n][g*Cg + c][iy][ix]  where oy + ph - ky*dh = iy*sh with iy in
//                          [0, H) (likewise ox, ix), else 0.
// col is never materialised: the B fetcher gathers it into the shared-memory tile. Its zeros
// (taps between strides or outside x) still take their madd step, exactly as the CPU's col
// buffer does, so the strict sum -- fma for k ascending from 0, then the bias (§5.2) -- is the
// CPU's to the sign of a zero.
#include <climits>

#include "kernels/conv_common.cuh"
#include "kernels/gemm_common.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

using namespace conv_detail;
using namespace gemm_detail;

// One block per SM asked of ptxas, as conv.cu: the gather's per-pixel state needs the registers.
constexpr int kMinBlocks = 1;
constexpr int kBlock = 256;
constexpr long long kMaxBlocks = 8192;   // grid-stride cap of regroup_kernel, see relu_gelu_add.cu

// Each thread owns V consecutive output pixels for the whole k loop (RowContigMap): their
// (image, oy + ph, ox + pw) are decoded once; a k value costs the tap decode and, per pixel, two
// divisibility tests.
template <class T, int ROWS, int BK, int THREADS>
struct ConvTFetch : RowContigMap<T, ROWS, BK, THREADS> {
  using Map = RowContigMap<T, ROWS, BK, THREADS>;
  using Map::kChunks;
  using Map::V;
  const T* base[V];    // image n, channel g*Cg
  int ty0[V], tx0[V];  // oy + ph, ox + pw; INT_MIN/2 past the end (never a valid source)
  int kfirst, H, W, HW, khw, kw, sh, sw, dh, dw;

  __device__ void init(const ConvSrc<T>& s, int64_t z, int64_t row0, int tid) {
    kfirst = Map::k_of(tid, 0);
    H = s.H; W = s.W; HW = s.H * s.W; khw = s.khw; kw = s.kw;
    sh = s.sh; sw = s.sw; dh = s.dh; dw = s.dw;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int64_t p = row0 + Map::row_of(tid, 0) + j;
      base[j] = s.x;
      ty0[j] = tx0[j] = INT_MIN / 2;
      if (p < s.P) {
        int oy, ox;
        base[j] = pixel_origin(s, z, p, oy, ox);
        ty0[j] = oy + s.ph;
        tx0[j] = ox + s.pw;
      }
    }
  }
  __device__ void fetch(int64_t k0, int64_t K, Vec<T> (&r)[kChunks]) const {
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const int k = static_cast<int>(k0) + kfirst + i * Map::kKStep;
      if (k < K) {
        const int c = k / khw, rs = k - c * khw, kr = rs / kw, ks = rs - kr * kw;
        const int dy = kr * dh, dx = ks * dw, plane = c * HW;
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const int ty = ty0[j] - dy, tx = tx0[j] - dx;   // = iy*sh, ix*sw when a source exists
          const int iy = ty / sh, ix = tx / sw;
          const bool inside = ty >= 0 && tx >= 0 && iy * sh == ty && ix * sw == tx && iy < H &&
                              ix < W;
          r[i].v[j] = inside ? base[j][plane + iy * W + ix] : T(0);
        }
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) r[i].v[j] = T(0);
      }
    }
  }
};

// A[(g*Cog + m)*CK + c*khw + t] = w[((g*Cg + c)*Cog + m)*khw + t].
template <class T>
__global__ void regroup_kernel(const T* __restrict__ w, T* __restrict__ a, int64_t n, int64_t cg,
                               int64_t cog, int64_t khw) {
  const int64_t ck = cg * khw;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t gm = e / ck, r = e - gm * ck, g = gm / cog, m = gm - g * cog;
    const int64_t c = r / khw, t = r - c * khw;
    a[e] = w[((g * cg + c) * cog + m) * khw + t];
  }
}

template <class T>
struct ConvTProblem {
  int64_t groups, Cog, P, CK;
  ConvSrc<T> b;
  ConvOut<T> out;
};

template <class T>
ConvTProblem<T> problem(const ConvTranspose2dDesc& d, const void* x, const void* bias, void* y,
                        const std::string& layer) {
  auto fail = [&](const std::string& why) {
    throw RuntimeFault("conv_transpose2d: " + why + " in layer '" + layer + "'");
  };
  if (d.groups <= 0 || d.C % d.groups || d.Co % d.groups) fail("channels not divisible by groups");
  if (d.stride_h <= 0 || d.stride_w <= 0 || d.dil_h <= 0 || d.dil_w <= 0 || d.pad_h < 0 ||
      d.pad_w < 0)
    fail("bad stride/dilation/padding");
  const int64_t cg = d.C / d.groups, cog = d.Co / d.groups, ck = cg * d.kh * d.kw;
  const int64_t ohw = d.OH * d.OW, P = d.N * ohw;
  const int64_t kMax = INT_MAX;
  if (P > kMax || ck > kMax || cg * d.H * d.W > kMax || d.H > kMax / 4 || d.W > kMax / 4 ||
      d.OH > kMax / 4 || d.OW > kMax / 4 || d.kh * d.dil_h > kMax / 4 ||
      d.kw * d.dil_w > kMax / 4 || d.pad_h > kMax / 4 || d.pad_w > kMax / 4 ||
      (d.H + 1) * d.stride_h > kMax / 4 || (d.W + 1) * d.stride_w > kMax / 4)
    fail("sizes beyond 32-bit index range");
  ConvTProblem<T> p;
  p.groups = d.groups;
  p.Cog = cog;
  p.P = P;
  p.CK = ck;
  p.b = conv_src<T>(d, x, cg, ohw, P);
  p.out = conv_out<T>(d, bias, y, cog, ohw);
  return p;
}

// The regrouped weight, a [groups][Cog][CK] k-contiguous A operand.
template <class T>
DeviceBuffer<T> regroup(const ConvTranspose2dDesc& d, const void* w, const std::string& layer) {
  const int64_t cg = d.C / d.groups, cog = d.Co / d.groups, khw = d.kh * d.kw;
  const int64_t n = d.groups * cog * cg * khw;
  DeviceBuffer<T> a(static_cast<size_t>(n), layer + " regrouped weight");
  if (n == 0) return a;
  const int blocks = static_cast<int>(std::min<long long>(ceil_div(n, kBlock), kMaxBlocks));
  regroup_kernel<T><<<blocks, kBlock>>>(static_cast<const T*>(w), a.get(), n, cg, cog, khw);
  check_launch("conv_transpose_regroup_kernel", layer);
  return a;
}

struct ConvTRun {
  const ConvTranspose2dDesc& d;
  const void *x, *w, *bias;
  void* y;
  const std::string& layer;

  template <class T>
  void simt(const char* name) const {
    const ConvTProblem<T> p = problem<T>(d, x, bias, y, layer);
    const DeviceBuffer<T> a = regroup<T>(d, w, layer);
    const KContig<T> ak{a.get(), p.CK, p.Cog * p.CK, p.Cog};
    launch_simt<T, kMinBlocks, ConvTFetch>(name, p.groups, p.Cog, p.P, p.CK, ak, p.b, p.out, layer);
  }

  template <class Op>
  void tensor_core(const char* name) const {
    const ConvTProblem<float> p = problem<float>(d, x, bias, y, layer);
    const DeviceBuffer<float> a = regroup<float>(d, w, layer);
    const KContig<float> ak{a.get(), p.CK, p.Cog * p.CK, p.Cog};
    launch_tc<Op, kMinBlocks, ConvTFetch>(name, p.groups, p.Cog, p.P, p.CK, ak, p.b, p.out, layer);
  }
};

}  // namespace

void conv_transpose2d(Mode mode, const ConvTranspose2dDesc& d, const void* x, const void* w,
                      const void* bias, void* y, const std::string& layer) {
  if (conv_output_empty("conv_transpose2d", d, layer)) return;
  dispatch_mode(mode, "conv_transpose2d", layer, ConvTRun{d, x, w, bias, y, layer});
}

}  // namespace divscope
