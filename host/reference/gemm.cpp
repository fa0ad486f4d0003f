// GEMM core (see gemm.h) and the ops that are one GEMM: linear, matmul.
#include "reference/gemm.h"

#include <algorithm>
#include <exception>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#include "reference/gemm_kernels.h"
#include "reference/internal.h"
#include "reference/round_bulk.h"

namespace divscope {
namespace {

// Blocking (Goto-style): per thread, for each NC-column panel and each k block a KC x NC panel
// of B is packed once (L3), then an MC x KC block of A (L2); the micro-kernel (gemm_kernels.h)
// keeps an MR x NR tile in registers for KC steps against one NR-column B sliver (L1) and parks
// it in C between k blocks. K blocks run ascending inside every panel, so each output's sum is
// the plain k = 0..K-1 sequence whatever the sizes: they change speed only, never results.
// Sizes swept with bench_gemm_cpu at 256^3 and 1024^3, one thread, on AMD EPYC (Zen 5,
// 48 KiB L1d / 1 MiB L2 per core): fp64 KC 384 / MC 96 was best (KC 192..512, MC 96..384:
// up to 25% slower); float was within 3% over KC 384..768, MC 96..192, NC 2048..4096.
template <class T>
struct GemmBlocking;
template <>
struct GemmBlocking<double> {
  static constexpr int64_t kKC = 384, kMC = 96, kNC = 2048;
};
template <>
struct GemmBlocking<float> {
  static constexpr int64_t kKC = 512, kMC = 192, kNC = 2048;
};

// Which SIMD kernel does exactly P::madd: fmaf (strict) or a * b + acc (mode_policies.h,
// policy.h). A policy not listed here runs the scalar kernel.
enum class Step { fused, unfused, scalar_only };
template <class P>
constexpr Step kStep =
    std::is_same_v<P, StrictPolicy> ? Step::fused
    : std::is_same_v<P, Fp64Policy> || std::is_same_v<P, Fp32Policy> ||
            std::is_same_v<P, Tf32Policy> || std::is_same_v<P, Fp16Policy> ||
            std::is_same_v<P, Bf16Policy>
        ? Step::unfused
        : Step::scalar_only;

// Each thread gets at least this many multiply-adds (~0.1 ms), or the spawn is not worth it.
constexpr int64_t kMinWorkPerThread = int64_t(1) << 21;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// The modes whose operand and store roundings are not the identity round whole packed panels
// and output rows at once (round_bulk.h: the same value per element, F16C for fp16).
template <class P>
constexpr bool kBulkRounding =
    std::is_same_v<P, Tf32Policy> || std::is_same_v<P, Fp16Policy> || std::is_same_v<P, Bf16Policy>;

template <class P>
typename P::T packed_operand(typename P::T x) {
  if constexpr (kBulkRounding<P>) return x;   // rounded with the whole panel
  return P::operand(x);
}

// Packs rows [m0, m0 + mc) x k [k0, k0 + kc) of A as MR-row slivers: sliver s holds
// operand(a(m0 + s*MR + r, k0 + k)) at [s][k][r]; rows past mc are zero (results discarded).
template <class P>
void pack_a(const MatView<typename P::T>& a, int64_t m0, int64_t mc, int64_t k0, int64_t kc,
            typename P::T* dst) {
  using T = typename P::T;
  constexpr int64_t MR = GemmTile<T>::kMR;
  T* const start = dst;
  for (int64_t s = 0; s < mc; s += MR) {
    int64_t rows = std::min(MR, mc - s);
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = a.p + (m0 + s) * a.rs + (k0 + k) * a.cs;
      for (int64_t r = 0; r < rows; ++r) *dst++ = packed_operand<P>(src[r * a.rs]);
      for (int64_t r = rows; r < MR; ++r) *dst++ = T(0);
    }
  }
  if constexpr (kBulkRounding<P>) policy_operands_bulk<P>(start, dst - start);
}

// Packs k [k0, k0 + kc) x columns [n0, n0 + nc) of B as NR-column slivers, zero past nc.
template <class P>
void pack_b(const MatView<typename P::T>& b, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
            typename P::T* dst) {
  using T = typename P::T;
  constexpr int64_t NR = GemmTile<T>::kNR;
  T* const start = dst;
  for (int64_t s = 0; s < nc; s += NR) {
    int64_t cols = std::min(NR, nc - s);
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = b.p + (k0 + k) * b.rs + (n0 + s) * b.cs;
      for (int64_t j = 0; j < cols; ++j) *dst++ = packed_operand<P>(src[j * b.cs]);
      for (int64_t j = cols; j < NR; ++j) *dst++ = T(0);
    }
  }
  if constexpr (kBulkRounding<P>) policy_operands_bulk<P>(start, dst - start);
}

// The scalar kernel (CPUs without AVX2/FMA, and the test hook): the contract of
// gemm_tile_avx2 with P::madd as the step.
template <class P>
void tile_scalar(int64_t kc, const typename P::T* ap, const typename P::T* bp,
                 typename P::T* c, int64_t ldc, bool first) {
  using T = typename P::T;
  constexpr int64_t MR = GemmTile<T>::kMR, NR = GemmTile<T>::kNR;
  T t[MR][NR];
  for (int64_t r = 0; r < MR; ++r)
    for (int64_t j = 0; j < NR; ++j) t[r][j] = first ? T(0) : c[r * ldc + j];
  for (int64_t k = 0; k < kc; ++k, ap += MR, bp += NR)
    for (int64_t r = 0; r < MR; ++r)
      for (int64_t j = 0; j < NR; ++j) t[r][j] = P::madd(ap[r], bp[j], t[r][j]);
  for (int64_t r = 0; r < MR; ++r)
    for (int64_t j = 0; j < NR; ++j) c[r * ldc + j] = t[r][j];
}

// Outputs [m_lo, m_hi) x [n_lo, n_hi) of gemm(): dot products accumulated in c, then bias and
// store in place. One call per thread; threads own disjoint outputs.
// Packing buffers of one gemm() call: `ap` then `bp` for each of its threads, the calling thread's
// own, reused by every later call on that thread (a pool worker, the main thread) and never
// cleared: the packing writes every element it later reads. Allocating them per call cost a
// fresh, zero-filled 4 MiB block (page faults and a memset) per sample and convolution.
template <class T>
T* pack_scratch(size_t elems) {
  thread_local std::unique_ptr<T[]> buf;
  thread_local size_t cap = 0;
  if (elems > cap) {
    buf.reset(new T[elems]);
    cap = elems;
  }
  return buf.get();
}

template <class P>
void gemm_part(int64_t m_lo, int64_t m_hi, int64_t n_lo, int64_t n_hi, int64_t K,
               const MatView<typename P::T>& a, const MatView<typename P::T>& b,
               const MatView<typename P::T>& bias, typename P::T* c, int64_t ldc, bool simd,
               typename P::T* ap, typename P::T* bp) {
  using T = typename P::T;
  using Acc = typename P::Acc;
  constexpr int64_t MR = GemmTile<T>::kMR, NR = GemmTile<T>::kNR;
  constexpr int64_t KC = GemmBlocking<T>::kKC, MC = GemmBlocking<T>::kMC,
                    NC = GemmBlocking<T>::kNC;
  using Tile = void (*)(int64_t, const T*, const T*, T*, int64_t, bool);
  Tile tile = tile_scalar<P>;
  const bool wide = simd && gemm_avx512();
  if constexpr (kStep<P> == Step::fused) {
    if (simd) tile = wide ? gemm_tile_avx512_fma : gemm_tile_avx2_fma;
  } else if constexpr (kStep<P> == Step::unfused) {
    if (simd) tile = wide ? static_cast<Tile>(gemm_tile_avx512) : static_cast<Tile>(gemm_tile_avx2);
  }
  T edge[MR * NR];
  for (int64_t n0 = n_lo; n0 < n_hi; n0 += NC) {
    int64_t nc = std::min(NC, n_hi - n0);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      int64_t kc = std::min(KC, K - k0);
      bool first = k0 == 0;
      pack_b<P>(b, k0, kc, n0, nc, bp);
      for (int64_t m0 = m_lo; m0 < m_hi; m0 += MC) {
        int64_t mc = std::min(MC, m_hi - m0);
        pack_a<P>(a, m0, mc, k0, kc, ap);
        for (int64_t j = 0; j < nc; j += NR)
          for (int64_t r = 0; r < mc; r += MR) {
            int64_t rows = std::min(MR, mc - r), cols = std::min(NR, nc - j);
            const T* at = ap + r * kc;
            const T* bt = bp + j * kc;
            T* ct = c + (m0 + r) * ldc + n0 + j;
            if (rows == MR && cols == NR) {
              tile(kc, at, bt, ct, ldc, first);
              continue;
            }
            // A ragged edge: run the full tile on a copy, keep the valid part.
            for (int64_t i = 0; i < rows && !first; ++i)
              std::copy(ct + i * ldc, ct + i * ldc + cols, edge + i * NR);
            tile(kc, at, bt, edge, NR, first);
            for (int64_t i = 0; i < rows; ++i)
              std::copy(edge + i * NR, edge + i * NR + cols, ct + i * ldc);
          }
      }
    }
  }
  for (int64_t m = m_lo; m < m_hi; ++m) {
    T* row = c + m * ldc;
    for (int64_t n = n_lo; n < n_hi; ++n) {
      Acc v = K > 0 ? Acc(row[n]) : Acc(0);
      if (bias.p) v = P::add(v, Acc(bias(m, n)));
      if constexpr (kBulkRounding<P>)
        row[n] = v;   // Acc is T (asserted in gemm()): stored below with the whole row
      else
        row[n] = P::store(v);
    }
    if constexpr (kBulkRounding<P>) policy_store_bulk<P>(row + n_lo, n_hi - n_lo);
  }
}

}  // namespace

template <class P>
void gemm(int64_t M, int64_t N, int64_t K, MatView<typename P::T> a, MatView<typename P::T> b,
          MatView<typename P::T> bias, typename P::T* c, int64_t ldc) {
  using T = typename P::T;
  static_assert(std::is_same_v<T, typename P::Acc>, "the tile is parked in C between k blocks");
  if (M <= 0 || N <= 0) return;
  bool simd = gemm_simd();
  // Threads split the larger of M and N into whole tiles; each owns its outputs outright.
  bool split_n = N >= M;
  int64_t extent = split_n ? N : M, unit = split_n ? GemmTile<T>::kNR : GemmTile<T>::kMR;
  int64_t units = (extent + unit - 1) / unit;
  int64_t threads = std::min<int64_t>({gemm_max_threads(), units,
                                       std::max<int64_t>(1, M * N * K / kMinWorkPerThread)});
  // Each thread's packing buffers, sized for the largest part (a whole MC x KC block of A and
  // NC x KC panel of B, or less when the matrix is smaller).
  constexpr int64_t MR = GemmTile<T>::kMR, NR = GemmTile<T>::kNR;
  constexpr int64_t KC = GemmBlocking<T>::kKC, MC = GemmBlocking<T>::kMC, NC = GemmBlocking<T>::kNC;
  const int64_t kc = std::min(KC, std::max<int64_t>(K, 1));
  const size_t ap_n = static_cast<size_t>(round_up(std::min(M, MC), MR) * kc);
  const size_t bp_n = static_cast<size_t>(round_up(std::min(N, NC), NR) * kc);
  if (threads <= 1) {
    T* s = pack_scratch<T>(ap_n + bp_n);
    gemm_part<P>(0, M, 0, N, K, a, b, bias, c, ldc, simd, s, s + ap_n);
    return;
  }
  T* scratch = pack_scratch<T>(static_cast<size_t>(threads) * (ap_n + bp_n));
  std::vector<std::thread> workers;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
  auto run = [&](int64_t t) {
    int64_t lo = std::min(units * t / threads * unit, extent);
    int64_t hi = std::min(units * (t + 1) / threads * unit, extent);
    T* ap = scratch + static_cast<size_t>(t) * (ap_n + bp_n);
    try {
      if (split_n)
        gemm_part<P>(0, M, lo, hi, K, a, b, bias, c, ldc, simd, ap, ap + ap_n);
      else
        gemm_part<P>(lo, hi, 0, N, K, a, b, bias, c, ldc, simd, ap, ap + ap_n);
    } catch (...) {
      errors[static_cast<size_t>(t)] = std::current_exception();
    }
  };
  for (int64_t t = 1; t < threads; ++t) workers.emplace_back(run, t);
  run(0);
  for (std::thread& w : workers) w.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

namespace {

// linear: y[..., o] = sum_i x[..., i] * W[o, i] + b[o]   (y = x W^T + b over all leading dims)
template <class P>
void linear(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using T = typename P::T;
  const TensorOf<P>& x = *in[0];
  const Tensor& w = *L.param("weight");
  int64_t K = w.shape[1], O = w.shape[0], M = x.size() / K;
  const Param<T> wt = param_of<P>(L, "weight"), bias = param_of<P>(L, "bias");
  gemm<P>(M, O, K, {x.ptr(), K, 1}, {wt.data(), 1, K},
          {bias.empty() ? nullptr : bias.data(), 0, 1}, out.ptr(), O);
}

// matmul: out[i..., m, n] = sum_k a[i..., m, k] * b[i..., k, n], batch dims (same rank,
// batch dim 0 included) broadcast NumPy-style.
template <class P>
void matmul(const Layer&, const InputsOf<P>& in, TensorOf<P>& out) {
  const TensorOf<P>&a = *in[0], &b = *in[1];
  int r = a.rank();
  int64_t M = a.dim(-2), K = a.dim(-1), N = b.dim(-1);
  Shape bs(out.shape.begin(), out.shape.end() - 2);   // broadcast batch shape
  Shape sa = strides_of(Shape(a.shape.begin(), a.shape.end() - 2));
  Shape sb = strides_of(Shape(b.shape.begin(), b.shape.end() - 2));
  int64_t batches = numel(bs);
  for (int64_t i = 0; i < batches; ++i) {
    int64_t oa = 0, ob = 0, rem = i;
    for (int d = r - 3; d >= 0; --d) {   // unravel i over bs; size-1 dims do not advance
      int64_t idx = rem % bs[d];
      rem /= bs[d];
      if (a.shape[d] != 1) oa += idx * sa[d];
      if (b.shape[d] != 1) ob += idx * sb[d];
    }
    gemm<P>(M, N, K, {a.ptr() + oa * M * K, K, 1}, {b.ptr() + ob * K * N, N, 1}, {},
            out.ptr() + i * M * N, N);
  }
}

}  // namespace

template <class P>
void register_gemm(OpTable<P>& t) {
  t["linear"] = linear<P>;
  t["matmul"] = matmul<P>;
}

#define DIVSCOPE_INSTANTIATE(P)                                                             \
  template void gemm<P>(int64_t, int64_t, int64_t, MatView<P::T>, MatView<P::T>,           \
                        MatView<P::T>, P::T*, int64_t);                                      \
  template void register_gemm<P>(OpTable<P>&);
DIVSCOPE_REFERENCE_POLICIES(DIVSCOPE_INSTANTIATE)
#undef DIVSCOPE_INSTANTIATE

}  // namespace divscope
