// The tensor-core GEMM kernel (tf32, fp16, bf16 with mma.sync, float accumulation).
#pragma once
#include "kernels/gemm_tiles.cuh"

namespace divscope {
namespace gemm_detail {

// =============================================================================================
// Tensor-core kernel: tf32 (mma m16n8k8), fp16 and bf16 (mma m16n8k16), float accumulation.
// 128x128 block tile, 8 warps as 2 (m) x 4 (n), 64x32 per warp = 4x4 mma tiles. Operands are
// converted once, when a tile is written to shared memory (docs/ops.md, Precision modes: tf32 by cvt.rna, fp16/bf16
// by round-to-nearest-even, exact for inputs already in the format). A shared row holds 16 words
// of k (16 tf32 or 32 halves) plus 4 words of padding: the fragment reads (row g, word t) then hit
// 32 distinct banks. Ragged edges are zero-padded; zeros leave a float sum unchanged.
//
// Architectures (docs/cuda.md): each mma shape only where the PTX ISA has it -- ptxas 13.0 refuses
// m16n8k16 and every .tf32/.bf16 form (and cvt.rna.tf32) below sm_80; m16n8k8 .f16 exists from
// sm_75. So on sm_75 fp16 runs as two m16n8k8 per k16 step, and tf32/bf16 run the same kernel
// (same tiles, same operand rounding at packing) with a SIMT inner loop: every output
// acc = fma(a_k, b_k, acc) for k ascending in float, exact products (tf32/bf16 operands have at
// most 11 significant bits). The choice is made per compiled image by __CUDA_ARCH__, so whatever
// image the driver loads for a device (SASS of the nearest lower minor, or PTX JIT) holds only
// instructions that device has; no image holds a trap.
#if defined(__CUDA_ARCH__)
constexpr int kDeviceArch = __CUDA_ARCH__;
#else
constexpr int kDeviceArch = 0;   // host pass: kernel bodies are not compiled for the host
#endif

struct TcCfg {
  static constexpr int kBM = 128, kBN = 128, kThreads = 256, kWarpsN = 4;
  static constexpr int kWarpM = 64, kWarpN = 32, kMI = kWarpM / 16, kNI = kWarpN / 8;
  static constexpr int kRowWords = 16, kRowStride = kRowWords + 4;
};

struct OpTf32 {
  static constexpr int kBK = 16;  // elements of k per tile
  static constexpr bool kMma = kDeviceArch >= 800;
  __device__ static uint32_t cvt(float x) {
#if __CUDA_ARCH__ >= 800
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
#else
    return f32_bits(round_tf32(x));   // the same bits for every finite and infinite x
#endif
  }
  __device__ static void store4(uint32_t* row, int k, const Vec<float>& v) {
    *reinterpret_cast<uint4*>(row + k) =
        make_uint4(cvt(v.v[0]), cvt(v.v[1]), cvt(v.v[2]), cvt(v.v[3]));
  }
  __device__ static void store1(uint32_t* row, int k, float x) { row[k] = cvt(x); }
  __device__ static void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
  }
  // Element k of a packed shared row (the SIMT loop where there is no tf32 mma).
  __device__ static float unpack(const uint32_t* row, int k) { return bits_f32(row[k]); }
  __device__ static float finish(float x) { return x; }
};

template <bool kBf16>
struct Op16 {
  static constexpr int kBK = 32;
  static constexpr bool kMma = kDeviceArch >= (kBf16 ? 800 : 750);
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
#if __CUDA_ARCH__ >= 800
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
#else
    if constexpr (!kBf16) mma_k8x2(d, a, b);
#endif
  }
  // Turing's fp16: the k16 step as two m16n8k8 (PTX ISA fragment layouts: k8's {a0,a1},{b0} are
  // k16's first half, {a2,a3},{b1} its second). Only fp16 has this shape before sm_80.
  // (tests/gemm_fallback_kernels.cu runs it on newer GPUs too.)
  __device__ static void mma_k8x2(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    static_assert(!kBf16, "no bf16 m16n8k8 before sm_80, and no need for one after");
#if __CUDA_ARCH__ >= 750
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(b[0]));
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[2]), "r"(a[3]), "r"(b[1]));
#endif
  }
  __device__ static float unpack(const uint32_t* row, int k) {
    const uint16_t h = reinterpret_cast<const uint16_t*>(row)[k];
    if constexpr (kBf16) return __bfloat162float(__ushort_as_bfloat16(h));
    else return __half2float(__ushort_as_half(h));
  }
  // Output rounded to storage with the same bit arithmetic as the CPU emulation.
  __device__ static float finish(float x) { return kBf16 ? round_bf16(x) : round_fp16(x); }
};
using OpF16 = Op16<false>;
using OpBf16 = Op16<true>;

// Turing has 64 KB of shared memory per SM: one block of 40 KB fits, so asking ptxas for two
// there would only cost spills (the tf32 SIMT loop at 128 registers, CUDA 13.0).
template <class Op, int kMinBlocks, class AF, class BF, class BSrc, class Out>
__global__ void __launch_bounds__(TcCfg::kThreads, kDeviceArch >= 800 ? kMinBlocks : 1)
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
    if constexpr (Op::kMma) {
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
    } else {
      // No mma of this type here (sm_75 tf32/bf16): each thread computes the outputs its mma
      // fragments would hold, k ascending, one fma per k (exact product, one float rounding).
      // Reads: at one k the 8 row groups g hit rows 20 words apart, 8 distinct banks.
#pragma unroll 4
      for (int kk = 0; kk < BK; ++kk) {
        float av[C::kMI][2], bv[C::kNI][2];
#pragma unroll
        for (int i = 0; i < C::kMI; ++i) {
          av[i][0] = Op::unpack(As[buf][wm + i * 16 + g], kk);
          av[i][1] = Op::unpack(As[buf][wm + i * 16 + g + 8], kk);
        }
#pragma unroll
        for (int j = 0; j < C::kNI; ++j) {
          bv[j][0] = Op::unpack(Bs[buf][wn + j * 8 + 2 * t], kk);
          bv[j][1] = Op::unpack(Bs[buf][wn + j * 8 + 2 * t + 1], kk);
        }
#pragma unroll
        for (int i = 0; i < C::kMI; ++i)
#pragma unroll
          for (int j = 0; j < C::kNI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
              acc[i][j][e] = __fmaf_rn(av[i][e >> 1], bv[j][e & 1], acc[i][j][e]);
      }
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

}  // namespace gemm_detail
}  // namespace divscope
