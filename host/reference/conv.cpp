// conv2d and conv_transpose2d as im2col over the GEMM core (gemm.h).
//
// Both are, per sample and group, out[m, pixel] = sum_k A[m, k] * col[k, pixel] (+ bias[m])
// with the reduction index k = (input channel, kernel row, kernel column), last fastest
// (docs/ops.md, Precision modes: strict formulas). col is built for a chunk of output pixels at a time to bound memory; the
// chunking does not touch any output's sum order (that runs over k only). Taps that fall in
// the padding (or, for the transpose, between strides) are zeros in col and still take their
// step, acc = madd(w, 0, acc): that leaves acc unchanged up to the sign of a zero, which a
// bitwise-compared kernel (strict) must reproduce or avoid by skipping the same way.
#include <algorithm>
#include <memory>
#include <vector>

#include "reference/gemm.h"
#include "reference/internal.h"

namespace divscope {
namespace {

constexpr int64_t kColElems = int64_t(1) << 20;   // col chunk: at most 8 MiB of doubles

struct ConvGeom {
  int64_t N, C, H, W;          // input
  int64_t Co, OH, OW;          // output
  int64_t kh, kw, groups;
  int64_t sh, sw, ph, pw, dh, dw;
};

ConvGeom geometry(const Layer& L, const Shape& x, const Shape& out, const Shape& w) {
  auto s = L.attr_ints("stride", 2, {}), p = L.attr_ints("padding", 2, {});
  auto d = L.attr_ints("dilation", 2, {});
  return {x[0], x[1], x[2], x[3], out[1], out[2], out[3], w[2], w[3], L.attr_int("groups"),
          s[0], s[1], p[0], p[1], d[0], d[1]};
}

// For every sample n and group g, over chunks of output pixels [p0, p0 + pc):
//   out[n, g*Cog + m, p0 + j] = bias[g*Cog + m] + sum_k a[g*Cog + m, k] * col[k, j]
// where a is [Co, CK] row-major and cols(n, g, p0, pc, buf) gives col [CK, pc]: a view of the
// input itself where col is the input (direct), else buf filled (im2col) and viewed.
template <class P, class Cols>
void conv_gemm(const ConvGeom& G, int64_t CK, const typename P::T* a, const Param<typename P::T>& bias,
               bool direct, Cols cols, TensorOf<P>& out) {
  using T = typename P::T;
  int64_t cog = G.Co / G.groups, ohw = G.OH * G.OW;
  int64_t chunk = direct ? ohw : std::max<int64_t>(1, std::min(ohw, kColElems / CK));
  // Filled before every read (im2col writes every element of the chunk): no zero-fill.
  std::unique_ptr<T[]> col(direct ? nullptr : new T[static_cast<size_t>(CK * chunk)]);
  for (int64_t n = 0; n < G.N; ++n)
    for (int64_t g = 0; g < G.groups; ++g)
      for (int64_t p0 = 0; p0 < ohw; p0 += chunk) {
        int64_t pc = std::min(chunk, ohw - p0);
        gemm<P>(cog, pc, CK, {a + g * cog * CK, CK, 1}, cols(n, g, p0, pc, col.get()),
                {bias.empty() ? nullptr : bias.data() + g * cog, 1, 0},
                out.ptr() + (n * G.Co + g * cog) * ohw + p0, ohw);
      }
}

// conv2d: out[n, o, oy, ox] = b[o] + sum_{c, ky, kx} w[o, c, ky, kx] *
//         x[n, g*Cg + c, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw]   (zero outside x)
// A 1x1 convolution with stride 1 and no padding reads x as col directly: col[c, j] is
// x[n, g*Cg + c, p0 + j] (the same values in the same k order: the same result, no copy).
template <class P>
void conv2d(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using T = typename P::T;
  const TensorOf<P>& x = *in[0];
  const Shape& ws = L.param("weight")->shape;
  ConvGeom G = geometry(L, x.shape, out.shape, ws);
  int64_t cg = G.C / G.groups, CK = cg * G.kh * G.kw;
  const bool direct = G.kh == 1 && G.kw == 1 && G.sh == 1 && G.sw == 1 && G.ph == 0 && G.pw == 0 &&
                      G.OH == G.H && G.OW == G.W;
  auto cols = [&](int64_t n, int64_t g, int64_t p0, int64_t pc, T* col) -> MatView<T> {
    const T* xg = x.ptr() + (n * G.C + g * cg) * G.H * G.W;
    if (direct) return {xg + p0, G.H * G.W, 1};
    T* dst = col;
    for (int64_t c = 0; c < cg; ++c) {
      const T* xc = xg + c * G.H * G.W;
      for (int64_t ky = 0; ky < G.kh; ++ky)
        for (int64_t kx = 0; kx < G.kw; ++kx, dst += pc) {
          // Output pixels p0 .. p0 + pc - 1, one output row (fixed oy, so fixed iy) at a time.
          int64_t oy = p0 / G.OW, ox0 = p0 % G.OW;
          for (int64_t j = 0; j < pc; ++oy, ox0 = 0) {
            const int64_t run = std::min(G.OW - ox0, pc - j);
            const int64_t iy = oy * G.sh - G.ph + ky * G.dh;
            if (iy < 0 || iy >= G.H) {
              std::fill(dst + j, dst + j + run, T(0));
            } else {
              const T* xr = xc + iy * G.W;
              for (int64_t t = 0; t < run; ++t) {
                const int64_t ix = (ox0 + t) * G.sw - G.pw + kx * G.dw;
                dst[j + t] = ix >= 0 && ix < G.W ? xr[ix] : T(0);
              }
            }
            j += run;
          }
        }
    }
    return {col, pc, 1};
  };
  const Param<T> w = param_of<P>(L, "weight");
  conv_gemm<P>(G, CK, w.data(), param_of<P>(L, "bias"), direct, cols, out);
}

// conv_transpose2d (the gradient of conv2d with respect to its input), as a gather:
// out[n, g*Cog + m, oy, ox] = b + sum_{c, ky, kx} w[g*Cg + c, m, ky, kx] * x[n, g*Cg + c, iy, ix]
// over the (c, ky, kx) with oy = iy*sh - ph + ky*dh (and likewise ox) for an integer iy in
// [0, H), ix in [0, W); the other terms are zero.
template <class P>
void conv_transpose2d(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using T = typename P::T;
  const TensorOf<P>& x = *in[0];
  const Shape& ws = L.param("weight")->shape;
  ConvGeom G = geometry(L, x.shape, out.shape, ws);
  int64_t cg = G.C / G.groups, cog = ws[1], khw = G.kh * G.kw, CK = cg * khw;
  // Weight [C, Cog, kh, kw] regrouped to A[g][m][(c, ky, kx)].
  const Param<T> w = param_of<P>(L, "weight");
  std::vector<T> a(w.size());
  for (int64_t g = 0; g < G.groups; ++g)
    for (int64_t m = 0; m < cog; ++m)
      for (int64_t c = 0; c < cg; ++c)
        for (int64_t k = 0; k < khw; ++k)
          a[(g * cog + m) * CK + c * khw + k] = w[((g * cg + c) * cog + m) * khw + k];
  auto source = [](int64_t o, int64_t k, int64_t s, int64_t p, int64_t d, int64_t len) {
    int64_t t = o + p - k * d;   // = i * s when output o receives input i through tap k
    return t >= 0 && t % s == 0 && t / s < len ? t / s : int64_t(-1);
  };
  auto cols = [&](int64_t n, int64_t g, int64_t p0, int64_t pc, T* col) -> MatView<T> {
    T* const start = col;
    for (int64_t c = 0; c < cg; ++c) {
      const T* xc = x.ptr() + ((n * G.C + g * cg + c) * G.H) * G.W;
      for (int64_t ky = 0; ky < G.kh; ++ky)
        for (int64_t kx = 0; kx < G.kw; ++kx, col += pc)
          for (int64_t j = 0; j < pc; ++j) {
            int64_t oy = (p0 + j) / G.OW, ox = (p0 + j) % G.OW;
            int64_t iy = source(oy, ky, G.sh, G.ph, G.dh, G.H);
            int64_t ix = source(ox, kx, G.sw, G.pw, G.dw, G.W);
            col[j] = iy >= 0 && ix >= 0 ? xc[iy * G.W + ix] : T(0);
          }
    }
    return {start, pc, 1};
  };
  conv_gemm<P>(G, CK, a.data(), param_of<P>(L, "bias"), false, cols, out);
}

}  // namespace

template <class P>
void register_conv(OpTable<P>& t) {
  t["conv2d"] = conv2d<P>;
  t["conv_transpose2d"] = conv_transpose2d<P>;
}

#define DIVSCOPE_INSTANTIATE(P) template void register_conv<P>(OpTable<P>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
