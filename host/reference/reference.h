// The CPU reference: forward of one layer (README, What divscope run computes, §4).
#pragma once
#include <vector>

#include "graph/model.h"
#include "reference/policy.h"
#include "graph/tensor.h"

namespace divscope {

// FP64 reference forward of one layer. `in` are full tensors (batch dim first), one per layer
// input, in order; `out` is resized to {N} + L.out_shape. The layer must have passed
// validate_and_infer. Throws InputError naming the layer (L.where()) for bad runtime data:
// inputs whose shapes disagree with the layer, an embedding index that is not an integer in
// range.
void reference_forward(const Layer& L, const std::vector<const Tensor*>& in, Tensor& out);

// The same loops under any policy of policy.h (reference_forward is layer_forward<Fp64Policy>).
template <class P>
void layer_forward(const Layer& L, const std::vector<const BasicTensor<typename P::T>*>& in,
                   BasicTensor<typename P::T>& out);

// True when `op` computes each output element from the elements at the same flat index of those
// inputs that have the output's shape (the element-wise ops and batchnorm2d), so its output may
// be written over such an input, element by element, each read before it is written.
bool op_in_place_capable(const std::string& op);

// layer_forward with the output written over input k: `io` is the tensor in[k] points to, which
// the caller gives up. Applies when op_in_place_capable(L.op) and the output's shape is io's;
// then io holds the output (no NaN poisoning: such an op writes every element) and it returns
// true. Otherwise it returns false and io is untouched.
template <class P>
bool layer_forward_in_place(const Layer& L, const std::vector<const BasicTensor<typename P::T>*>& in,
                            size_t k, BasicTensor<typename P::T>& io);

}  // namespace divscope
