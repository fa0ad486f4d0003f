#include "compare.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace divscope {
namespace {

// floor(log2(x)) for finite x > 0, exactly: the exponent field, or the library for subnormals.
inline int exponent_of(double x) {
  const int biased = static_cast<int>((f64_bits(x) >> 52) & 0x7ff);
  return biased ? biased - 1023 : std::ilogb(x);
}

// Bucket edges are powers of two: the exponent is exact (floor(log2(x)) can round up just
// below a power of two), and the device compare uses the same (ilogb).
int err_bucket(double e) {
  if (e == 0) return 0;
  if (std::isinf(e)) return kErrBuckets - 1;
  return std::clamp(exponent_of(e) + 49, 1, kErrBuckets - 1);
}

int ulp_bucket(double u) {
  if (u == 0) return 0;
  if (u < 1) return 1;
  if (std::isinf(u)) return kUlpBuckets - 1;   // finite pair, subnormal ULP of a zero reference
  return std::clamp(exponent_of(u) + 1, 1, kUlpBuckets - 1);
}

// ulp_distance(storage, c, r) for finite c != r with e = |c - r|: ulp_of is a power of two, so
// multiplying by its exact inverse gives the same bits as dividing, without the divide.
inline double ulp_units(Mode storage, double e, double r) {
  const double ulp = ulp_of(storage, r);
  const int k = static_cast<int>((f64_bits(ulp) >> 52) & 0x7ff) - 1023;   // ulp = 2^k if normal
  if (k > -1022 && k < 1023) return e * bits_f64(static_cast<uint64_t>(1023 - k) << 52);
  return e / ulp;
}

void unravel(int64_t flat, const Shape& shape, std::vector<int64_t>& idx) {
  idx.assign(shape.size(), 0);
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    idx[i] = flat % shape[i];
    flat /= shape[i];
  }
}

void add_health(LayerStats& s, double r) {
  s.ref_nan += std::isnan(r);
  s.ref_inf += std::isinf(r);
  if (!std::isfinite(r)) return;
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

void start_health(LayerStats& s) {
  s.ref_min = std::numeric_limits<double>::infinity();
  s.ref_max = -std::numeric_limits<double>::infinity();
}

void finish_health(LayerStats& s) {
  if (s.ref_finite == 0) s.ref_min = s.ref_max = 0;
}

// One pass over n pairs; `per` > 0 gathers per-sample errors for samples of `per` elements.
// The storage mode is a template argument so that the ULP of every element is a few bit
// operations with constants (this loop is most of the analysis' time on small models).
template <class C, Mode kStorage>
LayerStats compare_pass(const C* cand, const double* ref, int64_t n, const CompareOptions& opt,
                        int64_t* max_at, SampleErrors* samples, int64_t per) {
  LayerStats s;
  s.count = n;
  double floor = opt.rel_floor;
  if (floor < 0) {
    double amax = 0;
    for (int64_t i = 0; i < n; ++i)
      if (std::isfinite(ref[i])) amax = std::max(amax, std::fabs(ref[i]));
    floor = 1e-6 * amax;
  }
  if (opt.health) start_health(s);
  *max_at = 0;
  // Four interleaved copies of each histogram: neighbouring elements mostly fall in the same
  // bucket, and one copy would make every increment wait on the previous one's store.
  int64_t err_hist[4][kErrBuckets] = {}, ulp_hist[4][kUlpBuckets] = {};
  int64_t sample = 0, next_sample = per > 0 ? per : n + 1;
  for (int64_t i = 0; i < n; ++i) {
    if (i == next_sample) {
      ++sample;
      next_sample += per;
    }
    const double c = static_cast<double>(cand[i]), r = ref[i];
    if (opt.health) add_health(s, r);
    if (!std::isfinite(c) || !std::isfinite(r)) {
      // Non-finite: equal only when both are NaN or both the same infinity.
      const bool same = (std::isnan(c) && std::isnan(r)) || (c == r);
      const bool fresh = !std::isfinite(c) && std::isfinite(r);
      s.nan += std::isnan(c);
      s.inf += std::isinf(c);
      if (!opt.health) {
        s.ref_nan += std::isnan(r);
        s.ref_inf += std::isinf(r);
      }
      s.mismatch += !same;
      s.nonfinite_new += fresh;
      if (samples) {
        samples->mismatch[sample] += !same;
        samples->nonfinite_new[sample] += fresh;
      }
      continue;
    }
    const double e = std::fabs(c - r), a = std::fabs(r);
    const bool miss = e > opt.atol + opt.rtol * a;
    s.mismatch += miss;
    if (e > s.max_abs) {
      s.max_abs = e;
      *max_at = i;
    }
    s.sum_abs += e;
    s.sum_err2 += e * e;
    s.sum_ref2 += r * r;
    s.sum_cand2 += c * c;
    s.sum_dot += c * r;
    ++err_hist[i & 3][err_bucket(e)];
    if (samples) {
      samples->mismatch[sample] += miss;
      samples->err2[sample] += e * e;
      samples->ref2[sample] += r * r;
      samples->max_abs[sample] = std::max(samples->max_abs[sample], e);
    }
    if (e == 0) {
      ++ulp_hist[i & 3][0];
      continue;
    }
    // Divide only where the running maximum can grow (the margin covers the rounding of the
    // product; same result, far fewer divides).
    const double d = std::max(a, floor);
    if (e >= s.max_rel * d * 0.999999) s.max_rel = std::max(s.max_rel, e / d);
    if (a == 0) s.min_rtol = std::numeric_limits<double>::infinity();
    else if (e >= s.min_rtol * a * 0.999999) s.min_rtol = std::max(s.min_rtol, e / a);
    const double u = ulp_units(kStorage, e, r);
    s.max_ulp = std::max(s.max_ulp, u);
    ++ulp_hist[i & 3][ulp_bucket(u)];
  }
  for (int h = 0; h < 4; ++h) {
    for (int b = 0; b < kErrBuckets; ++b) s.err_hist[b] += err_hist[h][b];
    for (int b = 0; b < kUlpBuckets; ++b) s.ulp_hist[b] += ulp_hist[h][b];
  }
  if (opt.health) finish_health(s);
  return s;
}

template <class C>
LayerStats compare_range(const C* cand, const double* ref, int64_t n, const CompareOptions& opt,
                         int64_t* max_at, SampleErrors* samples, int64_t per) {
  switch (opt.storage) {
    case Mode::fp16: return compare_pass<C, Mode::fp16>(cand, ref, n, opt, max_at, samples, per);
    case Mode::bf16: return compare_pass<C, Mode::bf16>(cand, ref, n, opt, max_at, samples, per);
    case Mode::fp64: return compare_pass<C, Mode::fp64>(cand, ref, n, opt, max_at, samples, per);
    default: return compare_pass<C, Mode::fp32>(cand, ref, n, opt, max_at, samples, per);
  }
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
                           const CompareOptions& opt, SampleErrors* samples) {
  int64_t at = 0, per = 0;
  if (samples && !shape.empty()) {
    const size_t ns = static_cast<size_t>(shape[0]);
    per = shape[0] > 0 ? numel(shape) / shape[0] : 0;
    samples->mismatch.assign(ns, 0);
    samples->nonfinite_new.assign(ns, 0);
    samples->err2.assign(ns, 0.0);
    samples->ref2.assign(ns, 0.0);
    samples->max_abs.assign(ns, 0.0);
  }
  LayerStats s = compare_range(cand, ref, numel(shape), opt, &at, per ? samples : nullptr, per);
  unravel(at, shape, s.max_abs_index);
  return s;
}

LayerStats reference_health(const double* ref, int64_t n) {
  LayerStats s;
  start_health(s);
  for (int64_t i = 0; i < n; ++i) add_health(s, ref[i]);
  finish_health(s);
  return s;
}

void copy_health(LayerStats& to, const LayerStats& h) {
  to.ref_nan = h.ref_nan;
  to.ref_inf = h.ref_inf;
  to.ref_min = h.ref_min;
  to.ref_max = h.ref_max;
  to.ref_sum = h.ref_sum;
  to.ref_sumsq = h.ref_sumsq;
  to.ref_finite = h.ref_finite;
  to.ref_zero = h.ref_zero;
  to.over_fp16 = h.over_fp16;
  to.over_bf16 = h.over_bf16;
  to.under_fp16 = h.under_fp16;
  to.under_bf16 = h.under_bf16;
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
    out.push_back(compare_range(cand + s * per, ref + s * per, per, opt, &at, nullptr, 0));
    unravel(at, sample_shape, out.back().max_abs_index);
    out.back().max_abs_index.insert(out.back().max_abs_index.begin(), s);
  }
  return out;
}

template LayerStats compare_tensors<float>(const float*, const double*, const Shape&, const CompareOptions&, SampleErrors*);
template LayerStats compare_tensors<double>(const double*, const double*, const Shape&, const CompareOptions&, SampleErrors*);
template std::vector<LayerStats> compare_per_sample<float>(const float*, const double*, const Shape&, const CompareOptions&);
template std::vector<LayerStats> compare_per_sample<double>(const double*, const double*, const Shape&, const CompareOptions&);

}  // namespace divscope
