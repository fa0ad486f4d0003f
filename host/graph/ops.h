// The op table (docs/ops.md): for each op its inputs, attributes, parameters and shape rule.
// The single place that knows which ops exist; readers, inspect and backends consult it.
#pragma once
#include <string>
#include <vector>

#include "graph/model.h"

namespace divscope {

enum class AttrKind { Int, Ints, Float, Str };

struct AttrSpec {
  const char* name;
  AttrKind kind;
  bool required;
};

struct ParamSpec {
  const char* name;
  bool required;
};

struct OpSpec {
  const char* name;
  int min_inputs, max_inputs;   // max_inputs < 0: any number >= min_inputs (concat)
  std::vector<AttrSpec> attrs;
  std::vector<ParamSpec> params;
  // Full shapes (batch dim first) of the inputs -> full output shape. Throws
  // std::runtime_error with a message (no file/path; the caller adds them).
  Shape (*infer)(const Layer& layer, const std::vector<Shape>& in);
};

const OpSpec* find_op(const std::string& name);   // nullptr when unknown
bool accepts_input_count(const OpSpec& op, size_t n);
std::string input_count_str(const OpSpec& op);   // "2 inputs", "1 to 2 inputs", ...

// The op table's shape rule rerun on a layer's actual input shapes (batch dim first), which must
// share one batch size and give the model's output shape: the CPU reference loops and the
// kernels index by these shapes and trust them. Returns the full output shape; InputError
// naming the layer otherwise.
Shape checked_out_shape(const Layer& L, const std::vector<Shape>& shapes);
const std::vector<OpSpec>& all_ops();

}  // namespace divscope
