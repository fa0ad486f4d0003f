// The statistics pass on the GPU (README, What divscope run computes, STYLE 4): LayerStats of a candidate against the
// FP64 reference by the definitions of host/compare.cpp, read there first.
//
// Passes over the two tensors (all CUB, two-phase temp-storage calls):
//   1. max |r| over finite r (ref only; skipped when CompareOptions::rel_floor is given), for
//      the max_rel floor 1e-6 * max|r| -- computed on the host from the reduced value exactly as
//      the CPU computes it;
//   2. DeviceReduce::Reduce (per sample: DeviceSegmentedReduce::Reduce) of a transform iterator
//      element index -> Partial, with Combine: every count, max, sum and the reference health in
//      one fused pass;
//   3. DeviceHistogram::MultiHistogramEven over a two-channel sample stream (channel 0: error
//      bucket, channel 1: ULP bucket; per sample the bin is offset by sample * buckets), so both
//      histograms come from one pass. Non-finite pairs map to -1, below the lowest level: ignored.
// Determinism: no floating-point atomics; CUB's reductions use a fixed tree for a given size and
// device, so the same inputs give the same bits; histogram counts are integers.
// Differences from the CPU: sums are added in another order (last bits). Bucket exponents use
// ilogb on both sides; an infinite distance goes to the last bucket on both.
#include <cub/device/device_histogram.cuh>
#include <cub/device/device_reduce.cuh>
#include <cub/device/device_segmented_reduce.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

constexpr int64_t kNoIndex = std::numeric_limits<int64_t>::max();

// Everything of LayerStats that one pass accumulates (histograms come from pass 3).
struct Partial {
  int64_t nan, inf, ref_nan, ref_inf, nonfinite_new, mismatch, flushed;
  int64_t ref_finite, ref_zero, over_fp16, over_bf16, under_fp16, under_bf16;
  int64_t max_at;   // flat index of the first largest error; kNoIndex while max_abs == 0
  double max_abs, max_rel, min_rtol, max_ulp;
  double sum_abs, sum_err2, sum_ref2, sum_cand2, sum_dot;
  double ref_min, ref_max, ref_sum, ref_sumsq;
};

__host__ __device__ Partial identity() {
  Partial p{};
  p.max_at = kNoIndex;
  p.ref_min = INFINITY;
  p.ref_max = -INFINITY;
  return p;
}

// std::max semantics of the CPU code: (a < b) ? b : a, so a NaN b never wins.
__host__ __device__ double cpu_max(double a, double b) { return a < b ? b : a; }

struct Combine {
  __host__ __device__ Partial operator()(const Partial& a, const Partial& b) const {
    Partial p;
    p.nan = a.nan + b.nan;
    p.inf = a.inf + b.inf;
    p.ref_nan = a.ref_nan + b.ref_nan;
    p.ref_inf = a.ref_inf + b.ref_inf;
    p.nonfinite_new = a.nonfinite_new + b.nonfinite_new;
    p.mismatch = a.mismatch + b.mismatch;
    p.flushed = a.flushed + b.flushed;
    p.ref_finite = a.ref_finite + b.ref_finite;
    p.ref_zero = a.ref_zero + b.ref_zero;
    p.over_fp16 = a.over_fp16 + b.over_fp16;
    p.over_bf16 = a.over_bf16 + b.over_bf16;
    p.under_fp16 = a.under_fp16 + b.under_fp16;
    p.under_bf16 = a.under_bf16 + b.under_bf16;
    // The CPU keeps the first index of the largest error: larger wins, ties go to the lower index.
    const bool take_b = b.max_abs > a.max_abs || (b.max_abs == a.max_abs && b.max_at < a.max_at);
    p.max_abs = take_b ? b.max_abs : a.max_abs;
    p.max_at = take_b ? b.max_at : a.max_at;
    p.max_rel = cpu_max(a.max_rel, b.max_rel);
    p.min_rtol = cpu_max(a.min_rtol, b.min_rtol);
    p.max_ulp = cpu_max(a.max_ulp, b.max_ulp);
    p.sum_abs = a.sum_abs + b.sum_abs;
    p.sum_err2 = a.sum_err2 + b.sum_err2;
    p.sum_ref2 = a.sum_ref2 + b.sum_ref2;
    p.sum_cand2 = a.sum_cand2 + b.sum_cand2;
    p.sum_dot = a.sum_dot + b.sum_dot;
    p.ref_min = a.ref_min < b.ref_min ? a.ref_min : b.ref_min;
    p.ref_max = a.ref_max > b.ref_max ? a.ref_max : b.ref_max;
    p.ref_sum = a.ref_sum + b.ref_sum;
    p.ref_sumsq = a.ref_sumsq + b.ref_sumsq;
    return p;
  }
};

// One element pair -> its Partial (host/compare.cpp compare_range, loop body).
template <class C>
struct ElemStats {
  const C* cand;
  const double* ref;
  const double* floors;   // max_rel floor of each segment
  int64_t per;            // elements per segment
  Mode storage;
  double atol, rtol;

  __host__ __device__ Partial operator()(int64_t i) const {
    Partial p = identity();
    const double c = static_cast<double>(cand[i]), r = ref[i];
    const bool cf = isfinite(c), rf = isfinite(r);
    p.nan = isnan(c);
    p.inf = isinf(c);
    p.ref_nan = isnan(r);
    p.ref_inf = isinf(r);
    if (rf) {
      const double a = fabs(r);
      p.ref_finite = 1;
      p.ref_min = p.ref_max = r;
      p.ref_sum = r;
      p.ref_sumsq = r * r;
      p.ref_zero = r == 0;
      p.over_fp16 = a > kFp16Max;
      p.over_bf16 = a > kBf16Max;
      p.under_fp16 = a != 0 && a < kFp16MinNormal;
      p.under_bf16 = a != 0 && a < kBf16MinNormal;
    }
    if (!cf || !rf) {   // equal only when both are NaN or both the same infinity
      const bool same = (isnan(c) && isnan(r)) || c == r;
      p.mismatch = !same;
      p.nonfinite_new = !cf && rf && !sentinel_overflow(c, r);
      return p;
    }
    const double e = fabs(c - r), ar = fabs(r);
    p.mismatch = e > atol + rtol * ar;
    p.flushed = c == 0 && r != 0;
    if (e > 0) {
      p.max_abs = e;
      p.max_at = i;
      p.min_rtol = r == 0 ? INFINITY : e / ar;
    }
    p.max_rel = cpu_max(0.0, e / cpu_max(ar, floors[i / per]));
    p.sum_abs = e;
    p.sum_err2 = e * e;
    p.sum_ref2 = r * r;
    p.sum_cand2 = c * c;
    p.sum_dot = c * r;
    p.max_ulp = cpu_max(0.0, ulp_distance(storage, c, r));
    return p;
  }
};

__host__ __device__ int err_bucket(double e) {
  if (e == 0) return 0;
  if (isinf(e)) return kErrBuckets - 1;   // |c - r| overflowed: ilogb(inf) + 49 would overflow
  return min(max(ilogb(e) + 49, 1), kErrBuckets - 1);
}
__host__ __device__ int ulp_bucket(double u) {
  if (u == 0) return 0;
  if (u < 1) return 1;
  if (isinf(u)) return kUlpBuckets - 1;
  return min(max(ilogb(u) + 1, 1), kUlpBuckets - 1);
}

// Sample j of the two-channel stream: pair j / 2, channel j % 2 (0: error, 1: ULPs), binned
// after the pair's segment's own range of buckets.
template <class C>
struct BucketOf {
  const C* cand;
  const double* ref;
  int64_t per;
  Mode storage;
  __host__ __device__ int operator()(int64_t j) const {
    const int64_t i = j >> 1;
    const double c = static_cast<double>(cand[i]), r = ref[i];
    if (!isfinite(c) || !isfinite(r)) return -1;
    const int seg = static_cast<int>(i / per);
    if ((j & 1) == 0) return seg * kErrBuckets + err_bucket(fabs(c - r));
    return seg * kUlpBuckets + ulp_bucket(ulp_distance(storage, c, r));
  }
};

struct FiniteAbs {
  const double* ref;
  __host__ __device__ double operator()(int64_t i) const {
    const double r = ref[i];
    return isfinite(r) ? fabs(r) : 0.0;
  }
};
struct MaxOp {
  __host__ __device__ double operator()(double a, double b) const { return cpu_max(a, b); }
};
struct SegBegin {
  int64_t per;
  __host__ __device__ int64_t operator()(int64_t s) const { return s * per; }
};

using Count = unsigned long long;   // histogram counters (integer atomics: exact, deterministic)

// Temp storage of a two-phase CUB call: ask for the size, allocate, call again.
template <class F>
void cub_call(F f, const char* what, const std::string& layer) {
  size_t bytes = 0;
  CUDA_CHECK(f(nullptr, bytes));
  DeviceBuffer<unsigned char> temp(std::max<size_t>(bytes, 1), std::string(what) + " temp storage");
  CUDA_CHECK(f(temp.get(), bytes));
  check_launch(what, layer);
}

// Stats of `segs` equal segments of `per` elements (segs = 1: the whole tensor).
template <class C>
std::vector<LayerStats> compare_segments(Mode storage, const C* cand, const double* ref,
                                         int64_t segs, int64_t per, const CompareOptions& opt,
                                         const std::string& layer) {
  std::vector<LayerStats> out(static_cast<size_t>(segs));
  if (segs == 0) return out;
  if (per == 0) return out;
  const int64_t n = segs * per;
  thrust::counting_iterator<int64_t> idx(0);
  auto seg_begin = thrust::make_transform_iterator(idx, SegBegin{per});
  auto seg_end = seg_begin + 1;

  // Pass 1: the max_rel floor of each segment.
  std::vector<double> floors(static_cast<size_t>(segs), opt.rel_floor);
  if (opt.rel_floor < 0) {
    DeviceBuffer<double> amax(static_cast<size_t>(segs), "compare amax");
    auto absref = thrust::make_transform_iterator(idx, FiniteAbs{ref});
    if (segs == 1)
      cub_call([&](void* t, size_t& b) {
        return cub::DeviceReduce::Reduce(t, b, absref, amax.get(), n, MaxOp{}, 0.0);
      }, "compare_amax", layer);
    else
      cub_call([&](void* t, size_t& b) {
        return cub::DeviceSegmentedReduce::Reduce(t, b, absref, amax.get(), segs, seg_begin,
                                                  seg_end, MaxOp{}, 0.0);
      }, "compare_amax_segmented", layer);
    CUDA_CHECK(cudaMemcpy(floors.data(), amax.get(), segs * sizeof(double), cudaMemcpyDeviceToHost));
    for (double& f : floors) f = 1e-6 * f;   // host/compare.cpp: floor = 1e-6 * amax
  }
  DeviceBuffer<double> dfloors(static_cast<size_t>(segs), "compare floors");
  CUDA_CHECK(cudaMemcpy(dfloors.get(), floors.data(), segs * sizeof(double), cudaMemcpyHostToDevice));

  // Pass 2: the fused reduction.
  DeviceBuffer<Partial> dpart(static_cast<size_t>(segs), "compare partials");
  auto elems = thrust::make_transform_iterator(
      idx, ElemStats<C>{cand, ref, dfloors.get(), per, storage, opt.atol, opt.rtol});
  if (segs == 1)
    cub_call([&](void* t, size_t& b) {
      return cub::DeviceReduce::Reduce(t, b, elems, dpart.get(), n, Combine{}, identity());
    }, "compare_reduce", layer);
  else
    cub_call([&](void* t, size_t& b) {
      return cub::DeviceSegmentedReduce::Reduce(t, b, elems, dpart.get(), segs, seg_begin,
                                                seg_end, Combine{}, identity());
    }, "compare_reduce_segmented", layer);

  // Pass 3: both histograms.
  const int err_bins = static_cast<int>(segs * kErrBuckets), ulp_bins = static_cast<int>(segs * kUlpBuckets);
  DeviceBuffer<Count> err_hist(static_cast<size_t>(err_bins), "compare err histogram");
  DeviceBuffer<Count> ulp_hist(static_cast<size_t>(ulp_bins), "compare ulp histogram");
  auto samples = thrust::make_transform_iterator(idx, BucketOf<C>{cand, ref, per, storage});
  const ::cuda::std::array<Count*, 2> hists{err_hist.get(), ulp_hist.get()};
  const ::cuda::std::array<int, 2> levels{err_bins + 1, ulp_bins + 1};
  const ::cuda::std::array<int, 2> lower{0, 0}, upper{err_bins, ulp_bins};
  cub_call([&](void* t, size_t& b) {
    return cub::DeviceHistogram::MultiHistogramEven<2, 2>(t, b, samples, hists, levels, lower,
                                                          upper, n);
  }, "compare_histogram", layer);

  std::vector<Partial> part(static_cast<size_t>(segs));
  std::vector<Count> eh(static_cast<size_t>(err_bins)), uh(static_cast<size_t>(ulp_bins));
  CUDA_CHECK(cudaMemcpy(part.data(), dpart.get(), segs * sizeof(Partial), cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(eh.data(), err_hist.get(), eh.size() * sizeof(Count), cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(uh.data(), ulp_hist.get(), uh.size() * sizeof(Count), cudaMemcpyDeviceToHost));

  for (int64_t s = 0; s < segs; ++s) {
    const Partial& p = part[s];
    LayerStats& o = out[s];
    o.count = per;
    o.nan = p.nan;
    o.inf = p.inf;
    o.ref_nan = p.ref_nan;
    o.ref_inf = p.ref_inf;
    o.nonfinite_new = p.nonfinite_new;
    o.mismatch = p.mismatch;
    o.flushed = p.flushed;
    o.max_abs = p.max_abs;
    o.max_rel = p.max_rel;
    o.min_rtol = p.min_rtol;
    o.sum_abs = p.sum_abs;
    o.sum_err2 = p.sum_err2;
    o.sum_ref2 = p.sum_ref2;
    o.sum_cand2 = p.sum_cand2;
    o.sum_dot = p.sum_dot;
    o.max_ulp = p.max_ulp;
    for (int b = 0; b < kErrBuckets; ++b) o.err_hist[b] = static_cast<int64_t>(eh[s * kErrBuckets + b]);
    for (int b = 0; b < kUlpBuckets; ++b) o.ulp_hist[b] = static_cast<int64_t>(uh[s * kUlpBuckets + b]);
    o.ref_finite = p.ref_finite;
    o.ref_zero = p.ref_zero;
    o.ref_min = p.ref_finite ? p.ref_min : 0;
    o.ref_max = p.ref_finite ? p.ref_max : 0;
    o.ref_sum = p.ref_sum;
    o.ref_sumsq = p.ref_sumsq;
    o.over_fp16 = p.over_fp16;
    o.over_bf16 = p.over_bf16;
    o.under_fp16 = p.under_fp16;
    o.under_bf16 = p.under_bf16;
    // Flat index within the segment (0 when every error is 0, as the CPU's initial value).
    const int64_t at = p.max_at == kNoIndex ? 0 : p.max_at - s * per;
    o.max_abs_index.push_back(at);   // unravelled by the caller
  }
  return out;
}

// The kernels library does not link host/tensor.cpp (it comes before it on the link line).
int64_t elements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void unravel(int64_t flat, const Shape& shape, std::vector<int64_t>& idx) {
  idx.assign(shape.size(), 0);
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    idx[i] = flat % shape[i];
    flat /= shape[i];
  }
}

template <class C>
LayerStats compare_whole(Mode storage, const C* cand, const double* ref, const Shape& shape,
                         const CompareOptions& opt, const std::string& layer) {
  LayerStats s = compare_segments(storage, cand, ref, 1, elements(shape), opt, layer)[0];
  const int64_t at = s.max_abs_index.empty() ? 0 : s.max_abs_index[0];
  unravel(at, shape, s.max_abs_index);
  return s;
}

template <class C>
std::vector<LayerStats> compare_samples(Mode storage, const C* cand, const double* ref,
                                        const Shape& shape, const CompareOptions& opt,
                                        const std::string& layer) {
  if (shape.empty()) return {};
  const int64_t segs = shape[0], per = elements(shape) / std::max<int64_t>(shape[0], 1);
  std::vector<LayerStats> out = compare_segments(storage, cand, ref, segs, per, opt, layer);
  const Shape sample_shape(shape.begin() + 1, shape.end());
  for (int64_t s = 0; s < segs; ++s) {
    auto& idx = out[s].max_abs_index;
    const int64_t at = idx.empty() ? 0 : idx[0];
    unravel(at, sample_shape, idx);
    idx.insert(idx.begin(), s);
  }
  return out;
}

}  // namespace

LayerStats compare_device(Mode storage, const float* cand_dev, const double* ref_dev,
                          const Shape& shape, const CompareOptions& opt, const std::string& layer) {
  return compare_whole(storage, cand_dev, ref_dev, shape, opt, layer);
}
LayerStats compare_device(Mode storage, const double* cand_dev, const double* ref_dev,
                          const Shape& shape, const CompareOptions& opt, const std::string& layer) {
  return compare_whole(storage, cand_dev, ref_dev, shape, opt, layer);
}
std::vector<LayerStats> compare_device_per_sample(Mode storage, const float* cand_dev,
                                                  const double* ref_dev, const Shape& shape,
                                                  const CompareOptions& opt,
                                                  const std::string& layer) {
  return compare_samples(storage, cand_dev, ref_dev, shape, opt, layer);
}
std::vector<LayerStats> compare_device_per_sample(Mode storage, const double* cand_dev,
                                                  const double* ref_dev, const Shape& shape,
                                                  const CompareOptions& opt,
                                                  const std::string& layer) {
  return compare_samples(storage, cand_dev, ref_dev, shape, opt, layer);
}

}  // namespace divscope
