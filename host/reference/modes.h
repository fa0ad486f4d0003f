// The CPU path of every precision mode (docs/ops.md, Precision modes): the reference loops under the mode's policy.
#pragma once
#include <vector>

#include "graph/model.h"
#include "precision.h"
#include "graph/tensor.h"
#include "reference/round_bulk.h"

namespace divscope {

// One layer in mode `m` (fp32, tf32, fp16, bf16, strict). Inputs hold values representable in
// the mode's storage format; so does the output. Mode::fp64 is not a float mode: use
// reference_forward. strict outputs leave with every NaN as the one pattern kStrictNanBits
// (strict_canonicalize; docs/ops.md, Precision modes: NaN), as the kernels' do.
void mode_forward(Mode m, const Layer& L, const std::vector<const TensorF*>& in, TensorF& out);

// mode_forward with the output written over input k (`io`, which in[k] points to; the caller
// gives it up): see layer_forward_in_place. False, io untouched, where that does not apply.
bool mode_forward_in_place(Mode m, const Layer& L, const std::vector<const TensorF*>& in, size_t k,
                           TensorF& io);

// A tensor (double reference values or float ones) in mode m's storage: cast to float, then
// rounded to the mode's format where `round` (integer indices stay as they are).
template <class T>
TensorF to_storage(const BasicTensor<T>& t, Mode m, bool round) {
  TensorF f(t.shape);
  for (int64_t i = 0; i < t.size(); ++i) f.data[i] = static_cast<float>(t.data[i]);
  if (round) round_storage_bulk(m, f.ptr(), f.size());   // round_storage per element
  return f;
}

// Every NaN of t becomes kStrictNanBits (host/strict_math.h strict_canonical).
void strict_canonicalize(TensorF& t);

}  // namespace divscope
