// ONNX models (docs/onnx.md): an .onnx file read with the ONNX protobuf schema (libonnx) and
// lowered to divscope's batch-first graph. Initializers become parameters or constants; every
// node whose inputs are all constants (Constant, the Shape → Gather → Concat → Reshape
// subgraphs, masks) is folded in FP64 at load for the recording's static shapes; each remaining
// node becomes one layer (a few become two or three, e.g. a 1-D conv), named after the node.
#pragma once
#include <map>
#include <string>

#include "graph/model.h"

namespace divscope {

struct OnnxImportOptions {
  // Per-sample shapes (batch first, batch removed) of the recorded inputs, by graph input name:
  // they fix the dims the ONNX graph leaves symbolic. Empty: only a batch dim may be symbolic.
  std::map<std::string, Shape> input_shapes;
};

// True when `path` starts like a serialized ONNX ModelProto and not like HDF5 (content only).
bool looks_like_onnx(const std::string& path);

// Reads, folds and lowers an ONNX model; validate_and_infer() has run on the result. A file that
// does not parse, an op or attribute divscope cannot run, a missing initializer, a cycle, or a
// shape the recording cannot fix: InputError "<file>: node '<name>' (<op>): <what>" (exit 2),
// before any work.
Model read_onnx_model(const std::string& path, const OnnxImportOptions& opt = {});

// The same from a serialized ModelProto in memory (the fuzzer, fuzz/fuzz_onnx.cpp); `name`
// stands for the file in messages.
Model read_onnx_model_bytes(const void* data, size_t size, const std::string& name,
                            const OnnxImportOptions& opt = {});

// The model behind --model: an HDF5 model file (docs/format.md) or an ONNX file (by content).
// For ONNX, `recording` (may be empty) gives the static shapes of the inputs.
Model load_model(const std::string& path, const std::string& recording = "");

}  // namespace divscope
