// Recording files (docs/format.md): /batches/NNNNNN/<input name> [N, per-sample shape...], checked
// against the model at open from metadata only; data is read one batch at a time.
#include <cctype>
#include <map>

#include "io/h5io.h"
#include "io/h5watch.h"
#include "io/h5wrap.h"

namespace divscope {
namespace {

bool is_batch_name(const std::string& s) {
  if (s.size() != 6) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace

struct RecordingReader::Impl {
  h5::File file;
  std::vector<GraphInput> inputs;    // the model's, in its order
  std::vector<std::string> names;    // batch group names
  std::vector<int64_t> sizes;        // N per batch
  std::string source, created, environment;
  std::map<std::string, Shape> layer_shapes;   // per-sample output shape of each layer
  // ONNX models (docs/onnx.md): the layers that are ONNX values, whose recorded activations are
  // stored at the value's name (without its leading '/') in the value's own ONNX layout.
  std::map<std::string, SourceValue> values;   // by layer name

  // Where a layer's recorded activation is stored under activations/ or run_activations/.
  std::string key(const std::string& layer) const {
    auto it = values.find(layer);
    if (it == values.end()) return layer;
    const std::string& v = it->second.name;
    return v.size() > 1 && v[0] == '/' ? v.substr(1) : v;
  }
  bool has(size_t i, const std::string& group, const std::string& layer) const {
    h5::Object b = batch(i);
    const std::string k = group + "/" + key(layer);
    return b.has(group) && b.has(k) && b.open(k).is_dataset();
  }
  // A layer's recorded dataset in `group` of batch i, its dims checked against the caller's
  // batch-first shape (an ONNX value: its own layout for that batch size).
  h5::Object dataset(size_t i, const std::string& group, const std::string& layer,
                     const Shape& expected_full) const {
    h5::Object d = batch(i).dataset(group + "/" + key(layer));
    auto v = values.find(layer);
    const Shape want = v == values.end() ? expected_full : v->second.shape_at(expected_full[0]);
    if (d.dims() != want)
      d.fail(std::string(group == "run_activations" ? "run activation" : "activation") + " of layer '" +
             layer + "' has shape " + shape_str(d.dims()) + ", expected " + shape_str(want));
    return d;
  }
  // A recorded tensor in the layer's batch-first layout (an ONNX value's moved there).
  Tensor batch_first(const std::string& layer, Tensor t, const Shape& expected_full) const {
    auto v = values.find(layer);
    if (v == values.end()) return t;
    return onnx_to_batch_first(v->second, t, Shape(expected_full.begin() + 1, expected_full.end()));
  }
  // The dataset's expected dims for a batch of n.
  Shape stored_dims(const std::string& layer, int64_t n) const {
    auto it = values.find(layer);
    if (it != values.end()) return it->second.shape_at(n);
    Shape want{n};
    const Shape& ps = layer_shapes.at(layer);
    want.insert(want.end(), ps.begin(), ps.end());
    return want;
  }

  h5::Object batch(size_t i) const {
    h5::init();   // this may be another thread than the one that opened the file
    if (i >= names.size())
      throw InputError(file.name(), "/batches",
                       "batch index " + std::to_string(i) + " out of range (" +
                           std::to_string(names.size()) + " batches)");
    return file.root().group("batches").group(names[i]);
  }

  // Checks one input dataset of a batch and returns its N.
  int64_t check_input(const h5::Object& b, const GraphInput& gi) const {
    if (!b.has(gi.name))
      b.fail_at(b.child_path(gi.name), "missing dataset for model input '" + gi.name + "'");
    h5::Object d = b.dataset(gi.name);
    Shape dims = d.dims();
    Shape want{-1};
    want.insert(want.end(), gi.shape.begin(), gi.shape.end());
    if (dims.size() != want.size())
      d.fail("dataset has rank " + std::to_string(dims.size()) + ", expected " +
             std::to_string(want.size()) + " ([N] + per-sample shape " + shape_str(gi.shape) + ")");
    Shape per(dims.begin() + 1, dims.end());
    if (per != gi.shape)
      d.fail("dataset has shape " + shape_str(dims) + ": per-sample shape " + shape_str(per) +
             " does not match the model's input shape " + shape_str(gi.shape));
    h5::TypeInfo t = d.type();
    if (gi.dtype == "int64") {
      if (t.cls != H5T_INTEGER)
        d.fail("dataset has dtype " + t.name() + ", expected an integer type for int64 input '" +
               gi.name + "'");
    } else if (!t.is_float() || (t.bytes != 4 && t.bytes != 8)) {
      d.fail("dataset has dtype " + t.name() + ", expected float32 or float64");
    }
    if (dims[0] < 1) d.fail("empty batch (N = 0)");
    d.check_size();
    return dims[0];
  }

  // The recorded activations of one batch (if any): those of the model's layers must have the
  // layer's shape and a float type, checked at open so that a bad one is not found only after
  // the layers before it have run. Others (not layers of this model) are not compared.
  // The same for the user's own run (run_activations), whose dtype is also checked.
  void check_activations(const h5::Object& b, int64_t n, const std::string& group) const {
    if (!b.has(group)) return;
    h5::Object acts = b.group(group);
    const bool run = group == "run_activations";
    auto check = [&](const std::string& layer, const h5::Object& d) {
      const Shape want = stored_dims(layer, n);
      if (d.dims() != want)
        d.fail(std::string(run ? "run activation" : "activation") + " of layer '" + layer +
               "' has shape " + shape_str(d.dims()) + ", expected " + shape_str(want));
      d.check_size();
      if (run) {
        h5::float_dtype(d);   // the dtypes of run activations (docs/format.md)
        return;
      }
      const h5::TypeInfo t = d.type();
      if (!t.is_float()) d.fail("dataset has dtype " + t.name() + ", expected float32 or float64");
    };
    if (!values.empty()) {
      for (const auto& kv : values) {
        const std::string k = key(kv.first);
        if (acts.has(k) && acts.open(k).is_dataset()) check(kv.first, acts.dataset(k));
      }
      return;
    }
    for (const std::string& name : acts.members()) {
      if (!layer_shapes.count(name)) continue;
      check(name, acts.dataset(name));
    }
  }
};

RecordingReader::RecordingReader(const std::string& path, const Model& m)
    : impl_(new Impl{h5::File::open(path), m.inputs, {}, {}, {}, {}, {}, {}, {}}) {
  for (const Layer& l : m.layers) {
    impl_->layer_shapes[l.name] = l.out_shape;
    if (!l.value.name.empty()) impl_->values[l.name] = l.value;
  }
  h5::Object root = impl_->file.root();
  h5::check_header(root, "recording", kRecordingFormatVersion);
  if (root.has_attr("source")) impl_->source = root.attr_string("source");
  if (root.has_attr("created")) impl_->created = root.attr_string("created");
  if (root.has_attr("capture_environment"))
    impl_->environment = root.attr_string("capture_environment");
  h5::Object batches = root.group("batches");
  impl_->names = batches.members();
  if (impl_->names.empty()) batches.fail("recording has no batches");
  for (const std::string& name : impl_->names) {
    if (!is_batch_name(name))
      batches.fail_at(batches.child_path(name),
                      "batch groups must be named with six digits (000000, 000001, ...)");
    h5::Object b = batches.group(name);
    int64_t n = -1;
    std::string first;
    for (const GraphInput& gi : impl_->inputs) {
      if (gi.constant) continue;   // in the model file, not recorded
      int64_t ni = impl_->check_input(b, gi);
      if (n >= 0 && ni != n)
        b.fail_at(b.child_path(gi.name), "batch size " + std::to_string(ni) +
                                             " differs from " + std::to_string(n) +
                                             " of input '" + first + "'");
      if (n < 0) {
        n = ni;
        first = gi.name;
      }
    }
    impl_->sizes.push_back(n);
    impl_->check_activations(b, n, "activations");
    impl_->check_activations(b, n, "run_activations");
  }
}

RecordingReader::~RecordingReader() = default;
RecordingReader::RecordingReader(RecordingReader&&) noexcept = default;
RecordingReader& RecordingReader::operator=(RecordingReader&&) noexcept = default;

const std::string& RecordingReader::file() const { return impl_->file.name(); }
size_t RecordingReader::num_batches() const { return impl_->names.size(); }
int64_t RecordingReader::batch_size(size_t i) const {
  impl_->batch(i);   // range check
  return impl_->sizes[i];
}
std::string RecordingReader::batch_name(size_t i) const {
  impl_->batch(i);
  return impl_->names[i];
}
std::string RecordingReader::source() const { return impl_->source; }
std::string RecordingReader::created() const { return impl_->created; }
std::string RecordingReader::capture_environment() const { return impl_->environment; }

std::vector<Tensor> RecordingReader::read_batch(size_t i) const {
  h5::Object b = impl_->batch(i);
  std::vector<Tensor> out;
  for (const GraphInput& gi : impl_->inputs) {
    if (gi.constant) {
      out.push_back(gi.value);   // batch dim 1: the ops broadcast it
      continue;
    }
    h5::Object d = b.dataset(gi.name);
    if (gi.dtype == "int64") {
      std::vector<int64_t> v = d.read_i64();
      Tensor t(d.dims());
      for (size_t k = 0; k < v.size(); ++k) t.data[k] = static_cast<double>(v[k]);
      out.push_back(std::move(t));
    } else {
      out.push_back(d.read_f64());
    }
  }
  return out;
}

bool RecordingReader::has_activation(size_t i, const std::string& layer) const {
  return impl_->has(i, "activations", layer);
}

Tensor RecordingReader::read_activation(size_t i, const std::string& layer,
                                        const Shape& expected_full) const {
  h5::Object d = impl_->dataset(i, "activations", layer, expected_full);
  h5::TypeInfo t = d.type();
  if (!t.is_float()) d.fail("dataset has dtype " + t.name() + ", expected float32 or float64");
  return impl_->batch_first(layer, d.read_f64(), expected_full);
}

bool RecordingReader::has_run_activation(size_t i, const std::string& layer) const {
  return impl_->has(i, "run_activations", layer);
}

Tensor RecordingReader::read_run_activation(size_t i, const std::string& layer,
                                            const Shape& expected_full, std::string* dtype) const {
  h5::Object d = impl_->dataset(i, "run_activations", layer, expected_full);
  const h5::FloatDtype dt = h5::float_dtype(d);
  if (dtype) *dtype = h5::dtype_name(dt);
  // exact, NaN and Inf kept
  return impl_->batch_first(layer, h5::read_exact_f64(d, dt), expected_full);
}

std::map<std::string, Shape> recording_sample_shapes(const std::string& path) {
  h5::File f = h5::File::open(path);
  h5::Object root = f.root();
  h5::check_header(root, "recording", kRecordingFormatVersion);
  h5::Object batches = root.group("batches");
  const std::vector<std::string> names = batches.members();
  if (names.empty()) batches.fail("recording has no batches");
  h5::Object b = batches.group(names[0]);
  std::map<std::string, Shape> out;
  for (const std::string& m : b.members()) {
    if (!b.open(m).is_dataset()) continue;
    const Shape dims = b.dataset(m).dims();
    if (dims.empty()) continue;
    out[m] = Shape(dims.begin() + 1, dims.end());
  }
  return out;
}

}  // namespace divscope
