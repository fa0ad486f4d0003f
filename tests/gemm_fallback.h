// The sm_75 paths of the tensor-core GEMM kernel, instantiated to run on any GPU
// (tests/gemm_fallback_kernels.cu): a GPU of any generation checks what only a Turing GPU runs.
#pragma once
#include <string>

#include "kernels/kernels.h"

namespace divscope {

enum class GemmFallback {
  tf32_simt,   // tf32 operands, the SIMT loop (no tf32 mma before sm_80)
  bf16_simt,   // bf16 operands, the SIMT loop (no bf16 mma before sm_80)
  fp16_k8x2,   // fp16 as two mma.m16n8k8 per k16 step (Turing's only fp16 shape)
};
// As divscope::gemm (kernels.h) for the mode of `path`, but always on that path.
void gemm_fallback(GemmFallback path, const GemmDesc& d, const void* A, const void* B,
                   const void* bias, void* C, const std::string& layer);

}  // namespace divscope
