// AVX2 + FMA and AVX-512F register-tile kernels of the GEMM core and their run-time dispatch
// (see gemm_kernels.h). Only these functions carry target("avx2,fma") / target("avx512f"); the
// rest of the host code stays baseline x86-64 and runs everywhere.
#include "reference/gemm_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <thread>

namespace divscope {
namespace {

std::atomic<bool> g_force_scalar{false};
std::atomic<bool> g_force_avx2{false};
std::atomic<int> g_max_threads{0};

bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

bool cpu_has_avx512f() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

}  // namespace

bool gemm_simd() { return cpu_has_avx2_fma() && !g_force_scalar.load(std::memory_order_relaxed); }
void gemm_force_scalar(bool on) { g_force_scalar.store(on); }
bool gemm_avx512() {
  return gemm_simd() && cpu_has_avx512f() && !g_force_avx2.load(std::memory_order_relaxed);
}
void gemm_force_avx2(bool on) { g_force_avx2.store(on); }

void gemm_set_max_threads(int n) { g_max_threads.store(n < 0 ? 0 : n); }
int gemm_max_threads() {
  int n = g_max_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  // Asked once: glibc answers by opening /sys/devices/system/cpu/online on every call, which
  // cost 15% of a whole analysis when it was asked per gemm call.
  static const int hw = std::max(1u, std::thread::hardware_concurrency());
  return hw;
}

namespace {

// One policy step on 4/8 lanes: fused (strict: fmaf per lane) or a product rounded, then a
// sum rounded (a * b + acc with -ffp-contract=off). On Zen the unfused step costs no
// throughput: the multiply issues on the FMA pipes, the add on the separate FADD pipes.
template <bool kFused>
__attribute__((target("avx2,fma"))) inline __m256d step(__m256d a, __m256d b, __m256d acc) {
  return kFused ? _mm256_fmadd_pd(a, b, acc) : _mm256_add_pd(_mm256_mul_pd(a, b), acc);
}
template <bool kFused>
__attribute__((target("avx2,fma"))) inline __m256 step(__m256 a, __m256 b, __m256 acc) {
  return kFused ? _mm256_fmadd_ps(a, b, acc) : _mm256_add_ps(_mm256_mul_ps(a, b), acc);
}

__attribute__((target("avx2,fma"))) inline __m256d load(const double* p) { return _mm256_loadu_pd(p); }
__attribute__((target("avx2,fma"))) inline __m256 load(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma"))) inline void store(double* p, __m256d v) { _mm256_storeu_pd(p, v); }
__attribute__((target("avx2,fma"))) inline void store(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
__attribute__((target("avx2,fma"))) inline __m256d broadcast(const double* p) {
  return _mm256_broadcast_sd(p);
}
__attribute__((target("avx2,fma"))) inline __m256 broadcast(const float* p) {
  return _mm256_broadcast_ss(p);
}

// MR x NR tile = MR rows x 2 vectors of W lanes: row r is a broadcast of ap[r], the columns
// are the two vectors of the B row, so every lane is one output.
template <bool kFused, class T, class V>
__attribute__((target("avx2,fma"))) inline void tile(int64_t kc, const T* ap, const T* bp, T* c,
                                                     int64_t ldc, bool first) {
  constexpr int kMR = static_cast<int>(GemmTile<T>::kMR), kW = 32 / sizeof(T);
  static_assert(kMR == 6 && GemmTile<T>::kNR == 2 * kW, "tile shape");
  V acc[kMR][2];
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) {
    acc[r][0] = first ? V{} : load(c + r * ldc);
    acc[r][1] = first ? V{} : load(c + r * ldc + kW);
  }
  for (int64_t k = 0; k < kc; ++k, ap += kMR, bp += 2 * kW) {
    V b0 = load(bp), b1 = load(bp + kW);
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) {
      V a = broadcast(ap + r);
      acc[r][0] = step<kFused>(a, b0, acc[r][0]);
      acc[r][1] = step<kFused>(a, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) {
    store(c + r * ldc, acc[r][0]);
    store(c + r * ldc + kW, acc[r][1]);
  }
}

// The AVX-512F tile: the same MR x NR tile and packed slivers, one zmm (NR lanes) per row, so
// every lane is still one output with the policy's step sequence (the same bits as AVX2 and
// scalar). 6 accumulators per k step: enough to cover the add latency on two add pipes.
template <bool kFused>
__attribute__((target("avx512f"))) inline __m512d step512(__m512d a, __m512d b, __m512d acc) {
  return kFused ? _mm512_fmadd_pd(a, b, acc) : _mm512_add_pd(_mm512_mul_pd(a, b), acc);
}
template <bool kFused>
__attribute__((target("avx512f"))) inline __m512 step512(__m512 a, __m512 b, __m512 acc) {
  return kFused ? _mm512_fmadd_ps(a, b, acc) : _mm512_add_ps(_mm512_mul_ps(a, b), acc);
}
__attribute__((target("avx512f"))) inline __m512d load512(const double* p) { return _mm512_loadu_pd(p); }
__attribute__((target("avx512f"))) inline __m512 load512(const float* p) { return _mm512_loadu_ps(p); }
__attribute__((target("avx512f"))) inline void store512(double* p, __m512d v) { _mm512_storeu_pd(p, v); }
__attribute__((target("avx512f"))) inline void store512(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
__attribute__((target("avx512f"))) inline __m512d broadcast512(const double* p) { return _mm512_set1_pd(*p); }
__attribute__((target("avx512f"))) inline __m512 broadcast512(const float* p) { return _mm512_set1_ps(*p); }

template <bool kFused, class T, class V>
__attribute__((target("avx512f"))) inline void tile512(int64_t kc, const T* ap, const T* bp, T* c,
                                                      int64_t ldc, bool first) {
  constexpr int kMR = static_cast<int>(GemmTile<T>::kMR);
  static_assert(kMR == 6 && GemmTile<T>::kNR * sizeof(T) == 64, "tile shape");
  V acc[kMR];
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) acc[r] = first ? V{} : load512(c + r * ldc);
  for (int64_t k = 0; k < kc; ++k, ap += kMR, bp += GemmTile<T>::kNR) {
    const V b = load512(bp);
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) acc[r] = step512<kFused>(broadcast512(ap + r), b, acc[r]);
  }
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) store512(c + r * ldc, acc[r]);
}

}  // namespace

__attribute__((target("avx512f"))) void gemm_tile_avx512(int64_t kc, const double* ap,
                                                        const double* bp, double* c, int64_t ldc,
                                                        bool first) {
  tile512<false, double, __m512d>(kc, ap, bp, c, ldc, first);
}
__attribute__((target("avx512f"))) void gemm_tile_avx512(int64_t kc, const float* ap,
                                                        const float* bp, float* c, int64_t ldc,
                                                        bool first) {
  tile512<false, float, __m512>(kc, ap, bp, c, ldc, first);
}
__attribute__((target("avx512f"))) void gemm_tile_avx512_fma(int64_t kc, const float* ap,
                                                            const float* bp, float* c,
                                                            int64_t ldc, bool first) {
  tile512<true, float, __m512>(kc, ap, bp, c, ldc, first);
}

__attribute__((target("avx2,fma"))) void gemm_tile_avx2(int64_t kc, const double* ap,
                                                        const double* bp, double* c,
                                                        int64_t ldc, bool first) {
  tile<false, double, __m256d>(kc, ap, bp, c, ldc, first);
}
__attribute__((target("avx2,fma"))) void gemm_tile_avx2(int64_t kc, const float* ap,
                                                        const float* bp, float* c, int64_t ldc,
                                                        bool first) {
  tile<false, float, __m256>(kc, ap, bp, c, ldc, first);
}
__attribute__((target("avx2,fma"))) void gemm_tile_avx2_fma(int64_t kc, const float* ap,
                                                            const float* bp, float* c,
                                                            int64_t ldc, bool first) {
  tile<true, float, __m256>(kc, ap, bp, c, ldc, first);
}

}  // namespace divscope
