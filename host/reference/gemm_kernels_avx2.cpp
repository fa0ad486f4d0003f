// AVX2 + FMA register-tile kernels of the GEMM core and their run-time dispatch (see
// gemm_kernels.h). Only these functions carry target("avx2,fma"); the rest of the host code
// stays baseline x86-64 and runs everywhere.
#include "reference/gemm_kernels.h"

#include <immintrin.h>

#include <atomic>
#include <thread>

namespace divscope {
namespace {

std::atomic<bool> g_force_scalar{false};
std::atomic<int> g_max_threads{0};

bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

}  // namespace

bool gemm_simd() { return cpu_has_avx2_fma() && !g_force_scalar.load(std::memory_order_relaxed); }
void gemm_force_scalar(bool on) { g_force_scalar.store(on); }

void gemm_set_max_threads(int n) { g_max_threads.store(n < 0 ? 0 : n); }
int gemm_max_threads() {
  int n = g_max_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// 6 x 8 doubles: rows r broadcast from ap, columns as two 4-lane vectors from bp.
__attribute__((target("avx2,fma"))) void gemm_tile_avx2(int64_t kc, const double* ap,
                                                        const double* bp, double* c,
                                                        int64_t ldc, bool first) {
  constexpr int kMR = 6;
  static_assert(GemmTile<double>::kMR == kMR && GemmTile<double>::kNR == 8, "tile shape");
  __m256d acc[kMR][2];
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) {
    acc[r][0] = first ? _mm256_setzero_pd() : _mm256_loadu_pd(c + r * ldc);
    acc[r][1] = first ? _mm256_setzero_pd() : _mm256_loadu_pd(c + r * ldc + 4);
  }
  for (int64_t k = 0; k < kc; ++k, ap += kMR, bp += 8) {
    __m256d b0 = _mm256_loadu_pd(bp), b1 = _mm256_loadu_pd(bp + 4);
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) {
      __m256d a = _mm256_broadcast_sd(ap + r);
      acc[r][0] = _mm256_fmadd_pd(a, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_pd(a, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) {
    _mm256_storeu_pd(c + r * ldc, acc[r][0]);
    _mm256_storeu_pd(c + r * ldc + 4, acc[r][1]);
  }
}

// 6 x 16 floats: the same shape with 8-lane vectors; one _mm256_fmadd_ps lane = one fmaf.
__attribute__((target("avx2,fma"))) void gemm_tile_avx2(int64_t kc, const float* ap,
                                                        const float* bp, float* c, int64_t ldc,
                                                        bool first) {
  constexpr int kMR = 6;
  static_assert(GemmTile<float>::kMR == kMR && GemmTile<float>::kNR == 16, "tile shape");
  __m256 acc[kMR][2];
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) {
    acc[r][0] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(c + r * ldc);
    acc[r][1] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(c + r * ldc + 8);
  }
  for (int64_t k = 0; k < kc; ++k, ap += kMR, bp += 16) {
    __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) {
      __m256 a = _mm256_broadcast_ss(ap + r);
      acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) {
    _mm256_storeu_ps(c + r * ldc, acc[r][0]);
    _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
  }
}

}  // namespace divscope
