#include "analysis/compare.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace divscope {
namespace {

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

// Bucket edges are powers of two, the same as the device compare's ilogb (kernels/compare.cu).
// Bucket of a finite error e >= 0 without data-dependent branches (e == 0 is common and
// unpredictable): the exponent field, 0 for an exact element, bucket 1 for a subnormal error.
inline int err_bucket_finite(double e) {
  const int biased = static_cast<int>(f64_bits(e) >> 52);
  const int b = std::clamp(biased - 1023 + 49, 1, kErrBuckets - 1);
  return biased ? b : (e != 0);
}

// Bucket of u > 0 ulps (finite or +inf): [2^(k-1), 2^k) -> k, below 1 -> 1, +inf -> last.
inline int ulp_bucket_positive(double u) {
  return std::clamp(static_cast<int>(f64_bits(u) >> 52) - 1023 + 1, 1, kUlpBuckets - 1);
}

// Elements per block: blocks never cross a sample, so per-sample sums are the same blocks
// whether gathered here or by compare_per_sample.
constexpr int64_t kBlock = 256;

// The running histograms of one pass: four interleaved copies of each, since neighbouring
// elements mostly fall in the same bucket and one copy would make every increment wait on the
// previous one's store.
struct Hists {
  int64_t err[4][kErrBuckets] = {}, ulp[4][kUlpBuckets] = {};
};

// max_rel, min_rtol, ULPs and the histograms of `len` finite pairs (errors e[k] = |c - r|),
// element `base + k`. The maxima live in registers over the block.
template <Mode kStorage>
void tail_block(const double* e, const double* ref, int64_t len, int64_t base, double floor,
                LayerStats& s, Hists& h) {
  double max_rel = s.max_rel, min_rtol = s.min_rtol, max_ulp = s.max_ulp;
  for (int64_t k = 0; k < len; ++k) {
    const int lane = static_cast<int>((base + k) & 3);
    const double ek = e[k], r = ref[k];
    ++h.err[lane][err_bucket_finite(ek)];
    const double a = std::fabs(r), d = std::max(a, floor);
    // Divide only where the running maximum can grow (the margin covers the rounding of the
    // product; same result, far fewer divides).
    if (ek > 0 && ek >= max_rel * d * 0.999999) max_rel = std::max(max_rel, ek / d);
    if (a == 0) {
      if (ek > 0) min_rtol = std::numeric_limits<double>::infinity();
    } else if (ek > 0 && ek >= min_rtol * a * 0.999999) {
      min_rtol = std::max(min_rtol, ek / a);
    }
    const double u = ulp_units(kStorage, ek, r);
    max_ulp = std::max(max_ulp, u);
    ++h.ulp[lane][ek == 0 ? 0 : ulp_bucket_positive(u)];
  }
  s.max_rel = max_rel;
  s.min_rtol = min_rtol;
  s.max_ulp = max_ulp;
}

#if defined(__x86_64__)
std::atomic<bool> g_compare_scalar{false};

bool compare_simd() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has && !g_compare_scalar.load(std::memory_order_relaxed);
}

// tail_block for the float storage formats (fp32/tf32/strict, fp16, bf16), four pairs at a
// time with AVX2: the same values per element as tail_block (the ULP of a float format at a
// finite double is always a normal power of two here, so ulp_units is one exact multiply), and
// maxima and bucket counts do not depend on the order they are gathered in, so the statistics
// are bit for bit tail_block's (tests/test_compare.cpp, Compare.SimdTailIsTheScalarTail).
template <Mode kStorage>
__attribute__((target("avx2"))) void tail_block_avx2(const double* e, const double* ref, int64_t len,
                                                     int64_t base, double floor, LayerStats& s, Hists& h) {
  static_assert(kStorage != Mode::fp64, "fp64 ULPs can be subnormal: the scalar tail");
  constexpr int p = kStorage == Mode::fp16 ? 11 : kStorage == Mode::bf16 ? 8 : 24;
  constexpr int emin = kStorage == Mode::fp16 ? -14 : -126;
  const __m256i abs_mask = _mm256_set1_epi64x(0x7fffffffffffffffll);
  const __m256i k1023 = _mm256_set1_epi64x(1023), vemin = _mm256_set1_epi64x(emin);
  const __m256i scale_base = _mm256_set1_epi64x(1023 + p - 1);
  const __m256i one = _mm256_set1_epi64x(1), zero_i = _mm256_setzero_si256();
  const __m256i err_lo = _mm256_set1_epi64x(1), err_hi = _mm256_set1_epi64x(kErrBuckets - 1);
  const __m256i ulp_hi = _mm256_set1_epi64x(kUlpBuckets - 1), k1022 = _mm256_set1_epi64x(1022);
  const __m256d vfloor = _mm256_set1_pd(floor), zero = _mm256_setzero_pd();
  __m256d max_rel = _mm256_set1_pd(s.max_rel), min_rtol = _mm256_set1_pd(s.min_rtol);
  __m256d max_ulp = _mm256_set1_pd(s.max_ulp);
  alignas(32) int64_t eb_idx[4], ub_idx[4];
  int64_t k = 0;
  for (; k + 4 <= len; k += 4) {
    const __m256d ev = _mm256_loadu_pd(e + k), rv = _mm256_loadu_pd(ref + k);
    const __m256i eb = _mm256_castpd_si256(ev);
    // Error bucket: the exponent field (e >= 0), clamped; 0 for e == 0, 1 for a subnormal e.
    // The 32-bit max/min act on the low halves; the high halves stay the 64-bit sign's.
    const __m256i biased = _mm256_srli_epi64(eb, 52);
    __m256i eb_b = _mm256_min_epi32(_mm256_max_epi32(_mm256_sub_epi64(biased, _mm256_set1_epi64x(1023 - 49)), err_lo), err_hi);
    const __m256i biased0 = _mm256_cmpeq_epi64(biased, zero_i);
    const __m256i nonzero = _mm256_andnot_si256(_mm256_cmpeq_epi64(eb, zero_i), one);
    eb_b = _mm256_blendv_epi8(eb_b, nonzero, biased0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(eb_idx), eb_b);
    const __m256d av = _mm256_castsi256_pd(_mm256_and_si256(_mm256_castpd_si256(rv), abs_mask));
    const __m256d epos = _mm256_cmp_pd(ev, zero, _CMP_GT_OQ);
    // max_rel over e > 0: e / max(|r|, floor); min_rtol over e > 0: e / |r| (+inf where r = 0).
    const __m256d rel = _mm256_div_pd(ev, _mm256_max_pd(av, vfloor));
    max_rel = _mm256_max_pd(max_rel, _mm256_and_pd(rel, epos));
    const __m256d rt = _mm256_div_pd(ev, av);
    min_rtol = _mm256_max_pd(min_rtol, _mm256_and_pd(rt, epos));
    // ULPs: e * 2^-(max(exponent(r), emin) - (p - 1)), exact.
    const __m256i er = _mm256_max_epi32(_mm256_sub_epi64(_mm256_srli_epi64(_mm256_castpd_si256(av), 52), k1023), vemin);
    const __m256d inv = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_sub_epi64(scale_base, er), 52));
    const __m256d u = _mm256_mul_pd(ev, inv);
    max_ulp = _mm256_max_pd(max_ulp, u);
    // ULP bucket: [2^(k-1), 2^k) -> k, clamped to [1, last]; 0 where e == 0.
    __m256i ub = _mm256_sub_epi64(_mm256_srli_epi64(_mm256_castpd_si256(u), 52), k1022);
    ub = _mm256_min_epi32(_mm256_max_epi32(ub, one), ulp_hi);
    ub = _mm256_and_si256(ub, _mm256_castpd_si256(epos));
    _mm256_store_si256(reinterpret_cast<__m256i*>(ub_idx), ub);
    for (int j = 0; j < 4; ++j) {
      ++h.err[j][eb_idx[j]];
      ++h.ulp[j][ub_idx[j]];
    }
  }
  alignas(32) double m[4];
  _mm256_store_pd(m, max_rel);
  s.max_rel = std::max(std::max(m[0], m[1]), std::max(m[2], m[3]));
  _mm256_store_pd(m, min_rtol);
  s.min_rtol = std::max(std::max(m[0], m[1]), std::max(m[2], m[3]));
  _mm256_store_pd(m, max_ulp);
  s.max_ulp = std::max(std::max(m[0], m[1]), std::max(m[2], m[3]));
  if (k < len) tail_block<kStorage>(e + k, ref + k, len - k, base + k, floor, s, h);
}
#endif

// The tail of a block of finite pairs: AVX2 for the float formats where the CPU has it.
template <Mode kStorage>
void tail(const double* e, const double* ref, int64_t len, int64_t base, double floor, LayerStats& s,
          Hists& h) {
#if defined(__x86_64__)
  if constexpr (kStorage != Mode::fp64) {
    if (compare_simd()) return tail_block_avx2<kStorage>(e, ref, len, base, floor, s, h);
  }
#endif
  tail_block<kStorage>(e, ref, len, base, floor, s, h);
}

// Sums of one block of pairs in four lanes (lane l: elements 4i + l; a ragged end in lane 0),
// lanes added as (0 + 1) + (2 + 3): a fixed order, in two-double vectors (GCC/Clang vector
// extensions, SSE2 on x86-64). Also writes e[k] = |c - r|. Valid only when `finite`.
typedef double V2d __attribute__((vector_size(16)));
typedef int64_t V2i __attribute__((vector_size(16)));

struct BlockSums {
  double sa = 0, se = 0, sr = 0, sc = 0, sd = 0, mx = 0;
  int64_t miss = 0;
  int64_t flushed = 0;   // c == 0 where r != 0
  bool finite = true;   // every c - r finite (both finite, no overflowing difference)
};

// The elements [j, len) past a block's last whole group of four, element by element (both
// block_sums and block_sums_avx2 put them in lane 0): their sums, and into b the finite flag,
// mismatches and flushed zeros. Also writes e[k] = |c - r|.
struct RaggedEnd {
  double sa = 0, se = 0, sr = 0, sc = 0, sd = 0, mx = 0;
};
template <class C>
inline RaggedEnd ragged_end(const C* c, const double* r, int64_t j, int64_t len, double atol, double rtol,
                            double* e, BlockSums& b) {
  RaggedEnd t;
  for (; j < len; ++j) {
    const double cj = static_cast<double>(c[j]), rj = r[j], ej = std::fabs(cj - rj);
    e[j] = ej;
    b.finite &= ej <= std::numeric_limits<double>::max();
    t.sa += ej;
    t.se += ej * ej;
    t.sr += rj * rj;
    t.sc += cj * cj;
    t.sd += cj * rj;
    b.miss += ej > atol + rtol * std::fabs(rj);
    b.flushed += cj == 0 && rj != 0;
    t.mx = std::max(t.mx, ej);
  }
  return t;
}

template <class C>
BlockSums block_sums(const C* c, const double* r, int64_t len, double atol, double rtol, double* e) {
  const V2i abs_mask = {0x7fffffffffffffffll, 0x7fffffffffffffffll};
  const V2d dmax = {std::numeric_limits<double>::max(), std::numeric_limits<double>::max()};
  const V2d vatol = {atol, atol}, vrtol = {rtol, rtol};
  V2d sa[2] = {}, se[2] = {}, sr[2] = {}, sc[2] = {}, sd[2] = {}, mx[2] = {};
  const V2d zero = {0, 0};
  V2i miss[2] = {}, flush[2] = {}, bad = {};
  int64_t j = 0;
  for (; j + 4 <= len; j += 4) {
    for (int h = 0; h < 2; ++h) {
      const int64_t k = j + 2 * h;
      const V2d cv = {static_cast<double>(c[k]), static_cast<double>(c[k + 1])};
      const V2d rv = {r[k], r[k + 1]};
      const V2d ev = (V2d)((V2i)(cv - rv) & abs_mask);
      const V2d av = (V2d)((V2i)rv & abs_mask);
      e[k] = ev[0];
      e[k + 1] = ev[1];
      bad |= ~(ev <= dmax);
      sa[h] += ev;
      se[h] += ev * ev;
      sr[h] += rv * rv;
      sc[h] += cv * cv;
      sd[h] += cv * rv;
      miss[h] -= ev > vatol + vrtol * av;
      flush[h] -= (cv == zero) & (rv != zero);
      mx[h] = ev > mx[h] ? ev : mx[h];
    }
  }
  BlockSums b;
  const RaggedEnd t = ragged_end(c, r, j, len, atol, rtol, e, b);
  const double tail_sa = t.sa, tail_se = t.se, tail_sr = t.sr, tail_sc = t.sc, tail_sd = t.sd, tail_mx = t.mx;
  b.finite &= (bad[0] | bad[1]) == 0;
  // Lane 0 holds the ragged end after its vector part.
  auto total = [](const V2d (&v)[2], double tail) {
    return ((v[0][0] + tail) + v[0][1]) + (v[1][0] + v[1][1]);
  };
  b.sa = total(sa, tail_sa);
  b.se = total(se, tail_se);
  b.sr = total(sr, tail_sr);
  b.sc = total(sc, tail_sc);
  b.sd = total(sd, tail_sd);
  b.mx = std::max(std::max(std::max(mx[0][0], mx[0][1]), std::max(mx[1][0], mx[1][1])), tail_mx);
  b.miss += (miss[0][0] + miss[0][1]) + (miss[1][0] + miss[1][1]);
  b.flushed += (flush[0][0] + flush[0][1]) + (flush[1][0] + flush[1][1]);
  return b;
}

#if defined(__x86_64__)
// block_sums with the four lanes in one 256-bit vector (lane l: elements 4i + l, as above): every
// lane does the same operations in the same order as the two-double version, and the lanes are
// added in the same order, so the sums are bit for bit block_sums' (-ffp-contract=off: no FMA).
__attribute__((target("avx2"))) inline __m256d load4(const float* c) { return _mm256_cvtps_pd(_mm_loadu_ps(c)); }
__attribute__((target("avx2"))) inline __m256d load4(const double* c) { return _mm256_loadu_pd(c); }

template <class C>
__attribute__((target("avx2"))) BlockSums block_sums_avx2(const C* c, const double* r, int64_t len,
                                                         double atol, double rtol, double* e) {
  const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffll));
  const __m256d dmax = _mm256_set1_pd(std::numeric_limits<double>::max());
  const __m256d vatol = _mm256_set1_pd(atol), vrtol = _mm256_set1_pd(rtol), zero = _mm256_setzero_pd();
  __m256d sa = zero, se = zero, sr = zero, sc = zero, sd = zero, mx = zero;
  __m256i miss = _mm256_setzero_si256(), flush = _mm256_setzero_si256(), bad = _mm256_setzero_si256();
  int64_t j = 0;
  for (; j + 4 <= len; j += 4) {
    const __m256d cv = load4(c + j), rv = _mm256_loadu_pd(r + j);
    const __m256d ev = _mm256_and_pd(_mm256_sub_pd(cv, rv), abs_mask);
    const __m256d av = _mm256_and_pd(rv, abs_mask);
    _mm256_storeu_pd(e + j, ev);
    bad = _mm256_or_si256(bad, _mm256_castpd_si256(_mm256_cmp_pd(ev, dmax, _CMP_NLE_UQ)));
    sa = _mm256_add_pd(sa, ev);
    se = _mm256_add_pd(se, _mm256_mul_pd(ev, ev));
    sr = _mm256_add_pd(sr, _mm256_mul_pd(rv, rv));
    sc = _mm256_add_pd(sc, _mm256_mul_pd(cv, cv));
    sd = _mm256_add_pd(sd, _mm256_mul_pd(cv, rv));
    const __m256d limit = _mm256_add_pd(vatol, _mm256_mul_pd(vrtol, av));
    miss = _mm256_sub_epi64(miss, _mm256_castpd_si256(_mm256_cmp_pd(ev, limit, _CMP_GT_OQ)));
    const __m256d fl = _mm256_and_pd(_mm256_cmp_pd(cv, zero, _CMP_EQ_OQ), _mm256_cmp_pd(rv, zero, _CMP_NEQ_UQ));
    flush = _mm256_sub_epi64(flush, _mm256_castpd_si256(fl));
    mx = _mm256_blendv_pd(mx, ev, _mm256_cmp_pd(ev, mx, _CMP_GT_OQ));
  }
  BlockSums b;
  const RaggedEnd t = ragged_end(c, r, j, len, atol, rtol, e, b);
  const double tail_sa = t.sa, tail_se = t.se, tail_sr = t.sr, tail_sc = t.sc, tail_sd = t.sd, tail_mx = t.mx;
  b.finite &= _mm256_testz_si256(bad, bad) != 0;
  alignas(32) double l[6][4];
  alignas(32) int64_t li[4];
  _mm256_store_pd(l[0], sa);
  _mm256_store_pd(l[1], se);
  _mm256_store_pd(l[2], sr);
  _mm256_store_pd(l[3], sc);
  _mm256_store_pd(l[4], sd);
  const double tails[5] = {tail_sa, tail_se, tail_sr, tail_sc, tail_sd};
  double* const out[5] = {&b.sa, &b.se, &b.sr, &b.sc, &b.sd};
  for (int q = 0; q < 5; ++q) *out[q] = ((l[q][0] + tails[q]) + l[q][1]) + (l[q][2] + l[q][3]);
  _mm256_store_pd(l[5], mx);
  const double* const m = l[5];
  b.mx = std::max(std::max(std::max(m[0], m[1]), std::max(m[2], m[3])), tail_mx);
  _mm256_store_si256(reinterpret_cast<__m256i*>(li), miss);
  b.miss += (li[0] + li[1]) + (li[2] + li[3]);
  _mm256_store_si256(reinterpret_cast<__m256i*>(li), flush);
  b.flushed += (li[0] + li[1]) + (li[2] + li[3]);
  return b;
}
#endif

template <class C>
BlockSums block_sums_best(const C* c, const double* r, int64_t len, double atol, double rtol, double* e) {
#if defined(__x86_64__)
  if (compare_simd()) return block_sums_avx2(c, r, len, atol, rtol, e);
#endif
  return block_sums(c, r, len, atol, rtol, e);
}

// One pass over n pairs; `per` > 0 gathers per-sample errors for samples of `per` elements.
// The storage mode is a template argument so that the ULP of every element is a few bit
// operations with constants. Blocks whose pairs are all finite (nearly all) take a fast path:
// the sums in four lanes that the compiler vectorises, added in a fixed order per block, then
// one branch-light loop for the histograms; a block with a NaN/Inf goes element by element.
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
  Hists hists;
  double eb[kBlock];
  for (int64_t b0 = 0; b0 < n;) {
    const int64_t sample = per > 0 ? b0 / per : 0;
    const int64_t b1 = std::min(n, per > 0 ? std::min(b0 + kBlock, (sample + 1) * per) : b0 + kBlock);
    const int64_t len = b1 - b0;
    const C* cb = cand + b0;
    const double* rb = ref + b0;
    if (opt.health)
      for (int64_t j = 0; j < len; ++j) add_health(s, rb[j]);
    // Adds the sums of elements [first, first + count) of this block (errors in eb).
    auto add_sums = [&](const BlockSums& bs, int64_t first, int64_t count) {
      s.sum_abs += bs.sa;
      s.sum_err2 += bs.se;
      s.sum_ref2 += bs.sr;
      s.sum_cand2 += bs.sc;
      s.sum_dot += bs.sd;
      s.mismatch += bs.miss;
      s.flushed += bs.flushed;
      if (bs.mx > s.max_abs) {   // the first element holding the maximum, as element by element
        s.max_abs = bs.mx;
        *max_at = b0 + (std::find(eb + first, eb + first + count, bs.mx) - eb);
      }
      if (samples) {
        samples->mismatch[sample] += bs.miss;
        samples->err2[sample] += bs.se;
        samples->ref2[sample] += bs.sr;
        samples->max_abs[sample] = std::max(samples->max_abs[sample], bs.mx);
      }
    };
    const BlockSums bs = block_sums_best(cb, rb, len, opt.atol, opt.rtol, eb);
    if (bs.finite) {
      add_sums(bs, 0, len);
      if (!opt.sums_only) tail<kStorage>(eb, rb, len, b0, floor, s, hists);
      b0 = b1;
      continue;
    }
    for (int64_t k = 0; k < len; ++k) {
      const double c = static_cast<double>(cb[k]), r = rb[k];
      if (!std::isfinite(c) || !std::isfinite(r)) {
        // Non-finite: equal only when both are NaN or both the same infinity.
        const bool same = (std::isnan(c) && std::isnan(r)) || (c == r);
        const bool fresh = !std::isfinite(c) && std::isfinite(r) && !sentinel_overflow(c, r);
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
      // A finite pair: the sums of a block of one (adding the other lanes' zeros is exact).
      add_sums(block_sums(cb + k, rb + k, 1, opt.atol, opt.rtol, eb + k), k, 1);
      if (!opt.sums_only) tail_block<kStorage>(&eb[k], &rb[k], 1, b0 + k, floor, s, hists);
    }
    b0 = b1;
  }
  for (int h = 0; h < 4; ++h) {
    for (int b = 0; b < kErrBuckets; ++b) s.err_hist[b] += hists.err[h][b];
    for (int b = 0; b < kUlpBuckets; ++b) s.ulp_hist[b] += hists.ulp[h][b];
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

void compare_force_scalar(bool on) {
#if defined(__x86_64__)
  g_compare_scalar.store(on, std::memory_order_relaxed);
#else
  (void)on;
#endif
}

double LayerStats::mean_abs() const {
  int64_t finite = 0;
  for (int64_t h : err_hist) finite += h;
  return finite ? sum_abs / finite : 0;
}

// A NaN/Inf the reference lacks is an infinite error: the norm-wise statistics must not be
// computed over the finite elements only and look healthy when most of the tensor is gone.
double LayerStats::rel_l2() const {
  if (nonfinite_new > 0) return std::numeric_limits<double>::infinity();
  if (sum_ref2 == 0) return sum_err2 == 0 ? 0 : std::numeric_limits<double>::infinity();
  return std::sqrt(sum_err2) / std::sqrt(sum_ref2);
}

double LayerStats::cosine() const {
  if (nonfinite_new > 0) return std::numeric_limits<double>::quiet_NaN();
  if (sum_ref2 == 0 && sum_cand2 == 0) return 1;
  if (sum_ref2 == 0 || sum_cand2 == 0) return 0;
  return sum_dot / (std::sqrt(sum_ref2) * std::sqrt(sum_cand2));
}

double LayerStats::sqnr_db() const {
  if (nonfinite_new > 0) return -std::numeric_limits<double>::infinity();
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
  flushed += o.flushed;
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

LayerStats reference_health(const double* ref, int64_t n, int64_t per, std::vector<uint8_t>* bad,
                            std::vector<uint8_t>* nonzero) {
  // add_health's definitions and order (every sum in index order), in locals and selects: through
  // the LayerStats reference every count would be a store per element, and the data-dependent
  // branches (zeros after a relu, the non-finite test) mispredict.
  constexpr double kMax = std::numeric_limits<double>::max();
  int64_t nan = 0, inf = 0, finite = 0, zero = 0, o16 = 0, ob16 = 0, u16 = 0, ub16 = 0;
  double mn = std::numeric_limits<double>::infinity(), mx = -mn, sum = 0, sumsq = 0;
  if (per <= 0) per = std::max<int64_t>(n, 1);
  const int64_t samples = (n + per - 1) / per;
  if (bad) bad->assign(static_cast<size_t>(samples), 0);
  if (nonzero) nonzero->assign(static_cast<size_t>(samples), 0);
  for (int64_t s = 0; s < samples; ++s) {
    const double* y = ref + s * per;
    const int64_t len = std::min(per, n - s * per);
    bool any_bad = false, any_nonzero = false;
    for (int64_t i = 0; i < len; ++i) {
      const double r = y[i], a = std::fabs(r);
      const bool fin = a <= kMax;
      any_bad |= !fin;
      any_nonzero |= r != 0;
      nan += r != r;
      inf += a == std::numeric_limits<double>::infinity();
      finite += fin;
      mn = fin && r < mn ? r : mn;   // std::min(mn, r) over the finite values
      mx = fin && mx < r ? r : mx;   // std::max(mx, r)
      sum = fin ? sum + r : sum;
      sumsq = fin ? sumsq + r * r : sumsq;
      zero += r == 0;
      o16 += fin & (a > kFp16Max);
      ob16 += fin & (a > kBf16Max);
      u16 += (a != 0) & (a < kFp16MinNormal);
      ub16 += (a != 0) & (a < kBf16MinNormal);
    }
    if (bad) (*bad)[s] = any_bad;
    if (nonzero) (*nonzero)[s] = any_nonzero;
  }
  LayerStats s;
  s.ref_nan = nan;
  s.ref_inf = inf;
  s.ref_finite = finite;
  s.ref_zero = zero;
  s.ref_min = mn;
  s.ref_max = mx;
  s.ref_sum = sum;
  s.ref_sumsq = sumsq;
  s.over_fp16 = o16;
  s.over_bf16 = ob16;
  s.under_fp16 = u16;
  s.under_bf16 = ub16;
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
