// Shape ops: flatten, reshape (pure copies: row-major order is unchanged) and permute.
#include "reference/internal.h"

namespace divscope {
namespace {

// flatten and reshape: out.data = x.data (the output shape was inferred by the op table).
template <class P>
void copy(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  out.data = in[0]->data;
}

// permute: out[i_0, ..., i_{r-1}] = x[j] with j[dims[d]] = i_d.
template <class P>
void permute(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  const TensorOf<P>& x = *in[0];
  auto dims = L.attr_ints("dims");
  int r = x.rank();
  Shape xs = strides_of(x.shape), step(r);
  for (int d = 0; d < r; ++d) step[d] = xs[dims[d] < 0 ? dims[d] + r : dims[d]];
  if (out.size() == 0) return;
  // Rows of the innermost output dim, the outer indices advanced as an odometer (a division per
  // element per dim was most of this op's time).
  const int64_t inner = out.shape[r - 1], inner_step = step[r - 1];
  std::vector<int64_t> idx(r, 0);
  int64_t base = 0;
  for (int64_t i = 0; i < out.size(); i += inner) {
    for (int64_t k = 0; k < inner; ++k) out.data[i + k] = x.data[base + k * inner_step];
    for (int d = r - 2; d >= 0; --d) {
      base += step[d];
      if (++idx[d] < out.shape[d]) break;
      base -= step[d] * out.shape[d];
      idx[d] = 0;
    }
  }
}

}  // namespace

template <class P>
void register_shape(OpTable<P>& t) {
  t["flatten"] = copy<P>;
  t["reshape"] = copy<P>;
  t["permute"] = permute<P>;
}

#define DIVSCOPE_INSTANTIATE(P) template void register_shape<P>(OpTable<P>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
