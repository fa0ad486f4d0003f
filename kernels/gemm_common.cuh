// The tile machinery shared by kernels/gemm.cu and kernels/conv.cu (docs/ops.md, Precision modes).
//
// One SIMT kernel (fp64; fp32 and strict) and one tensor-core kernel (tf32, fp16, bf16), both
// templated on where the B operand comes from (a strided matrix, k- or n-contiguous, or conv2d's
// implicit im2col gather) and on where C goes (a strided matrix, or NCHW conv output). A is always
// a k-contiguous strided matrix (GEMM A, conv weights [Co/g][C/g*kh*kw]).
//
// Order of each output's sum: the SIMT kernel gives every thread its own outputs and walks k
// strictly ascending from k = 0 with one fma per k (no split-K, no atomics): exactly strict_dot,
// so strict (and fp32, which shares the kernel) is bitwise equal to the host strict path. fp64
// walks the same order with the CPU reference's unfused step (d_madd: product rounded, then sum
// rounded) and bias add, so the device FP64 GEMM is bitwise equal to the CPU's. The last
// partial k tile is walked only up to K: a padded zero term would turn an accumulated -0 into +0.
#pragma once
#include <string>

#include "kernels/gemm_simt.cuh"
#include "kernels/gemm_tc.cuh"

namespace divscope {
namespace gemm_detail {

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

// The one mode switch of the GEMM-like ops (gemm, conv2d, conv_transpose2d):
// `run.template simt<T>(name)` for fp64 (double), fp32 and strict (float), and
// `run.template tensor_core<Op>(name)` for tf32, fp16 and bf16; kernel names "<op>_simt_f64",
// "<op>_tc_fp16", ... for the error messages.
template <class Run>
void dispatch_mode(Mode mode, const char* op, const std::string& layer, const Run& run) {
  const std::string n(op);
  switch (mode) {
    case Mode::fp64: return run.template simt<double>((n + "_simt_f64").c_str());
    case Mode::fp32: return run.template simt<float>((n + "_simt_f32").c_str());
    case Mode::strict: return run.template simt<float>((n + "_simt_strict").c_str());
    case Mode::tf32: return run.template tensor_core<OpTf32>((n + "_tc_tf32").c_str());
    case Mode::fp16: return run.template tensor_core<OpF16>((n + "_tc_fp16").c_str());
    case Mode::bf16: return run.template tensor_core<OpBf16>((n + "_tc_bf16").c_str());
  }
  throw RuntimeFault(n + ": unknown mode in layer '" + layer + "'");
}

}  // namespace gemm_detail
}  // namespace divscope
