// The sm_75 paths of gemm_tc.cuh on any GPU (gemm_fallback.h): the same kernel template with an
// operand type whose kMma is false (the SIMT loop) or whose mma is the two-m16n8k8 step.
#include "kernels/gemm_common.cuh"
#include "tests/gemm_fallback.h"

namespace divscope {
namespace {

using namespace gemm_detail;

struct OpTf32Simt : OpTf32 {
  static constexpr bool kMma = false;
};
struct OpBf16Simt : OpBf16 {
  static constexpr bool kMma = false;
};
struct OpF16K8x2 : OpF16 {
  __device__ static void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    OpF16::mma_k8x2(d, a, b);
  }
};

template <class Op>
void run(const GemmDesc& d, const void* A, const void* B, const void* bias, void* C,
         const std::string& layer) {
  const KContig<float> a{static_cast<const float*>(A), d.lda, d.stride_a, d.M};
  const MatrixOut<float> out{static_cast<float*>(C), static_cast<const float*>(bias), d.ldc,
                             d.stride_c};
  const float* bp = static_cast<const float*>(B);
  if (d.b_trans)
    launch_tc<Op, 1, KContigFetch>("gemm_fallback", d.batch, d.M, d.N, d.K, a,
                                   KContig<float>{bp, d.ldb, d.stride_b, d.N}, out, layer);
  else
    launch_tc<Op, 1, RowContigFetch>("gemm_fallback", d.batch, d.M, d.N, d.K, a,
                                     RowContig<float>{bp, d.ldb, d.stride_b, d.N}, out, layer);
}

}  // namespace

void gemm_fallback(GemmFallback path, const GemmDesc& d, const void* A, const void* B,
                   const void* bias, void* C, const std::string& layer) {
  switch (path) {
    case GemmFallback::tf32_simt: return run<OpTf32Simt>(d, A, B, bias, C, layer);
    case GemmFallback::bf16_simt: return run<OpBf16Simt>(d, A, B, bias, C, layer);
    case GemmFallback::fp16_k8x2: return run<OpF16K8x2>(d, A, B, bias, C, layer);
  }
}

}  // namespace divscope
