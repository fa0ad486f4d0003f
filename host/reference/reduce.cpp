// Reductions over a set of axes: reduce_sum, reduce_mean, reduce_max (torch.sum/mean/amax).
// The reduced elements of one output are visited in row-major order of the reduced axes (last
// fastest): that is the row P::sum adds (strict: the 256-lane tree of docs/ops.md, Precision modes: strict reductions over that
// row, so the kernels must number the row the same way).
#include <cmath>
#include <limits>

#include "reference/internal.h"

namespace divscope {
namespace {

// Element offsets of the reduced row (`row`) and of each output's first element (`base`).
struct ReducePlan {
  std::vector<int64_t> row, base;
};

ReducePlan plan_reduce(const Layer& L, const Shape& x) {
  const int r = static_cast<int>(x.size());
  std::vector<bool> reduced(r, false);
  for (int64_t a : L.attr_ints("axes")) reduced[a < 0 ? a + r : a] = true;
  const Shape st = strides_of(x);
  ReducePlan p;
  p.row = {0};
  p.base = {0};
  // Odometer expansion, outermost dim first, so the last axis ends up fastest in both lists.
  for (int d = 0; d < r; ++d) {
    std::vector<int64_t>& v = reduced[d] ? p.row : p.base;
    std::vector<int64_t> next;
    next.reserve(v.size() * x[d]);
    for (int64_t o : v)
      for (int64_t i = 0; i < x[d]; ++i) next.push_back(o + i * st[d]);
    v.swap(next);
  }
  return p;
}

// sum; mean = sum / n, n converted to Acc once (strict: strict_mean_of_sum, the same IEEE
// division).
template <class P, bool kMean>
void reduce_sum_or_mean(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  const ReducePlan p = plan_reduce(L, in[0]->shape);
  const auto* x = in[0]->ptr();
  const int64_t n = static_cast<int64_t>(p.row.size());
  for (size_t o = 0; o < p.base.size(); ++o) {
    const int64_t b = p.base[o];
    const Acc s = P::sum(n, [&](int64_t i) { return Acc(x[b + p.row[i]]); });
    if constexpr (!kMean)
      out.data[o] = P::store(s);
    else if constexpr (kStrictFormulas<P>)
      out.data[o] = strict_mean_of_sum(s, n);
    else
      out.data[o] = P::store(s / Acc(n));
  }
}

// amax: NaN wins; the order does not matter (max is exact), strict's -0 max becomes +0 as in
// its softmax (strict_max_finish).
template <class P>
void reduce_max(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using T = typename P::T;
  const ReducePlan p = plan_reduce(L, in[0]->shape);
  const T* x = in[0]->ptr();
  for (size_t o = 0; o < p.base.size(); ++o) {
    const T* xb = x + p.base[o];
    if constexpr (kStrictFormulas<P>) {
      float m = -s_inf();
      for (int64_t off : p.row) m = strict_max_step(m, xb[off]);
      out.data[o] = strict_max_finish(m);
    } else {
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t off : p.row)
        if (xb[off] > m || std::isnan(xb[off])) m = xb[off];
      out.data[o] = m;
    }
  }
}

}  // namespace

template <class P>
void register_reduce(OpTable<P>& t) {
  t["reduce_sum"] = reduce_sum_or_mean<P, false>;
  t["reduce_mean"] = reduce_sum_or_mean<P, true>;
  t["reduce_max"] = reduce_max<P>;
}

#define DIVSCOPE_INSTANTIATE(P) template void register_reduce<P>(OpTable<P>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
