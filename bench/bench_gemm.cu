// GEMM and conv2d kernels (kernels/gemm.cu, kernels/conv.cu) against cuBLAS, per precision mode.
//
// For each case: validate our result against cuBLAS on the same inputs (normwise max error,
// max|ours - cublas| / max|cublas|), then time both with CUDA events after an L2 flush, median of
// kReps. Anchors: fp64 cublasDgemm; fp32 and strict cublasGemmEx CUBLAS_COMPUTE_32F (default math
// mode: no TF32); tf32 CUBLAS_COMPUTE_32F_FAST_TF32; fp16/bf16 16-bit inputs, float output,
// CUBLAS_COMPUTE_32F. Our 16-bit modes read fp16/bf16 values stored as float (kernels.h), i.e.
// twice cuBLAS's input bytes. conv2d's anchor is the cuBLAS GEMM on an explicit im2col matrix
// (the im2col itself not timed). Prints one markdown table; exit 1 if a validation fails, 0 with
// "no CUDA device: <reason>" on a machine without one.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/device.cuh"
#include "kernels/kernels.h"

using namespace divscope;

namespace {

constexpr int kReps = 7;
constexpr unsigned kSeed = 20261123;

#define CUBLAS_CHECK(expr)                                                                  \
  do {                                                                                      \
    cublasStatus_t st_ = (expr);                                                            \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                       \
      throw RuntimeFault(std::string("cuBLAS error ") + cublasGetStatusString(st_) + " in " \
                         #expr " at " __FILE__ ":" + std::to_string(__LINE__));             \
  } while (0)

struct Ctx {
  cublasHandle_t blas = nullptr;
  DeviceBuffer<char> flush;  // twice the L2, overwritten before every timed launch
  cudaEvent_t start = nullptr, stop = nullptr;
};

struct Row {
  std::string op, mode, shape;
  double flops, ms, ref_ms, err, tol;
};

double time_ms(Ctx& ctx, const std::function<void()>& f) {
  f();
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> t;
  for (int r = 0; r < kReps; ++r) {
    CUDA_CHECK(cudaMemsetAsync(ctx.flush.get(), r, ctx.flush.size()));
    CUDA_CHECK(cudaEventRecord(ctx.start));
    f();
    CUDA_CHECK(cudaEventRecord(ctx.stop));
    CUDA_CHECK(cudaEventSynchronize(ctx.stop));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, ctx.start, ctx.stop));
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Inputs in [-1, 1], already representable in the mode's operand format for fp16/bf16 (what the
// tool feeds these modes); tf32 inputs stay float: both we and cuBLAS round them.
std::vector<float> random_inputs(size_t n, Mode mode, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = round_storage(mode, dist(rng));
  return v;
}

template <class T>
DeviceBuffer<T> upload(const std::vector<T>& h) {
  DeviceBuffer<T> d(h.size(), "bench input");
  CUDA_CHECK(cudaMemcpy(d.get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

template <class T>
std::vector<double> download(const T* d, size_t n) {
  std::vector<T> h(n);
  CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return std::vector<double>(h.begin(), h.end());
}

double normwise_err(const std::vector<double>& ours, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(ours[i] - ref[i]);
    num = std::isnan(d) ? INFINITY : std::max(num, d);
    den = std::max(den, std::fabs(ref[i]));
  }
  return den > 0 ? num / den : num;
}

double tolerance(Mode m) {
  switch (m) {
    case Mode::fp64: return 1e-12;
    case Mode::fp32: case Mode::strict: return 1e-5;
    case Mode::tf32: return 1e-3;
    case Mode::fp16: return 1e-2;
    case Mode::bf16: return 4e-2;
  }
  return 0;
}

// The cuBLAS anchor for row-major C[M][N] = A[M][K] * B[K][N] (column-major: C^T = B^T A^T),
// holding its own device copies of the operands in the types cuBLAS takes for `mode`.
struct Anchor {
  Ctx* ctx;
  Mode mode;
  int64_t M, N, K;
  DeviceBuffer<double> a64, b64, c64;
  DeviceBuffer<float> a32, b32, c32;
  DeviceBuffer<uint16_t> a16, b16;

  Anchor(Ctx& c, Mode m, int64_t M_, int64_t N_, int64_t K_, const std::vector<float>& a,
         const std::vector<float>& b)
      : ctx(&c), mode(m), M(M_), N(N_), K(K_) {
    if (m == Mode::fp64) {
      a64 = upload(std::vector<double>(a.begin(), a.end()));
      b64 = upload(std::vector<double>(b.begin(), b.end()));
      c64 = DeviceBuffer<double>(M * N, "anchor C");
    } else if (m == Mode::fp16 || m == Mode::bf16) {
      std::vector<uint16_t> ah(a.size()), bh(b.size());
      auto bits = [m](float x) {
        return m == Mode::fp16 ? float_to_half_bits(x) : float_to_bf16_bits(x);
      };
      std::transform(a.begin(), a.end(), ah.begin(), bits);
      std::transform(b.begin(), b.end(), bh.begin(), bits);
      a16 = upload(ah);
      b16 = upload(bh);
      c32 = DeviceBuffer<float>(M * N, "anchor C");
    } else {
      a32 = upload(a);
      b32 = upload(b);
      c32 = DeviceBuffer<float>(M * N, "anchor C");
    }
  }
  void run() {
    const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
    if (mode == Mode::fp64) {
      const double one = 1, zero = 0;
      CUBLAS_CHECK(cublasDgemm(ctx->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, b64.get(), n,
                               a64.get(), k, &zero, c64.get(), n));
      return;
    }
    const float one = 1, zero = 0;
    cudaDataType_t in = CUDA_R_32F;
    cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
    const void *pa = a32.get(), *pb = b32.get();
    if (mode == Mode::tf32) compute = CUBLAS_COMPUTE_32F_FAST_TF32;
    if (mode == Mode::fp16 || mode == Mode::bf16) {
      in = mode == Mode::fp16 ? CUDA_R_16F : CUDA_R_16BF;
      pa = a16.get();
      pb = b16.get();
    }
    CUBLAS_CHECK(cublasGemmEx(ctx->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, pb, in, n, pa, in,
                              k, &zero, c32.get(), CUDA_R_32F, n, compute, CUBLAS_GEMM_DEFAULT));
  }
  std::vector<double> result() {
    return mode == Mode::fp64 ? download(c64.get(), M * N) : download(c32.get(), M * N);
  }
};

Row gemm_case(Ctx& ctx, Mode mode, int64_t n) {
  const int64_t M = n, N = n, K = n;
  const std::vector<float> a = random_inputs(M * K, mode, kSeed);
  const std::vector<float> b = random_inputs(K * N, mode, kSeed + 1);
  Anchor anchor(ctx, mode, M, N, K, a, b);
  GemmDesc d;
  d.M = M; d.N = N; d.K = K; d.lda = K; d.ldb = N; d.ldc = N;
  // Our operands: the anchor's fp64 copies, or float copies of the inputs.
  DeviceBuffer<float> a32, b32, c32;
  DeviceBuffer<double> c64;
  const void *pa, *pb;
  void* pc;
  if (mode == Mode::fp64) {
    pa = anchor.a64.get(); pb = anchor.b64.get();
    c64 = DeviceBuffer<double>(M * N, "C");
    pc = c64.get();
  } else {
    a32 = upload(a); b32 = upload(b);
    c32 = DeviceBuffer<float>(M * N, "C");
    pa = a32.get(); pb = b32.get(); pc = c32.get();
  }
  auto ours = [&] { gemm(mode, d, pa, pb, nullptr, pc, "bench_gemm"); };
  ours();
  anchor.run();
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<double> got =
      mode == Mode::fp64 ? download(c64.get(), M * N) : download(c32.get(), M * N);
  Row r{"gemm", mode_name(mode), std::to_string(n) + "^3", 2.0 * M * N * K, 0, 0,
        normwise_err(got, anchor.result()), tolerance(mode)};
  r.ms = time_ms(ctx, ours);
  r.ref_ms = time_ms(ctx, [&] { anchor.run(); });
  return r;
}

// conv2d, groups 1: our implicit GEMM vs cuBLAS on W[Co][CK] * col[CK][N*OH*OW].
Row conv_case(Ctx& ctx, Mode mode, const Conv2dDesc& d) {
  const int64_t ck = d.C * d.kh * d.kw, ohw = d.OH * d.OW, P = d.N * ohw;
  const std::vector<float> x = random_inputs(d.N * d.C * d.H * d.W, mode, kSeed + 2);
  const std::vector<float> w = random_inputs(d.Co * ck, mode, kSeed + 3);
  std::vector<float> col(ck * P, 0.0f);
  for (int64_t c = 0; c < d.C; ++c)
    for (int64_t r = 0; r < d.kh; ++r)
      for (int64_t s = 0; s < d.kw; ++s) {
        float* row = col.data() + ((c * d.kh + r) * d.kw + s) * P;
        for (int64_t n = 0; n < d.N; ++n)
          for (int64_t oy = 0; oy < d.OH; ++oy)
            for (int64_t ox = 0; ox < d.OW; ++ox) {
              const int64_t iy = oy * d.stride_h - d.pad_h + r * d.dil_h;
              const int64_t ix = ox * d.stride_w - d.pad_w + s * d.dil_w;
              if (iy >= 0 && iy < d.H && ix >= 0 && ix < d.W)
                row[n * ohw + oy * d.OW + ox] = x[((n * d.C + c) * d.H + iy) * d.W + ix];
            }
      }
  Anchor anchor(ctx, mode, d.Co, P, ck, w, col);
  col.clear();
  col.shrink_to_fit();
  DeviceBuffer<float> x32, w32, y32;
  DeviceBuffer<double> x64, w64, y64;
  const void *px, *pw;
  void* py;
  if (mode == Mode::fp64) {
    x64 = upload(std::vector<double>(x.begin(), x.end()));
    w64 = upload(std::vector<double>(w.begin(), w.end()));
    y64 = DeviceBuffer<double>(d.Co * P, "y");
    px = x64.get(); pw = w64.get(); py = y64.get();
  } else {
    x32 = upload(x); w32 = upload(w);
    y32 = DeviceBuffer<float>(d.Co * P, "y");
    px = x32.get(); pw = w32.get(); py = y32.get();
  }
  auto ours = [&] { conv2d(mode, d, px, pw, nullptr, py, "bench_conv"); };
  ours();
  anchor.run();
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<double> y =
      mode == Mode::fp64 ? download(y64.get(), d.Co * P) : download(y32.get(), d.Co * P);
  std::vector<double> got(y.size());  // NCHW -> [Co][N*OH*OW], the anchor's layout
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t co = 0; co < d.Co; ++co)
      std::memcpy(&got[co * P + n * ohw], &y[(n * d.Co + co) * ohw], ohw * sizeof(double));
  const std::string shape = "N" + std::to_string(d.N) + " C" + std::to_string(d.C) + " " +
                            std::to_string(d.H) + "x" + std::to_string(d.W) + " Co" +
                            std::to_string(d.Co) + " " + std::to_string(d.kh) + "x" +
                            std::to_string(d.kw) + " p" + std::to_string(d.pad_h);
  Row r{"conv2d", mode_name(mode), shape, 2.0 * d.Co * P * ck, 0, 0,
        normwise_err(got, anchor.result()), tolerance(mode)};
  r.ms = time_ms(ctx, ours);
  r.ref_ms = time_ms(ctx, [&] { anchor.run(); });
  return r;
}

Conv2dDesc conv_shape(int64_t N, int64_t C, int64_t HW, int64_t Co) {
  Conv2dDesc d;
  d.N = N; d.C = C; d.H = d.W = HW; d.Co = Co; d.kh = d.kw = 3; d.pad_h = d.pad_w = 1;
  d.OH = d.OW = HW;
  return d;
}

}  // namespace

int main() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    std::printf("no CUDA device: %s\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "none found");
    return 0;
  }
  try {
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    int runtime = 0, driver = 0;
    CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
    CUDA_CHECK(cudaDriverGetVersion(&driver));
    Ctx ctx;
    ctx.flush = DeviceBuffer<char>(2 * static_cast<size_t>(prop.l2CacheSize), "L2 flush");
    CUBLAS_CHECK(cublasCreate(&ctx.blas));
    CUDA_CHECK(cudaEventCreate(&ctx.start));
    CUDA_CHECK(cudaEventCreate(&ctx.stop));

    const Mode modes[] = {Mode::fp64, Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict};
    std::vector<Row> rows;
    for (int64_t n : {1024, 4096})
      for (Mode m : modes) rows.push_back(gemm_case(ctx, m, n));
    for (const Conv2dDesc& d : {conv_shape(8, 64, 32, 64), conv_shape(32, 256, 28, 256)})
      for (Mode m : modes) rows.push_back(conv_case(ctx, m, d));

    std::printf("device: %s (sm_%d%d, %d SMs), runtime %d, driver %d; "
                "median of %d after L2 flush\n\n",
                prop.name, prop.major, prop.minor, prop.multiProcessorCount, runtime, driver,
                kReps);
    std::printf("| op | mode | shape | ours ms | ours TFLOP/s | cuBLAS TFLOP/s | ours/cuBLAS "
                "| max err vs cuBLAS | ok |\n");
    std::printf("|---|---|---|---:|---:|---:|---:|---:|---|\n");
    bool all_ok = true;
    for (const Row& r : rows) {
      const bool ok = r.err <= r.tol;
      all_ok = all_ok && ok;
      const double ours = r.flops / (r.ms * 1e9), ref = r.flops / (r.ref_ms * 1e9);
      std::printf("| %s | %s | %s | %.3f | %.2f | %.2f | %.2f | %.2e | %s |\n", r.op.c_str(),
                  r.mode.c_str(), r.shape.c_str(), r.ms, ours, ref, ours / ref, r.err,
                  ok ? "yes" : "NO");
    }
    std::printf("\nmax err = max|ours - cuBLAS| / max|cuBLAS| (tolerance per mode: fp64 1e-12, "
                "fp32/strict 1e-5, tf32 1e-3, fp16 1e-2, bf16 4e-2)\n");
    cudaEventDestroy(ctx.start);
    cudaEventDestroy(ctx.stop);
    cublasDestroy(ctx.blas);
    return all_ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gemm: %s\n", e.what());
    return 3;
  }
}
