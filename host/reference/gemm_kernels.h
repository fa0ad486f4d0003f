// Register-tile micro-kernels of the CPU GEMM core (gemm.cpp), chosen at run time.
//
// A kernel continues an MR x NR tile of dot products over kc more k, k ascending:
//   c[r * ldc + j] = step(ap[k * MR + r], bp[k * NR + j], c[r * ldc + j])   k = 0, 1, ..., kc-1
// starting from 0 instead of c when `first`. ap / bp are the packed slivers of gemm.cpp.
// Each SIMD lane is a different output (the lanes run across j; a row r is a broadcast), so the
// vector code does, per output, exactly the scalar sequence of the policy's P::madd steps:
//   gemm_tile_avx2      a * b + acc, two roundings: Fp64Policy and fp32/tf32/fp16/bf16
//   gemm_tile_avx2_fma  fmaf(a, b, acc) per lane: StrictPolicy (docs/ops.md, Precision modes: strict formulas)
//   gemm_tile_avx512[_fma]  the same two steps on 512-bit vectors (one vector per tile row)
// The tile is parked in C between k blocks as the same float/double. So every policy's result
// is bitwise the same on the SIMD and the scalar path, on any CPU, at any blocking or thread
// count. (Fused fp64 steps would be ~1e-16 different and cost the same here: see the .cpp.)
#pragma once
#include <cstdint>

namespace divscope {

// Register tile per element type: 12 of the 16 ymm registers hold accumulators (6 rows x 2
// vectors), 2 hold the B row and 1 the broadcast A element.
template <class T>
struct GemmTile;
template <>
struct GemmTile<double> {
  static constexpr int64_t kMR = 6, kNR = 8;
};
template <>
struct GemmTile<float> {
  static constexpr int64_t kMR = 6, kNR = 16;
};

// AVX2 + FMA kernels (gemm_kernels_avx2.cpp); call only when gemm_simd() is true.
void gemm_tile_avx2(int64_t kc, const double* ap, const double* bp, double* c, int64_t ldc,
                    bool first);
void gemm_tile_avx2(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                    bool first);
void gemm_tile_avx2_fma(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                        bool first);

// AVX-512F kernels (same file): the same tiles and packing, one 512-bit vector per tile row;
// call only when gemm_avx512() is true. Bitwise the AVX2 and scalar kernels' results.
void gemm_tile_avx512(int64_t kc, const double* ap, const double* bp, double* c, int64_t ldc,
                      bool first);
void gemm_tile_avx512(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                      bool first);
void gemm_tile_avx512_fma(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                          bool first);

// True when the CPU has AVX2 and FMA and the scalar path is not forced.
bool gemm_simd();
// True when gemm_simd() and the CPU has AVX-512F and the AVX2 kernels are not forced.
bool gemm_avx512();
// Test hooks (process-wide; affect calls that start afterwards): force the scalar kernels;
// force the AVX2 kernels on a CPU with AVX-512F.
void gemm_force_scalar(bool on);
void gemm_force_avx2(bool on);

// Most threads one gemm call may use (each thread owns whole outputs, so the count never
// changes a result). 0 restores the default, std::thread::hardware_concurrency().
void gemm_set_max_threads(int n);
int gemm_max_threads();

}  // namespace divscope
