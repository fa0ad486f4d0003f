// Shape rules of the op table: see shape_rules.h.
#include "graph/shape_rules.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace divscope::shape_rules {


[[noreturn]] static void fail(const std::string& msg) { throw std::runtime_error(msg); }

static void require(bool cond, const std::string& msg) {
  if (!cond) fail(msg);
}

static void require_rank(const Shape& s, size_t rank, const char* what) {
  require(s.size() == rank, std::string(what) + " must have rank " + std::to_string(rank) +
                                " (batch dim included), got " + shape_str(s));
}

static void require_param_shape(const Layer& L, const char* key, const Shape& want) {
  const Tensor* p = L.param(key);
  if (p && p->shape != want)
    fail(std::string("parameter '") + key + "' has shape " + shape_str(p->shape) +
         ", expected " + shape_str(want));
}

static int64_t norm_axis(int64_t axis, size_t rank, const char* what) {
  int64_t a = axis < 0 ? axis + static_cast<int64_t>(rank) : axis;
  require(a >= 0 && a < static_cast<int64_t>(rank),
          std::string(what) + " " + std::to_string(axis) + " out of range for rank " +
              std::to_string(rank));
  return a;
}

static void require_positive(const std::vector<int64_t>& v, const char* what) {
  for (int64_t x : v) require(x > 0, std::string(what) + " must be positive");
}

Shape infer_linear(const Layer& L, const std::vector<Shape>& in) {
  const Shape& x = in[0];
  require(x.size() >= 2, "input must have rank >= 2, got " + shape_str(x));
  const Tensor* w = L.param("weight");
  require(w->rank() == 2, "parameter 'weight' must be [out, in], got " + shape_str(w->shape));
  require(w->shape[1] == x.back(), "weight " + shape_str(w->shape) +
                                       " does not match input features " + shape_str(x));
  require_param_shape(L, "bias", {w->shape[0]});
  Shape out = x;
  out.back() = w->shape[0];
  return out;
}

static Shape broadcast(const Shape& a, const Shape& b) {
  require(a.size() == b.size(), "inputs must have the same rank (batch dim included): " +
                                    shape_str(a) + " vs " + shape_str(b));
  Shape out(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    require(a[i] == b[i] || a[i] == 1 || b[i] == 1,
            "shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    out[i] = a[i] == 1 ? b[i] : a[i];
  }
  return out;
}

Shape infer_matmul(const Layer&, const std::vector<Shape>& in) {
  const Shape &a = in[0], &b = in[1];
  require(a.size() >= 3 && b.size() >= 3,
          "inputs must have rank >= 3 (batch dim included): " + shape_str(a) + ", " +
              shape_str(b));
  require(a.back() == b[b.size() - 2],
          "inner dimensions differ: " + shape_str(a) + " @ " + shape_str(b));
  Shape ab(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  Shape out = broadcast(ab, bb);
  out.push_back(a[a.size() - 2]);
  out.push_back(b.back());
  return out;
}

// in + 2p - d(k - 1) - 1: the last position a window of the dilated kernel can start at in the
// padded input, checked (a padding of 2^62 must not wrap around to a negative extent).
static int64_t last_window_start(int64_t in, int64_t k, int64_t p, int64_t d, const char* what) {
  const std::string w = std::string(what) + " (input " + std::to_string(in) + ", kernel " +
                        std::to_string(k) + ", padding " + std::to_string(p) + ", dilation " +
                        std::to_string(d) + ")";
  const int64_t padded = checked_add(in, checked_mul(2, p, w), w);
  return checked_add(padded, -checked_add(checked_mul(d, k - 1, w), 1, w), w);
}

// 0 when the dilated kernel does not fit the padded input (C++ division would round the
// negative numerator toward zero and invent an output of 1).
static int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, const char* what) {
  const int64_t num = last_window_start(in, k, p, d, what);
  return num < 0 ? 0 : num / s + 1;
}

Shape infer_conv2d(const Layer& L, const std::vector<Shape>& in) {
  const Shape& x = in[0];
  require_rank(x, 4, "input");
  auto stride = L.attr_ints("stride", 2, {}), pad = L.attr_ints("padding", 2, {});
  auto dil = L.attr_ints("dilation", 2, {});
  int64_t g = L.attr_int("groups");
  require_positive(stride, "stride");
  require_positive(dil, "dilation");
  require(pad[0] >= 0 && pad[1] >= 0, "padding must be >= 0");
  require(g >= 1 && x[1] % g == 0, "groups " + std::to_string(g) +
                                       " does not divide input channels " +
                                       std::to_string(x[1]));
  const Tensor* w = L.param("weight");
  require(w->rank() == 4, "parameter 'weight' must be [Co, C/groups, kh, kw], got " +
                              shape_str(w->shape));
  require(w->shape[1] == x[1] / g && w->shape[0] % g == 0,
          "weight " + shape_str(w->shape) + " does not match input " + shape_str(x) +
              " with groups " + std::to_string(g));
  require_param_shape(L, "bias", {w->shape[0]});
  int64_t oh = conv_out(x[2], w->shape[2], stride[0], pad[0], dil[0], "output height");
  int64_t ow = conv_out(x[3], w->shape[3], stride[1], pad[1], dil[1], "output width");
  require(oh > 0 && ow > 0, "kernel larger than the padded input " + shape_str(x));
  return {x[0], w->shape[0], oh, ow};
}

Shape infer_conv_transpose2d(const Layer& L, const std::vector<Shape>& in) {
  const Shape& x = in[0];
  require_rank(x, 4, "input");
  auto stride = L.attr_ints("stride", 2, {}), pad = L.attr_ints("padding", 2, {});
  auto opad = L.attr_ints("output_padding", 2, {}), dil = L.attr_ints("dilation", 2, {});
  int64_t g = L.attr_int("groups");
  require_positive(stride, "stride");
  require_positive(dil, "dilation");
  require(g >= 1 && x[1] % g == 0, "groups does not divide input channels");
  const Tensor* w = L.param("weight");
  require(w->rank() == 4 && w->shape[0] == x[1],
          "weight " + shape_str(w->shape) + " does not match input " + shape_str(x));
  for (int i = 0; i < 2; ++i)
    require(opad[i] >= 0 && (opad[i] < stride[i] || opad[i] < dil[i]),
            "output_padding must be smaller than stride or dilation");
  int64_t co = checked_mul(w->shape[1], g, "output channels (weight dim 1 * groups)");
  require_param_shape(L, "bias", {co});
  // (in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
  auto out = [&](int i, const char* what) {
    const int64_t in = x[2 + i], k = w->shape[2 + i];
    const int64_t grown = checked_add(checked_mul(in - 1, stride[i], what),
                                      checked_add(checked_mul(dil[i], k - 1, what), opad[i] + 1, what), what);
    return checked_add(grown, -checked_mul(2, pad[i], what), what);
  };
  int64_t oh = out(0, "output height"), ow = out(1, "output width");
  require(oh > 0 && ow > 0, "output would be empty");
  return {x[0], co, oh, ow};
}

Shape infer_batchnorm2d(const Layer& L, const std::vector<Shape>& in) {
  require_rank(in[0], 4, "input");
  for (const char* p : {"weight", "bias", "running_mean", "running_var"})
    require_param_shape(L, p, {in[0][1]});
  for (double v : L.param("running_var")->data)
    require(v >= 0, "parameter 'running_var' has a negative value");
  require(L.attr_float("eps") >= 0, "eps must be >= 0");   // sqrt(var + eps) of a negative: NaN
  return in[0];
}

static Shape check_normalized(const Layer& L, const Shape& x, bool has_bias) {
  auto ns = L.attr_ints("normalized_shape");
  require(!ns.empty() && ns.size() < x.size(), "normalized_shape must cover 1 to rank-1 dims");
  for (size_t i = 0; i < ns.size(); ++i)
    require(x[x.size() - ns.size() + i] == ns[i],
            "normalized_shape " + shape_str(ns) + " does not match input " + shape_str(x));
  require_param_shape(L, "weight", ns);
  if (has_bias) require_param_shape(L, "bias", ns);
  require(L.attr_float("eps") >= 0, "eps must be >= 0");
  return x;
}

Shape infer_layernorm(const Layer& L, const std::vector<Shape>& in) {
  return check_normalized(L, in[0], true);
}
Shape infer_rmsnorm(const Layer& L, const std::vector<Shape>& in) {
  return check_normalized(L, in[0], false);
}

Shape infer_groupnorm(const Layer& L, const std::vector<Shape>& in) {
  const Shape& x = in[0];
  require(x.size() >= 2, "input must have rank >= 2");
  int64_t g = L.attr_int("num_groups");
  require(g >= 1 && x[1] % g == 0, "num_groups " + std::to_string(g) +
                                       " does not divide channels " + std::to_string(x[1]));
  require_param_shape(L, "weight", {x[1]});
  require_param_shape(L, "bias", {x[1]});
  require(L.attr_float("eps") >= 0, "eps must be >= 0");
  return x;
}

Shape infer_same(const Layer&, const std::vector<Shape>& in) { return in[0]; }

Shape infer_gelu(const Layer& L, const std::vector<Shape>& in) {
  std::string a = L.attr_str("approximate", "");
  require(a == "none" || a == "tanh", "approximate must be \"none\" or \"tanh\", got \"" + a + "\"");
  return in[0];
}

Shape infer_softmax(const Layer& L, const std::vector<Shape>& in) {
  int64_t a = norm_axis(L.attr_int("axis"), in[0].size(), "axis");
  require(a != 0, "axis 0 is the batch dim; samples must stay independent");
  return in[0];
}

Shape infer_binary(const Layer&, const std::vector<Shape>& in) { return broadcast(in[0], in[1]); }

static int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode,
                        const char* what) {
  const int64_t num = last_window_start(in, k, p, d, what);
  if (num < 0) return 0;
  // ceil(num / s) without num + s - 1, which overflows for a stride near 2^63
  int64_t out = (ceil_mode ? num / s + (num % s != 0) : num / s) + 1;
  // the last window must start inside the input or its left padding: (out - 1) * s < in + p
  int64_t last = 0;
  if (ceil_mode && (__builtin_mul_overflow(out - 1, s, &last) || last >= in + p)) --out;
  return out;
}

static Shape infer_pool(const Layer& L, const std::vector<Shape>& in, bool with_dilation) {
  const Shape& x = in[0];
  require_rank(x, 4, "input");
  auto k = L.attr_ints("kernel_size", 2, {}), s = L.attr_ints("stride", 2, {});
  auto p = L.attr_ints("padding", 2, {});
  auto d = with_dilation ? L.attr_ints("dilation", 2, {1, 1}) : std::vector<int64_t>{1, 1};
  bool ceil_mode = L.attr_int("ceil_mode", 0) != 0;
  require_positive(k, "kernel_size");
  require_positive(s, "stride");
  require_positive(d, "dilation");
  for (int i = 0; i < 2; ++i)
    require(p[i] >= 0 && p[i] <= k[i] / 2, "padding must be at most half the kernel size");
  int64_t oh = pool_out(x[2], k[0], s[0], p[0], d[0], ceil_mode, "output height");
  int64_t ow = pool_out(x[3], k[1], s[1], p[1], d[1], ceil_mode, "output width");
  require(oh > 0 && ow > 0, "window larger than the padded input " + shape_str(x));
  return {x[0], x[1], oh, ow};
}
Shape infer_maxpool(const Layer& L, const std::vector<Shape>& in) { return infer_pool(L, in, true); }
Shape infer_avgpool(const Layer& L, const std::vector<Shape>& in) { return infer_pool(L, in, false); }

Shape infer_global_avgpool(const Layer&, const std::vector<Shape>& in) {
  require_rank(in[0], 4, "input");
  return {in[0][0], in[0][1], 1, 1};
}

Shape infer_upsample(const Layer& L, const std::vector<Shape>& in) {
  require_rank(in[0], 4, "input");
  auto f = L.attr_ints("scale_factor", 2, {});
  require_positive(f, "scale_factor");
  return {in[0][0], in[0][1], checked_mul(in[0][2], f[0], "output height (height * scale_factor)"),
          checked_mul(in[0][3], f[1], "output width (width * scale_factor)")};
}

Shape infer_flatten(const Layer& L, const std::vector<Shape>& in) {
  const Shape& x = in[0];
  int64_t s = norm_axis(L.attr_int("start_dim", 1), x.size(), "start_dim");
  int64_t e = norm_axis(L.attr_int("end_dim", -1), x.size(), "end_dim");
  require(s >= 1, "start_dim 0 would merge the batch dim");
  require(s <= e, "start_dim after end_dim");
  Shape out(x.begin(), x.begin() + s);
  int64_t n = 1;
  for (int64_t i = s; i <= e; ++i) n = checked_mul(n, x[i], "flattened dim");
  out.push_back(n);
  out.insert(out.end(), x.begin() + e + 1, x.end());
  return out;
}

Shape infer_reshape(const Layer& L, const std::vector<Shape>& in) {
  auto target = L.attr_ints("shape");
  int64_t total = numel(in[0]) / in[0][0], known = 1;
  int minus = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == -1) {
      require(minus < 0, "shape has more than one -1");
      minus = static_cast<int>(i);
    } else {
      require(target[i] > 0, "shape entries must be positive or -1");
      known = checked_mul(known, target[i], "product of shape " + shape_str(target));
    }
  }
  if (minus >= 0) {
    require(known > 0 && total % known == 0,
            "cannot reshape " + shape_str(in[0]) + " to " + shape_str(target));
    target[minus] = total / known;
  }
  require(numel(target) == total, "cannot reshape per-sample " + std::to_string(total) +
                                      " elements to " + shape_str(target));
  Shape out{in[0][0]};
  out.insert(out.end(), target.begin(), target.end());
  return out;
}

Shape infer_permute(const Layer& L, const std::vector<Shape>& in) {
  auto dims = L.attr_ints("dims");
  const Shape& x = in[0];
  require(dims.size() == x.size(), "dims must list all " + std::to_string(x.size()) + " dims");
  require(dims[0] == 0, "dims[0] must be 0 (the batch dim stays first)");
  std::vector<bool> seen(x.size(), false);
  Shape out;
  for (int64_t d : dims) {
    int64_t a = norm_axis(d, x.size(), "dim");
    require(!seen[a], "dims is not a permutation");
    seen[a] = true;
    out.push_back(x[a]);
  }
  return out;
}

Shape infer_embedding(const Layer& L, const std::vector<Shape>& in) {
  require(!L.refs.empty() && L.refs[0].is_input, "indices must be a graph input of dtype int64");
  const Tensor* w = L.param("weight");
  require(w->rank() == 2, "parameter 'weight' must be [V, D], got " + shape_str(w->shape));
  Shape out = in[0];
  out.push_back(w->shape[1]);
  return out;
}

Shape infer_sdpa(const Layer& L, const std::vector<Shape>& in) {
  const Shape &q = in[0], &k = in[1], &v = in[2];
  require(q.size() >= 3 && k.size() == q.size() && v.size() == q.size(),
          "q, k, v must have the same rank >= 3");
  for (size_t i = 0; i + 2 < q.size(); ++i)
    require(q[i] == k[i] && q[i] == v[i], "q, k, v leading dims differ");
  require(q.back() == k.back(), "q and k head dims differ");
  require(k[k.size() - 2] == v[v.size() - 2], "k and v sequence lengths differ");
  if (L.has("scale")) L.attr_float("scale");
  Shape out = q;
  out.back() = v.back();
  return out;
}

// ---- model format v2 ops (notes/new_ops_contract.md) ----------------------------------------

Shape infer_hardtanh(const Layer& L, const std::vector<Shape>& in) {
  const double lo = L.attr_float("min_val"), hi = L.attr_float("max_val");
  require(lo <= hi, "min_val " + std::to_string(lo) + " must be <= max_val " + std::to_string(hi));
  return in[0];
}

// cond, a, b broadcast together (batch-1 constants included).
Shape infer_where(const Layer&, const std::vector<Shape>& in) {
  return broadcast(broadcast(in[0], in[1]), in[2]);
}

Shape infer_reduce(const Layer& L, const std::vector<Shape>& in) {
  const Shape& x = in[0];
  auto axes = L.attr_ints("axes");
  require(!axes.empty(), "axes must not be empty");
  const int64_t keep = L.attr_int("keepdim", 0);
  require(keep == 0 || keep == 1, "keepdim must be 0 or 1, got " + std::to_string(keep));
  std::vector<bool> reduced(x.size(), false);
  for (int64_t a : axes) {
    const int64_t n = norm_axis(a, x.size(), "axis");
    require(n != 0, "axis 0 is the batch dim; samples must stay independent");
    require(!reduced[n], "axes lists dim " + std::to_string(n) + " twice");
    reduced[n] = true;
  }
  Shape out;
  for (size_t i = 0; i < x.size(); ++i)
    if (!reduced[i]) out.push_back(x[i]);
    else if (keep) out.push_back(1);
  return out;
}

Shape infer_concat(const Layer& L, const std::vector<Shape>& in) {
  const int64_t a = norm_axis(L.attr_int("axis"), in[0].size(), "axis");
  require(a != 0, "axis 0 is the batch dim; samples must stay independent");
  Shape out = in[0];
  for (size_t k = 1; k < in.size(); ++k) {
    require(in[k].size() == out.size(), "inputs must have the same rank: " + shape_str(in[0]) +
                                            " vs " + shape_str(in[k]));
    for (size_t i = 0; i < out.size(); ++i)
      require(static_cast<int64_t>(i) == a || in[k][i] == in[0][i],
              "input " + std::to_string(k) + " " + shape_str(in[k]) + " differs from " +
                  shape_str(in[0]) + " outside axis " + std::to_string(a));
    out[a] = checked_add(out[a], in[k][a], "concatenated extent along axis " + std::to_string(a));
  }
  return out;
}

Shape infer_slice(const Layer& L, const std::vector<Shape>& in) {
  const Shape& x = in[0];
  const int64_t a = norm_axis(L.attr_int("axis"), x.size(), "axis");
  require(a != 0, "axis 0 is the batch dim; samples must stay independent");
  const int64_t start = L.attr_int("start"), end = L.attr_int("end"), step = L.attr_int("step", 1);
  require(0 <= start && start < end && end <= x[a],
          "need 0 <= start < end <= " + std::to_string(x[a]) + ", got start " +
              std::to_string(start) + ", end " + std::to_string(end));
  require(step >= 1, "step must be >= 1, got " + std::to_string(step));
  Shape out = x;
  out[a] = (end - start - 1) / step + 1;   // ceil((end - start) / step) without overflow
  return out;
}

// x.expand(N, *shape): N is `like`'s batch when given (only its batch size is used), else x's.
Shape infer_expand(const Layer& L, const std::vector<Shape>& in) {
  const Shape& x = in[0];
  auto target = L.attr_ints("shape");
  require(target.size() + 1 == x.size(), "shape must have " + std::to_string(x.size() - 1) +
                                             " entries (per sample), got " + shape_str(target));
  Shape out{in.size() > 1 ? in[1][0] : x[0]};
  require(x[0] == out[0] || x[0] == 1, "batch " + std::to_string(x[0]) +
                                           " cannot expand to " + std::to_string(out[0]));
  for (size_t i = 0; i < target.size(); ++i) {
    const int64_t have = x[i + 1], want = target[i] == -1 ? have : target[i];
    require(want > 0, "shape entries must be positive or -1, got " + shape_str(target));
    require(have == want || have == 1,
            "cannot expand " + shape_str(x) + " to per-sample " + shape_str(target));
    out.push_back(want);
  }
  return out;
}

Shape infer_adaptive_avgpool(const Layer& L, const std::vector<Shape>& in) {
  require_rank(in[0], 4, "input");
  auto o = L.attr_ints("output_size", 2, {});
  require_positive(o, "output_size");
  return {in[0][0], in[0][1], o[0], o[1]};
}

}  // namespace divscope::shape_rules
