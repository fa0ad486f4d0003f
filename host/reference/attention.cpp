// scaled_dot_product_attention (PyTorch's math path, written out):
//   out = softmax(q k^T * scale + mask) v     per leading index (batch, head),
// q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv]; scale defaults to 1/sqrt(D); with is_causal
// the mask is -inf above the diagonal, top-left aligned (query i sees keys j <= i).
// Both products go through the GEMM core; scores are stored (P::store) between the steps.
#include <cmath>
#include <limits>
#include <vector>

#include "reference/gemm.h"
#include "reference/internal.h"

namespace divscope {
namespace {

template <class P>
void sdpa(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using T = typename P::T;
  using Acc = typename P::Acc;
  const TensorOf<P>&q = *in[0], &k = *in[1], &v = *in[2];
  int64_t Tq = q.dim(-2), D = q.dim(-1), Tk = k.dim(-2), Dv = v.dim(-1);
  int64_t heads = q.size() / (Tq * D);
  Acc scale = Acc(L.attr_float("scale", 1.0 / std::sqrt(static_cast<double>(D))));
  bool causal = L.attr_int("is_causal", 0) != 0;
  std::vector<T> s(static_cast<size_t>(Tq * Tk));
  for (int64_t h = 0; h < heads; ++h) {
    gemm<P>(Tq, Tk, D, {q.ptr() + h * Tq * D, D, 1}, {k.ptr() + h * Tk * D, 1, D}, {},
            s.data(), Tk);
    for (int64_t i = 0; i < Tq; ++i) {
      T* row = s.data() + i * Tk;
      for (int64_t j = 0; j < Tk; ++j)
        row[j] = causal && j > i ? -std::numeric_limits<T>::infinity()
                                 : P::store(Acc(row[j]) * scale);
      softmax_line<P>(row, row, Tk, 1, false);
    }
    gemm<P>(Tq, Dv, Tk, {s.data(), Tk, 1}, {v.ptr() + h * Tk * Dv, Dv, 1}, {},
            out.ptr() + h * Tq * Dv, Dv);
  }
}

}  // namespace

template <class P>
void register_attention(OpTable<P>& t) {
  t["scaled_dot_product_attention"] = sdpa<P>;
}

#define DIVSCOPE_INSTANTIATE(P) template void register_attention<P>(OpTable<P>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
