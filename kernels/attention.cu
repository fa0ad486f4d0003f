// scaled_dot_product_attention (docs/ops.md) as the CPU reference's sequence
// (host/reference/attention.cpp), each step one of our kernels and each result stored in the
// mode's format, so every mode inherits the GEMM's and softmax's contracts (strict: bitwise):
//   s = q k^T                 gemm(), batched over heads, b_trans (B'[k][n] = k[n][k])
//   s = store(s * scale)      scale_mask_kernel; -inf above the diagonal when causal
//   p = softmax rows of s     softmax() along the last axis
//   y = p v                   gemm(), batched over heads
// Heads go in chunks so that the two score buffers stay under kScoreElems elements each.
#include <algorithm>
#include <cmath>

#include "host/strict_math.h"
#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

constexpr int kBlock = 256;
constexpr long long kMaxBlocks = 8192;          // grid-stride cap, see relu_gelu_add.cu
constexpr int64_t kScoreElems = int64_t(1) << 24;   // per score buffer: 64 MiB float, 128 MiB double

// s[h][i][j] = causal && j > i ? -inf : store(s * scale). strict: one s_mul (the CPU's float
// product under -ffp-contract=off); fp16/bf16 round the product to storage as P::store does.
template <class T>
__global__ void scale_mask_kernel(Mode m, T* s, int64_t n, int64_t Tq, int64_t Tk, T scale,
                                  bool causal) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = e % Tk, i = (e / Tk) % Tq;
    T v;
    if (causal && j > i)
      v = -T(INFINITY);
    else if (sizeof(T) == 8)
      v = s[e] * scale;
    else if (m == Mode::strict)
      v = T(s_mul(float(s[e]), float(scale)));
    else
      v = T(round_storage(m, float(s[e]) * float(scale)));
    s[e] = v;
  }
}

template <class T>
void run(Mode m, int64_t heads, int64_t Tq, int64_t Tk, int64_t D, int64_t Dv, bool causal,
         double scale, const void* q, const void* k, const void* v, void* y,
         const std::string& layer) {
  const int64_t per_head = Tq * Tk;
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(heads, kScoreElems / per_head));
  DeviceBuffer<T> scores(static_cast<size_t>(chunk * per_head), layer + " attention scores");
  DeviceBuffer<T> probs(static_cast<size_t>(chunk * per_head), layer + " attention weights");
  const T* qt = static_cast<const T*>(q);
  const T* kt = static_cast<const T*>(k);
  const T* vt = static_cast<const T*>(v);
  T* yt = static_cast<T*>(y);
  for (int64_t h0 = 0; h0 < heads; h0 += chunk) {
    const int64_t hc = std::min(chunk, heads - h0);
    GemmDesc qk;
    qk.batch = hc;
    qk.M = Tq;
    qk.N = Tk;
    qk.K = D;
    qk.lda = D;
    qk.ldb = D;
    qk.ldc = Tk;
    qk.stride_a = Tq * D;
    qk.stride_b = Tk * D;
    qk.stride_c = per_head;
    qk.b_trans = true;
    gemm(m, qk, qt + h0 * Tq * D, kt + h0 * Tk * D, nullptr, scores.get(), layer);

    const int64_t n = hc * per_head;
    const int blocks = static_cast<int>(std::min<long long>(ceil_div(n, kBlock), kMaxBlocks));
    scale_mask_kernel<T><<<blocks, kBlock>>>(m, scores.get(), n, Tq, Tk, static_cast<T>(scale),
                                             causal);
    check_launch("scale_mask_kernel", layer);

    softmax(m, hc * Tq, Tk, 1, false, scores.get(), probs.get(), layer);

    GemmDesc pv;
    pv.batch = hc;
    pv.M = Tq;
    pv.N = Dv;
    pv.K = Tk;
    pv.lda = Tk;
    pv.ldb = Dv;
    pv.ldc = Dv;
    pv.stride_a = per_head;
    pv.stride_b = Tk * Dv;
    pv.stride_c = Tq * Dv;
    gemm(m, pv, probs.get(), vt + h0 * Tk * Dv, nullptr, yt + h0 * Tq * Dv, layer);
  }
}

}  // namespace

void scaled_dot_product_attention(Mode mode, int64_t heads, int64_t Tq, int64_t Tk, int64_t D,
                                  int64_t Dv, bool causal, double scale, const void* q,
                                  const void* k, const void* v, void* y,
                                  const std::string& layer) {
  if (heads < 0 || Tq < 0 || Tk < 0 || D < 0 || Dv < 0)
    throw RuntimeFault("scaled_dot_product_attention: negative size in layer '" + layer + "'");
  if (heads == 0 || Tq == 0 || Dv == 0) return;
  if (Tk == 0)
    throw RuntimeFault("scaled_dot_product_attention: no keys (Tk = 0) in layer '" + layer + "'");
  if (mode == Mode::fp64)
    run<double>(mode, heads, Tq, Tk, D, Dv, causal, scale, q, k, v, y, layer);
  else
    run<float>(mode, heads, Tq, Tk, D, Dv, causal, scale, q, k, v, y, layer);
}

}  // namespace divscope
