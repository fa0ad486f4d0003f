// Pools and resampling over [N, C, H, W]: maxpool2d, avgpool2d, global_avgpool2d,
// adaptive_avgpool2d, upsample_nearest2d. Window geometry follows PyTorch (ATen's pooling kernels).
#include <algorithm>
#include <cmath>
#include <limits>

#include "reference/internal.h"

namespace divscope {
namespace {

struct PoolGeom {
  int64_t kh, kw, sh, sw, ph, pw, dh = 1, dw = 1;
};

PoolGeom pool_geometry(const Layer& L, bool with_dilation) {
  auto k = L.attr_ints("kernel_size", 2, {}), s = L.attr_ints("stride", 2, {});
  auto p = L.attr_ints("padding", 2, {});
  PoolGeom g{k[0], k[1], s[0], s[1], p[0], p[1]};
  if (with_dilation) {
    auto d = L.attr_ints("dilation", 2, {1, 1});
    g.dh = d[0];
    g.dw = d[1];
  }
  return g;
}

// Calls f(plane_in, plane_out) for each of the N*C planes of x / out.
template <class P, class F>
void for_planes(const TensorOf<P>& x, TensorOf<P>& out, F f) {
  int64_t planes = x.dim(0) * x.dim(1), in_sz = x.dim(2) * x.dim(3),
          out_sz = out.dim(2) * out.dim(3);
  for (int64_t p = 0; p < planes; ++p) f(x.ptr() + p * in_sz, out.ptr() + p * out_sz);
}

// maxpool2d: out[oy, ox] = max over taps (ky, kx) of x[oy*sh - ph + ky*dh, ox*sw - pw + kx*dw];
// padding is -inf (taps outside x are skipped); NaN wins, as in PyTorch.
template <class P>
void maxpool2d(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using T = typename P::T;
  PoolGeom g = pool_geometry(L, true);
  int64_t H = in[0]->dim(2), W = in[0]->dim(3), OH = out.dim(2), OW = out.dim(3);
  for_planes<P>(*in[0], out, [&](const T* x, T* y) {
    for (int64_t oy = 0; oy < OH; ++oy)
      for (int64_t ox = 0; ox < OW; ++ox) {
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t ky = 0; ky < g.kh; ++ky) {
          int64_t iy = oy * g.sh - g.ph + ky * g.dh;
          if (iy < 0 || iy >= H) continue;
          for (int64_t kx = 0; kx < g.kw; ++kx) {
            int64_t ix = ox * g.sw - g.pw + kx * g.dw;
            if (ix < 0 || ix >= W) continue;
            const T v = x[iy * W + ix];
            m = (v > m) | (v != v) ? v : m;   // a select, not a branch on the data
          }
        }
        y[oy * OW + ox] = m;
      }
  });
}

// avgpool2d: the window [oy*sh - ph, + kh) x [ox*sw - pw, + kw) is clipped to x for the sum;
// the divisor is the clipped window's size, or with count_include_pad the window clipped to
// the padded input [-ph, H + ph) (so with ceil_mode, positions beyond the padding never count).
template <class P>
void avgpool2d(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using T = typename P::T;
  using Acc = typename P::Acc;
  PoolGeom g = pool_geometry(L, false);
  bool include_pad = L.attr_int("count_include_pad", 1) != 0;
  int64_t H = in[0]->dim(2), W = in[0]->dim(3), OH = out.dim(2), OW = out.dim(3);
  for_planes<P>(*in[0], out, [&](const T* x, T* y) {
    for (int64_t oy = 0; oy < OH; ++oy)
      for (int64_t ox = 0; ox < OW; ++ox) {
        int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
        int64_t y1 = std::min(y0 + g.kh, H + g.ph), x1 = std::min(x0 + g.kw, W + g.pw);
        int64_t padded = (y1 - y0) * (x1 - x0);
        y0 = std::max<int64_t>(y0, 0);
        x0 = std::max<int64_t>(x0, 0);
        y1 = std::min(y1, H);
        x1 = std::min(x1, W);
        int64_t ww = x1 - x0, count = (y1 - y0) * ww;
        Acc s = P::sum(count, [&](int64_t i) { return Acc(x[(y0 + i / ww) * W + x0 + i % ww]); });
        y[oy * OW + ox] = P::store(s / Acc(include_pad ? padded : count));
      }
  });
}

// global_avgpool2d: out[n, c, 0, 0] = sum over (h, w) of x[n, c, h, w] / (H * W)
template <class P>
void global_avgpool2d(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using T = typename P::T;
  using Acc = typename P::Acc;
  int64_t S = in[0]->dim(2) * in[0]->dim(3);
  for_planes<P>(*in[0], out, [&](const T* x, T* y) {
    *y = P::store(P::sum(S, [&](int64_t i) { return Acc(x[i]); }) / Acc(S));
  });
}

// adaptive_avgpool2d (F.adaptive_avg_pool2d): output row i averages input rows
// [floor(i * H / OH), ceil((i + 1) * H / OH)), columns likewise; sums as avgpool2d's.
template <class P>
void adaptive_avgpool2d(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using T = typename P::T;
  using Acc = typename P::Acc;
  const int64_t H = in[0]->dim(2), W = in[0]->dim(3), OH = out.dim(2), OW = out.dim(3);
  for_planes<P>(*in[0], out, [&](const T* x, T* y) {
    for (int64_t oy = 0; oy < OH; ++oy)
      for (int64_t ox = 0; ox < OW; ++ox) {
        const int64_t y0 = oy * H / OH, y1 = ((oy + 1) * H + OH - 1) / OH;
        const int64_t x0 = ox * W / OW, x1 = ((ox + 1) * W + OW - 1) / OW;
        const int64_t ww = x1 - x0, count = (y1 - y0) * ww;
        Acc s = P::sum(count, [&](int64_t i) { return Acc(x[(y0 + i / ww) * W + x0 + i % ww]); });
        y[oy * OW + ox] = P::store(s / Acc(count));
      }
  });
}

// upsample_nearest2d with integer factors: out[oy, ox] = x[oy / fy, ox / fx]
template <class P>
void upsample_nearest2d(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using T = typename P::T;
  auto f = L.attr_ints("scale_factor", 2, {});
  int64_t W = in[0]->dim(3), OH = out.dim(2), OW = out.dim(3);
  for_planes<P>(*in[0], out, [&](const T* x, T* y) {
    for (int64_t oy = 0; oy < OH; ++oy)
      for (int64_t ox = 0; ox < OW; ++ox) y[oy * OW + ox] = x[(oy / f[0]) * W + ox / f[1]];
  });
}

}  // namespace

template <class P>
void register_pool(OpTable<P>& t) {
  t["maxpool2d"] = maxpool2d<P>;
  t["avgpool2d"] = avgpool2d<P>;
  t["global_avgpool2d"] = global_avgpool2d<P>;
  t["adaptive_avgpool2d"] = adaptive_avgpool2d<P>;
  t["upsample_nearest2d"] = upsample_nearest2d<P>;
}

#define DIVSCOPE_INSTANTIATE(P) template void register_pool<P>(OpTable<P>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
