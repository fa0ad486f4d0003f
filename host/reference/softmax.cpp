// softmax and log_softmax along one axis.
#include <cmath>

#include "reference/internal.h"

namespace divscope {

// m = max x (NaN wins, as in PyTorch); s = sum exp(x - m);
// softmax: y = exp(x - m) / s;   log_softmax: y = (x - m) - log s.
template <class P>
void softmax_line(const typename P::T* x, typename P::T* y, int64_t n, int64_t stride, bool log) {
  using Acc = typename P::Acc;
  if constexpr (kStrictFormulas<P>) {   // the shared row formulas of strict_math.h
    const float m = strict_row_max(x, n, stride);
    const float s = strict_softmax_sum(x, n, stride, m);
    const float ls = log ? strict_log(s) : 0.0f;
    for (int64_t i = 0; i < n; ++i)
      y[i * stride] = log ? strict_log_softmax_elem(x[i * stride], m, ls)
                          : strict_softmax_elem(strict_softmax_exp(x[i * stride], m), s);
    return;
  }
  Acc m = Acc(x[0]);
  for (int64_t i = 1; i < n; ++i) {
    Acc v = Acc(x[i * stride]);
    if (v > m || std::isnan(v)) m = v;
  }
  Acc s = P::sum(n, [&](int64_t i) { return P::exp(Acc(x[i * stride]) - m); });
  if (log) {
    Acc ls = P::log(s);
    for (int64_t i = 0; i < n; ++i) y[i * stride] = P::store(Acc(x[i * stride]) - m - ls);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i * stride] = P::store(P::exp(Acc(x[i * stride]) - m) / s);
  }
}

namespace {

template <class P, bool kLog>
void softmax(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  const TensorOf<P>& x = *in[0];
  int64_t axis = L.attr_int("axis");
  if (axis < 0) axis += x.rank();
  AxisSplit s = split_at(x.shape, axis);
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      int64_t base = o * s.n * s.inner + i;
      softmax_line<P>(x.ptr() + base, out.ptr() + base, s.n, s.inner, kLog);
    }
}

}  // namespace

template <class P>
void register_softmax(OpTable<P>& t) {
  t["softmax"] = softmax<P, false>;
  t["log_softmax"] = softmax<P, true>;
}

#define DIVSCOPE_INSTANTIATE(P)                                                            \
  template void softmax_line<P>(const P::T*, P::T*, int64_t, int64_t, bool);              \
  template void register_softmax<P>(OpTable<P>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
