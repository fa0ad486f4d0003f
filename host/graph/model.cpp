#include "graph/model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "errors.h"
#include "graph/ops.h"

namespace divscope {
namespace {

std::string kind_name(const AttrValue& v) {
  switch (v.index()) {
    case 0: return "an integer";
    case 1: return "a float";
    case 2: return "a string";
    case 3: return "an integer array";
    case 4: return "a float array";
    default: return "a string array";
  }
}

[[noreturn]] void bad_attr(const Layer& L, const std::string& key, const std::string& want) {
  auto it = L.attrs.find(key);
  std::string got = it == L.attrs.end() ? "missing" : kind_name(it->second);
  throw std::runtime_error("attribute '" + key + "' must be " + want + ", got " + got);
}

}  // namespace

int64_t Layer::attr_int(const std::string& key) const {
  auto it = attrs.find(key);
  if (it != attrs.end()) {
    if (auto* v = std::get_if<int64_t>(&it->second)) return *v;
    if (auto* a = std::get_if<std::vector<int64_t>>(&it->second); a && a->size() == 1)
      return (*a)[0];
  }
  bad_attr(*this, key, "an integer");
}

int64_t Layer::attr_int(const std::string& key, int64_t def) const {
  return has(key) ? attr_int(key) : def;
}

double Layer::attr_float(const std::string& key) const {
  auto it = attrs.find(key);
  if (it != attrs.end()) {
    if (auto* v = std::get_if<double>(&it->second)) return *v;
    if (auto* v = std::get_if<int64_t>(&it->second)) return static_cast<double>(*v);
    if (auto* a = std::get_if<std::vector<double>>(&it->second); a && a->size() == 1)
      return (*a)[0];
  }
  bad_attr(*this, key, "a float");
}

double Layer::attr_float(const std::string& key, double def) const {
  return has(key) ? attr_float(key) : def;
}

std::string Layer::attr_str(const std::string& key, const std::string& def) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return def;
  if (auto* v = std::get_if<std::string>(&it->second)) return *v;
  if (auto* a = std::get_if<std::vector<std::string>>(&it->second); a && a->size() == 1)
    return (*a)[0];
  bad_attr(*this, key, "a string");
}

std::vector<int64_t> Layer::attr_ints(const std::string& key) const {
  auto it = attrs.find(key);
  if (it != attrs.end()) {
    if (auto* a = std::get_if<std::vector<int64_t>>(&it->second)) return *a;
    if (auto* v = std::get_if<int64_t>(&it->second)) return {*v};
  }
  bad_attr(*this, key, "an integer array");
}

std::vector<int64_t> Layer::attr_ints(const std::string& key, size_t n,
                                      std::vector<int64_t> def) const {
  if (!has(key)) {
    if (def.empty()) bad_attr(*this, key, "an integer array of " + std::to_string(n));
    return def;
  }
  std::vector<int64_t> v = attr_ints(key);
  if (v.size() == 1 && n > 1) v.assign(n, v[0]);
  if (v.size() != n)
    throw std::runtime_error("attribute '" + key + "' must have " + std::to_string(n) +
                             " elements, got " + std::to_string(v.size()));
  return v;
}

const Tensor* Layer::param(const std::string& key) const {
  auto it = params.find(key);
  return it == params.end() ? nullptr : &it->second;
}

Shape SourceValue::shape_at(int64_t n) const {
  Shape s = shape;
  s[axis] = outer * n * inner;
  return s;
}

Tensor onnx_to_batch_first(const SourceValue& v, const Tensor& t, const Shape& per_sample) {
  // t viewed as [pre, outer, N, inner·post] (pre = product of the dims before `axis`);
  // the result is [N, pre, outer, inner·post].
  const int64_t n = t.size() / numel(per_sample);   // per-sample dims are positive
  int64_t pre = 1, post = v.inner;
  for (int64_t d = 0; d < v.axis; ++d) pre *= v.shape[d];
  for (size_t d = v.axis + 1; d < v.shape.size(); ++d) post *= v.shape[d];
  Shape full{n};
  full.insert(full.end(), per_sample.begin(), per_sample.end());
  Tensor out(full);
  const int64_t po = pre * v.outer;
  for (int64_t a = 0; a < po; ++a)
    for (int64_t s = 0; s < n; ++s) {
      const double* src = t.ptr() + (a * n + s) * post;
      double* dst = out.ptr() + (s * po + a) * post;
      std::copy(src, src + post, dst);
    }
  return out;
}

std::string Layer::where() const { return "layer '" + name + "' (" + path + ")"; }

int Model::find_layer(const std::string& n) const {
  for (const Layer& l : layers)
    if (l.name == n) return l.index;
  return -1;
}

int Model::find_input(const std::string& n) const {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].name == n) return static_cast<int>(i);
  return -1;
}

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const Layer& l : layers)
    for (const auto& kv : l.params) n += kv.second.size();
  return n;
}

int Model::first_recorded_input() const {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!inputs[i].constant) return static_cast<int>(i);
  return -1;
}

bool Model::has_constants() const {
  for (const GraphInput& gi : inputs)
    if (gi.constant) return true;
  return false;
}

namespace {

// Format v2's multi-output layers. `split` (attrs `axis`, `sizes`) has one output per size,
// referenced as "<name>:<i>". The graph runs it as one `slice` layer per output, named so that
// the references resolve as they are written; what was split is checked after inference.
struct SplitOrigin {
  std::string name, path;
  int first = 0;                 // index of the first lowered slice layer
  size_t outputs = 0;            // how many (one slice each)
  int64_t axis = 0, total = 0;   // the input's extent along `axis` must be `total`
};

// One sample of a value must fit in int64 elements and, as FP64, in this machine's memory:
// checked when the model is read, so that a layer whose output cannot exist (an upsample by
// 2^20, a padding of 2^40) is refused naming it before any batch is read. The recording reader
// checks the same for the recorded batch sizes.
void check_sample_size(const Model& m, const std::string& path, const std::string& what, const Shape& s) {
  int64_t n = 0;
  try {
    n = numel(s);
  } catch (const SizeOverflow&) {
    throw InputError(m.file, path, what + " " + shape_str(s) + " has more elements per sample than int64 holds");
  }
  const int64_t bytes = saturating_bytes(n, sizeof(double));
  if (bytes > host_memory_bytes())
    throw InputError(m.file, path, what + " " + shape_str(s) + " needs " + bytes_str(bytes) +
                                       " per sample as float64, more than this machine's memory (" +
                                       bytes_str(host_memory_bytes()) + ")");
}

std::vector<SplitOrigin> lower_multi_output(Model& m) {
  std::vector<SplitOrigin> splits;
  std::vector<Layer> out;
  for (Layer& L : m.layers) {
    if (L.op != "split") {
      L.index = static_cast<int>(out.size());
      out.push_back(std::move(L));
      continue;
    }
    auto fail = [&](const std::string& what) {
      throw InputError(m.file, L.path, "layer '" + L.name + "' (split): " + what);
    };
    for (const auto& kv : L.attrs)
      if (kv.first != "axis" && kv.first != "sizes") fail("unknown attribute '" + kv.first + "'");
    if (!L.params.empty()) fail("unknown parameter '" + L.params.begin()->first + "'");
    if (L.inputs.size() != 1) fail("expects 1 input, got " + std::to_string(L.inputs.size()));
    int64_t axis = 0;
    std::vector<int64_t> sizes;
    try {
      axis = L.attr_int("axis");
      sizes = L.attr_ints("sizes");
    } catch (const std::exception& e) {
      fail(e.what());
    }
    if (sizes.empty()) fail("sizes is empty");
    SplitOrigin so{L.name, L.path, static_cast<int>(out.size()), sizes.size(), axis, 0};
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] <= 0) fail("sizes must be positive");
      if (sizes[i] > (int64_t{1} << 40)) fail("sizes entry " + std::to_string(sizes[i]) + " is absurd");
      Layer S;
      S.index = static_cast<int>(out.size());
      S.name = L.name + ":" + std::to_string(i);
      S.op = "slice";
      S.inputs = L.inputs;
      S.path = L.path;
      S.source = L.source;
      S.attrs["axis"] = axis;
      S.attrs["start"] = so.total;
      try {
        so.total = checked_add(so.total, sizes[i], "sum of sizes");
      } catch (const SizeOverflow& e) {
        fail(e.what());
      }
      S.attrs["end"] = so.total;
      out.push_back(std::move(S));
    }
    splits.push_back(so);
  }
  m.layers = std::move(out);
  return splits;
}

}  // namespace

void validate_and_infer(Model& m) {
  std::set<std::string> names;
  for (GraphInput& gi : m.inputs) {
    if (gi.path.empty()) gi.path = (gi.constant ? "/constants/" : "/inputs/") + gi.name;
    if (gi.dtype != "float32" && gi.dtype != "int64")
      throw InputError(m.file, gi.path,
                       "dtype must be \"float32\" or \"int64\", got \"" + gi.dtype + "\"");
    for (int64_t d : gi.shape)
      if (d <= 0) throw InputError(m.file, gi.path, "shape " + shape_str(gi.shape) + " has a non-positive dim");
    check_sample_size(m, gi.path, "input '" + gi.name + "'", gi.shape);
    if (gi.constant) {
      Shape want{1};
      want.insert(want.end(), gi.shape.begin(), gi.shape.end());
      if (gi.dtype != "float32" || gi.value.shape != want || gi.value.size() != numel(want))
        throw InputError(m.file, gi.path, "constant must be a float tensor of shape " + shape_str(gi.shape));
      for (double v : gi.value.data)
        if (std::isnan(v)) throw InputError(m.file, gi.path, "constant contains NaN");
    }
    if (!names.insert(gi.name).second)
      throw InputError(m.file, gi.path, "duplicate name '" + gi.name + "'");
  }
  if (m.first_recorded_input() < 0)
    throw InputError(m.file, "/inputs", "model has no recorded inputs (only constants)");
  const std::vector<SplitOrigin> splits = lower_multi_output(m);
  std::map<std::string, size_t> split_outputs;   // a split's name is not a value: say so
  for (const SplitOrigin& so : splits) split_outputs[so.name] = so.outputs;
  // Whether a value depends on a recorded input (has a batch of N): every layer must, a layer
  // of constants alone is a constant and belongs in /constants.
  std::vector<bool> batched(m.layers.size(), false);
  for (Layer& L : m.layers) {
    auto fail = [&](const std::string& what) {
      throw InputError(m.file, L.path, "layer '" + L.name + "' (" + L.op + "): " + what);
    };
    if (L.name.empty()) fail("empty layer name");
    if (!names.insert(L.name).second) fail("duplicate name '" + L.name + "'");
    const OpSpec* spec = find_op(L.op);
    if (!spec) throw InputError(m.file, L.path, "layer '" + L.name + "': unknown op '" + L.op + "'");
    if (!accepts_input_count(*spec, L.inputs.size()))
      fail("expects " + input_count_str(*spec) + ", got " + std::to_string(L.inputs.size()));
    L.refs.clear();
    for (const std::string& in : L.inputs) {
      int li = m.find_layer(in);
      int gi = m.find_input(in);
      if (li >= 0 && li < L.index) {
        L.refs.push_back({false, li});
      } else if (gi >= 0) {
        L.refs.push_back({true, gi});
      } else if (li >= L.index) {
        fail("input '" + in + "' is a later layer (forward reference or cycle)");
      } else if (split_outputs.count(in)) {
        fail("input '" + in + "' is a split with " + std::to_string(split_outputs[in]) +
             " outputs: name one as '" + in + ":0' ... '" + in + ":" +
             std::to_string(split_outputs[in] - 1) + "'");
      } else {
        fail("unknown input '" + in + "'");
      }
      const ValueRef& r = L.refs.back();
      if (r.is_input ? !m.inputs[r.index].constant : batched[r.index]) batched[L.index] = true;
      bool int_input = r.is_input && m.inputs[r.index].dtype == "int64";
      // expand's second input lends only its batch size, so it may be any graph input.
      const size_t k = L.refs.size() - 1;
      const bool any_dtype = L.op == "expand" && k == 1;
      if (!any_dtype && int_input != (L.op == "embedding"))
        fail(int_input ? "input '" + in + "' is int64; only embedding takes indices"
                       : "input '" + in + "' must be an int64 graph input");
    }
    if (!batched[L.index])
      fail("every input is a constant: the layer is a constant itself (fold it into /constants)");
    for (const auto& kv : L.attrs) {
      const AttrSpec* as = nullptr;
      for (const AttrSpec& s : spec->attrs)
        if (kv.first == s.name) as = &s;
      if (!as && kv.first != "name" && kv.first != "op" && kv.first != "inputs")
        fail("unknown attribute '" + kv.first + "'");
    }
    for (const AttrSpec& s : spec->attrs)
      if (s.required && !L.has(s.name)) fail(std::string("missing attribute '") + s.name + "'");
    // Every attribute of the kind its op reads (an op reads some only when it runs, e.g. eps).
    for (const AttrSpec& s : spec->attrs) {
      if (!L.has(s.name)) continue;
      std::string wrong;
      try {
        switch (s.kind) {
          case AttrKind::Int: L.attr_int(s.name); break;
          case AttrKind::Ints: L.attr_ints(s.name); break;
          case AttrKind::Str: L.attr_str(s.name, ""); break;
          case AttrKind::Float:
            if (!std::isfinite(L.attr_float(s.name)))
              wrong = std::string("attribute '") + s.name + "' must be finite";
            break;
        }
      } catch (const std::exception& e) {
        wrong = e.what();
      }
      if (!wrong.empty()) fail(wrong);
    }
    for (const auto& kv : L.params) {
      bool known = false;
      for (const ParamSpec& p : spec->params) known |= kv.first == p.name;
      if (!known) fail("unknown parameter '" + kv.first + "'");
      for (double v : kv.second.data)
        if (!std::isfinite(v)) {
          throw InputError(m.file, L.path + "/" + kv.first,
                           std::isnan(v) ? "parameter contains NaN" : "parameter contains Inf");
        }
    }
    for (const ParamSpec& p : spec->params)
      if (p.required && !L.param(p.name)) fail(std::string("missing parameter '") + p.name + "'");
    // Shapes with a batch of 1 everywhere (constants have 1, so broadcasting is checked too).
    std::vector<Shape> full;
    for (const ValueRef& r : L.refs) {
      Shape s{1};
      const Shape& ps = m.shape_of(r);
      s.insert(s.end(), ps.begin(), ps.end());
      full.push_back(s);
    }
    try {
      Shape out = spec->infer(L, full);
      L.out_shape.assign(out.begin() + 1, out.end());
    } catch (const InputError&) {
      throw;
    } catch (const std::exception& e) {
      fail(e.what());
    }
    check_sample_size(m, L.path, "layer '" + L.name + "' (" + L.op + "): output", L.out_shape);
  }
  for (const SplitOrigin& so : splits) {
    const Layer& first = m.layers[so.first];
    const Shape& in = m.shape_of(first.refs[0]);
    const int64_t rank = static_cast<int64_t>(in.size()) + 1;
    const int64_t a = so.axis < 0 ? so.axis + rank : so.axis;
    if (a >= 1 && a < rank && in[a - 1] != so.total)
      throw InputError(m.file, so.path, "layer '" + so.name + "' (split): sizes add up to " +
                                            std::to_string(so.total) + ", the input's axis " +
                                            std::to_string(so.axis) + " has " +
                                            std::to_string(in[a - 1]));
  }
  if (m.layers.empty()) throw InputError(m.file, "/layers", "model has no layers");
  if (m.outputs.empty()) m.outputs.push_back(m.layers.back().name);
  for (const std::string& o : m.outputs) {
    const int gi = m.find_input(o);
    if (m.find_layer(o) < 0 && (gi < 0 || m.inputs[gi].constant))
      throw InputError(m.file, "/", "output '" + o + "' is not a layer");
  }
}

}  // namespace divscope
