// GEMM core (see gemm.h) and the ops that are one GEMM: linear, matmul.
#include "reference/gemm.h"

#include <algorithm>
#include <vector>

#include "reference/internal.h"

namespace divscope {
namespace {

// Blocking (Goto-style). A KC x NC panel of B is packed once per (k block, n block) and an
// MC x KC block of A once per (k block, n block, m block); the micro-kernel keeps an MR x NR
// tile of accumulators in registers for KC steps and parks it in the accumulator buffer
// between k blocks. Sizes fit this machine's 48 KiB L1 / 1 MiB L2 with SSE2 registers
// (4 x 4 doubles = 8 xmm accumulators); they change speed only, never results.
constexpr int64_t kMR = 4, kNR = 4;
constexpr int64_t kKC = 256, kMC = 128, kNC = 1024;

// Packs rows [m0, m0 + mc) x k [k0, k0 + kc) of A as MR-row slivers: sliver s holds
// a(m0 + s*MR + r, k0 + k) at [s][k][r]; rows past M are zero (their results are discarded).
template <class P>
void pack_a(const MatView<typename P::T>& a, int64_t M, int64_t m0, int64_t mc, int64_t k0,
            int64_t kc, typename P::T* dst) {
  for (int64_t s = 0; s < mc; s += kMR)
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t r = 0; r < kMR; ++r) {
        int64_t m = m0 + s + r;
        *dst++ = m < M ? P::operand(a(m, k0 + k)) : typename P::T(0);
      }
}

// Packs k [k0, k0 + kc) x columns [n0, n0 + nc) of B as NR-column slivers, zero past N.
template <class P>
void pack_b(const MatView<typename P::T>& b, int64_t N, int64_t k0, int64_t kc, int64_t n0,
            int64_t nc, typename P::T* dst) {
  for (int64_t s = 0; s < nc; s += kNR)
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t j = 0; j < kNR; ++j) {
        int64_t n = n0 + s + j;
        *dst++ = n < N ? P::operand(b(k0 + k, n)) : typename P::T(0);
      }
}

// acc[r][j] (an MR x NR tile at `acc`, row stride ldacc, `rows` x `cols` valid) continues
// its sums over kc more k: acc = madd(a_k, b_k, acc) for k ascending.
template <class P>
void micro_kernel(int64_t kc, const typename P::T* ap, const typename P::T* bp,
                  typename P::Acc* acc, int64_t ldacc, int64_t rows, int64_t cols) {
  using Acc = typename P::Acc;
  Acc t[kMR][kNR] = {};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) t[r][j] = acc[r * ldacc + j];
  for (int64_t k = 0; k < kc; ++k, ap += kMR, bp += kNR)
    for (int64_t r = 0; r < kMR; ++r)
      for (int64_t j = 0; j < kNR; ++j) t[r][j] = P::madd(ap[r], bp[j], t[r][j]);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) acc[r * ldacc + j] = t[r][j];
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

}  // namespace

template <class P>
void gemm(int64_t M, int64_t N, int64_t K, MatView<typename P::T> a, MatView<typename P::T> b,
          MatView<typename P::T> bias, typename P::T* c, int64_t ldc) {
  using T = typename P::T;
  using Acc = typename P::Acc;
  if (M <= 0 || N <= 0) return;
  std::vector<Acc> acc(static_cast<size_t>(M * N), Acc(0));   // one accumulator per output
  std::vector<T> ap(static_cast<size_t>(round_up(std::min(M, kMC), kMR) * kKC));
  std::vector<T> bp(static_cast<size_t>(round_up(std::min(N, kNC), kNR) * kKC));
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    int64_t kc = std::min(kKC, K - k0);
    for (int64_t n0 = 0; n0 < N; n0 += kNC) {
      int64_t nc = std::min(kNC, N - n0);
      pack_b<P>(b, N, k0, kc, n0, round_up(nc, kNR), bp.data());
      for (int64_t m0 = 0; m0 < M; m0 += kMC) {
        int64_t mc = std::min(kMC, M - m0);
        pack_a<P>(a, M, m0, round_up(mc, kMR), k0, kc, ap.data());
        for (int64_t j = 0; j < nc; j += kNR)
          for (int64_t r = 0; r < mc; r += kMR)
            micro_kernel<P>(kc, ap.data() + r * kc, bp.data() + j * kc,
                            acc.data() + (m0 + r) * N + n0 + j, N, std::min(kMR, mc - r),
                            std::min(kNR, nc - j));
      }
    }
  }
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      Acc v = acc[m * N + n];
      if (bias.p) v = P::add(v, Acc(bias(m, n)));
      c[m * ldc + n] = P::store(v);
    }
}

namespace {

// linear: y[..., o] = sum_i x[..., i] * W[o, i] + b[o]   (y = x W^T + b over all leading dims)
template <class P>
void linear(const Layer& L, const InputsOf<P>& in, TensorOf<P>& out) {
  using T = typename P::T;
  const TensorOf<P>& x = *in[0];
  const Tensor& w = *L.param("weight");
  int64_t K = w.shape[1], O = w.shape[0], M = x.size() / K;
  std::vector<T> wt = param_of<P>(L, "weight"), bias = param_of<P>(L, "bias");
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
