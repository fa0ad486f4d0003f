// embedding: out[..., d] = weight[index, d]. Indices arrive as doubles (the int64 graph input
// converted); each must be an integer in [0, V) or the layer fails with an InputError.
#include <cmath>
#include <sstream>

#include "reference/internal.h"

namespace divscope {
namespace {

template <class P>
void embedding(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  const TensorOf<P>& idx = *in[0];
  const Tensor& w = *L.param("weight");
  int64_t V = w.shape[0], D = w.shape[1];
  auto table = param_of<P>(L, "weight");
  for (int64_t i = 0; i < idx.size(); ++i) {
    double v = static_cast<double>(idx.data[i]);
    if (!(v >= 0 && v < static_cast<double>(V) && std::floor(v) == v)) {
      std::ostringstream msg;
      msg.precision(17);
      msg << L.where() << ": index " << v << " at flat position " << i
          << " is not an integer in [0, " << V << ")";
      throw InputError(msg.str());
    }
    auto row = static_cast<int64_t>(v);
    for (int64_t d = 0; d < D; ++d) out.data[i * D + d] = table[row * D + d];
  }
}

}  // namespace

template <class P>
void register_embedding(OpTable<P>& t) {
  t["embedding"] = embedding<P>;
}

#define DIVSCOPE_INSTANTIATE(P) template void register_embedding<P>(OpTable<P>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
