// The sensitivity probe's perturbation (docs/verdict.md), shared by the CPU and the CUDA backend
// so both perturb every element by the same factor, bit for bit: integer hashing and two IEEE
// double operations (the kernels are built with --fmad=false, the host with -ffp-contract=off).
#pragma once
#include <cstdint>

#include "precision.h"   // DS_HD

namespace divscope {

constexpr double kProbeRelDelta = 0x1p-30;   // = kProbeDelta (analysis/verdict.h)

// Element k of value `value` (a layer index, or -1 - input index) in batch b: 1 + delta * xi,
// xi uniform in [-1, 1) from a splitmix64 hash of (b, value, k) — the same for any thread count
// or backend.
DS_HD inline double probe_factor(int64_t b, int64_t value, int64_t k) {
  uint64_t x = (static_cast<uint64_t>(b) * 0x9E3779B97F4A7C15ull) ^
               (static_cast<uint64_t>(value) * 0xC2B2AE3D27D4EB4Full) ^ static_cast<uint64_t>(k);
  x += 0x9E3779B97F4A7C15ull;   // splitmix64
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  const double xi = static_cast<double>(x >> 11) * 0x1p-52 - 1.0;
  return 1.0 + kProbeRelDelta * xi;
}

}  // namespace divscope
