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

template <class P>
Shape checked_shape_of(const Layer& L, const std::vector<const BasicTensor<typename P::T>*>& in) {
  std::vector<Shape> shapes;
  for (const auto* t : in) {
    if (!t || t->rank() < 1 || t->size() != numel(t->shape))
      throw InputError(L.where() + ": malformed input tensor");
    shapes.push_back(t->shape);
  }
  return checked_out_shape(L, shapes);
}

template <class P>
OpFn<P> op_of(const Layer& L) {
  auto it = op_table<P>().find(L.op);
  if (it == op_table<P>().end())
    throw InputError(L.where() + ": op '" + L.op + "' has no CPU reference");
  return it->second;
}

}  // namespace

template <class P>
void layer_forward(const Layer& L, const std::vector<const BasicTensor<typename P::T>*>& in,
                   BasicTensor<typename P::T>& out) {
  const OpFn<P> op = op_of<P>(L);
  const Shape want = checked_shape_of<P>(L, in);
  out.shape = want;   // poisoned: an element an op forgot to write shows up as NaN
  out.data.assign(static_cast<size_t>(numel(want)),
                  std::numeric_limits<typename P::T>::quiet_NaN());
  op(L, in, out);
}

bool op_in_place_capable(const std::string& op) {
  // Each of these writes out[i] from its same-shape inputs' element i only (unary<P>,
  // broadcast_map<P> over an input of the output's shape, batchnorm2d's per-element affine).
  static const char* const kOps[] = {
      "relu", "leaky_relu", "sigmoid", "silu", "tanh", "gelu", "hardtanh", "hardsigmoid",
      "hardswish", "sqrt", "rsqrt", "exp", "log", "erf", "abs", "neg",
      "add", "mul", "sub", "div", "pow", "maximum", "minimum", "where", "batchnorm2d"};
  for (const char* o : kOps)
    if (op == o) return true;
  return false;
}

template <class P>
bool layer_forward_in_place(const Layer& L, const std::vector<const BasicTensor<typename P::T>*>& in,
                            size_t k, BasicTensor<typename P::T>& io) {
  if (!op_in_place_capable(L.op) || k >= in.size() || in[k] != &io) return false;
  const OpFn<P> op = op_of<P>(L);
  if (checked_shape_of<P>(L, in) != io.shape) return false;
  op(L, in, io);
  return true;
}

void reference_forward(const Layer& L, const std::vector<const Tensor*>& in, Tensor& out) {
  layer_forward<Fp64Policy>(L, in, out);
}

#define DIVSCOPE_INSTANTIATE(P)                                                               \
  template void layer_forward<P>(const Layer&, const std::vector<const BasicTensor<P::T>*>&,  \
                                 BasicTensor<P::T>&);                                         \
  template bool layer_forward_in_place<P>(const Layer&,                                       \
                                          const std::vector<const BasicTensor<P::T>*>&, size_t, \
                                          BasicTensor<P::T>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
