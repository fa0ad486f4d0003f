// Normalizations: batchnorm2d (inference, running stats), layernorm, rmsnorm, groupnorm.
// Statistics are two-pass: mean = sum(x) / n, then the biased variance sum((x - mean)^2) / n,
// each sum through P::sum; then y = (x - mean) / sqrt(var + eps) * w + b per element.
#include <vector>

#include "reference/internal.h"

namespace divscope {
namespace {

template <class P>
struct Stats {
  typename P::Acc mean, stddev;   // stddev = sqrt(biased variance + eps)
};

// Mean and sqrt(biased variance + eps) of n contiguous elements.
template <class P>
Stats<P> mean_std(const typename P::T* x, int64_t n, double eps) {
  using Acc = typename P::Acc;
  Acc mean = P::sum(n, [&](int64_t i) { return Acc(x[i]); }) / Acc(n);
  Acc var = P::sum(n, [&](int64_t i) {
              Acc d = Acc(x[i]) - mean;
              return d * d;
            }) / Acc(n);
  return {mean, P::sqrt(var + Acc(eps))};
}

// y = (x - mean) / denom, then * w and + b where the layer has them. strict: the shared
// strict_norm_elem, fma((x - mean) / denom, w, b) with w = 1, b = 0 standing in for absent ones.
template <class P>
typename P::Acc affine(typename P::Acc x, typename P::Acc mean, typename P::Acc denom,
                       typename P::Acc w, typename P::Acc b, bool has_w, bool has_b) {
  if constexpr (kStrictFormulas<P>) {
    return strict_norm_elem(x, mean, denom, w, b);
  } else {
    typename P::Acc y = (x - mean) / denom;
    if (has_w) y = y * w;
    if (has_b) y = y + b;
    return y;
  }
}

// batchnorm2d: y[n, c, h, w] = (x - running_mean[c]) / sqrt(running_var[c] + eps) * w[c] + b[c]
template <class P>
void batchnorm2d(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  const TensorOf<P>& x = *in[0];
  auto w = param_of<P>(L, "weight"), b = param_of<P>(L, "bias");
  auto mean = param_of<P>(L, "running_mean"), var = param_of<P>(L, "running_var");
  Acc eps = Acc(L.attr_float("eps"));
  int64_t N = x.dim(0), C = x.dim(1), S = x.dim(2) * x.dim(3);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      Acc denom = P::sqrt(Acc(var[c]) + eps);
      int64_t base = (n * C + c) * S;
      for (int64_t i = 0; i < S; ++i)
        out.data[base + i] = P::store(affine<P>(Acc(x.data[base + i]), Acc(mean[c]), denom,
                                                Acc(w[c]), Acc(b[c]), true, true));
    }
}

// layernorm: over each row of the trailing normalized_shape dims,
// y = (x - mean) / sqrt(var + eps) * w + b   (w, b elementwise over the row; optional)
template <class P>
void layernorm(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  const TensorOf<P>& x = *in[0];
  auto w = param_of<P>(L, "weight"), b = param_of<P>(L, "bias");
  int64_t D = numel(L.attr_ints("normalized_shape")), rows = x.size() / D;
  double eps = L.attr_float("eps");
  for (int64_t r = 0; r < rows; ++r) {
    const auto* xr = x.ptr() + r * D;
    Stats<P> st = mean_std<P>(xr, D, eps);
    for (int64_t i = 0; i < D; ++i) {
      out.data[r * D + i] = P::store(affine<P>(Acc(xr[i]), st.mean, st.stddev,
                                               w.empty() ? Acc(1) : Acc(w[i]),
                                               b.empty() ? Acc(0) : Acc(b[i]), !w.empty(), !b.empty()));
    }
  }
}

// rmsnorm: over each row of the trailing normalized_shape dims,
// y = x / sqrt(sum(x^2) / D + eps) * w   (w optional)
template <class P>
void rmsnorm(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  const TensorOf<P>& x = *in[0];
  auto w = param_of<P>(L, "weight");
  int64_t D = numel(L.attr_ints("normalized_shape")), rows = x.size() / D;
  Acc eps = Acc(L.attr_float("eps"));
  for (int64_t r = 0; r < rows; ++r) {
    const auto* xr = x.ptr() + r * D;
    Acc ms = P::sum(D, [&](int64_t i) { return Acc(xr[i]) * Acc(xr[i]); }) / Acc(D);
    Acc denom = P::sqrt(ms + eps);
    for (int64_t i = 0; i < D; ++i) {
      Acc y;
      if constexpr (kStrictFormulas<P>) {
        y = strict_rms_elem(Acc(xr[i]), denom, w.empty() ? Acc(1) : Acc(w[i]));
      } else {
        y = Acc(xr[i]) / denom;
        if (!w.empty()) y = y * Acc(w[i]);
      }
      out.data[r * D + i] = P::store(y);
    }
  }
}

// groupnorm: x [N, C, *]; channels split into num_groups groups; each (sample, group) block of
// C/num_groups channels x all spatial positions is normalized, then y = y * w[c] + b[c].
template <class P>
void groupnorm(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  const TensorOf<P>& x = *in[0];
  auto w = param_of<P>(L, "weight"), b = param_of<P>(L, "bias");
  int64_t N = x.dim(0), C = x.dim(1), G = L.attr_int("num_groups");
  int64_t S = x.size() / (N * C), cg = C / G;
  double eps = L.attr_float("eps");
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < G; ++g) {
      int64_t base = (n * C + g * cg) * S;
      Stats<P> st = mean_std<P>(x.ptr() + base, cg * S, eps);
      for (int64_t c = g * cg; c < (g + 1) * cg; ++c)
        for (int64_t i = 0; i < S; ++i) {
          int64_t at = (n * C + c) * S + i;
          out.data[at] = P::store(affine<P>(Acc(x.data[at]), st.mean, st.stddev,
                                            w.empty() ? Acc(1) : Acc(w[c]),
                                            b.empty() ? Acc(0) : Acc(b[c]), !w.empty(), !b.empty()));
        }
    }
}

}  // namespace

template <class P>
void register_norm(OpTable<P>& t) {
  t["batchnorm2d"] = batchnorm2d<P>;
  t["layernorm"] = layernorm<P>;
  t["rmsnorm"] = rmsnorm<P>;
  t["groupnorm"] = groupnorm<P>;
}

#define DIVSCOPE_INSTANTIATE(P) template void register_norm<P>(OpTable<P>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
