#include "reference/modes.h"

#include "errors.h"
#include "reference/reference.h"
#include "strict_math.h"

namespace divscope {

void strict_canonicalize(TensorF& t) {
  for (float& v : t.data) v = strict_canonical(v);
}

void mode_forward(Mode m, const Layer& L, const std::vector<const TensorF*>& in, TensorF& out) {
  switch (m) {
    case Mode::fp32: return layer_forward<Fp32Policy>(L, in, out);
    case Mode::tf32: return layer_forward<Tf32Policy>(L, in, out);
    case Mode::fp16: return layer_forward<Fp16Policy>(L, in, out);
    case Mode::bf16: return layer_forward<Bf16Policy>(L, in, out);
    case Mode::strict:
      layer_forward<StrictPolicy>(L, in, out);
      return strict_canonicalize(out);
    default: throw RuntimeFault(std::string("mode_forward: ") + mode_name(m) + " is not a float mode");
  }
}

bool mode_forward_in_place(Mode m, const Layer& L, const std::vector<const TensorF*>& in, size_t k,
                           TensorF& io) {
  switch (m) {
    case Mode::fp32: return layer_forward_in_place<Fp32Policy>(L, in, k, io);
    case Mode::tf32: return layer_forward_in_place<Tf32Policy>(L, in, k, io);
    case Mode::fp16: return layer_forward_in_place<Fp16Policy>(L, in, k, io);
    case Mode::bf16: return layer_forward_in_place<Bf16Policy>(L, in, k, io);
    case Mode::strict:
      if (!layer_forward_in_place<StrictPolicy>(L, in, k, io)) return false;
      strict_canonicalize(io);
      return true;
    default: throw RuntimeFault(std::string("mode_forward_in_place: ") + mode_name(m) + " is not a float mode");
  }
}

}  // namespace divscope
