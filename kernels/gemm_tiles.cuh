// The tiles of the GEMM kernels (gemm_common.cuh): 16-byte vectors, the operand sources and
// the per-thread fetchers that read their tiles, where C goes, and the shared arithmetic.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "host/fp64_order.h"
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
// float: the strict formulas (host/strict_math.h), a fused step. double: the CPU FP64
// reference's unfused step and bias add (host/fp64_order.h d_madd, d_add), so that with k
// ascending from 0 -- the SIMT kernel's order -- the device FP64 GEMM equals the CPU's bit for bit.
__device__ inline float madd(float a, float b, float acc) { return s_fma(a, b, acc); }
__device__ inline double madd(double a, double b, double acc) { return d_madd(a, b, acc); }
__device__ inline float add_bias(float acc, float b) { return strict_bias(acc, b); }
__device__ inline double add_bias(double acc, double b) { return d_add(acc, b); }

}  // namespace gemm_detail
}  // namespace divscope
