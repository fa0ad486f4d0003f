// Values a backend holds (docs/memory.md): every activation of a batch — the FP64 reference, the
// probe's chain, each mode's chained and isolated tensors — lives where the backend computes, in
// host memory for the CPU backend and in device memory for the CUDA backend. The analysis holds
// them through Value handles and never looks inside; the host receives statistics, and tensors
// only where it asks for them (a dump, the rare input rows of a reference-health finding).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "analysis/compare.h"
#include "graph/tensor.h"

namespace divscope {

// A tensor held by a backend: shape (batch dim first), element type (double: the FP64 reference
// and the probe; float: a mode's storage values) and storage the backend alone reads. Copies
// share the storage; it goes back to the backend (its pool, on a device) when the last handle
// goes. Empty (`!v`) until assigned.
class Value {
 public:
  enum class Where { none, host, device };
  Value() = default;
  Value(Shape shape, bool is_double, Where where, void* data, std::shared_ptr<void> owner)
      : shape_(std::move(shape)), double_(is_double), where_(where), data_(data), owner_(std::move(owner)) {}

  const Shape& shape() const { return shape_; }
  bool is_double() const { return double_; }
  int64_t size() const { return numel(shape_); }
  size_t bytes() const { return static_cast<size_t>(size()) * (double_ ? sizeof(double) : sizeof(float)); }
  Where where() const { return where_; }
  explicit operator bool() const { return where_ != Where::none; }
  void* data() const { return data_; }               // host or device address, per where()
  const std::shared_ptr<void>& owner() const { return owner_; }
  void reset() { *this = Value(); }

 private:
  Shape shape_;
  bool double_ = false;
  Where where_ = Where::none;
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
};

// What the analysis needs of a reference output besides its comparisons: the health fields of
// LayerStats (reference_health), the largest finite |value|, and per sample the counts the
// reference-health checks start from (docs/data-checks.md).
struct SampleHealth {
  int64_t nonfinite = 0;   // NaN or Inf among the sample's values
  int64_t nan = 0, inf = 0;
  bool all_zero = false;   // every value exactly 0
};
struct ReferenceSummary {
  LayerStats health;
  double abs_max = 0;      // largest finite |value|, 0 when none
  std::vector<SampleHealth> samples;
};
ReferenceSummary summarize_host(const double* ref, const Shape& shape);

// The bytes a backend holds for values (tests, run --profile, the up-front budget).
struct ValueMemory {
  int64_t live = 0;        // held by live values now
  int64_t peak = 0;        // most held at once since the backend was made (or reset_peak)
  int64_t reserved = 0;    // obtained from the system and not given back (a pool's cache)
  int64_t system_allocs = 0;   // allocations from the system (cudaMalloc; host: every value)
  int64_t requests = 0;        // values made
  int64_t limit = -1;      // what values may hold at most; < 0: no limit known
};

}  // namespace divscope
