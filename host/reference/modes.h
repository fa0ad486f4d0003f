// The CPU path of every precision mode (docs/ops.md, Precision modes): the reference loops under the mode's policy.
#pragma once
#include <vector>

#include "graph/model.h"
#include "precision.h"
#include "graph/tensor.h"

namespace divscope {

// One layer in mode `m` (fp32, tf32, fp16, bf16, strict). Inputs hold values representable in
// the mode's storage format; so does the output. Mode::fp64 is not a float mode: use
// reference_forward. strict outputs leave with every NaN as the one pattern kStrictNanBits
// (strict_canonicalize; docs/ops.md, Precision modes: NaN), as the kernels' do.
void mode_forward(Mode m, const Layer& L, const std::vector<const TensorF*>& in, TensorF& out);

// Every NaN of t becomes kStrictNanBits (host/strict_math.h strict_canonical).
void strict_canonicalize(TensorF& t);

}  // namespace divscope
