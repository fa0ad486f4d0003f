// Elementwise ops: activations (relu, gelu, silu, sigmoid, tanh, leaky_relu, hardtanh,
// hardsigmoid, hardswish), math (sqrt, rsqrt, exp, log, erf, abs, neg), the binary ops add, mul,
// sub, div, pow, maximum, minimum and where, with NumPy broadcasting. Each result is computed in P::Acc from the stored
// inputs and rounded once by P::store.
#include <array>
#include <cmath>
#include <tuple>

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

// out[i] = f(x_0[j_0], ..., x_{K-1}[j_K-1]) where a dim of size 1 repeats along the output (same
// rank; the batch dim too, so batch-1 constants broadcast over the batch). Row by row along the
// last dim: each row's offsets are unravelled once, then every input steps by 1 or (broadcast)
// 0; inputs of the output's own shape make the whole tensor one row.
template <class P, size_t K, class F>
void broadcast_map(const InputsOf<P>& in, TensorOf<P>& out, F f) {
  using T = typename P::T;
  using Acc = typename P::Acc;
  const int r = out.rank();
  const int64_t total = out.size();
  if (total == 0) return;
  bool same = true;
  for (size_t k = 0; k < K; ++k) same = same && in[k]->shape == out.shape;
  std::array<Shape, K> st;
  for (size_t k = 0; k < K; ++k) {
    st[k] = strides_of(in[k]->shape);
    for (int d = 0; d < r; ++d)   // broadcast dims do not advance
      if (in[k]->shape[d] == 1) st[k][d] = 0;
  }
  const int64_t inner = same ? total : r > 0 ? out.shape[r - 1] : 1;
  const int last = same ? -1 : r - 1;   // the dim a row runs along (none when same)
  std::array<int64_t, K> step{};
  bool contiguous = true;
  for (size_t k = 0; k < K; ++k) {
    step[k] = last >= 0 ? st[k][last] : 1;
    contiguous = contiguous && step[k] == 1;
  }
  for (int64_t row0 = 0; row0 < total; row0 += inner) {
    std::array<const T*, K> p;
    for (size_t k = 0; k < K; ++k) p[k] = in[k]->ptr();
    int64_t rem = row0 / inner;
    for (int d = last - 1; d >= 0; --d) {
      const int64_t idx = rem % out.shape[d];
      rem /= out.shape[d];
      for (size_t k = 0; k < K; ++k) p[k] += idx * st[k][d];
    }
    T* o = out.ptr() + row0;
    std::array<Acc, K> v;
    if (contiguous) {
      for (int64_t i = 0; i < inner; ++i) {
        for (size_t k = 0; k < K; ++k) v[k] = Acc(p[k][i]);
        o[i] = P::store(std::apply(f, v));
      }
    } else {
      for (int64_t i = 0; i < inner; ++i) {
        for (size_t k = 0; k < K; ++k) v[k] = Acc(p[k][i * step[k]]);
        o[i] = P::store(std::apply(f, v));
      }
    }
  }
}

template <class P, class F>
void binary(const InputsOf<P>& in, TensorOf<P>& out, F f) {
  broadcast_map<P, 2>(in, out, f);
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

// ---- model format v2 elementwise ops (strict: the strict_math.h formulas) -------------------

// Selections, exact in every mode; NaN propagates (every comparison with it is false).
template <class T>
T clamp_keep_nan(T x, T lo, T hi) { return x < lo ? lo : (x > hi ? hi : x); }
template <class T>
T max_nan_wins(T a, T b) { return a != a ? a : (b != b ? b : (a < b ? b : a)); }
template <class T>
T min_nan_wins(T a, T b) { return a != a ? a : (b != b ? b : (b < a ? b : a)); }

template <class P>
void hardtanh(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  const Acc lo = Acc(L.attr_float("min_val")), hi = Acc(L.attr_float("max_val"));
  if constexpr (kStrictFormulas<P>)
    return unary<P>(*in[0], out, [=](Acc x) { return strict_hardtanh(x, lo, hi); });
  unary<P>(*in[0], out, [=](Acc x) { return clamp_keep_nan(x, lo, hi); });
}

// hardsigmoid = min(max(x + 3, 0), 6) / 6; hardswish = x * that (before the / 6), as PyTorch.
template <class P>
void hardsigmoid(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  if constexpr (kStrictFormulas<P>) return unary<P>(*in[0], out, strict_hardsigmoid);
  unary<P>(*in[0], out, [](Acc x) { return clamp_keep_nan(x + Acc(3), Acc(0), Acc(6)) / Acc(6); });
}

template <class P>
void hardswish(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  if constexpr (kStrictFormulas<P>) return unary<P>(*in[0], out, strict_hardswish);
  unary<P>(*in[0], out,
           [](Acc x) { return x * clamp_keep_nan(x + Acc(3), Acc(0), Acc(6)) / Acc(6); });
}

// The policy's transcendentals are strict_math.h's for StrictPolicy (policy.h), so these
// are written once for every mode.
template <class P>
void sqrt_op(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) { unary<P>(*in[0], out, P::sqrt); }
template <class P>
void exp_op(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) { unary<P>(*in[0], out, P::exp); }
template <class P>
void log_op(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) { unary<P>(*in[0], out, P::log); }
template <class P>
void erf_op(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) { unary<P>(*in[0], out, P::erf); }

// rsqrt = 1 / sqrt(x): two roundings in every float mode (no approximate rsqrt).
template <class P>
void rsqrt(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  if constexpr (kStrictFormulas<P>) return unary<P>(*in[0], out, strict_rsqrt);
  unary<P>(*in[0], out, [](Acc x) { return Acc(1) / P::sqrt(x); });
}

// abs and neg only touch the sign bit (neg(+0) = -0, unlike 0 - x).
template <class P>
void abs_op(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  if constexpr (kStrictFormulas<P>) return unary<P>(*in[0], out, s_abs);
  unary<P>(*in[0], out, [](Acc x) { return std::fabs(x); });
}
template <class P>
void neg(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  if constexpr (kStrictFormulas<P>) return unary<P>(*in[0], out, s_neg);
  unary<P>(*in[0], out, [](Acc x) { return -x; });
}

template <class P>
void sub(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  binary<P>(in, out, [](Acc a, Acc b) { return a - b; });
}
template <class P>
void div(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  binary<P>(in, out, [](Acc a, Acc b) { return a / b; });
}
template <class P>
void pow_op(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  if constexpr (kStrictFormulas<P>) return binary<P>(in, out, strict_pow);
  binary<P>(in, out, [](Acc a, Acc b) { return std::pow(a, b); });
}
template <class P>
void maximum(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  binary<P>(in, out, max_nan_wins<typename P::Acc>);
}
template <class P>
void minimum(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  binary<P>(in, out, min_nan_wins<typename P::Acc>);
}

// where: cond != 0 ? a : b (a NaN cond is != 0, so it selects a).
template <class P>
void where(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  using Acc = typename P::Acc;
  broadcast_map<P, 3>(in, out, [](Acc c, Acc a, Acc b) { return c != Acc(0) ? a : b; });
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
  t["hardtanh"] = hardtanh<P>;
  t["hardsigmoid"] = hardsigmoid<P>;
  t["hardswish"] = hardswish<P>;
  t["sqrt"] = sqrt_op<P>;
  t["rsqrt"] = rsqrt<P>;
  t["exp"] = exp_op<P>;
  t["log"] = log_op<P>;
  t["erf"] = erf_op<P>;
  t["abs"] = abs_op<P>;
  t["neg"] = neg<P>;
  t["sub"] = sub<P>;
  t["div"] = div<P>;
  t["pow"] = pow_op<P>;
  t["maximum"] = maximum<P>;
  t["minimum"] = minimum<P>;
  t["where"] = where<P>;
}

#define DIVSCOPE_INSTANTIATE(P) template void register_elementwise<P>(OpTable<P>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
