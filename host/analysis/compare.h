// One metrics module (README, What divscope run computes, STYLE 4): LayerStats of a candidate tensor against the FP64
// reference. The CUDA version (kernels/compare.cu) fills the same struct by the same definitions.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "precision.h"
#include "graph/tensor.h"

namespace divscope {

constexpr int kErrBuckets = 64;   // abs error: [0] exact, [k] 2^(k-49) <= err < 2^(k-48)
constexpr int kUlpBuckets = 34;   // ulps: [0] 0, [k] 2^(k-1) <= ulp < 2^k, last open-ended

// A reference value at float32's extreme (|r| >= 2^127, e.g. torch.finfo(float32).min used as
// an attention-mask fill) that a narrower format stores as the infinity of the same sign: a
// sentinel kept as a sentinel, not a new Inf (a NaN it causes downstream still counts there).
DS_HD inline bool sentinel_overflow(double c, double r) {
  return (c == INFINITY && r >= 0x1p127) || (c == -INFINITY && r <= -0x1p127);
}

struct CompareOptions {
  Mode storage = Mode::fp32;      // whose ULPs to count
  double atol = 0, rtol = 0;      // mismatch = #{|c-r| > atol + rtol*|r|}
  double rel_floor = -1;          // max_rel denominator floor; < 0: 1e-6 * max|r|
  bool health = true;             // also fill the reference's activation health
  // Only what the sensitivity probe keeps (count, NaN/Inf counts, mismatch, flushed, max_abs
  // and the sums, whole and per sample): no histograms, max_rel, min_rtol or ULPs. A backend
  // may still fill those; the analysis keeps only the sums (keep_probe_sums).
  bool sums_only = false;
};

// What the per-sample verdict needs, gathered in the same pass as the whole tensor's stats
// (full LayerStats per sample would cost more than the comparison itself on small samples).
struct SampleErrors {
  std::vector<int64_t> mismatch, nonfinite_new;
  std::vector<double> err2, ref2;   // per-sample rel_l2 = sqrt(err2 / ref2)
  std::vector<double> max_abs;      // over finite pairs
};

struct LayerStats {
  int64_t count = 0;
  int64_t nan = 0, inf = 0;           // candidate non-finite elements
  int64_t ref_nan = 0, ref_inf = 0;   // reference non-finite elements
  int64_t nonfinite_new = 0;          // candidate NaN/Inf where the reference has none
  int64_t mismatch = 0;
  int64_t flushed = 0;                // candidate exactly 0 where the reference is finite, != 0
  double max_abs = 0;
  std::vector<int64_t> max_abs_index;  // full multi-index (sample first) of max_abs
  int64_t max_abs_batch = 0;
  double max_rel = 0;
  double min_rtol = 0;                // max |c-r|/|r| (inf when r = 0 != c)
  double sum_abs = 0;                 // Σ|c-r| over finite pairs
  double sum_err2 = 0, sum_ref2 = 0, sum_cand2 = 0, sum_dot = 0;
  double max_ulp = 0;
  std::array<int64_t, kErrBuckets> err_hist{};
  std::array<int64_t, kUlpBuckets> ulp_hist{};
  // reference activation health
  double ref_min = 0, ref_max = 0, ref_sum = 0, ref_sumsq = 0;
  int64_t ref_finite = 0, ref_zero = 0;
  int64_t over_fp16 = 0, over_bf16 = 0, under_fp16 = 0, under_bf16 = 0;

  // Derived metrics.
  double mean_abs() const;
  // ||c-r|| / ||r||, 0 when both are 0; +inf with NaN/Inf the reference lacks (cosine NaN,
  // sqnr -inf): never a healthy number over the finite elements only.
  double rel_l2() const;
  double cosine() const;
  double sqnr_db() const;             // +inf when c == r
  double min_atol() const { return max_abs; }
  double err_percentile(double p) const;   // upper edge of the bucket holding quantile p
  double ref_mean() const;
  double ref_std() const;

  void merge(const LayerStats& o, int64_t batch);   // o computed on batch `batch`
};

// Candidate (float or double storage) against the reference, both of shape `shape` (full).
// With `samples`, per-sample (dim 0) errors are gathered in the same pass.
template <class C>
LayerStats compare_tensors(const C* cand, const double* ref, const Shape& shape,
                           const CompareOptions& opt, SampleErrors* samples = nullptr);

// The reference's activation health alone (the health fields of LayerStats), computed once per
// layer and shared by every mode's comparisons (copy_health). In the same pass, per sample of
// `per` elements (per > 0), whether it holds a NaN/Inf (`bad`) and a non-zero value (`nonzero`).
LayerStats reference_health(const double* ref, int64_t n, int64_t per = 0,
                            std::vector<uint8_t>* bad = nullptr, std::vector<uint8_t>* nonzero = nullptr);
void copy_health(LayerStats& to, const LayerStats& from);

// The scalar per-element tail of compare_tensors even where the CPU has AVX2 (tests compare the
// two; both give the same bits).
void compare_force_scalar(bool on);

// Per sample (dim 0) stats of the same comparison.
template <class C>
std::vector<LayerStats> compare_per_sample(const C* cand, const double* ref, const Shape& shape,
                                           const CompareOptions& opt);

}  // namespace divscope
