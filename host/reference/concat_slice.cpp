// Data movement: concat, slice (also what the loader lowers `split` to) and expand. Each output
// element is a copy of a stored input value, so every mode is exact (no P::store).
#include <algorithm>

#include "reference/internal.h"

namespace divscope {
namespace {

int64_t axis_of(const Layer& L, int rank) {
  const int64_t a = L.attr_int("axis");
  return a < 0 ? a + rank : a;
}

// concat: per outer index, input k's [n_k, inner] block follows input k-1's.
template <class P>
void concat(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  const int64_t a = axis_of(L, out.rank());
  const AxisSplit os = split_at(out.shape, a);
  int64_t off = 0;   // where input k's block starts inside an output row of n * inner
  for (const auto* x : in) {
    const int64_t block = x->shape[a] * os.inner;
    for (int64_t o = 0; o < os.outer; ++o)
      std::copy(x->data.begin() + o * block, x->data.begin() + (o + 1) * block,
                out.data.begin() + o * os.n * os.inner + off);
    off += block;
  }
}

// slice: out[.., j, ..] = x[.., start + j * step, ..] along `axis`.
template <class P>
void slice(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  const TensorOf<P>& x = *in[0];
  const int64_t a = axis_of(L, x.rank());
  const int64_t start = L.attr_int("start"), step = L.attr_int("step", 1);
  const AxisSplit xs = split_at(x.shape, a), os = split_at(out.shape, a);
  for (int64_t o = 0; o < os.outer; ++o)
    for (int64_t j = 0; j < os.n; ++j) {
      const auto src = x.data.begin() + (o * xs.n + start + j * step) * xs.inner;
      std::copy(src, src + xs.inner, out.data.begin() + (o * os.n + j) * os.inner);
    }
}

// expand: out[i] = x[j] with x's size-1 dims (the batch included) not advancing. `like`, when
// present, only gave the output its batch size.
template <class P>
void expand(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  const TensorOf<P>& x = *in[0];
  const int r = out.rank();
  Shape st = strides_of(x.shape);
  for (int d = 0; d < r; ++d)
    if (x.shape[d] == 1) st[d] = 0;
  for (int64_t i = 0; i < out.size(); ++i) {
    int64_t j = 0, rem = i;
    for (int d = r - 1; d >= 0; --d) {
      j += (rem % out.shape[d]) * st[d];
      rem /= out.shape[d];
    }
    out.data[i] = x.data[j];
  }
}

}  // namespace

template <class P>
void register_concat_slice(OpTable<P>& t) {
  t["concat"] = concat<P>;
  t["slice"] = slice<P>;
  t["expand"] = expand<P>;
}

#define DIVSCOPE_INSTANTIATE(P) template void register_concat_slice<P>(OpTable<P>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
