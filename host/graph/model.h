// The model graph (docs/format.md): graph inputs, layers in topological order, inferred shapes.
#pragma once
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "graph/tensor.h"

namespace divscope {

using AttrValue = std::variant<int64_t, double, std::string, std::vector<int64_t>,
                               std::vector<double>, std::vector<std::string>>;

// A value every layer can read that no layer computes: a recorded input, or (format v2) a
// constant stored in the model file (a buffer, a folded arange, a scalar operand), the same for
// every sample. A constant reaches the ops with batch dim 1; the ops that take one broadcast it.
struct GraphInput {
  std::string name;
  Shape shape;          // per sample, no batch dim
  std::string dtype;    // "float32" | "int64"
  bool constant = false;
  Tensor value{};       // constant only: [1] + shape
  // Where the source framework's tensor had its batch axis (the recording always stores it
  // first; capture moves it). Informational: the graph is batch-first throughout.
  int64_t batch_axis = 0;
  std::string path{};   // HDF5 path, e.g. /inputs/x or /constants/pos_embedding
};

// Where a layer input comes from: a graph input or an earlier layer.
struct ValueRef {
  bool is_input = false;
  int index = 0;        // into Model::inputs or Model::layers
};

// Where a layer's output is a value of an ONNX graph (models read from .onnx, docs/onnx.md): the
// value's name and how its ONNX layout maps to the layer's batch-first one. The ONNX tensor has
// the batch at `axis`, merged as outer·N·inner (outer and inner are 1 unless the graph folded
// the batch into a neighbouring dim, e.g. [N·heads, T, D]); the layer's per-sample data is that
// tensor with N taken out (row-major order otherwise kept).
struct SourceValue {
  std::string name;      // exact ONNX value name; empty: the layer is not an ONNX value
  Shape shape;           // ONNX shape; shape[axis] holds outer·inner (the extent at N = 1)
  int64_t axis = 0, outer = 1, inner = 1;

  Shape shape_at(int64_t n) const;   // the ONNX shape for a batch of n
};

// An ONNX tensor [..., outer·N·inner, ...] (v.shape_at(n)) as the batch-first [N, per-sample]
// tensor of the layer it belongs to (per-sample shape `per_sample`).
Tensor onnx_to_batch_first(const SourceValue& v, const Tensor& t, const Shape& per_sample);

struct Layer {
  int index = 0;
  std::string name;
  std::string op;
  std::vector<std::string> inputs;           // names as written in the file
  std::vector<ValueRef> refs;                // resolved
  std::map<std::string, AttrValue> attrs;
  std::map<std::string, Tensor> params;      // weight, bias, running_mean, ... (FP64)
  Shape out_shape;                           // per sample, no batch dim
  std::string path;                          // HDF5 path, e.g. /layers/0003 (for messages)
  std::string source;                        // v2: what the source framework called it (for messages)
  SourceValue value;                         // ONNX models: the ONNX value this layer computes

  // Typed attribute access. A missing attribute gives `def` (or an InputError when no
  // default is given); a present one of the wrong type is an InputError naming the layer.
  bool has(const std::string& key) const { return attrs.count(key) != 0; }
  int64_t attr_int(const std::string& key) const;
  int64_t attr_int(const std::string& key, int64_t def) const;
  double attr_float(const std::string& key) const;
  double attr_float(const std::string& key, double def) const;
  std::string attr_str(const std::string& key, const std::string& def) const;
  std::vector<int64_t> attr_ints(const std::string& key) const;
  // Pairs (`stride[2]`): a scalar is broadcast to both; `n` elements are required.
  std::vector<int64_t> attr_ints(const std::string& key, size_t n,
                                 std::vector<int64_t> def) const;
  const Tensor* param(const std::string& key) const;   // nullptr when absent
  std::string where() const;                           // "layer 'fc1' (/layers/0001)"
};

struct Model {
  std::string file;
  std::string name;
  std::vector<GraphInput> inputs;
  std::vector<Layer> layers;
  std::vector<std::string> outputs;
  std::string notes;   // v2 root attr capture_notes: what capture did not turn into layers
  std::string format = "divscope";   // "divscope" (HDF5, docs/format.md) or "onnx" (docs/onnx.md)

  int find_layer(const std::string& name) const;   // -1 when absent
  int find_input(const std::string& name) const;   // -1 when absent (constants included)
  // The first recorded (non-constant) input: the one whose dim 0 is the batch size.
  int first_recorded_input() const;
  bool has_constants() const;
  // Per-sample shape of a value (graph input or layer output).
  const Shape& shape_of(const ValueRef& r) const {
    return r.is_input ? inputs[r.index].shape : layers[r.index].out_shape;
  }
  int64_t parameter_count() const;
};

// Resolves layer inputs, checks every layer's op, attributes and parameters against the op
// table, and infers every output shape. Throws InputError naming model.file and the layer path.
void validate_and_infer(Model& m);

}  // namespace divscope
