// The CUDA backend's layer launch (backends/cuda_backend.h): each op's kernel(s) on device
// inputs and parameters. The backend (cuda_backend.cpp) calls it on its device values with the
// analysis' parameter cache; the kernel tests call it on their own buffers. Ops without a kernel
// are an InputError that points at the CPU backend.
#include "backends/cuda_backend.h"
#include "errors.h"

#ifdef DIVSCOPE_HAVE_CUDA
#include <cmath>
#include <string>
#include <utility>

#include "kernels/kernels.h"
#include "graph/ops.h"
#endif

namespace divscope {

#ifndef DIVSCOPE_HAVE_CUDA

void cuda_launch_layer(Mode, const Layer&, const std::vector<Shape>&,
                       const std::vector<const void*>&, void*, CudaParamCache*) {
  throw RuntimeFault("divscope was built without CUDA");
}

#else

namespace {

// A parameter on the device; shared with the cache when there is one, else freed (back to the
// pool) when the launch is done. Empty (null) when the layer has none.
using Param = std::shared_ptr<void>;

// The CPU's param_of: FP64 -> float -> storage rounding (double as it is for fp64).
Param upload_param(Mode m, const Tensor& t, const std::string& what) {
  const bool dbl = m == Mode::fp64;
  const size_t bytes = t.data.size() * (dbl ? sizeof(double) : sizeof(float));
  Param p(device_alloc(bytes, what), [](void* q) { device_free(q); });
  if (dbl) {
    copy_to_device(p.get(), t.data.data(), bytes, what);
  } else {
    std::vector<float> v;
    v.reserve(t.data.size());
    for (double x : t.data) v.push_back(round_storage(m, static_cast<float>(x)));
    // A synchronous copy from pageable memory: `v` may go as soon as it returns.
    copy_to_device(p.get(), v.data(), bytes, what);
  }
  return p;
}

Param param(CudaParamCache* pc, Mode m, const Layer& L, const char* key) {
  if (pc) return pc->get(m, L, key);
  const Tensor* t = L.param(key);
  return t ? upload_param(m, *t, L.name + "." + key) : Param();
}

bool has_kernel(const std::string& op) {
  static const char* const ops[] = {"linear", "matmul", "conv2d", "batchnorm2d", "layernorm",
                                    "relu", "gelu", "softmax", "log_softmax", "add", "maxpool2d",
                                    "flatten",
                                    // second op set (launch_layer_ops2)
                                    "conv_transpose2d", "groupnorm", "rmsnorm", "leaky_relu",
                                    "silu", "sigmoid", "tanh", "mul", "avgpool2d",
                                    "global_avgpool2d", "upsample_nearest2d", "reshape", "permute",
                                    "embedding", "scaled_dot_product_attention",
                                    // model format v2 (launch_layer_v2)
                                    "hardtanh", "hardswish", "hardsigmoid", "sqrt", "rsqrt", "exp",
                                    "log", "abs", "neg", "erf", "sub", "div", "pow", "maximum",
                                    "minimum", "where", "reduce_mean", "reduce_sum", "reduce_max",
                                    "concat", "slice", "expand", "adaptive_avgpool2d"};
  for (const char* o : ops)
    if (op == o) return true;
  return false;
}

// matmul: a [..., M, K] @ b [..., K, N] with broadcast batch dims. One strided batched GEMM when
// each operand's batch dims are either the output's or all ones; otherwise one GEMM per batch.
void run_matmul(Mode m, const Shape& as, const Shape& bs, const Shape& os, const void* a,
                const void* b, void* c, size_t elem, const std::string& layer) {
  const int r = static_cast<int>(os.size());
  const int64_t M = as[r - 2], K = as[r - 1], N = bs[r - 1];
  const Shape ob(os.begin(), os.end() - 2), ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  const int64_t batches = numel(ob), na = numel(ab), nb = numel(bb);
  GemmDesc d;
  d.M = M;
  d.N = N;
  d.K = K;
  d.lda = K;
  d.ldb = N;
  d.ldc = N;
  d.stride_c = M * N;
  if ((ab == ob || na == 1) && (bb == ob || nb == 1)) {
    d.batch = batches;
    d.stride_a = na == 1 ? 0 : M * K;
    d.stride_b = nb == 1 ? 0 : K * N;
    gemm(m, d, a, b, nullptr, c, layer);
    return;
  }
  const Shape sa = strides_of(ab), sb = strides_of(bb);
  for (int64_t i = 0; i < batches; ++i) {
    int64_t oa = 0, obi = 0, rem = i;
    for (int k = r - 3; k >= 0; --k) {   // size-1 dims do not advance
      const int64_t idx = rem % ob[k];
      rem /= ob[k];
      if (ab[k] != 1) oa += idx * sa[k];
      if (bb[k] != 1) obi += idx * sb[k];
    }
    gemm(m, d, static_cast<const char*>(a) + oa * M * K * elem,
         static_cast<const char*>(b) + obi * K * N * elem, nullptr,
         static_cast<char*>(c) + i * M * N * elem, layer);
  }
}

// What the window ops' descriptors (Conv2dDesc, ConvTranspose2dDesc, Pool2dDesc) share: x
// [N, C, H, W], out [.., .., OH, OW], the window's size, stride and padding.
template <class Desc>
void set_window(Desc& d, const Shape& xs, const Shape& os, const std::vector<int64_t>& k,
                const std::vector<int64_t>& st, const std::vector<int64_t>& pad) {
  d.N = xs[0];
  d.C = xs[1];
  d.H = xs[2];
  d.W = xs[3];
  d.OH = os[2];
  d.OW = os[3];
  d.kh = k[0];
  d.kw = k[1];
  d.stride_h = st[0];
  d.stride_w = st[1];
  d.pad_h = pad[0];
  d.pad_w = pad[1];
}

// conv2d and conv_transpose2d: x [N, C, H, W], out [N, Co, OH, OW], the weight's spatial dims
// (2, 3) and the stride/padding/dilation/groups attributes; Co is the caller's (conv2d: the
// weight's dim 0, conv_transpose2d: the output's channels). Desc: Conv2dDesc or
// ConvTranspose2dDesc (the same fields).
template <class Desc>
Desc conv_desc(const Layer& L, const Shape& xs, const Shape& os, int64_t Co) {
  const Tensor& w = *L.param("weight");
  const auto st = L.attr_ints("stride", 2, {}), pad = L.attr_ints("padding", 2, {});
  const auto dil = L.attr_ints("dilation", 2, {});
  Desc d;
  set_window(d, xs, os, {w.shape[2], w.shape[3]}, st, pad);
  d.Co = Co;
  d.dil_h = dil[0];
  d.dil_w = dil[1];
  d.groups = L.attr_int("groups");
  return d;
}

// maxpool2d and avgpool2d: x [N, C, H, W], out [N, C, OH, OW], kernel_size/stride/padding
// (dilation stays 1; maxpool2d sets its own).
Pool2dDesc pool_desc(const Layer& L, const Shape& xs, const Shape& os) {
  const auto st = L.attr_ints("stride", 2, {}), pad = L.attr_ints("padding", 2, {});
  Pool2dDesc d;
  set_window(d, xs, os, L.attr_ints("kernel_size", 2, {}), st, pad);
  return d;
}

// ---- second op set ---------------------------------------------------------------------------
// conv_transpose2d, groupnorm, rmsnorm, leaky_relu, silu, sigmoid, tanh, mul, avgpool2d,
// global_avgpool2d, upsample_nearest2d, reshape, permute, embedding, scaled_dot_product_attention.
// Returns false for an op that is not one of these. xs/os: full input and output shapes.
bool launch_layer_ops2(Mode m, const Layer& L, const std::vector<Shape>& in_shapes,
                       const Shape& os, const std::vector<const void*>& din, void* y,
                       CudaParamCache* pc) {
  const std::string& name = L.name;
  const void* x = din.at(0);
  const Shape& xs = in_shapes[0];
  const int64_t xn = numel(xs);
  const std::string& op = L.op;
  if (op == "conv_transpose2d") {
    Param dw = param(pc, m, L, "weight"), db = param(pc, m, L, "bias");
    const auto d = conv_desc<ConvTranspose2dDesc>(L, xs, os, os[1]);
    conv_transpose2d(m, d, x, dw.get(), db.get(), y, name);
  } else if (op == "groupnorm") {
    Param w = param(pc, m, L, "weight"), b = param(pc, m, L, "bias");
    const int64_t N = xs[0], C = xs[1];
    const int64_t S = N * C == 0 ? 0 : xn / (N * C);
    groupnorm(m, N, C, S, L.attr_int("num_groups"), L.attr_float("eps"), x, w.get(), b.get(), y,
              name);
  } else if (op == "rmsnorm") {
    Param w = param(pc, m, L, "weight");
    const int64_t D = numel(L.attr_ints("normalized_shape"));
    rmsnorm(m, D == 0 ? 0 : xn / D, D, L.attr_float("eps"), x, w.get(), y, name);
  } else if (op == "leaky_relu") {
    activation(m, Activation::leaky_relu, L.attr_float("negative_slope"), x, y, xn, name);
  } else if (op == "silu") {
    activation(m, Activation::silu, 0.0, x, y, xn, name);
  } else if (op == "sigmoid") {
    activation(m, Activation::sigmoid, 0.0, x, y, xn, name);
  } else if (op == "tanh") {
    activation(m, Activation::tanh, 0.0, x, y, xn, name);
  } else if (op == "mul") {
    mul(m, xs, in_shapes[1], x, din.at(1), y, name);
  } else if (op == "avgpool2d") {
    avgpool2d(m, pool_desc(L, xs, os), L.attr_int("count_include_pad", 1) != 0, x, y, name);
  } else if (op == "global_avgpool2d") {
    global_avgpool2d(m, xs[0] * xs[1], xs[2] * xs[3], x, y, name);
  } else if (op == "upsample_nearest2d") {
    const auto f = L.attr_ints("scale_factor", 2, {});
    upsample_nearest2d(m, xs[0] * xs[1], xs[2], xs[3], f[0], f[1], x, y, name);
  } else if (op == "reshape") {
    reshape_copy(m, xn, x, y, name);
  } else if (op == "permute") {
    std::vector<int64_t> dims = L.attr_ints("dims");
    for (int64_t& d : dims)
      if (d < 0) d += static_cast<int64_t>(xs.size());
    permute(m, xs, dims, x, y, name);
  } else if (op == "embedding") {
    const Tensor& w = *L.param("weight");
    Param dw = param(pc, m, L, "weight");
    embedding(m, xn, w.shape[0], w.shape[1], x, dw.get(), y, name);
  } else if (op == "scaled_dot_product_attention") {
    const Shape &ks = in_shapes[1], &vs = in_shapes[2];
    const size_t r = xs.size();
    const int64_t Tq = xs[r - 2], D = xs[r - 1], Tk = ks[r - 2], Dv = vs[r - 1];
    int64_t heads = 1;
    for (size_t i = 0; i + 2 < r; ++i) heads *= xs[i];
    const double scale = L.attr_float("scale", 1.0 / std::sqrt(static_cast<double>(D)));
    scaled_dot_product_attention(m, heads, Tq, Tk, D, Dv, L.attr_int("is_causal", 0) != 0, scale,
                                 x, din.at(1), din.at(2), y, name);
  } else {
    return false;
  }
  return true;
}

// ---- model format v2 ops (notes/new_ops_contract.md) ----------------------------------------
// Unary math, binary ops and where, reductions, concat/slice/expand, adaptive_avgpool2d. The
// binary ops, where and expand take constants (inputs of batch 1): the kernels broadcast dim 0
// like any other size-1 dim, so the input shapes go in as they are. Returns false for an op that
// is not one of these.
bool launch_layer_v2(Mode m, const Layer& L, const std::vector<Shape>& in_shapes, const Shape& os,
                     const std::vector<const void*>& din, void* y) {
  static const std::pair<const char*, MathOp> kMath[] = {
      {"hardtanh", MathOp::hardtanh}, {"hardswish", MathOp::hardswish},
      {"hardsigmoid", MathOp::hardsigmoid}, {"sqrt", MathOp::sqrt}, {"rsqrt", MathOp::rsqrt},
      {"exp", MathOp::exp}, {"log", MathOp::log}, {"abs", MathOp::abs}, {"neg", MathOp::neg},
      {"erf", MathOp::erf}};
  static const std::pair<const char*, BinaryOp> kBinary[] = {
      {"sub", BinaryOp::sub}, {"div", BinaryOp::div}, {"pow", BinaryOp::pow},
      {"maximum", BinaryOp::maximum}, {"minimum", BinaryOp::minimum}};
  static const std::pair<const char*, ReduceOp> kReduce[] = {
      {"reduce_mean", ReduceOp::mean}, {"reduce_sum", ReduceOp::sum}, {"reduce_max", ReduceOp::max}};
  const std::string& name = L.name;
  const std::string& op = L.op;
  const Shape& xs = in_shapes[0];
  const int64_t rank = static_cast<int64_t>(xs.size());
  const auto axis_of = [&](int64_t a) { return a < 0 ? a + rank : a; };
  for (const auto& [key, f] : kMath) {
    if (op != key) continue;
    const bool ht = f == MathOp::hardtanh;
    unary_math(m, f, ht ? L.attr_float("min_val") : 0.0, ht ? L.attr_float("max_val") : 0.0,
               din.at(0), y, numel(xs), name);
    return true;
  }
  for (const auto& [key, f] : kBinary) {
    if (op != key) continue;
    binary(m, f, xs, in_shapes.at(1), din.at(0), din.at(1), y, name);
    return true;
  }
  for (const auto& [key, f] : kReduce) {
    if (op != key) continue;
    std::vector<int64_t> axes = L.attr_ints("axes");
    for (int64_t& a : axes) a = axis_of(a);
    reduce(m, f, xs, axes, din.at(0), y, name);
    return true;
  }
  if (op == "where") {
    where(m, xs, in_shapes.at(1), in_shapes.at(2), din.at(0), din.at(1), din.at(2), y, name);
  } else if (op == "concat") {
    concat(m, in_shapes, din, axis_of(L.attr_int("axis")), y, name);
  } else if (op == "slice") {
    const int64_t a = axis_of(L.attr_int("axis"));
    slice(m, xs, a, L.attr_int("start"), L.attr_int("step", 1), os[a], din.at(0), y, name);
  } else if (op == "expand") {   // `like` (input 1) gives only the batch size, already in os
    expand(m, xs, os, din.at(0), y, name);
  } else if (op == "adaptive_avgpool2d") {
    adaptive_avgpool2d(m, xs[0] * xs[1], xs[2], xs[3], os[2], os[3], din.at(0), y, name);
  } else {
    return false;
  }
  return true;
}

// The op's kernel(s) for one layer (T = double for fp64, float otherwise).
template <class T>
void launch_op(Mode m, const Layer& L, const std::vector<Shape>& in_shapes, const Shape& os,
               const std::vector<const void*>& din, void* y, CudaParamCache* pc) {
  if (launch_layer_ops2(m, L, in_shapes, os, din, y, pc)) return;
  if (launch_layer_v2(m, L, in_shapes, os, din, y)) return;
  const std::string& name = L.name;
  const void* x = din.at(0);
  const Shape& xs = in_shapes[0];
  const int64_t xn = numel(xs);

  if (L.op == "flatten") {   // a reshape: same elements, same order
    copy_on_device(y, x, static_cast<size_t>(xn) * sizeof(T), name);
  } else if (L.op == "linear") {
    const Tensor& w = *L.param("weight");
    Param dw = param(pc, m, L, "weight"), db = param(pc, m, L, "bias");
    GemmDesc d;
    d.K = w.shape[1];
    d.N = w.shape[0];
    d.M = xn / d.K;
    d.lda = d.K;
    d.ldb = d.K;
    d.ldc = d.N;
    d.b_trans = true;   // y = x W^T: B'[k][n] = W[n][k]
    gemm(m, d, x, dw.get(), db.get(), y, name);
  } else if (L.op == "matmul") {
    run_matmul(m, xs, in_shapes[1], os, x, din.at(1), y, sizeof(T), name);
  } else if (L.op == "conv2d") {
    Param dw = param(pc, m, L, "weight"), db = param(pc, m, L, "bias");
    const auto d = conv_desc<Conv2dDesc>(L, xs, os, L.param("weight")->shape[0]);
    conv2d(m, d, x, dw.get(), db.get(), y, name);
  } else if (L.op == "batchnorm2d") {
    Param w = param(pc, m, L, "weight"), b = param(pc, m, L, "bias");
    Param mean = param(pc, m, L, "running_mean"), var = param(pc, m, L, "running_var");
    batchnorm2d(m, xs[0], xs[1], xs[2] * xs[3], L.attr_float("eps"), x, w.get(), b.get(),
                mean.get(), var.get(), y, name);
  } else if (L.op == "layernorm") {
    Param w = param(pc, m, L, "weight"), b = param(pc, m, L, "bias");
    const int64_t D = numel(L.attr_ints("normalized_shape"));
    layernorm(m, xn / D, D, L.attr_float("eps"), x, w.get(), b.get(), y, name);
  } else if (L.op == "relu") {
    unary(m, UnaryOp::relu, x, y, xn, name);
  } else if (L.op == "gelu") {
    const bool tanh_form = L.attr_str("approximate", "none") == "tanh";
    unary(m, tanh_form ? UnaryOp::gelu_tanh : UnaryOp::gelu_erf, x, y, xn, name);
  } else if (L.op == "softmax" || L.op == "log_softmax") {
    int64_t axis = L.attr_int("axis");
    if (axis < 0) axis += static_cast<int64_t>(xs.size());
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < static_cast<int64_t>(xs.size()); ++i) {
      if (i < axis) outer *= xs[i];
      if (i > axis) inner *= xs[i];
    }
    softmax(m, outer, xs[axis], inner, L.op == "log_softmax", x, y, name);
  } else if (L.op == "add") {
    add(m, xs, in_shapes[1], x, din.at(1), y, name);
  } else if (L.op == "maxpool2d") {
    Pool2dDesc d = pool_desc(L, xs, os);
    const auto dil = L.attr_ints("dilation", 2, {1, 1});
    d.dil_h = dil[0];
    d.dil_w = dil[1];
    maxpool2d(m, d, x, y, name);
  }
}

// One layer on the device; a strict output leaves with the one NaN pattern, as the CPU strict
// path's (docs/ops.md, Precision modes: NaN).
template <class T>
void launch_layer(Mode m, const Layer& L, const std::vector<Shape>& in_shapes,
                  const std::vector<const void*>& din, void* y, CudaParamCache* pc) {
  if (!has_kernel(L.op))
    throw InputError(L.where() + ": no CUDA kernel for op '" + L.op + "' yet; use --backend cpu");
  const Shape os = checked_out_shape(L, in_shapes);
  launch_op<T>(m, L, in_shapes, os, din, y, pc);
  if (m == Mode::strict) strict_canonical_nan(y, numel(os), L.name);
}

}  // namespace

std::shared_ptr<void> CudaParamCache::get(Mode m, const Layer& L, const char* key) {
  const Tensor* t = L.param(key);
  if (!t) return nullptr;
  // One copy per storage format (the class comment): fp32, tf32 and strict store floats as they are.
  const Mode storage = m == Mode::fp64 || m == Mode::fp16 || m == Mode::bf16 ? m : Mode::fp32;
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<void>& p = params_[{t, storage}];
  if (!p) p = upload_param(storage, *t, L.name + "." + key);
  return p;
}

void CudaParamCache::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  params_.clear();
}

void cuda_launch_layer(Mode m, const Layer& L, const std::vector<Shape>& in_shapes,
                       const std::vector<const void*>& in_dev, void* out_dev,
                       CudaParamCache* params) {
  if (m == Mode::fp64)
    launch_layer<double>(m, L, in_shapes, in_dev, out_dev, params);
  else
    launch_layer<float>(m, L, in_shapes, in_dev, out_dev, params);
}

#endif

}  // namespace divscope
