// GEMM (kernels/kernels.h): C[b] = A[b] * B'[b] (+ bias[n]) in every precision mode (docs/ops.md, Precision modes).
//
// fp64: SIMT double, 64x64x8 tiles. fp32 and strict: one SIMT float kernel, 128x128x8 tiles,
// in which each output is acc = fma(a_k, b_k, acc) for k = 0..K-1 from 0 and then one bias
// add -- the strict formula (host/strict_math.h strict_dot, strict_bias), so strict is bitwise
// equal to the CPU; fp32 ("order free") simply gets the same deterministic order.
// tf32/fp16/bf16: mma.sync tensor cores (gemm_common.cuh) where the architecture has the shape,
// else the same kernel's SIMT loop (gemm_tc.cuh, docs/cuda.md). Per mode one kernel for each B
// layout (b_trans or not): the layout decides which way a tile is transposed into shared memory.
#include <type_traits>

#include "kernels/gemm_common.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

using namespace gemm_detail;

// Blocks per SM asked of ptxas (-Xptxas -v, sm_90, CUDA 13.0): two fit the SIMT kernels
// (116-128 registers) and tf32 (126-128) without spills; fp16/bf16 hold twice the prefetch
// registers (32-element k tiles) and spill at 128, so they get one block (184-190 registers).
constexpr int kSimtMinBlocks = 2;
template <class Op>
constexpr int kTcMinBlocks = std::is_same_v<Op, OpTf32> ? 2 : 1;

struct GemmRun {
  const GemmDesc& d;
  const void *A, *B, *bias;
  void* C;
  const std::string& layer;

  template <class T>
  void simt(const char* name) const {
    const KContig<T> a{static_cast<const T*>(A), d.lda, d.stride_a, d.M};
    const MatrixOut<T> out{static_cast<T*>(C), static_cast<const T*>(bias), d.ldc, d.stride_c};
    const T* bp = static_cast<const T*>(B);
    if (d.b_trans)   // B is [N][K]: element (n, k) at n * ldb + k
      launch_simt<T, kSimtMinBlocks, KContigFetch>(name, d.batch, d.M, d.N, d.K, a,
                                                   KContig<T>{bp, d.ldb, d.stride_b, d.N}, out,
                                                   layer);
    else             // B is [K][N]: element (k, n) at k * ldb + n
      launch_simt<T, kSimtMinBlocks, RowContigFetch>(name, d.batch, d.M, d.N, d.K, a,
                                                     RowContig<T>{bp, d.ldb, d.stride_b, d.N},
                                                     out, layer);
  }

  template <class Op>
  void tensor_core(const char* name) const {
    const KContig<float> a{static_cast<const float*>(A), d.lda, d.stride_a, d.M};
    const MatrixOut<float> out{static_cast<float*>(C), static_cast<const float*>(bias), d.ldc,
                               d.stride_c};
    const float* bp = static_cast<const float*>(B);
    if (d.b_trans)
      launch_tc<Op, kTcMinBlocks<Op>, KContigFetch>(name, d.batch, d.M, d.N, d.K, a,
                                                    KContig<float>{bp, d.ldb, d.stride_b, d.N},
                                                    out, layer);
    else
      launch_tc<Op, kTcMinBlocks<Op>, RowContigFetch>(name, d.batch, d.M, d.N, d.K, a,
                                                      RowContig<float>{bp, d.ldb, d.stride_b, d.N},
                                                      out, layer);
  }
};

}  // namespace

void gemm(Mode mode, const GemmDesc& d, const void* A, const void* B, const void* bias, void* C,
          const std::string& layer) {
  if (d.batch < 0 || d.M < 0 || d.N < 0 || d.K < 0)
    throw RuntimeFault("gemm: negative size in layer '" + layer + "'");
  dispatch_mode(mode, "gemm", layer, GemmRun{d, A, B, bias, C, layer});
}

}  // namespace divscope
