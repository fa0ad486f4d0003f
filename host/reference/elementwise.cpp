// Elementwise ops: activations (relu, gelu, silu, sigmoid, tanh, leaky_relu) and the binary
// ops add, mul with NumPy broadcasting. Each result is computed in P::Acc from the stored
// inputs and rounded once by P::store.
#include <cmath>

#include "reference/internal.h"

namespace divscope {
namespace {

template <class P, class F>
void unary(const TensorOf<P>& x, TensorOf<P>& out, F f) {
  using Acc = typename P::Acc;
  for (int64_t i = 0; i < x.size(); ++i) out.data[i] = P::store(f(Acc(x.data[i])));
}

// relu(x) = max(x, 0); NaN stays NaN.
template <class P>
void relu(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  if constexpr (kStrictFormulas<P>) return unary<P>(*in[0], out, strict_relu);
  unary<P>(*in[0], out, [](Acc x) { return x < Acc(0) ? Acc(0) : x; });
}

// leaky_relu(x) = x if x > 0 else negative_slope * x
template <class P>
void leaky_relu(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  Acc slope = Acc(L.attr_float("negative_slope"));
  if constexpr (kStrictFormulas<P>)
    return unary<P>(*in[0], out, [slope](Acc x) { return strict_leaky_relu(x, slope); });
  unary<P>(*in[0], out, [slope](Acc x) { return x > Acc(0) ? x : x * slope; });
}

// sigmoid(x) = 1 / (1 + exp(-x))
template <class P>
typename P::Acc sigmoid_of(typename P::Acc x) {
  using Acc = typename P::Acc;
  if constexpr (kStrictFormulas<P>) return strict_sigmoid(x);
  return Acc(1) / (Acc(1) + P::exp(-x));
}

template <class P>
void sigmoid(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  unary<P>(*in[0], out, sigmoid_of<P>);
}

// silu(x) = x * sigmoid(x)
template <class P>
void silu(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  if constexpr (kStrictFormulas<P>) return unary<P>(*in[0], out, strict_silu);
  unary<P>(*in[0], out, [](Acc x) { return x * sigmoid_of<P>(x); });
}

template <class P>
void tanh_op(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  unary<P>(*in[0], out, P::tanh);
}

// gelu, approximate "none": x/2 * (1 + erf(x / sqrt 2))
//       approximate "tanh": x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
template <class P>
void gelu(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  const Acc half(0.5), one(1), inv_sqrt2(0.70710678118654752440),
      sqrt_2_over_pi(0.79788456080286535588), c(0.044715);
  const bool tanh_form = L.attr_str("approximate", "none") == "tanh";
  if constexpr (kStrictFormulas<P>)
    return unary<P>(*in[0], out, tanh_form ? strict_gelu_tanh : strict_gelu_erf);
  if (tanh_form)
    unary<P>(*in[0], out, [&](Acc x) {
      return half * x * (one + P::tanh(sqrt_2_over_pi * (x + c * x * x * x)));
    });
  else
    unary<P>(*in[0], out, [&](Acc x) { return half * x * (one + P::erf(x * inv_sqrt2)); });
}

// out[i] = f(a[ia], b[ib]) where a dim of size 1 repeats along the output (same rank).
template <class P, class F>
void binary(const InputsOf<P>& in, TensorOf<P>& out, F f) {
  using Acc = typename P::Acc;
  const TensorOf<P>&a = *in[0], &b = *in[1];
  int r = out.rank();
  Shape sa = strides_of(a.shape), sb = strides_of(b.shape);
  for (int d = 0; d < r; ++d) {   // broadcast dims do not advance
    if (a.shape[d] == 1) sa[d] = 0;
    if (b.shape[d] == 1) sb[d] = 0;
  }
  for (int64_t i = 0; i < out.size(); ++i) {
    int64_t ia = 0, ib = 0, rem = i;
    for (int d = r - 1; d >= 0; --d) {
      int64_t idx = rem % out.shape[d];
      rem /= out.shape[d];
      ia += idx * sa[d];
      ib += idx * sb[d];
    }
    out.data[i] = P::store(f(Acc(a.data[ia]), Acc(b.data[ib])));
  }
}

template <class P>
void add(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  binary<P>(in, out, [](Acc a, Acc b) { return a + b; });
}

template <class P>
void mul(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  binary<P>(in, out, [](Acc a, Acc b) { return a * b; });
}

}  // namespace

template <class P>
void register_elementwise(OpTable<P>& t) {
  t["relu"] = relu<P>;
  t["leaky_relu"] = leaky_relu<P>;
  t["sigmoid"] = sigmoid<P>;
  t["silu"] = silu<P>;
  t["tanh"] = tanh_op<P>;
  t["gelu"] = gelu<P>;
  t["add"] = add<P>;
  t["mul"] = mul<P>;
}

#define DIVSCOPE_INSTANTIATE(P) template void register_elementwise<P>(OpTable<P>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
