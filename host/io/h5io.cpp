// Model files (docs/format.md): read_model, write_model, file_format. Recordings and dumps are in
// h5recording.cpp and h5dump.cpp; the HDF5 handles and checked calls in h5wrap.cpp.
#include "io/h5io.h"

#include <cmath>

#include "io/h5wrap.h"

namespace divscope {
namespace {

// Attributes of a layer group that are Layer fields rather than op attributes.
bool is_layer_field(const std::string& a) {
  return a == "name" || a == "op" || a == "inputs" || a == "source";
}

GraphInput read_input(const h5::Object& inputs, const std::string& name, int64_t version) {
  h5::Object g = inputs.group(name);
  GraphInput gi;
  gi.name = name;
  gi.path = g.path();
  gi.shape = g.attr_ints("shape");
  gi.dtype = g.attr_string("dtype");
  if (version >= 2 && g.has_attr("batch_axis")) {
    gi.batch_axis = g.attr_int("batch_axis");
    if (gi.batch_axis < 0 || gi.batch_axis > static_cast<int64_t>(gi.shape.size()))
      g.fail("batch_axis " + std::to_string(gi.batch_axis) + " out of range for per-sample shape " +
             shape_str(gi.shape));
  }
  return gi;
}

// Member `name` of `parent`, which must be a float32 or float64 dataset (parameters, constants).
h5::Object float_dataset(const h5::Object& parent, const std::string& name, const char* not_dataset) {
  h5::Object d = parent.open(name);
  if (!d.is_dataset()) d.fail(not_dataset);
  h5::TypeInfo t = d.type();
  if (!t.is_float() || (t.bytes != 4 && t.bytes != 8))
    d.fail("dataset has dtype " + t.name() + ", expected float32 or float64");
  return d;
}

// /constants/<name> (v2): a float dataset holding the value without a batch dim.
// NaN is refused by validate_and_infer, which checks in-memory models too.
GraphInput read_constant(const h5::Object& constants, const std::string& name) {
  h5::Object d = float_dataset(constants, name, "expected a dataset (constants are datasets)");
  GraphInput gi;
  gi.name = name;
  gi.path = d.path();
  gi.dtype = "float32";
  gi.constant = true;
  gi.value = d.read_f64();
  gi.shape = gi.value.shape;
  if (gi.shape.empty()) gi.shape = {1};   // a scalar is a tensor of one element
  gi.value.shape.assign(1, 1);
  gi.value.shape.insert(gi.value.shape.end(), gi.shape.begin(), gi.shape.end());
  return gi;
}

Tensor read_param(const h5::Object& layer, const std::string& name) {
  h5::Object d = float_dataset(layer, name, "unexpected group in a layer (parameters are datasets)");
  Tensor p = d.read_f64();
  for (double v : p.data)
    if (!std::isfinite(v))
      d.fail(std::isnan(v) ? "parameter contains NaN" : "parameter contains Inf");
  return p;
}

Layer read_layer(const h5::Object& layers, const std::string& gname, int index, int64_t version) {
  h5::Object g = layers.group(gname);
  Layer L;
  L.index = index;
  L.path = g.path();
  L.name = g.attr_string("name");
  g.set_context("layer '" + L.name + "': ");
  L.op = g.attr_string("op");
  L.inputs = g.attr_strings("inputs");
  if (version >= 2 && g.has_attr("source")) L.source = g.attr_string("source");
  for (const std::string& a : g.attr_names())
    if (!is_layer_field(a)) L.attrs[a] = g.attr(a);
  for (const std::string& p : g.members()) L.params[p] = read_param(g, p);
  return L;
}

}  // namespace

Model read_model(const std::string& path) {
  h5::File f = h5::File::open(path);
  h5::Object root = f.root();
  const int64_t version = h5::check_header(root, "model", kModelFormatVersion);
  Model m;
  m.file = path;
  m.name = root.attr_string("name");

  h5::Object inputs = root.group("inputs");
  for (const std::string& name : inputs.members_in_creation_order())
    m.inputs.push_back(read_input(inputs, name, version));
  if (m.inputs.empty()) inputs.fail("model has no inputs");
  if (version >= 2 && root.has("constants")) {
    h5::Object constants = root.group("constants");
    for (const std::string& name : constants.members_in_creation_order())
      m.inputs.push_back(read_constant(constants, name));
  }

  h5::Object layers = root.group("layers");
  std::vector<std::string> names = layers.members();
  if (names.empty()) layers.fail("model has no layers");
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] != h5::padded(i, 4))
      layers.fail_at(layers.child_path(names[i]),
                     "layer groups must be numbered 0000, 0001, ... in order; expected '" +
                         h5::padded(i, 4) + "'");
    m.layers.push_back(read_layer(layers, names[i], static_cast<int>(i), version));
  }
  if (root.has_attr("outputs")) m.outputs = root.attr_strings("outputs");
  if (version >= 2 && root.has_attr("capture_notes")) m.notes = root.attr_string("capture_notes");
  validate_and_infer(m);
  return m;
}

void write_model(const Model& m, const std::string& path) {
  h5::File f = h5::File::create(path);
  h5::Object root = f.root();
  root.write_attr("divscope_format", std::string("model"));
  bool v2 = m.has_constants();
  for (const GraphInput& gi : m.inputs) v2 |= gi.batch_axis != 0;
  for (const Layer& L : m.layers) v2 |= !L.source.empty();
  v2 |= !m.notes.empty();
  root.write_attr("divscope_version", int64_t{v2 ? 2 : 1});
  root.write_attr("name", m.name);
  if (!m.outputs.empty()) root.write_attr("outputs", m.outputs);
  if (!m.notes.empty()) root.write_attr("capture_notes", m.notes);

  h5::Object inputs = root.create_group("inputs");
  for (const GraphInput& gi : m.inputs) {
    if (gi.constant) continue;
    h5::Object g = inputs.create_group(gi.name);
    g.write_attr("shape", std::vector<int64_t>(gi.shape));
    g.write_attr("dtype", gi.dtype);
    if (gi.batch_axis != 0) g.write_attr("batch_axis", gi.batch_axis);
  }
  if (m.has_constants()) {
    h5::Object constants = root.create_group("constants");
    for (const GraphInput& gi : m.inputs) {
      if (!gi.constant) continue;
      Tensor v = gi.value;
      v.shape = gi.shape;
      constants.write_dataset(gi.name, v);
    }
  }
  h5::Object layers = root.create_group("layers");
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const Layer& L = m.layers[i];
    h5::Object g = layers.create_group(h5::padded(i, 4));
    g.write_attr("name", L.name);
    g.write_attr("op", L.op);
    g.write_attr("inputs", L.inputs);
    if (!L.source.empty()) g.write_attr("source", L.source);
    for (const auto& kv : L.attrs) g.write_attr(kv.first, kv.second);
    for (const auto& kv : L.params) g.write_dataset(kv.first, kv.second);
  }
}

std::string file_format(const std::string& path) {
  h5::File f = h5::File::open(path);
  h5::Object root = f.root();
  if (!root.has_attr("divscope_format"))
    root.fail("missing attribute 'divscope_format' (not a divscope file)");
  return root.attr_string("divscope_format");
}

}  // namespace divscope
