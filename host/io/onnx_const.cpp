// ONNX constants and constant folding (onnx_const.h). Semantics from the ONNX operator specs;
// only what exported graphs compute from constants and shapes is folded.
#include "io/onnx_const.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include <onnx/onnx_pb.h>

#include "precision.h"

namespace divscope {
namespace onnx_import {
namespace {

using Fail = std::function<void(const std::string&)>;

template <class T>
void read_raw(const std::string& raw, int64_t n, std::vector<double>* out) {
  out->resize(n);
  const char* p = raw.data();
  for (int64_t k = 0; k < n; ++k) {
    T x;
    std::memcpy(&x, p + k * sizeof(T), sizeof(T));
    (*out)[k] = static_cast<double>(x);
  }
}

// Index helpers for row-major shapes.
Shape strides(const Shape& s) { return strides_of(s); }

// For an output index (row-major over `out`), the offset into a tensor of shape `in` that is
// broadcast to `out` (in is right-aligned, dims of 1 repeat).
struct Broadcaster {
  Shape out;
  std::vector<Shape> ins;
  std::vector<Shape> in_strides;

  int64_t offset(size_t which, int64_t flat) const {
    const Shape& in = ins[which];
    const Shape& st = in_strides[which];
    const size_t shift = out.size() - in.size();
    int64_t off = 0;
    for (size_t d = out.size(); d-- > 0;) {
      const int64_t idx = flat % out[d];
      flat /= out[d];
      if (d < shift) continue;
      const size_t id = d - shift;
      if (in[id] != 1) off += idx * st[id];
    }
    return off;
  }
};

CVal elementwise(const std::vector<const CVal*>& in, const Fail& fail,
                 const std::function<double(const double*)>& f, bool is_int) {
  std::vector<Shape> shapes;
  for (const CVal* c : in) shapes.push_back(c->shape);
  Broadcaster b;
  b.out = broadcast_shapes(shapes, fail);
  b.ins = shapes;
  for (const Shape& s : shapes) b.in_strides.push_back(strides(s));
  CVal r;
  r.shape = b.out;
  r.is_int = is_int;
  const int64_t n = checked_numel(r.shape, fail);
  r.v.resize(n);
  std::vector<double> args(in.size());
  for (int64_t k = 0; k < n; ++k) {
    for (size_t i = 0; i < in.size(); ++i) args[i] = in[i]->v[b.offset(i, k)];
    r.v[k] = f(args.data());
  }
  return r;
}

// Moves axis-structured data: out[outer][j][inner] = in[outer][idx(j)][inner].
CVal take_along(const CVal& x, int64_t axis, const std::vector<int64_t>& idx) {
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.shape[d];
  for (size_t d = axis + 1; d < x.shape.size(); ++d) inner *= x.shape[d];
  const int64_t ext = x.shape[axis];
  CVal r;
  r.is_int = x.is_int;
  r.shape = x.shape;
  r.shape[axis] = static_cast<int64_t>(idx.size());
  r.v.resize(outer * idx.size() * inner);
  for (int64_t o = 0; o < outer; ++o)
    for (size_t j = 0; j < idx.size(); ++j)
      std::copy_n(x.v.begin() + (o * ext + idx[j]) * inner, inner,
                  r.v.begin() + (o * static_cast<int64_t>(idx.size()) + j) * inner);
  return r;
}

CVal transpose(const CVal& x, const std::vector<int64_t>& perm) {
  CVal r;
  r.is_int = x.is_int;
  for (int64_t p : perm) r.shape.push_back(x.shape[p]);
  const Shape ist = strides(x.shape);
  const int64_t n = static_cast<int64_t>(x.v.size());
  r.v.resize(n);
  for (int64_t k = 0; k < n; ++k) {
    int64_t flat = k, off = 0;
    for (size_t d = r.shape.size(); d-- > 0;) {
      off += (flat % r.shape[d]) * ist[perm[d]];
      flat /= r.shape[d];
    }
    r.v[k] = x.v[off];
  }
  return r;
}

}  // namespace

const onnx::AttributeProto* NodeAttrs::find(const char* name) const {
  for (const onnx::AttributeProto& a : node.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

int64_t NodeAttrs::i(const char* name, int64_t def) const {
  const onnx::AttributeProto* a = find(name);
  if (!a) return def;
  if (a->type() != onnx::AttributeProto::INT) fail(std::string("attribute '") + name + "' must be an integer");
  return a->i();
}

double NodeAttrs::f(const char* name, double def) const {
  const onnx::AttributeProto* a = find(name);
  if (!a) return def;
  if (a->type() == onnx::AttributeProto::INT) return static_cast<double>(a->i());
  if (a->type() != onnx::AttributeProto::FLOAT) fail(std::string("attribute '") + name + "' must be a float");
  return a->f();
}

std::string NodeAttrs::s(const char* name, const std::string& def) const {
  const onnx::AttributeProto* a = find(name);
  if (!a) return def;
  if (a->type() != onnx::AttributeProto::STRING) fail(std::string("attribute '") + name + "' must be a string");
  return a->s();
}

std::vector<int64_t> NodeAttrs::ints(const char* name) const {
  const onnx::AttributeProto* a = find(name);
  if (!a) return {};
  if (a->type() == onnx::AttributeProto::INT) return {a->i()};
  if (a->type() != onnx::AttributeProto::INTS) fail(std::string("attribute '") + name + "' must be integers");
  return {a->ints().begin(), a->ints().end()};
}

int64_t checked_numel(const Shape& s, const Fail& fail) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) fail("negative dim in shape " + shape_str(s));
    // 2^28 elements (2 GiB as FP64): far above any folded shape or mask, and refused before
    // an allocation the machine cannot make.
    if (d != 0 && n > (int64_t{1} << 28) / d) fail("shape " + shape_str(s) + " is too large (over 2^28 elements)");
    n *= d;
  }
  return n;
}

Shape broadcast_shapes(const std::vector<Shape>& shapes, const Fail& fail) {
  size_t r = 0;
  for (const Shape& s : shapes) r = std::max(r, s.size());
  Shape out(r, 1);
  for (const Shape& s : shapes)
    for (size_t k = 0; k < s.size(); ++k) {
      int64_t& o = out[r - s.size() + k];
      const int64_t d = s[k];
      if (d == o || d == 1) continue;
      if (o != 1) {
        std::string list;
        for (const Shape& t : shapes) list += (list.empty() ? "" : " and ") + shape_str(t);
        fail("shapes " + list + " do not broadcast");
      }
      o = d;
    }
  return out;
}

int64_t norm_axis(int64_t axis, int64_t rank, const Fail& fail) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    fail("axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  return a;
}

std::vector<int64_t> as_ints(const CVal& c) {
  // Exporters write INT64_MAX / INT64_MIN for "to the end" (Slice); as doubles they round to
  // ±2^63, which int64 cannot hold: saturate (every real dim is far below 2^53).
  std::vector<int64_t> r;
  r.reserve(c.v.size());
  for (double v : c.v) {
    if (std::isnan(v)) r.push_back(0);
    else if (v >= 9.2e18) r.push_back(std::numeric_limits<int64_t>::max());
    else if (v <= -9.2e18) r.push_back(std::numeric_limits<int64_t>::min());
    else r.push_back(static_cast<int64_t>(v));
  }
  return r;
}

SliceArgs slice_args(const NodeAttrs& a, int64_t opset, const std::vector<const CVal*>& in) {
  SliceArgs s;
  auto get = [&](size_t k, const char* what) {
    if (k >= in.size() || !in[k]) {
      if (k <= 2) a.fail(std::string("Slice needs constant ") + what);
      return std::vector<int64_t>{};
    }
    return as_ints(*in[k]);
  };
  if (opset >= 10) {
    s.starts = get(1, "starts");
    s.ends = get(2, "ends");
    s.axes = get(3, "axes");
    s.steps = get(4, "steps");
  } else {
    s.starts = a.ints("starts");
    s.ends = a.ints("ends");
    s.axes = a.ints("axes");
  }
  if (s.axes.empty())
    for (size_t k = 0; k < s.starts.size(); ++k) s.axes.push_back(static_cast<int64_t>(k));
  if (s.steps.empty()) s.steps.assign(s.starts.size(), 1);
  if (s.ends.size() != s.starts.size() || s.axes.size() != s.starts.size() || s.steps.size() != s.starts.size())
    a.fail("Slice starts, ends, axes and steps differ in length");
  return s;
}

CVal broadcast_to(const CVal& x, const Shape& target, const Fail& fail) {
  CVal z;   // zeros of the broadcast shape: each output element takes x's
  z.shape = broadcast_shapes({x.shape, target}, fail);
  z.v.assign(checked_numel(z.shape, fail), 0);
  z.is_int = true;
  return elementwise({&x, &z}, fail, [](const double* v) { return v[0]; }, x.is_int);
}

Shape reshape_target(const Shape& in, const std::vector<int64_t>& want, bool allowzero, const Fail& fail) {
  const int64_t r = static_cast<int64_t>(in.size());
  int64_t n = 1;
  for (int64_t d : in) n *= d;   // a shape the graph already holds
  Shape s;
  int64_t infer = -1, known = 1;
  for (size_t k = 0; k < want.size(); ++k) {
    int64_t d = want[k];
    if (d == 0 && !allowzero) {
      if (static_cast<int64_t>(k) >= r) fail("Reshape copies dim " + std::to_string(k) + " of a rank-" + std::to_string(r) + " tensor");
      d = in[k];
    }
    if (d == -1) {
      if (infer >= 0) fail("Reshape with two -1 dims");
      infer = static_cast<int64_t>(k);
    } else if (d < 0) {
      fail("Reshape to a negative dim");
    } else {
      if (d != 0 && known > n / d + 1) fail("Reshape of " + shape_str(in) + " to " + shape_str(want) + " changes the element count");
      known *= d;
    }
    s.push_back(d);
  }
  if (infer >= 0) {
    if (known == 0 || n % known) fail("Reshape of " + shape_str(in) + " to " + shape_str(want) + " does not fit");
    s[infer] = n / known;
  } else if (known != n) {
    fail("Reshape of " + shape_str(in) + " to " + shape_str(s) + " changes the element count");
  }
  return s;
}

CVal shape_value(const Shape& shape, const NodeAttrs& a) {
  const int64_t r = static_cast<int64_t>(shape.size());
  int64_t start = a.i("start", 0), end = a.i("end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<int64_t>(start, 0, r);
  end = std::clamp<int64_t>(end, 0, r);
  CVal s;
  s.is_int = true;
  for (int64_t d = start; d < end; ++d) s.v.push_back(static_cast<double>(shape[d]));
  s.shape = {static_cast<int64_t>(s.v.size())};
  return s;
}

CVal size_value(const Shape& shape, const Fail& fail) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d != 0 && n > (int64_t{1} << 53) / d) fail("Size of " + shape_str(shape) + " is too large");
    n *= d;
  }
  CVal s;
  s.is_int = true;
  s.v = {static_cast<double>(n)};
  return s;
}

CVal from_tensor(const onnx::TensorProto& t, const std::string& what) {
  auto fail = [&](const std::string& m) { throw std::runtime_error(what + ": " + m); };
  if (t.data_location() == onnx::TensorProto::EXTERNAL)
    fail("stored in an external data file; divscope reads only the file named (save the model "
         "with its weights inside: onnx.save(model, path, save_as_external_data=False))");
  CVal c;
  for (int64_t d : t.dims()) c.shape.push_back(d);
  const int64_t n = checked_numel(c.shape, fail);
  const std::string& raw = t.raw_data();
  const bool has_raw = t.has_raw_data();
  auto need_raw = [&](size_t bytes) {
    if (raw.size() != static_cast<size_t>(n) * bytes)
      fail("raw data has " + std::to_string(raw.size()) + " bytes, the shape " + shape_str(c.shape) +
           " needs " + std::to_string(n * bytes));
  };
  auto need = [&](int size) {
    if (size != n)
      fail("holds " + std::to_string(size) + " values, the shape " + shape_str(c.shape) + " needs " +
           std::to_string(n));
  };
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT:
      if (has_raw) { need_raw(4); read_raw<float>(raw, n, &c.v); }
      else { need(t.float_data_size()); c.v.assign(t.float_data().begin(), t.float_data().end()); }
      break;
    case onnx::TensorProto::DOUBLE:
      if (has_raw) { need_raw(8); read_raw<double>(raw, n, &c.v); }
      else { need(t.double_data_size()); c.v.assign(t.double_data().begin(), t.double_data().end()); }
      break;
    case onnx::TensorProto::FLOAT16:
    case onnx::TensorProto::BFLOAT16: {
      const bool h = t.data_type() == onnx::TensorProto::FLOAT16;
      std::vector<uint16_t> bits;
      if (has_raw) {
        need_raw(2);
        bits.resize(n);
        std::memcpy(bits.data(), raw.data(), n * 2);
      } else {
        need(t.int32_data_size());
        for (int32_t b : t.int32_data()) bits.push_back(static_cast<uint16_t>(b));
      }
      c.v.resize(n);
      for (int64_t k = 0; k < n; ++k) c.v[k] = h ? half_bits_to_float(bits[k]) : bf16_bits_to_float(bits[k]);
      break;
    }
    case onnx::TensorProto::INT64:
      c.is_int = true;
      if (has_raw) { need_raw(8); read_raw<int64_t>(raw, n, &c.v); }
      else { need(t.int64_data_size()); for (int64_t x : t.int64_data()) c.v.push_back(static_cast<double>(x)); }
      break;
    case onnx::TensorProto::INT32:
    case onnx::TensorProto::INT16:
    case onnx::TensorProto::INT8:
    case onnx::TensorProto::UINT16:
    case onnx::TensorProto::UINT8:
    case onnx::TensorProto::BOOL: {
      c.is_int = true;
      const int dt = t.data_type();
      if (has_raw) {
        if (dt == onnx::TensorProto::INT32) { need_raw(4); read_raw<int32_t>(raw, n, &c.v); }
        else if (dt == onnx::TensorProto::INT16) { need_raw(2); read_raw<int16_t>(raw, n, &c.v); }
        else if (dt == onnx::TensorProto::UINT16) { need_raw(2); read_raw<uint16_t>(raw, n, &c.v); }
        else if (dt == onnx::TensorProto::INT8) { need_raw(1); read_raw<int8_t>(raw, n, &c.v); }
        else { need_raw(1); read_raw<uint8_t>(raw, n, &c.v); }
      } else {
        need(t.int32_data_size());
        for (int32_t x : t.int32_data()) c.v.push_back(x);
      }
      if (dt == onnx::TensorProto::BOOL)
        for (double& x : c.v) x = x != 0;
      break;
    }
    case onnx::TensorProto::UINT32:
    case onnx::TensorProto::UINT64:
      c.is_int = true;
      if (has_raw) {
        if (t.data_type() == onnx::TensorProto::UINT32) { need_raw(4); read_raw<uint32_t>(raw, n, &c.v); }
        else { need_raw(8); read_raw<uint64_t>(raw, n, &c.v); }
      } else {
        need(t.uint64_data_size());
        for (uint64_t x : t.uint64_data()) c.v.push_back(static_cast<double>(x));
      }
      break;
    default:
      fail("element type " + std::to_string(t.data_type()) +
           " is not a number type divscope reads (float, double, float16, bfloat16, integers, bool)");
  }
  return c;
}

bool fold(const NodeAttrs& a, int64_t opset, const std::vector<const CVal*>& in,
          std::vector<CVal>* out) {
  const std::string& op = a.node.op_type();
  const Fail& fail = a.fail;
  auto input = [&](size_t k) -> const CVal& {
    if (k >= in.size() || !in[k]) fail("missing input " + std::to_string(k));
    return *in[k];
  };
  auto opt = [&](size_t k) -> const CVal* { return k < in.size() ? in[k] : nullptr; };
  auto unary = [&](const std::function<double(double)>& f, bool keep_int) {
    const CVal& x = input(0);
    CVal r = x;
    for (double& v : r.v) v = f(v);
    r.is_int = keep_int && x.is_int;
    out->push_back(std::move(r));
  };
  auto binary = [&](const std::function<double(double, double)>& f, int result_int) {
    // result_int: 0 float, 1 bool, 2 like the inputs
    const bool ints = input(0).is_int && input(1).is_int;
    out->push_back(elementwise({&input(0), &input(1)}, fail,
                               [&](const double* x) { return f(x[0], x[1]); },
                               result_int == 1 || (result_int == 2 && ints)));
  };

  if (op == "Constant") {
    const onnx::AttributeProto* v = a.find("value");
    CVal r;
    if (v) {
      if (v->type() != onnx::AttributeProto::TENSOR) fail("attribute 'value' must be a tensor");
      try {
        r = from_tensor(v->t(), "attribute 'value'");
      } catch (const std::runtime_error& e) {
        fail(e.what());
      }
    } else if (a.has("value_float")) {
      r.v = {a.f("value_float", 0)};
    } else if (a.has("value_int")) {
      r.v = {static_cast<double>(a.i("value_int", 0))};
      r.is_int = true;
    } else if (const onnx::AttributeProto* fs = a.find("value_floats")) {
      r.v.assign(fs->floats().begin(), fs->floats().end());
      r.shape = {static_cast<int64_t>(r.v.size())};
    } else if (a.has("value_ints")) {
      for (int64_t x : a.ints("value_ints")) r.v.push_back(static_cast<double>(x));
      r.shape = {static_cast<int64_t>(r.v.size())};
      r.is_int = true;
    } else {
      fail("Constant without a value, value_float(s) or value_int(s) (sparse and string "
           "constants are not supported)");
    }
    out->push_back(std::move(r));
    return true;
  }
  if (op == "Identity" || op == "Dropout") {
    out->push_back(input(0));
    return true;
  }
  if (op == "Cast") {
    const int64_t to = a.i("to", 0);
    CVal r = input(0);
    const bool to_int = to == onnx::TensorProto::INT64 || to == onnx::TensorProto::INT32 ||
                        to == onnx::TensorProto::INT16 || to == onnx::TensorProto::INT8 ||
                        to == onnx::TensorProto::UINT8 || to == onnx::TensorProto::BOOL;
    if (to == onnx::TensorProto::BOOL) for (double& v : r.v) v = v != 0;
    else if (to_int) for (double& v : r.v) v = std::trunc(v);
    else if (to == onnx::TensorProto::FLOAT) for (double& v : r.v) v = static_cast<float>(v);
    r.is_int = to_int;
    out->push_back(std::move(r));
    return true;
  }
  if (op == "Shape") {
    out->push_back(shape_value(input(0).shape, a));
    return true;
  }
  if (op == "Size") {
    out->push_back(size_value(input(0).shape, fail));
    return true;
  }
  if (op == "ConstantOfShape") {
    const std::vector<int64_t> shape = as_ints(input(0));
    CVal r;
    r.shape = shape;
    double fill = 0;
    if (const onnx::AttributeProto* v = a.find("value")) {
      CVal f = from_tensor(v->t(), "attribute 'value'");
      if (f.v.size() != 1) fail("attribute 'value' must hold one element");
      fill = f.v[0];
      r.is_int = f.is_int;
    }
    r.v.assign(checked_numel(shape, fail), fill);
    out->push_back(std::move(r));
    return true;
  }
  if (op == "Range") {
    if (input(0).v.size() != 1 || input(1).v.size() != 1 || input(2).v.size() != 1)
      fail("Range needs scalar start, limit and delta");
    const double start = input(0).v[0], limit = input(1).v[0], delta = input(2).v[0];
    if (delta == 0) fail("Range with delta 0");
    const double cnt = std::max(std::ceil((limit - start) / delta), 0.0);
    if (cnt > 1e9) fail("Range of " + std::to_string(cnt) + " elements");
    CVal r;
    r.is_int = input(0).is_int;
    for (int64_t k = 0; k < static_cast<int64_t>(cnt); ++k) r.v.push_back(start + k * delta);
    r.shape = {static_cast<int64_t>(r.v.size())};
    out->push_back(std::move(r));
    return true;
  }
  if (op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze") {
    const CVal& x = input(0);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    Shape s;
    if (op == "Reshape") {
      s = reshape_target(x.shape, as_ints(input(1)), a.i("allowzero", 0) != 0, fail);
    } else if (op == "Flatten") {
      const int64_t ax = a.i("axis", 1) < 0 ? a.i("axis", 1) + r : a.i("axis", 1);
      if (ax < 0 || ax > r) fail("Flatten axis out of range");
      int64_t p = 1, q = 1;
      for (int64_t d = 0; d < ax; ++d) p *= x.shape[d];
      for (int64_t d = ax; d < r; ++d) q *= x.shape[d];
      s = {p, q};
    } else {
      std::vector<int64_t> axes = opset >= 13 ? (opt(1) ? as_ints(*opt(1)) : std::vector<int64_t>{}) : a.ints("axes");
      if (op == "Squeeze") {
        std::vector<bool> drop(r, false);
        for (int64_t ax : axes) {
          const int64_t d = norm_axis(ax, r, fail);
          if (x.shape[d] != 1) fail("Squeeze of dim " + std::to_string(d) + " of size " + std::to_string(x.shape[d]));
          drop[d] = true;
        }
        for (int64_t d = 0; d < r; ++d)
          if (!(axes.empty() ? x.shape[d] == 1 : drop[d])) s.push_back(x.shape[d]);
      } else {
        const int64_t nr = r + static_cast<int64_t>(axes.size());
        std::vector<bool> ins(nr, false);
        for (int64_t ax : axes) {
          const int64_t d = norm_axis(ax, nr, fail);
          if (ins[d]) fail("Unsqueeze with a repeated axis");
          ins[d] = true;
        }
        size_t k = 0;
        for (int64_t d = 0; d < nr; ++d) s.push_back(ins[d] ? 1 : x.shape[k++]);
      }
    }
    if (checked_numel(s, fail) != static_cast<int64_t>(x.v.size()))
      fail(op + " of " + shape_str(x.shape) + " to " + shape_str(s) + " changes the element count");
    CVal res = x;
    res.shape = s;
    out->push_back(std::move(res));
    return true;
  }
  if (op == "Concat") {
    std::vector<const CVal*> xs;
    for (const CVal* c : in)
      if (c) xs.push_back(c);
    if (xs.empty()) fail("Concat without inputs");
    const int64_t r = static_cast<int64_t>(xs[0]->shape.size());
    const int64_t ax = norm_axis(a.i("axis", 0), r, fail);
    CVal res;
    res.shape = xs[0]->shape;
    res.shape[ax] = 0;
    res.is_int = true;
    for (const CVal* c : xs) {
      if (static_cast<int64_t>(c->shape.size()) != r) fail("Concat of different ranks");
      for (int64_t d = 0; d < r; ++d)
        if (d != ax && c->shape[d] != xs[0]->shape[d]) fail("Concat of mismatched shapes");
      res.shape[ax] += c->shape[ax];
      res.is_int = res.is_int && c->is_int;
    }
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < ax; ++d) outer *= res.shape[d];
    for (int64_t d = ax + 1; d < r; ++d) inner *= res.shape[d];
    for (int64_t o = 0; o < outer; ++o)
      for (const CVal* c : xs) {
        const int64_t len = c->shape[ax] * inner;
        res.v.insert(res.v.end(), c->v.begin() + o * len, c->v.begin() + (o + 1) * len);
      }
    out->push_back(std::move(res));
    return true;
  }
  if (op == "Gather") {
    const CVal& x = input(0);
    const CVal& idx = input(1);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    const int64_t ax = norm_axis(a.i("axis", 0), r, fail);
    std::vector<int64_t> ix = as_ints(idx);
    for (int64_t& i : ix) {
      if (i < -x.shape[ax] || i >= x.shape[ax]) fail("Gather index " + std::to_string(i) + " out of range");
      if (i < 0) i += x.shape[ax];
    }
    CVal t = take_along(x, ax, ix);
    Shape s(x.shape.begin(), x.shape.begin() + ax);
    s.insert(s.end(), idx.shape.begin(), idx.shape.end());
    s.insert(s.end(), x.shape.begin() + ax + 1, x.shape.end());
    t.shape = s;
    out->push_back(std::move(t));
    return true;
  }
  if (op == "Slice") {
    const CVal& x = input(0);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    const SliceArgs sa = slice_args(a, opset, in);
    const std::vector<int64_t>&starts = sa.starts, &ends = sa.ends, &axes = sa.axes, &steps = sa.steps;
    CVal cur = x;
    for (size_t k = 0; k < starts.size(); ++k) {
      const int64_t ax = norm_axis(axes[k], r, fail);
      const int64_t dim = cur.shape[ax], step = steps[k];
      if (step == 0) fail("Slice with step 0");
      int64_t s = starts[k], e = ends[k];
      if (s < 0) s += dim;
      if (e < 0) e += dim;
      std::vector<int64_t> idx;
      if (step > 0) {
        s = std::clamp<int64_t>(s, 0, dim);
        e = std::clamp<int64_t>(e, 0, dim);
        for (int64_t i = s; i < e; i += step) idx.push_back(i);
      } else {
        s = std::clamp<int64_t>(s, 0, dim - 1);
        e = std::clamp<int64_t>(e, -1, dim - 1);
        for (int64_t i = s; i > e; i += step) idx.push_back(i);
      }
      cur = take_along(cur, ax, idx);
    }
    out->push_back(std::move(cur));
    return true;
  }
  if (op == "Transpose") {
    const CVal& x = input(0);
    std::vector<int64_t> perm = a.ints("perm");
    const int64_t r = static_cast<int64_t>(x.shape.size());
    if (perm.empty())
      for (int64_t d = r - 1; d >= 0; --d) perm.push_back(d);
    if (static_cast<int64_t>(perm.size()) != r) fail("Transpose perm has the wrong length");
    std::vector<bool> seen(r, false);
    for (int64_t p : perm) {
      if (p < 0 || p >= r || seen[p]) fail("Transpose perm " + shape_str(perm) + " is not a permutation");
      seen[p] = true;
    }
    out->push_back(transpose(x, perm));
    return true;
  }
  if (op == "Expand") {
    out->push_back(broadcast_to(input(0), as_ints(input(1)), fail));
    return true;
  }
  if (op == "Where") {
    const bool ints = input(1).is_int && input(2).is_int;
    out->push_back(elementwise({&input(0), &input(1), &input(2)}, fail,
                               [](const double* v) { return v[0] != 0 ? v[1] : v[2]; }, ints));
    return true;
  }
  if (op == "ScatterND") {
    const CVal& data = input(0);
    const CVal& idx = input(1);
    const CVal& upd = input(2);
    if (a.s("reduction", "none") != "none") fail("ScatterND with a reduction is not folded");
    if (idx.shape.empty()) fail("ScatterND indices of rank 0");
    const int64_t k = idx.shape.back();
    const int64_t r = static_cast<int64_t>(data.shape.size());
    if (k < 1 || k > r) fail("ScatterND index depth out of range");
    const int64_t slice = checked_numel(Shape(data.shape.begin() + k, data.shape.end()), fail);
    const int64_t count = checked_numel(idx.shape, fail) / k;
    if (static_cast<int64_t>(upd.v.size()) != count * slice) fail("ScatterND updates have the wrong size");
    const Shape st = strides_of(data.shape);
    const std::vector<int64_t> ix = as_ints(idx);
    CVal res = data;
    for (int64_t q = 0; q < count; ++q) {
      int64_t off = 0;
      for (int64_t d = 0; d < k; ++d) {
        int64_t i = ix[q * k + d];
        if (i < 0) i += data.shape[d];
        if (i < 0 || i >= data.shape[d]) fail("ScatterND index out of range");
        off += i * st[d];
      }
      std::copy_n(upd.v.begin() + q * slice, slice, res.v.begin() + off);
    }
    out->push_back(std::move(res));
    return true;
  }
  if (op == "Trilu") {
    CVal x = input(0);
    if (opt(1) && opt(1)->v.size() != 1) fail("Trilu k must be a scalar");
    const int64_t k = opt(1) ? as_ints(*opt(1))[0] : 0;
    const bool upper = a.i("upper", 1) != 0;
    const int64_t r = static_cast<int64_t>(x.shape.size());
    if (r < 2) fail("Trilu of rank < 2");
    const int64_t rows = x.shape[r - 2], cols = x.shape[r - 1];
    if (rows * cols == 0) {
      out->push_back(std::move(x));
      return true;
    }
    for (size_t b = 0; b < x.v.size() / (rows * cols); ++b)
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j)
          if (upper ? j - i < k : j - i > k) x.v[b * rows * cols + i * cols + j] = 0;
    out->push_back(std::move(x));
    return true;
  }
  if (op == "Add") { binary([](double x, double y) { return x + y; }, 2); return true; }
  if (op == "Sub") { binary([](double x, double y) { return x - y; }, 2); return true; }
  if (op == "Mul") { binary([](double x, double y) { return x * y; }, 2); return true; }
  if (op == "Div") {
    const bool ints = input(0).is_int && input(1).is_int;
    binary([ints, &fail](double x, double y) {
      if (ints) {
        if (y == 0) fail("integer division by zero");
        return std::trunc(x / y);
      }
      return x / y;
    }, 2);
    return true;
  }
  if (op == "Mod") {
    binary([&fail](double x, double y) {
      if (y == 0) fail("Mod by zero");
      const double m = std::fmod(x, y);
      return (m != 0 && ((m < 0) != (y < 0))) ? m + y : m;
    }, 2);
    return true;
  }
  if (op == "Pow") { binary([](double x, double y) { return std::pow(x, y); }, 2); return true; }
  if (op == "Max") { binary([](double x, double y) { return std::max(x, y); }, 2); return true; }
  if (op == "Min") { binary([](double x, double y) { return std::min(x, y); }, 2); return true; }
  if (op == "Equal") { binary([](double x, double y) { return double(x == y); }, 1); return true; }
  if (op == "Less") { binary([](double x, double y) { return double(x < y); }, 1); return true; }
  if (op == "LessOrEqual") { binary([](double x, double y) { return double(x <= y); }, 1); return true; }
  if (op == "Greater") { binary([](double x, double y) { return double(x > y); }, 1); return true; }
  if (op == "GreaterOrEqual") { binary([](double x, double y) { return double(x >= y); }, 1); return true; }
  if (op == "And") { binary([](double x, double y) { return double(x != 0 && y != 0); }, 1); return true; }
  if (op == "Or") { binary([](double x, double y) { return double(x != 0 || y != 0); }, 1); return true; }
  if (op == "Xor") { binary([](double x, double y) { return double((x != 0) != (y != 0)); }, 1); return true; }
  if (op == "Not") {
    unary([](double x) { return double(x == 0); }, true);
    out->back().is_int = true;
    return true;
  }
  if (op == "Neg") { unary([](double x) { return -x; }, true); return true; }
  if (op == "Abs") { unary([](double x) { return std::fabs(x); }, true); return true; }
  if (op == "Sqrt") { unary([](double x) { return std::sqrt(x); }, false); return true; }
  if (op == "Reciprocal") { unary([](double x) { return 1 / x; }, false); return true; }
  if (op == "Exp") { unary([](double x) { return std::exp(x); }, false); return true; }
  if (op == "Log") { unary([](double x) { return std::log(x); }, false); return true; }
  if (op == "Erf") { unary([](double x) { return std::erf(x); }, false); return true; }
  if (op == "Floor") { unary([](double x) { return std::floor(x); }, true); return true; }
  if (op == "Ceil") { unary([](double x) { return std::ceil(x); }, true); return true; }
  if (op == "Relu") { unary([](double x) { return x < 0 ? 0.0 : x; }, true); return true; }
  if (op == "Sigmoid") { unary([](double x) { return 1 / (1 + std::exp(-x)); }, false); return true; }
  if (op == "Tanh") { unary([](double x) { return std::tanh(x); }, false); return true; }
  if (op == "ReduceProd" || op == "ReduceSum" || op == "ReduceMax" || op == "ReduceMin" || op == "ReduceMean") {
    const CVal& x = input(0);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    std::vector<int64_t> axes = (opset >= 18 || (op == "ReduceSum" && opset >= 13))
                                    ? (opt(1) ? as_ints(*opt(1)) : std::vector<int64_t>{})
                                    : a.ints("axes");
    const bool keep = a.i("keepdims", 1) != 0;
    std::vector<bool> red(r, axes.empty());
    for (int64_t ax : axes) red[norm_axis(ax, r, fail)] = true;
    Shape os, ks;
    for (int64_t d = 0; d < r; ++d) {
      ks.push_back(red[d] ? 1 : x.shape[d]);
      if (!red[d] || keep) os.push_back(red[d] ? 1 : x.shape[d]);
    }
    const int64_t n_out = checked_numel(ks, fail);
    CVal res;
    res.is_int = x.is_int && op != "ReduceMean";
    res.shape = os;
    const bool is_max = op == "ReduceMax", is_min = op == "ReduceMin", is_prod = op == "ReduceProd";
    res.v.assign(n_out, is_prod ? 1.0 : is_max ? -INFINITY : is_min ? INFINITY : 0.0);
    std::vector<int64_t> count(n_out, 0);
    const Shape kst = strides_of(ks);
    for (size_t k = 0; k < x.v.size(); ++k) {
      int64_t flat = static_cast<int64_t>(k), off = 0;
      for (int64_t d = r - 1; d >= 0; --d) {
        const int64_t i = flat % x.shape[d];
        flat /= x.shape[d];
        if (!red[d]) off += i * kst[d];
      }
      double& o = res.v[off];
      const double v = x.v[k];
      if (is_prod) o *= v;
      else if (is_max) o = std::max(o, v);
      else if (is_min) o = std::min(o, v);
      else o += v;
      ++count[off];
    }
    if (op == "ReduceMean")
      for (int64_t k = 0; k < n_out; ++k) res.v[k] /= static_cast<double>(std::max<int64_t>(count[k], 1));
    out->push_back(std::move(res));
    return true;
  }
  if (op == "MatMul") {
    const CVal& x = input(0);
    const CVal& y = input(1);
    if (x.shape.size() != 2 || y.shape.size() != 2 || x.shape[1] != y.shape[0])
      return false;
    const int64_t m = x.shape[0], k = x.shape[1], n = y.shape[1];
    CVal r;
    r.shape = {m, n};
    r.v.assign(checked_numel(r.shape, fail), 0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t t = 0; t < k; ++t) s += x.v[i * k + t] * y.v[t * n + j];
        r.v[i * n + j] = s;
      }
    out->push_back(std::move(r));
    return true;
  }
  return false;
}

}  // namespace onnx_import
}  // namespace divscope
