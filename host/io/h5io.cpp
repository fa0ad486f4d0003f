// Model files (DESIGN §3): read_model, write_model, file_format. Recordings and dumps are in
// h5recording.cpp and h5dump.cpp; the HDF5 handles and checked calls in h5wrap.cpp.
#include "io/h5io.h"

#include <cmath>

#include "io/h5wrap.h"

namespace divscope {
namespace {

// Attributes of a layer group that are Layer fields rather than op attributes.
bool is_layer_field(const std::string& a) { return a == "name" || a == "op" || a == "inputs"; }

GraphInput read_input(const h5::Object& inputs, const std::string& name) {
  h5::Object g = inputs.group(name);
  GraphInput gi;
  gi.name = name;
  gi.shape = g.attr_ints("shape");
  gi.dtype = g.attr_string("dtype");
  return gi;
}

Tensor read_param(const h5::Object& layer, const std::string& name) {
  h5::Object d = layer.open(name);
  if (!d.is_dataset()) d.fail("unexpected group in a layer (parameters are datasets)");
  h5::TypeInfo t = d.type();
  if (!t.is_float() || (t.bytes != 4 && t.bytes != 8))
    d.fail("dataset has dtype " + t.name() + ", expected float32 or float64");
  Tensor p = d.read_f64();
  for (double v : p.data)
    if (!std::isfinite(v))
      d.fail(std::isnan(v) ? "parameter contains NaN" : "parameter contains Inf");
  return p;
}

Layer read_layer(const h5::Object& layers, const std::string& gname, int index) {
  h5::Object g = layers.group(gname);
  Layer L;
  L.index = index;
  L.path = g.path();
  L.name = g.attr_string("name");
  g.set_context("layer '" + L.name + "': ");
  L.op = g.attr_string("op");
  L.inputs = g.attr_strings("inputs");
  for (const std::string& a : g.attr_names())
    if (!is_layer_field(a)) L.attrs[a] = g.attr(a);
  for (const std::string& p : g.members()) L.params[p] = read_param(g, p);
  return L;
}

}  // namespace

Model read_model(const std::string& path) {
  h5::File f = h5::File::open(path);
  h5::Object root = f.root();
  h5::check_header(root, "model");
  Model m;
  m.file = path;
  m.name = root.attr_string("name");

  h5::Object inputs = root.group("inputs");
  for (const std::string& name : inputs.members_in_creation_order())
    m.inputs.push_back(read_input(inputs, name));
  if (m.inputs.empty()) inputs.fail("model has no inputs");

  h5::Object layers = root.group("layers");
  std::vector<std::string> names = layers.members();
  if (names.empty()) layers.fail("model has no layers");
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] != h5::padded(i, 4))
      layers.fail_at(layers.child_path(names[i]),
                     "layer groups must be numbered 0000, 0001, ... in order; expected '" +
                         h5::padded(i, 4) + "'");
    m.layers.push_back(read_layer(layers, names[i], static_cast<int>(i)));
  }
  if (root.has_attr("outputs")) m.outputs = root.attr_strings("outputs");
  validate_and_infer(m);
  return m;
}

void write_model(const Model& m, const std::string& path) {
  h5::File f = h5::File::create(path);
  h5::Object root = f.root();
  root.write_attr("divscope_format", std::string("model"));
  root.write_attr("divscope_version", int64_t{1});
  root.write_attr("name", m.name);
  if (!m.outputs.empty()) root.write_attr("outputs", m.outputs);

  h5::Object inputs = root.create_group("inputs");
  for (const GraphInput& gi : m.inputs) {
    h5::Object g = inputs.create_group(gi.name);
    g.write_attr("shape", std::vector<int64_t>(gi.shape));
    g.write_attr("dtype", gi.dtype);
  }
  h5::Object layers = root.create_group("layers");
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const Layer& L = m.layers[i];
    h5::Object g = layers.create_group(h5::padded(i, 4));
    g.write_attr("name", L.name);
    g.write_attr("op", L.op);
    g.write_attr("inputs", L.inputs);
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
