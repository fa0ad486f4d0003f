#include "compare.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace divscope {
namespace {

// Bucket edges are powers of two: ilogb gives the exponent exactly (floor(log2(x)) can round up
// just below a power of two), and the device compare uses the same.
int err_bucket(double e) {
  if (e == 0) return 0;
  if (std::isinf(e)) return kErrBuckets - 1;
  return std::clamp(std::ilogb(e) + 49, 1, kErrBuckets - 1);
}

int ulp_bucket(double u) {
  if (u == 0) return 0;
  if (u < 1) return 1;
  if (std::isinf(u)) return kUlpBuckets - 1;   // finite pair, subnormal ULP of a zero reference
  return std::clamp(std::ilogb(u) + 1, 1, kUlpBuckets - 1);
}

void unravel(int64_t flat, const Shape& shape, std::vector<int64_t>& idx) {
  idx.assign(shape.size(), 0);
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    idx[i] = flat % shape[i];
    flat /= shape[i];
  }
}

template <class C>
LayerStats compare_range(const C* cand, const double* ref, int64_t n, const CompareOptions& opt,
                         int64_t* max_at) {
  LayerStats s;
  s.count = n;
  double amax = 0;
  for (int64_t i = 0; i < n; ++i)
    if (std::isfinite(ref[i])) amax = std::max(amax, std::fabs(ref[i]));
  const double floor = opt.rel_floor >= 0 ? opt.rel_floor : 1e-6 * amax;
  s.ref_min = std::numeric_limits<double>::infinity();
  s.ref_max = -std::numeric_limits<double>::infinity();
  *max_at = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double c = static_cast<double>(cand[i]), r = ref[i];
    const bool cf = std::isfinite(c), rf = std::isfinite(r);
    s.nan += std::isnan(c);
    s.inf += std::isinf(c);
    s.ref_nan += std::isnan(r);
    s.ref_inf += std::isinf(r);
    if (rf) {
      const double a = std::fabs(r);
      ++s.ref_finite;
      s.ref_min = std::min(s.ref_min, r);
      s.ref_max = std::max(s.ref_max, r);
      s.ref_sum += r;
      s.ref_sumsq += r * r;
      s.ref_zero += r == 0;
      s.over_fp16 += a > kFp16Max;
      s.over_bf16 += a > kBf16Max;
      s.under_fp16 += a != 0 && a < kFp16MinNormal;
      s.under_bf16 += a != 0 && a < kBf16MinNormal;
    }
    if (!cf || !rf) {
      // Non-finite: equal only when both are NaN or both the same infinity.
      const bool same = (std::isnan(c) && std::isnan(r)) || (c == r);
      s.mismatch += !same;
      s.nonfinite_new += !cf && rf;
      continue;
    }
    const double e = std::fabs(c - r);
    s.mismatch += e > opt.atol + opt.rtol * std::fabs(r);
    if (e > s.max_abs) {
      s.max_abs = e;
      *max_at = i;
    }
    s.max_rel = std::max(s.max_rel, e / std::max(std::fabs(r), floor));
    if (e > 0)
      s.min_rtol = std::max(s.min_rtol, r == 0 ? std::numeric_limits<double>::infinity()
                                               : e / std::fabs(r));
    s.sum_abs += e;
    s.sum_err2 += e * e;
    s.sum_ref2 += r * r;
    s.sum_cand2 += c * c;
    s.sum_dot += c * r;
    const double u = ulp_distance(opt.storage, c, r);
    s.max_ulp = std::max(s.max_ulp, u);
    ++s.err_hist[err_bucket(e)];
    ++s.ulp_hist[ulp_bucket(u)];
  }
  if (s.ref_finite == 0) s.ref_min = s.ref_max = 0;
  return s;
}

}  // namespace

double LayerStats::mean_abs() const {
  int64_t finite = 0;
  for (int64_t h : err_hist) finite += h;
  return finite ? sum_abs / finite : 0;
}

double LayerStats::rel_l2() const {
  if (sum_ref2 == 0) return sum_err2 == 0 ? 0 : std::numeric_limits<double>::infinity();
  return std::sqrt(sum_err2) / std::sqrt(sum_ref2);
}

double LayerStats::cosine() const {
  if (sum_ref2 == 0 && sum_cand2 == 0) return 1;
  if (sum_ref2 == 0 || sum_cand2 == 0) return 0;
  return sum_dot / (std::sqrt(sum_ref2) * std::sqrt(sum_cand2));
}

double LayerStats::sqnr_db() const {
  if (sum_err2 == 0) return std::numeric_limits<double>::infinity();
  if (sum_ref2 == 0) return -std::numeric_limits<double>::infinity();
  return 10 * std::log10(sum_ref2 / sum_err2);
}

double LayerStats::err_percentile(double p) const {
  int64_t total = 0;
  for (int64_t h : err_hist) total += h;
  if (total == 0) return 0;
  const double want = p * static_cast<double>(total);
  int64_t cum = 0;
  for (int b = 0; b < kErrBuckets; ++b) {
    cum += err_hist[b];
    if (static_cast<double>(cum) >= want && err_hist[b] > 0)
      return b == 0 ? 0 : std::ldexp(1.0, b - 48);
  }
  return max_abs;
}

double LayerStats::ref_mean() const { return ref_finite ? ref_sum / ref_finite : 0; }

double LayerStats::ref_std() const {
  if (!ref_finite) return 0;
  const double m = ref_mean();
  return std::sqrt(std::max(0.0, ref_sumsq / ref_finite - m * m));
}

void LayerStats::merge(const LayerStats& o, int64_t batch) {
  if (count == 0) {
    *this = o;
    max_abs_batch = batch;
    return;
  }
  if (o.ref_finite) {
    ref_min = ref_finite ? std::min(ref_min, o.ref_min) : o.ref_min;
    ref_max = ref_finite ? std::max(ref_max, o.ref_max) : o.ref_max;
  }
  if (o.max_abs > max_abs) {
    max_abs = o.max_abs;
    max_abs_index = o.max_abs_index;
    max_abs_batch = batch;
  }
  count += o.count;
  nan += o.nan;
  inf += o.inf;
  ref_nan += o.ref_nan;
  ref_inf += o.ref_inf;
  nonfinite_new += o.nonfinite_new;
  mismatch += o.mismatch;
  max_rel = std::max(max_rel, o.max_rel);
  min_rtol = std::max(min_rtol, o.min_rtol);
  sum_abs += o.sum_abs;
  sum_err2 += o.sum_err2;
  sum_ref2 += o.sum_ref2;
  sum_cand2 += o.sum_cand2;
  sum_dot += o.sum_dot;
  max_ulp = std::max(max_ulp, o.max_ulp);
  for (int b = 0; b < kErrBuckets; ++b) err_hist[b] += o.err_hist[b];
  for (int b = 0; b < kUlpBuckets; ++b) ulp_hist[b] += o.ulp_hist[b];
  ref_sum += o.ref_sum;
  ref_sumsq += o.ref_sumsq;
  ref_finite += o.ref_finite;
  ref_zero += o.ref_zero;
  over_fp16 += o.over_fp16;
  over_bf16 += o.over_bf16;
  under_fp16 += o.under_fp16;
  under_bf16 += o.under_bf16;
}

template <class C>
LayerStats compare_tensors(const C* cand, const double* ref, const Shape& shape,
                           const CompareOptions& opt) {
  int64_t at = 0;
  LayerStats s = compare_range(cand, ref, numel(shape), opt, &at);
  unravel(at, shape, s.max_abs_index);
  return s;
}

template <class C>
std::vector<LayerStats> compare_per_sample(const C* cand, const double* ref, const Shape& shape,
                                           const CompareOptions& opt) {
  std::vector<LayerStats> out;
  if (shape.empty()) return out;
  const int64_t per = numel(shape) / std::max<int64_t>(shape[0], 1);
  Shape sample_shape(shape.begin() + 1, shape.end());
  for (int64_t s = 0; s < shape[0]; ++s) {
    int64_t at = 0;
    out.push_back(compare_range(cand + s * per, ref + s * per, per, opt, &at));
    unravel(at, sample_shape, out.back().max_abs_index);
    out.back().max_abs_index.insert(out.back().max_abs_index.begin(), s);
  }
  return out;
}

template LayerStats compare_tensors<float>(const float*, const double*, const Shape&, const CompareOptions&);
template LayerStats compare_tensors<double>(const double*, const double*, const Shape&, const CompareOptions&);
template std::vector<LayerStats> compare_per_sample<float>(const float*, const double*, const Shape&, const CompareOptions&);
template std::vector<LayerStats> compare_per_sample<double>(const double*, const double*, const Shape&, const CompareOptions&);

}  // namespace divscope
