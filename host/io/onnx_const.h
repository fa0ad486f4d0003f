// ONNX constants (internal to the ONNX reader, docs/onnx.md): initializers and Constant
// attributes as FP64 values, and the folding of nodes whose inputs are all constants (shape
// subgraphs, masks, position ids) with ONNX semantics. Integers and booleans are held as
// doubles, exact below 2^53; shape arithmetic larger than that is refused.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "graph/tensor.h"

namespace onnx {
class TensorProto;
class NodeProto;
class AttributeProto;
}  // namespace onnx

namespace divscope {
namespace onnx_import {

struct CVal {
  Shape shape;
  std::vector<double> v;
  bool is_int = false;   // integer or bool element type (indices, shapes, masks)
};

// Attribute access on a node; `fail` throws with the node named.
struct NodeAttrs {
  const onnx::NodeProto& node;
  std::function<void(const std::string&)> fail;

  const onnx::AttributeProto* find(const char* name) const;
  int64_t i(const char* name, int64_t def) const;
  double f(const char* name, double def) const;
  std::string s(const char* name, const std::string& def) const;
  std::vector<int64_t> ints(const char* name) const;   // empty when absent
  bool has(const char* name) const { return find(name) != nullptr; }
};

// An initializer or a Constant's tensor; external data, strings and unknown types are refused
// (`what` names the tensor in the message).
CVal from_tensor(const onnx::TensorProto& t, const std::string& what);

// Evaluates a node whose present inputs are all constants (absent optional inputs are null).
// Returns false when the op is not one divscope folds; throws through `a.fail` on bad input.
bool fold(const NodeAttrs& a, int64_t opset, const std::vector<const CVal*>& in,
          std::vector<CVal>* out);

int64_t checked_numel(const Shape& s, const std::function<void(const std::string&)>& fail);
Shape broadcast_shapes(const std::vector<Shape>& shapes,
                       const std::function<void(const std::string&)>& fail);
int64_t norm_axis(int64_t axis, int64_t rank, const std::function<void(const std::string&)>& fail);
// x broadcast (NumPy rules, as Expand) with `target`.
CVal broadcast_to(const CVal& x, const Shape& target, const std::function<void(const std::string&)>& fail);
// Reshape's output shape for an input of shape `in`: 0 copies the input's dim (unless allowzero),
// one -1 is inferred; the element count must stay the same. Shapes only: no data is touched.
Shape reshape_target(const Shape& in, const std::vector<int64_t>& want, bool allowzero,
                     const std::function<void(const std::string&)>& fail);
// The value of Shape (opset 15's start/end) or Size of a tensor of shape `s`.
CVal shape_value(const Shape& s, const NodeAttrs& a);
CVal size_value(const Shape& s, const std::function<void(const std::string&)>& fail);

// Reads a 1-D integer constant as int64s (shape vectors, axes, starts/ends).
std::vector<int64_t> as_ints(const CVal& c);

// Slice's starts, ends, axes and steps: inputs 1-4 from opset 10 (null when absent), attributes
// before; axes default to 0, 1, ..., steps to 1; all four the same length.
struct SliceArgs {
  std::vector<int64_t> starts, ends, axes, steps;
};
SliceArgs slice_args(const NodeAttrs& a, int64_t opset, const std::vector<const CVal*>& in);

}  // namespace onnx_import
}  // namespace divscope
