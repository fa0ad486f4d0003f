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

}  // namespace divscope
