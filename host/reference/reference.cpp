// Dispatch of reference_forward / layer_forward to the op families.
#include "reference/reference.h"

#include <limits>

#include "graph/ops.h"
#include "reference/internal.h"

namespace divscope {
namespace {

template <class P>
const OpTable<P>& op_table() {
  static const OpTable<P> table = [] {
    OpTable<P> t;
    register_gemm<P>(t);
    register_conv<P>(t);
    register_norm<P>(t);
    register_softmax<P>(t);
    register_elementwise<P>(t);
    register_pool<P>(t);
    register_shape<P>(t);
    register_embedding<P>(t);
    register_attention<P>(t);
    register_reduce<P>(t);
    register_concat_slice<P>(t);
    return t;
  }();
  return table;
}

}  // namespace

template <class P>
void layer_forward(const Layer& L, const std::vector<const BasicTensor<typename P::T>*>& in,
                   BasicTensor<typename P::T>& out) {
  auto it = op_table<P>().find(L.op);
  if (it == op_table<P>().end())
    throw InputError(L.where() + ": op '" + L.op + "' has no CPU reference");
  std::vector<Shape> shapes;
  for (const auto* t : in) {
    if (!t || t->rank() < 1 || t->size() != numel(t->shape))
      throw InputError(L.where() + ": malformed input tensor");
    shapes.push_back(t->shape);
  }
  const Shape want = checked_out_shape(L, shapes);
  out.shape = want;   // poisoned: an element an op forgot to write shows up as NaN
  out.data.assign(static_cast<size_t>(numel(want)),
                  std::numeric_limits<typename P::T>::quiet_NaN());
  it->second(L, in, out);
}

void reference_forward(const Layer& L, const std::vector<const Tensor*>& in, Tensor& out) {
  layer_forward<Fp64Policy>(L, in, out);
}

#define DIVSCOPE_INSTANTIATE(P)                                                          \
  template void layer_forward<P>(const Layer&, const std::vector<const BasicTensor<P::T>*>&, \
                                 BasicTensor<P::T>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
