// The tile machinery shared by kernels/gemm.cu and kernels/conv.cu (DESIGN §5).
//
// One SIMT kernel (fp64; fp32 and strict) and one tensor-core kernel (tf32, fp16, bf16), both
// templated on where the B operand comes from (a strided matrix, k- or n-contiguous, or conv2d's
// implicit im2col gather) and on where C goes (a strided matrix, or NCHW conv output). A is always
// a k-contiguous strided matrix (GEMM A, conv weights [Co/g][C/g*kh*kw]).
//
// Order of each output's sum: the SIMT kernel gives every thread its own outputs and walks k
// strictly ascending from k = 0 with one fma per k (no split-K, no atomics): exactly strict_dot,
// so strict (and fp32, which shares the kernel) is bitwise equal to the host strict path. The last
// partial k tile is walked only up to K: a padded zero term would turn an accumulated -0 into +0.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "host/precision.h"
#include "host/strict_math.h"
#include "kernels/device.cuh"

namespace divscope {
namespace gemm_detail {

// ---- 16-byte vectors --------------------------------------------------------------------------
template <class T>
constexpr int kVec = 16 / static_cast<int>(sizeof(T));

template <class T>
struct alignas(16) Vec {
  T v[kVec<T>];
};

__device__ inline bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// ---- operand sources and the per-thread fetchers that read their tiles ----------------------
// A fetcher reads this thread's share of a ROWS x BK tile (ROWS along m or n, BK along k) as
// kChunks vectors of V consecutive elements along the source's contiguous dimension; everything
// outside the matrix reads as zero. row_of/k_of give the tile coordinates of chunk i's first
// element; kKContig says along which dimension the V elements run.

// A strided matrix whose element (row, k) is p[z * batch_stride + row * ld + k].
template <class T>
struct KContig {
  const T* p;
  int64_t ld, batch_stride, rows;
};

template <class T, int ROWS, int BK, int THREADS>
struct KContigFetch {
  static constexpr bool kKContig = true;
  static constexpr int V = kVec<T>, kPerRow = BK / V, kRowStep = THREADS / kPerRow;
  static constexpr int kChunks = ROWS * BK / (V * THREADS);
  static_assert(BK % V == 0 && THREADS % kPerRow == 0 && kChunks >= 1 &&
                ROWS * BK == kChunks * V * THREADS, "tile does not split evenly over threads");

  const T* p;   // element (first row of this thread, k = kof)
  int64_t ld;
  int64_t nrows;  // valid rows from this thread's first row on (may be <= 0)
  int kof;

  __device__ static int row_of(int tid, int i) { return tid / kPerRow + i * kRowStep; }
  __device__ static int k_of(int tid, int) { return (tid % kPerRow) * V; }

  __device__ void init(const KContig<T>& s, int64_t z, int64_t row0, int tid) {
    kof = k_of(tid, 0);
    ld = s.ld;
    nrows = s.rows - row0 - row_of(tid, 0);
    p = s.p + z * s.batch_stride + (row0 + row_of(tid, 0)) * s.ld + kof;
  }
  __device__ void fetch(int64_t k0, int64_t K, Vec<T> (&r)[kChunks]) const {
    const int64_t k = k0 + kof;
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const bool ok = static_cast<int64_t>(i) * kRowStep < nrows;
      if (ok) {
        const T* q = p + static_cast<int64_t>(i) * kRowStep * ld + k0;
        if (k + V <= K && aligned16(q)) {
          r[i] = *reinterpret_cast<const Vec<T>*>(q);
          continue;
        }
#pragma unroll
        for (int j = 0; j < V; ++j) r[i].v[j] = k + j < K ? q[j] : T(0);
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) r[i].v[j] = T(0);
      }
    }
  }
};

// Chunk layout of sources contiguous along the row (m or n) dimension: each thread owns V fixed
// consecutive rows of the tile for the whole k loop (so a gather decodes them once) and kChunks
// k values per tile. A warp covers 4 row groups x 8 k: 64 contiguous bytes per k row in global
// memory, and the transposing scalar stores of the tensor-core kernel hit at most 2 lanes per
// bank (a warp along 32 row groups at one k would put 16 lanes on one bank, row stride 20 words).
template <class T, int ROWS, int BK, int THREADS>
struct RowContigMap {
  static constexpr bool kKContig = false;
  static constexpr int V = kVec<T>, kPerK = ROWS / V, kKStep = THREADS / kPerK;
  static constexpr int kChunks = ROWS * BK / (V * THREADS);
  static_assert(ROWS % V == 0 && THREADS % kPerK == 0 && kChunks >= 1 &&
                ROWS * BK == kChunks * V * THREADS, "tile does not split evenly over threads");
  __device__ static int row_of(int tid, int) { return (tid / kKStep) * V; }
  __device__ static int k_of(int tid, int i) { return tid % kKStep + i * kKStep; }
};

// A strided matrix whose element (k, row) is p[z * batch_stride + k * ld + row].
template <class T>
struct RowContig {
  const T* p;
  int64_t ld, batch_stride, rows;
};

template <class T, int ROWS, int BK, int THREADS>
struct RowContigFetch : RowContigMap<T, ROWS, BK, THREADS> {
  using Map = RowContigMap<T, ROWS, BK, THREADS>;
  using Map::kChunks;
  using Map::V;
  const T* p;   // element (k = 0, this thread's first row)
  int64_t ld;
  int64_t nrows;
  int kfirst;

  __device__ void init(const RowContig<T>& s, int64_t z, int64_t row0, int tid) {
    ld = s.ld;
    nrows = s.rows - row0 - Map::row_of(tid, 0);
    kfirst = Map::k_of(tid, 0);
    p = s.p + z * s.batch_stride + row0 + Map::row_of(tid, 0);
  }
  __device__ void fetch(int64_t k0, int64_t K, Vec<T> (&r)[kChunks]) const {
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const int64_t k = k0 + kfirst + i * Map::kKStep;
      if (k < K && nrows > 0) {
        const T* q = p + k * ld;
        if (nrows >= V && aligned16(q)) {
          r[i] = *reinterpret_cast<const Vec<T>*>(q);
          continue;
        }
#pragma unroll
        for (int j = 0; j < V; ++j) r[i].v[j] = j < nrows ? q[j] : T(0);
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) r[i].v[j] = T(0);
      }
    }
  }
};

// ---- where C goes: a strided matrix C[z * batch_stride + m * ldc + n], bias[n] --------------
template <class T>
struct MatrixOut {
  T* c;
  const T* bias;
  int64_t ldc, batch_stride;
  __device__ bool has_bias() const { return bias != nullptr; }
  __device__ T bias_at(int64_t, int64_t, int64_t n) const { return bias[n]; }
  __device__ void store(int64_t z, int64_t m, int64_t n, T v) const {
    c[z * batch_stride + m * ldc + n] = v;
  }
};

// ---- arithmetic ------------------------------------------------------------------------------
// The strict formulas (host/strict_math.h) for float; the same IEEE operations for double.
__device__ inline float madd(float a, float b, float acc) { return s_fma(a, b, acc); }
__device__ inline double madd(double a, double b, double acc) { return __fma_rn(a, b, acc); }
__device__ inline float add_bias(float acc, float b) { return strict_bias(acc, b); }
__device__ inline double add_bias(double acc, double b) { return __dadd_rn(acc, b); }

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

// =============================================================================================
// Tensor-core kernel: tf32 (mma m16n8k8), fp16 and bf16 (mma m16n8k16), float accumulation.
// 128x128 block tile, 8 warps as 2 (m) x 4 (n), 64x32 per warp = 4x4 mma tiles. Operands are
// converted once, when a tile is written to shared memory (DESIGN §5: tf32 by cvt.rna, fp16/bf16
// by round-to-nearest-even, exact for inputs already in the format). A shared row holds 16 words
// of k (16 tf32 or 32 halves) plus 4 words of padding: the fragment reads (row g, word t) then hit
// 32 distinct banks. Ragged edges are zero-padded; zeros leave a float sum unchanged.
struct TcCfg {
  static constexpr int kBM = 128, kBN = 128, kThreads = 256, kWarpsN = 4;
  static constexpr int kWarpM = 64, kWarpN = 32, kMI = kWarpM / 16, kNI = kWarpN / 8;
  static constexpr int kRowWords = 16, kRowStride = kRowWords + 4;
};

struct OpTf32 {
  static constexpr int kBK = 16;  // elements of k per tile
  __device__ static uint32_t cvt(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
  }
  __device__ static void store4(uint32_t* row, int k, const Vec<float>& v) {
    *reinterpret_cast<uint4*>(row + k) =
        make_uint4(cvt(v.v[0]), cvt(v.v[1]), cvt(v.v[2]), cvt(v.v[3]));
  }
  __device__ static void store1(uint32_t* row, int k, float x) { row[k] = cvt(x); }
  __device__ static void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  __device__ static float finish(float x) { return x; }
};

template <bool kBf16>
struct Op16 {
  static constexpr int kBK = 32;
  __device__ static uint16_t cvt(float x) {
    if constexpr (kBf16) return __bfloat16_as_ushort(__float2bfloat16_rn(x));
    else return __half_as_ushort(__float2half_rn(x));
  }
  __device__ static void store4(uint32_t* row, int k, const Vec<float>& v) {
    const uint32_t lo = cvt(v.v[0]) | (static_cast<uint32_t>(cvt(v.v[1])) << 16);
    const uint32_t hi = cvt(v.v[2]) | (static_cast<uint32_t>(cvt(v.v[3])) << 16);
    *reinterpret_cast<uint2*>(row + k / 2) = make_uint2(lo, hi);
  }
  __device__ static void store1(uint32_t* row, int k, float x) {
    reinterpret_cast<uint16_t*>(row)[k] = cvt(x);
  }
  __device__ static void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    if constexpr (kBf16) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
          "{%8,%9}, {%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
          "{%8,%9}, {%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
  }
  // Output rounded to storage with the same bit arithmetic as the CPU emulation.
  __device__ static float finish(float x) { return kBf16 ? round_bf16(x) : round_fp16(x); }
};
using OpF16 = Op16<false>;
using OpBf16 = Op16<true>;

template <class Op, int kMinBlocks, class AF, class BF, class BSrc, class Out>
__global__ void __launch_bounds__(TcCfg::kThreads, kMinBlocks)
    tc_gemm_kernel(int64_t M, int64_t N, int64_t K, int tiles_n, int64_t z0, KContig<float> a,
                   BSrc b, Out out) {
  using C = TcCfg;
  constexpr int BM = C::kBM, BN = C::kBN, BK = Op::kBK, RS = C::kRowStride;
  // Shared layout [row][k] (k packed in words): the mma fragments read along k.
  __shared__ alignas(16) uint32_t As[2][BM][RS];
  __shared__ alignas(16) uint32_t Bs[2][BN][RS];

  const int tid = threadIdx.x;
  const int64_t z = z0 + blockIdx.z;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x / tiles_n) * BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x % tiles_n) * BN;

  AF af;
  af.init(a, z, m0, tid);
  BF bf;
  bf.init(b, z, n0, tid);
  Vec<float> ar[AF::kChunks], br[BF::kChunks];

  auto stash = [&](int buf) {
#pragma unroll
    for (int i = 0; i < AF::kChunks; ++i)
      Op::store4(As[buf][AF::row_of(tid, i)], AF::k_of(tid, i), ar[i]);
#pragma unroll
    for (int i = 0; i < BF::kChunks; ++i) {
      const int r = BF::row_of(tid, i), k = BF::k_of(tid, i);
      if constexpr (BF::kKContig) {
        Op::store4(Bs[buf][r], k, br[i]);
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) Op::store1(Bs[buf][r + j], k, br[i].v[j]);
      }
    }
  };

  const int lane = tid % 32, warp = tid / 32;
  const int g = lane / 4, t = lane % 4;
  const int wm = (warp / C::kWarpsN) * C::kWarpM, wn = (warp % C::kWarpsN) * C::kWarpN;
  float acc[C::kMI][C::kNI][4];
#pragma unroll
  for (int i = 0; i < C::kMI; ++i)
#pragma unroll
    for (int j = 0; j < C::kNI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  af.fetch(0, K, ar);
  bf.fetch(0, K, br);
  stash(0);
  __syncthreads();
  int buf = 0;
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    const bool more = k0 + BK < K;
    if (more) {
      af.fetch(k0 + BK, K, ar);
      bf.fetch(k0 + BK, K, br);
    }
    // Two mma k-steps per tile, 8 words of k each (8 tf32 or 16 halves): in words, the tf32
    // and 16-bit fragment layouts coincide (PTX ISA, mma.m16n8k8 .tf32 / m16n8k16 .f16).
#pragma unroll
    for (int ks = 0; ks < C::kRowWords; ks += 8) {
      uint32_t af_[C::kMI][4], bf_[C::kNI][2];
#pragma unroll
      for (int i = 0; i < C::kMI; ++i) {
        const uint32_t* r0 = As[buf][wm + i * 16 + g];
        const uint32_t* r1 = As[buf][wm + i * 16 + g + 8];
        af_[i][0] = r0[ks + t];
        af_[i][1] = r1[ks + t];
        af_[i][2] = r0[ks + t + 4];
        af_[i][3] = r1[ks + t + 4];
      }
#pragma unroll
      for (int j = 0; j < C::kNI; ++j) {
        const uint32_t* r = Bs[buf][wn + j * 8 + g];
        bf_[j][0] = r[ks + t];
        bf_[j][1] = r[ks + t + 4];
      }
#pragma unroll
      for (int i = 0; i < C::kMI; ++i)
#pragma unroll
        for (int j = 0; j < C::kNI; ++j) Op::mma(acc[i][j], af_[i], bf_[j]);
    }
    if (more) stash(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }

  const bool bias = out.has_bias();
#pragma unroll
  for (int i = 0; i < C::kMI; ++i)
#pragma unroll
    for (int j = 0; j < C::kNI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t m = m0 + wm + i * 16 + g + (e >= 2 ? 8 : 0);
        const int64_t n = n0 + wn + j * 8 + 2 * t + (e & 1);
        if (m >= M || n >= N) continue;
        float v = acc[i][j][e];
        if (bias) v = s_add(v, out.bias_at(z, m, n));
        out.store(z, m, n, Op::finish(v));
      }
}

// ---- launchers -------------------------------------------------------------------------------
// The grid's x runs over output tiles (n fastest), z over batch entries; batches beyond the
// grid's z limit go in several launches.
constexpr int64_t kMaxGridZ = 65535;

inline int tile_count(int64_t M, int64_t N, int bm, int bn, int64_t* tiles_n,
                      const std::string& layer) {
  *tiles_n = (N + bn - 1) / bn;
  const int64_t tiles = ((M + bm - 1) / bm) * *tiles_n;
  if (tiles > 0x7fffffff)
    throw RuntimeFault("GEMM too large for one grid (" + std::to_string(tiles) +
                       " tiles) in layer '" + layer + "'");
  return static_cast<int>(tiles);
}

// kMinBlocks: see the kernels; the values in use are measured with -Xptxas -v to avoid spills.
template <class T, int kMinBlocks, template <class, int, int, int> class BFetch, class BSrc,
          class Out>
void launch_simt(const char* name, int64_t batch, int64_t M, int64_t N, int64_t K,
                 const KContig<T>& a, const BSrc& b, const Out& out, const std::string& layer) {
  using C = SimtCfg<T>;
  using AF = KContigFetch<T, C::kBM, C::kBK, C::kThreads>;
  using BF = BFetch<T, C::kBN, C::kBK, C::kThreads>;
  if (batch <= 0 || M <= 0 || N <= 0) return;
  int64_t tiles_n = 0;
  const int tiles = tile_count(M, N, C::kBM, C::kBN, &tiles_n, layer);
  for (int64_t z0 = 0; z0 < batch; z0 += kMaxGridZ) {
    const int64_t nz = batch - z0 < kMaxGridZ ? batch - z0 : kMaxGridZ;
    const dim3 grid(tiles, 1, static_cast<unsigned>(nz));
    simt_gemm_kernel<T, kMinBlocks, AF, BF, BSrc, Out>
        <<<grid, C::kThreads>>>(M, N, K, static_cast<int>(tiles_n), z0, a, b, out);
    check_launch(name, layer);
  }
}

template <class Op, int kMinBlocks, template <class, int, int, int> class BFetch, class BSrc,
          class Out>
void launch_tc(const char* name, int64_t batch, int64_t M, int64_t N, int64_t K,
               const KContig<float>& a, const BSrc& b, const Out& out, const std::string& layer) {
  using C = TcCfg;
  using AF = KContigFetch<float, C::kBM, Op::kBK, C::kThreads>;
  using BF = BFetch<float, C::kBN, Op::kBK, C::kThreads>;
  if (batch <= 0 || M <= 0 || N <= 0) return;
  int64_t tiles_n = 0;
  const int tiles = tile_count(M, N, C::kBM, C::kBN, &tiles_n, layer);
  for (int64_t z0 = 0; z0 < batch; z0 += kMaxGridZ) {
    const int64_t nz = batch - z0 < kMaxGridZ ? batch - z0 : kMaxGridZ;
    const dim3 grid(tiles, 1, static_cast<unsigned>(nz));
    tc_gemm_kernel<Op, kMinBlocks, AF, BF, BSrc, Out>
        <<<grid, C::kThreads>>>(M, N, K, static_cast<int>(tiles_n), z0, a, b, out);
    check_launch(name, layer);
  }
}

}  // namespace gemm_detail
}  // namespace divscope
