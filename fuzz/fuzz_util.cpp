#include "fuzz_util.h"

#include <cmath>

#include "analysis/runner.h"

namespace divscope::fuzz {
namespace {

constexpr double kMaxElements = 1 << 16;
constexpr size_t kMaxLayers = 256;

bool small(const Shape& s) {
  double n = 1;
  for (int64_t d : s) {
    if (d < 0) return false;
    n *= static_cast<double>(d);
  }
  return n <= kMaxElements;
}

}  // namespace

void run_reference_if_small(const Model& m) {
  if (m.layers.size() > kMaxLayers) return;
  for (const GraphInput& gi : m.inputs)
    if (!small(gi.shape)) return;
  for (const Layer& l : m.layers)
    if (!small(l.out_shape)) return;
  std::vector<Tensor> inputs;
  for (const GraphInput& gi : m.inputs) {
    if (gi.constant) {
      inputs.push_back(gi.value);
      continue;
    }
    Shape full{1};
    full.insert(full.end(), gi.shape.begin(), gi.shape.end());
    Tensor t(full);
    // Index inputs get 0 (in range of any embedding); float inputs values of both signs.
    if (gi.dtype != "int64")
      for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = std::sin(0.7 * static_cast<double>(i) + 0.3);
    inputs.push_back(std::move(t));
  }
  run_reference_batch(m, std::move(inputs), nullptr);
}

}  // namespace divscope::fuzz
