// What the mode tests of the CPU paths share (tests/test_modes.cpp, tests/test_ops_v2.cpp).
#pragma once
#include <cmath>

#include "graph/tensor.h"
#include "precision.h"

namespace divscope::testing {

inline double rel_l2(const TensorF& c, const Tensor& r) {
  double e = 0, n = 0;
  for (int64_t i = 0; i < r.size(); ++i) {
    e += (c.data[i] - r.data[i]) * (c.data[i] - r.data[i]);
    n += r.data[i] * r.data[i];
  }
  return std::sqrt(e / n);
}

// Bound on rel L2 for O(1) values and short reductions: a few units of the mode's precision.
inline double bound(Mode m) {
  switch (m) {
    case Mode::fp16: return 4e-3;
    case Mode::bf16: return 3e-2;
    case Mode::tf32: return 4e-3;
    default: return 1e-6;
  }
}

}  // namespace divscope::testing
