// The statistics pass (kernels/compare.cu) in GB/s beside a device-to-device cudaMemcpy measured
// in the same run (STYLE 11). Bytes counted for the pass: both tensors once (4 B candidate +
// 8 B reference per element), although it reads them in three passes (README, What divscope run computes, compare.cu);
// for the copy: bytes read + bytes written. Each timing: L2 flushed (a 256 MiB write, > 50 MiB of
// H100 L2), then CUDA events around the whole call -- compare_device includes its temp-storage
// allocations and the small copies back, which is what a caller pays.
// Output: markdown table rows on stdout (bench/gpu_check.sh collects them).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

constexpr int kBlock = 256;
constexpr int kReps = 10;
constexpr size_t kFlushBytes = 256u << 20;

__global__ void fill(float* c, double* r, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double v = ((i * 2654435761ull) % 20011) / 10005.5 - 1.0;   // cheap, deterministic
    r[i] = v;
    c[i] = static_cast<float>(v * (1 + 1e-4 * ((i % 13) - 6)));
  }
}

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
  }
  ~Timer() {
    CUDA_CHECK_PRINT(cudaEventDestroy(a));
    CUDA_CHECK_PRINT(cudaEventDestroy(b));
  }
  template <class F>
  double median_ms(F f, void* flush) {
    std::vector<float> ms;
    for (int i = 0; i < kReps; ++i) {
      CUDA_CHECK(cudaMemset(flush, i, kFlushBytes));
      CUDA_CHECK(cudaEventRecord(a));
      f();
      CUDA_CHECK(cudaEventRecord(b));
      CUDA_CHECK(cudaEventSynchronize(b));
      float t = 0;
      CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
      ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  }
};

int run() {
  const DeviceInfo dev = query_device();
  if (!dev.available) {
    std::fprintf(stderr, "bench_compare: no CUDA device: %s\n", dev.reason.c_str());
    return 3;
  }
  DeviceBuffer<unsigned char> flush(kFlushBytes, "L2 flush");
  Timer timer;
  std::printf("| elements | shape | compare_device ms | GB/s | per-sample ms | GB/s | D2D memcpy ms | GB/s (r+w) |\n");
  std::printf("|---:|---|---:|---:|---:|---:|---:|---:|\n");
  const int64_t sizes[] = {1 << 20, 1 << 24, 1 << 26};
  for (int64_t n : sizes) {
    DeviceBuffer<float> c(n, "candidate");
    DeviceBuffer<double> r(n, "reference");
    DeviceBuffer<unsigned char> copy(n * 12, "copy target");
    fill<<<4096, kBlock>>>(c.get(), r.get(), n);
    check_launch("fill", "bench");
    const Shape shape{64, n / 64};
    const CompareOptions opt{Mode::fp32, 1e-5, 1e-4, -1};
    compare_device(Mode::fp32, c.get(), r.get(), shape, opt, "warmup");
    const double t_all = timer.median_ms([&] { compare_device(Mode::fp32, c.get(), r.get(), shape, opt, "bench"); }, flush.get());
    const double t_per = timer.median_ms([&] { compare_device_per_sample(Mode::fp32, c.get(), r.get(), shape, opt, "bench"); }, flush.get());
    const double t_cpy = timer.median_ms([&] {
      CUDA_CHECK(cudaMemcpyAsync(copy.get(), c.get(), n * 4, cudaMemcpyDeviceToDevice));
      CUDA_CHECK(cudaMemcpyAsync(copy.get() + n * 4, r.get(), n * 8, cudaMemcpyDeviceToDevice));
    }, flush.get());
    const double bytes = 12.0 * n;
    std::printf("| %lld | [64, %lld] | %.3f | %.1f | %.3f | %.1f | %.3f | %.1f |\n",
                static_cast<long long>(n), static_cast<long long>(n / 64), t_all,
                bytes / t_all / 1e6, t_per, bytes / t_per / 1e6, t_cpy, 2 * bytes / t_cpy / 1e6);
  }
  return 0;
}

}  // namespace
}  // namespace divscope

int main() {
  try {
    return divscope::run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_compare: %s\n", e.what());
    return 3;
  }
}
