// Shared plumbing of the reference op families (not part of the public API: see reference.h).
#pragma once
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "errors.h"
#include "graph/model.h"
#include "reference/policy.h"
#include "graph/tensor.h"

namespace divscope {

// The strict policy's per-element formulas are the shared __host__ __device__ functions of
// strict_math.h (docs/ops.md, Precision modes: strict formulas), so the CPU strict path and the strict kernels cannot drift.
template <class P>
constexpr bool kStrictFormulas = std::is_same_v<P, StrictPolicy>;

template <class P>
using TensorOf = BasicTensor<typename P::T>;
template <class P>
using InputsOf = std::vector<const TensorOf<P>*>;

// Every op has this signature. `out` arrives with its full shape ({N} + L.out_shape) and every
// element NaN; the op writes every element. An op listed in op_in_place_capable (reference.h)
// may also get `out` as one of `in` (layer_forward_in_place): it must read element i of each
// input of the output's shape only to write element i.
template <class P>
using OpFn = void (*)(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out);
template <class P>
using OpTable = std::map<std::string, OpFn<P>>;

// Each op family adds its ops to the table (one function per file, named like the file).
template <class P> void register_gemm(OpTable<P>& t);         // linear, matmul
template <class P> void register_conv(OpTable<P>& t);         // conv2d, conv_transpose2d
template <class P> void register_norm(OpTable<P>& t);         // batchnorm2d, layernorm, rmsnorm, groupnorm
template <class P> void register_softmax(OpTable<P>& t);      // softmax, log_softmax
template <class P> void register_elementwise(OpTable<P>& t);  // activations, add, mul
template <class P> void register_pool(OpTable<P>& t);         // max/avg/global/adaptive pools, upsample
template <class P> void register_shape(OpTable<P>& t);        // flatten, reshape, permute
template <class P> void register_embedding(OpTable<P>& t);
template <class P> void register_attention(OpTable<P>& t);
template <class P> void register_reduce(OpTable<P>& t);        // reduce_sum, reduce_mean, reduce_max
template <class P> void register_concat_slice(OpTable<P>& t);  // concat, slice, expand

// A parameter in the policy's storage format (parameters are loaded as FP64); empty when the
// layer has no such parameter. A policy that keeps doubles as they are (the FP64 reference) reads
// the model's own array; the others get a rounded copy (P::store per element).
template <class T>
class Param {
 public:
  Param() = default;
  explicit Param(const std::vector<T>* model) : p_(model->data()), n_(model->size()) {}
  explicit Param(std::vector<T> own) : own_(std::move(own)), p_(own_.data()), n_(own_.size()) {}
  Param(Param&& o) noexcept : own_(std::move(o.own_)), p_(own_.empty() ? o.p_ : own_.data()), n_(o.n_) {}
  Param& operator=(Param&&) = delete;
  Param(const Param&) = delete;
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  const T& operator[](size_t i) const { return p_[i]; }

 private:
  std::vector<T> own_;
  const T* p_ = nullptr;
  size_t n_ = 0;
};

template <class P>
Param<typename P::T> param_of(const Layer& L, const char* key) {
  using T = typename P::T;
  const Tensor* t = L.param(key);
  if (!t) return Param<T>();
  if constexpr (std::is_same_v<P, Fp64Policy>) {
    return Param<T>(&t->data);   // Fp64Policy::store is the identity
  } else {
    std::vector<T> v;
    v.reserve(t->data.size());
    for (double x : t->data) v.push_back(P::store(static_cast<typename P::Acc>(x)));
    return Param<T>(std::move(v));
  }
}

// Softmax (or log-softmax) of one line of n elements x[i * stride] into y[i * stride]:
// m = max x; s = P::sum(exp(x - m)); y = exp(x - m) / s   (log: x - m - log s).
template <class P>
void softmax_line(const typename P::T* x, typename P::T* y, int64_t n, int64_t stride, bool log);

// A tensor viewed as [outer, n, inner] around axis `axis` (already non-negative).
struct AxisSplit {
  int64_t outer = 1, n = 1, inner = 1;
};
inline AxisSplit split_at(const Shape& s, int64_t axis) {
  AxisSplit a;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i)
    (i < axis ? a.outer : i == axis ? a.n : a.inner) *= s[i];
  return a;
}

}  // namespace divscope
