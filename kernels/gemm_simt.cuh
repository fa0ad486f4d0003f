// The SIMT GEMM kernel (fp64; fp32 and strict): see gemm_common.cuh for the order of each sum.
#pragma once
#include "kernels/gemm_tiles.cuh"

namespace divscope {
namespace gemm_detail {

// =============================================================================================
// SIMT kernel: fp64, fp32 and strict.
// fp32: 128x128x8 block tile, 256 threads, 8x8 outputs per thread split in two 4x4 quadrants
// (rows ty*4.. and 64+ty*4.., same for columns) so that the shared-memory reads are 16-byte
// vectors without bank conflicts. fp64: 64x64x8, 4x4 per thread (two 2x2 quadrants).
// kMinBlocks (blocks per SM asked of ptxas) is the launcher's: with 2 the GEMM kernels fit in
// 128 registers without spills (-Xptxas -v); the conv gather needs more and gets 1.
template <class T>
struct SimtCfg;
template <>
struct SimtCfg<float> {
  static constexpr int kBM = 128, kBN = 128, kBK = 8, kTM = 8, kTN = 8, kThreads = 256;
};
template <>
struct SimtCfg<double> {
  static constexpr int kBM = 64, kBN = 64, kBK = 8, kTM = 4, kTN = 4, kThreads = 256;
};

template <class T, int kMinBlocks, class AF, class BF, class BSrc, class Out>
__global__ void __launch_bounds__(SimtCfg<T>::kThreads, kMinBlocks)
    simt_gemm_kernel(int64_t M, int64_t N, int64_t K, int tiles_n, int64_t z0, KContig<T> a,
                     BSrc b, Out out) {
  using C = SimtCfg<T>;
  constexpr int BM = C::kBM, BN = C::kBN, BK = C::kBK, V = kVec<T>;
  constexpr int HM = C::kTM / 2, HN = C::kTN / 2;  // quadrant size == one vector
  static_assert(HM == V && HN == V, "quadrants are read as one 16-byte vector");
  constexpr int kThreadsN = BN / C::kTN;
  static_assert((BM / C::kTM) * kThreadsN == C::kThreads, "thread grid");

  __shared__ Vec<T> As[2][BK][(BM + V) / V];  // [k][m], one vector of padding per row
  __shared__ Vec<T> Bs[2][BK][(BN + V) / V];  // [k][n]

  const int tid = threadIdx.x;
  const int64_t z = z0 + blockIdx.z;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x / tiles_n) * BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x % tiles_n) * BN;

  AF af;
  af.init(a, z, m0, tid);
  BF bf;
  bf.init(b, z, n0, tid);
  Vec<T> ar[AF::kChunks], br[BF::kChunks];

  // Shared layout [k][row]: row-contiguous chunks are one vector store, k-contiguous ones scatter.
  auto stash = [&](int buf) {
#pragma unroll
    for (int i = 0; i < AF::kChunks; ++i) {
      const int r = AF::row_of(tid, i), k = AF::k_of(tid, i);
#pragma unroll
      for (int j = 0; j < V; ++j) reinterpret_cast<T*>(As[buf][k + j])[r] = ar[i].v[j];
    }
#pragma unroll
    for (int i = 0; i < BF::kChunks; ++i) {
      const int r = BF::row_of(tid, i), k = BF::k_of(tid, i);
      if constexpr (BF::kKContig) {
#pragma unroll
        for (int j = 0; j < V; ++j) reinterpret_cast<T*>(Bs[buf][k + j])[r] = br[i].v[j];
      } else {
        Bs[buf][k][r / V] = br[i];
      }
    }
  };

  const int ty = tid / kThreadsN, tx = tid % kThreadsN;
  T acc[C::kTM][C::kTN];
#pragma unroll
  for (int i = 0; i < C::kTM; ++i)
#pragma unroll
    for (int j = 0; j < C::kTN; ++j) acc[i][j] = T(0);

  auto step = [&](int buf, int kk) {
    const Vec<T> a0 = As[buf][kk][ty], a1 = As[buf][kk][BM / 2 / V + ty];
    const Vec<T> b0 = Bs[buf][kk][tx], b1 = Bs[buf][kk][BN / 2 / V + tx];
#pragma unroll
    for (int i = 0; i < C::kTM; ++i) {
      const T av = i < HM ? a0.v[i % HM] : a1.v[i % HM];
#pragma unroll
      for (int j = 0; j < C::kTN; ++j) {
        const T bv = j < HN ? b0.v[j % HN] : b1.v[j % HN];
        acc[i][j] = madd(av, bv, acc[i][j]);
      }
    }
  };

  af.fetch(0, K, ar);
  bf.fetch(0, K, br);
  stash(0);
  __syncthreads();
  int buf = 0;
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    const bool more = k0 + BK < K;
    if (more) {  // next tile into registers while this one is multiplied
      af.fetch(k0 + BK, K, ar);
      bf.fetch(k0 + BK, K, br);
    }
    if (k0 + BK <= K) {
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) step(buf, kk);
    } else {
      const int kend = static_cast<int>(K - k0);  // stop at K: never add a padded term
#pragma unroll 1
      for (int kk = 0; kk < kend; ++kk) step(buf, kk);
    }
    if (more) stash(buf ^ 1);  // the other buffer was last read before the previous barrier
    __syncthreads();
    buf ^= 1;
  }

  const bool bias = out.has_bias();
#pragma unroll
  for (int i = 0; i < C::kTM; ++i) {
    const int64_t m = m0 + (i < HM ? 0 : BM / 2) + ty * HM + i % HM;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < C::kTN; ++j) {
      const int64_t n = n0 + (j < HN ? 0 : BN / 2) + tx * HN + j % HN;
      if (n >= N) continue;
      T v = acc[i][j];
      if (bias) v = add_bias(v, out.bias_at(z, m, n));
      out.store(z, m, n, v);
    }
  }
}

}  // namespace gemm_detail
}  // namespace divscope
