// Dispatch of reference_forward / layer_forward to the op families.
#include "reference/reference.h"

#include <limits>

#include "ops.h"
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
    return t;
  }();
  return table;
}

}  // namespace

template <class P>
void layer_forward(const Layer& L, const std::vector<const BasicTensor<typename P::T>*>& in,
                   BasicTensor<typename P::T>& out) {
  const OpSpec* spec = find_op(L.op);
  auto it = op_table<P>().find(L.op);
  if (!spec || it == op_table<P>().end())
    throw InputError(L.where() + ": op '" + L.op + "' has no CPU reference");
  if (static_cast<int>(in.size()) != spec->num_inputs)
    throw InputError(L.where() + ": expects " + std::to_string(spec->num_inputs) +
                     " input(s), got " + std::to_string(in.size()));
  // The op table's shape rule, rerun on the actual shapes, must give the layer's output shape:
  // the loops below index by these shapes and trust them.
  std::vector<Shape> shapes;
  for (const auto* t : in) {
    if (!t || t->rank() < 1 || t->size() != numel(t->shape))
      throw InputError(L.where() + ": malformed input tensor");
    if (t->shape[0] != in[0]->shape[0])
      throw InputError(L.where() + ": inputs have different batch sizes");
    shapes.push_back(t->shape);
  }
  Shape want{in[0]->shape[0]};
  want.insert(want.end(), L.out_shape.begin(), L.out_shape.end());
  Shape got;
  try {
    got = spec->infer(L, shapes);
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw InputError(L.where() + ": " + e.what());
  }
  if (got != want)
    throw InputError(L.where() + ": inputs give output shape " + shape_str(got) +
                     ", the model says " + shape_str(want));
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
