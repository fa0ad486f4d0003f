// The device FP64 reference against the CPU's, one layer at a time (docs/ops.md, FP64 on a
// device): what `run` cross-checks on the first batch and the kernel tests hold.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "graph/model.h"
#include "graph/tensor.h"

namespace divscope {

// True when the op's FP64 kernels do the CPU reference's operations in its order with no libm
// function (GEMMs unfused with k ascending, sums left to right, IEEE + - * / sqrt, selections
// and copies): the device output must then equal the CPU's bit for bit (NaN payloads aside).
// False for the ops that call exp/log/tanh/erf/pow, whose last bits differ between glibc and
// CUDA's libdevice: gelu, silu, sigmoid, tanh, exp, log, erf, pow, softmax, log_softmax,
// scaled_dot_product_attention.
bool fp64_device_bitwise(const std::string& op);

// Where the libm functions differ, each element i must satisfy
//   |device_i - cpu_i| <= kFp64LibmUlps * u * T_i + kFp64LibmUlps * 2^-1074     (u = 2^-53)
// with T_i the magnitude of the terms the libm results enter element i through -- the data's
// conditioning, not a fixed relative tolerance:
//   exp log tanh erf sigmoid silu pow softmax:  |cpu_i|  (each side within a few ulps of the
//                                               true value, and these formulas keep relative
//                                               errors relative: softmax's terms are positive)
//   gelu:                    |x_i| + |cpu_i|     (x/2 * (1 + erf): erf's absolute error times x)
//   log_softmax:             |cpu_i| + |log s| + 1 (log s = -max of the line's outputs; the +1
//                                               is s's relative error turned absolute by log)
//   attention (q, k, v):     max over keys j of |v[h, j, d]| (the output is sum_j p_j v_j with
//                                               sum_j p_j = 1 and each p_j relatively accurate)
// 64 u: glibc's and libdevice's exp/log/tanh/erf/pow are each within 2 ulps (4u) of the exact
// value, a composite formula adds a few roundings of its own -- 16 u at most, so 64 u leaves a
// factor of four -- while an indexing or order bug in a kernel gives errors of 1e-8 and more.
// Non-finite elements must match in kind (NaN with NaN, an infinity with the same infinity).
constexpr double kFp64LibmUlps = 64;

struct ReferenceAgreement {
  bool bitwise = true;      // the rule applied (fp64_device_bitwise)
  int64_t count = 0;        // elements compared
  int64_t beyond = 0;       // elements that break the rule
  int64_t first = -1;       // the worst of them (bitwise rule: the first)
  double cpu = 0, device = 0, bound = 0;   // at `first`; bound 0 under the bitwise rule
  bool ok() const { return beyond == 0; }
  std::string describe() const;   // one line: rule, count, where, values
};

// `in` are the layer's inputs (the same for both sides), `cpu` the CPU reference's output.
ReferenceAgreement compare_device_reference(const Layer& l, const std::vector<const Tensor*>& in,
                                            const Tensor& cpu, const Tensor& device);

}  // namespace divscope
