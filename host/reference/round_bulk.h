// Whole-buffer rounding for the CPU modes' hot loops: the same value per element as precision.h's
// round_operand / round_storage, many elements per call. fp16 uses the CPU's F16C conversions
// (vcvtps2ph with round-to-nearest-even, then vcvtph2ps) where the CPU has them, chosen once per
// call; they give round_fp16's bits for every float, NaN payloads included
// (Precision.BulkRoundingIsPerElementRounding checks all 2^32 inputs).
#pragma once
#include <cstdint>
#include <type_traits>

#include "precision.h"

namespace divscope {

// p[i] = round_operand(m, p[i]) for i < n.
void round_operands_bulk(Mode m, float* p, int64_t n);
// p[i] = round_storage(m, p[i]) for i < n.
void round_storage_bulk(Mode m, float* p, int64_t n);
// Test hook: the portable loops even where F16C is available (process-wide).
void round_bulk_force_portable(bool on);

// For a reference policy P (policy.h): its operand() / store() over a buffer; nothing to do for
// the policies whose rounding is the identity (fp64, fp32, strict).
template <class P>
void policy_operands_bulk(typename P::T* p, int64_t n) {
  if constexpr (!std::is_same_v<typename P::T, double>) {
    if constexpr (P::kMode == Mode::tf32 || P::kMode == Mode::fp16 || P::kMode == Mode::bf16)
      round_operands_bulk(P::kMode, p, n);
  }
}
template <class P>
void policy_store_bulk(typename P::T* p, int64_t n) {
  if constexpr (!std::is_same_v<typename P::T, double>) {
    if constexpr (P::kMode == Mode::fp16 || P::kMode == Mode::bf16) round_storage_bulk(P::kMode, p, n);
  }
}

}  // namespace divscope
