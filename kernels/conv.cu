// conv2d as implicit GEMM (kernels/kernels.h), on the tile kernels of gemm_common.cuh.
//
// Per group g: out[co][p] = sum_k W[co][k] * col[k][p] (+ bias[co]) with co < Co/groups, p over
// all output pixels of all images (N*OH*OW, so small feature maps still fill tiles) and
// k = (c, r, s), s fastest (docs/ops.md, Precision modes: strict formulas). col is never materialised: the B fetcher gathers
// x[n][g*Cg + c][oy*sh - ph + r*dh][ox*sw - pw + s*dw] (zero outside x) straight into the
// shared-memory tile. The mode semantics are the GEMM's: strict walks k ascending with fma.
#include <climits>

#include "kernels/conv_common.cuh"
#include "kernels/gemm_common.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

using namespace conv_detail;
using namespace gemm_detail;

// One block per SM asked of ptxas: the gather's per-pixel state spills at 128 registers
// (-Xptxas -v, sm_90); with 1 no kernel here spills.
constexpr int kMinBlocks = 1;

// Each thread owns V consecutive output pixels for the whole k loop (RowContigMap), so their
// (image, oy, ox) decomposition is done once; a k value costs two divisions per chunk.
template <class T, int ROWS, int BK, int THREADS>
struct ConvFetch : RowContigMap<T, ROWS, BK, THREADS> {
  using Map = RowContigMap<T, ROWS, BK, THREADS>;
  using Map::kChunks;
  using Map::V;
  const T* base[V];   // image n, channel g*Cg
  int iy0[V], ix0[V]; // top-left input position of the pixel's window; INT_MIN/2 past the end
  int kfirst, H, W, HW, khw, kw, dh, dw;

  __device__ void init(const ConvSrc<T>& s, int64_t z, int64_t row0, int tid) {
    kfirst = Map::k_of(tid, 0);
    H = s.H; W = s.W; HW = s.H * s.W; khw = s.khw; kw = s.kw; dh = s.dh; dw = s.dw;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int64_t p = row0 + Map::row_of(tid, 0) + j;
      base[j] = s.x;
      iy0[j] = ix0[j] = INT_MIN / 2;
      if (p < s.P) {
        int oy, ox;
        base[j] = pixel_origin(s, z, p, oy, ox);
        iy0[j] = oy * s.sh - s.ph;
        ix0[j] = ox * s.sw - s.pw;
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
          const int iy = iy0[j] + dy, ix = ix0[j] + dx;
          const bool inside = static_cast<unsigned>(iy) < static_cast<unsigned>(H) &&
                              static_cast<unsigned>(ix) < static_cast<unsigned>(W);
          r[i].v[j] = inside ? base[j][plane + iy * W + ix] : T(0);
        }
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) r[i].v[j] = T(0);
      }
    }
  }
};

template <class T>
struct ConvProblem {
  int64_t groups, Cog, P, CK;
  KContig<T> a;
  ConvSrc<T> b;
  ConvOut<T> out;
};

template <class T>
ConvProblem<T> problem(const Conv2dDesc& d, const void* x, const void* w, const void* bias,
                       void* y, const std::string& layer) {
  auto fail = [&](const std::string& why) {
    throw RuntimeFault("conv2d: " + why + " in layer '" + layer + "'");
  };
  if (d.groups <= 0 || d.C % d.groups || d.Co % d.groups) fail("channels not divisible by groups");
  if (d.stride_h <= 0 || d.stride_w <= 0 || d.dil_h <= 0 || d.dil_w <= 0)
    fail("bad stride/dilation");
  const int64_t cg = d.C / d.groups, cog = d.Co / d.groups, ck = cg * d.kh * d.kw;
  const int64_t ohw = d.OH * d.OW, P = d.N * ohw;
  const int64_t kMax = INT_MAX;
  if (P > kMax || ck > kMax || cg * d.H * d.W > kMax || d.H > kMax / 4 || d.W > kMax / 4 ||
      d.OH * d.stride_h > kMax / 4 || d.OW * d.stride_w > kMax / 4 ||
      d.kh * d.dil_h > kMax / 4 || d.kw * d.dil_w > kMax / 4 || d.pad_h > kMax / 4 ||
      d.pad_w > kMax / 4)
    fail("sizes beyond 32-bit index range");
  ConvProblem<T> p;
  p.groups = d.groups;
  p.Cog = cog;
  p.P = P;
  p.CK = ck;
  p.a = KContig<T>{static_cast<const T*>(w), ck, cog * ck, cog};
  p.b = conv_src<T>(d, x, cg, ohw, P);
  p.out = conv_out<T>(d, bias, y, cog, ohw);
  return p;
}

struct ConvRun {
  const Conv2dDesc& d;
  const void *x, *w, *bias;
  void* y;
  const std::string& layer;

  template <class T>
  void simt(const char* name) const {
    const ConvProblem<T> p = problem<T>(d, x, w, bias, y, layer);
    launch_simt<T, kMinBlocks, ConvFetch>(name, p.groups, p.Cog, p.P, p.CK, p.a, p.b, p.out, layer);
  }

  template <class Op>
  void tensor_core(const char* name) const {
    const ConvProblem<float> p = problem<float>(d, x, w, bias, y, layer);
    launch_tc<Op, kMinBlocks, ConvFetch>(name, p.groups, p.Cog, p.P, p.CK, p.a, p.b, p.out, layer);
  }
};

}  // namespace

void conv2d(Mode mode, const Conv2dDesc& d, const void* x, const void* w, const void* bias,
            void* y, const std::string& layer) {
  if (conv_output_empty("conv2d", d, layer)) return;
  dispatch_mode(mode, "conv2d", layer, ConvRun{d, x, w, bias, y, layer});
}

}  // namespace divscope
