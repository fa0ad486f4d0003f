// Device query (with the check that this build runs on the device, docs/cuda.md), memory and
// error checking: everything the rest of kernels/ builds on.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <mutex>

#include "host/backends/device_support.h"
#include "kernels/device.cuh"
#include "kernels/kernels.h"

#ifndef DIVSCOPE_CUDA_ARCHS
#define DIVSCOPE_CUDA_ARCHS "native"   // built outside CMake: left to the run-time probe
#endif

namespace divscope {

namespace {
constexpr int kFillBlock = 256;

template <class T>
__global__ void fill_nan_kernel(T* p, size_t n, T nan) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    p[i] = nan;
}

// Enough blocks to cover the H100's SMs several times; the grid-stride loop does the rest.
constexpr long long kFillMaxBlocks = 4096;

// Device 0 against this build (docs/cuda.md): first its compute capability against the built
// list, which names what is missing; then the driver itself, asked for a kernel's attributes --
// it loads (or JIT-compiles) the image, so "no kernel image", a PTX newer than the driver, or a
// device that refuses a context is found here rather than at the first layer.
std::string unsupported_reason(const cudaDeviceProp& prop) {
  const DeviceSupport s = device_support(prop.name, prop.major, prop.minor, DIVSCOPE_CUDA_ARCHS);
  if (!s.supported) return s.reason;
  cudaFuncAttributes attr{};
  const cudaError_t err = cudaFuncGetAttributes(&attr, fill_nan_kernel<float>);
  if (err == cudaSuccess) return "";
  cudaGetLastError();
  return "GPU '" + std::string(prop.name) + "' (compute capability " + std::to_string(prop.major) +
         "." + std::to_string(prop.minor) + ") cannot run this build's kernels (" +
         describe_cuda_archs(DIVSCOPE_CUDA_ARCHS) + "): " + cudaGetErrorString(err);
}
}  // namespace

DeviceInfo query_device() {
  DeviceInfo info;
  cudaRuntimeGetVersion(&info.runtime_version);
  cudaError_t err = cudaDriverGetVersion(&info.driver_version);
  if (err != cudaSuccess || info.driver_version == 0) {
    info.reason = "no CUDA driver found";
    cudaGetLastError();
    return info;
  }
  err = cudaGetDeviceCount(&info.device_count);
  if (err != cudaSuccess || info.device_count == 0) {
    info.reason = err != cudaSuccess ? cudaGetErrorString(err) : "no CUDA-capable device";
    cudaGetLastError();   // clear the sticky-free error so later queries start clean
    info.device_count = 0;
    return info;
  }
  cudaDeviceProp prop{};
  err = cudaGetDeviceProperties(&prop, 0);
  if (err != cudaSuccess) {
    info.reason = cudaGetErrorString(err);
    cudaGetLastError();
    return info;
  }
  for (int i = 0; i < info.device_count; ++i) {
    cudaDeviceProp pi{};
    if (cudaGetDeviceProperties(&pi, i) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    GpuInfo g;
    g.name = pi.name;
    g.cc_major = pi.major;
    g.cc_minor = pi.minor;
    g.multiprocessors = pi.multiProcessorCount;
    g.total_memory = pi.totalGlobalMem;
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrClockRate, i) == cudaSuccess) g.clock_mhz = v / 1000;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMemoryClockRate, i) == cudaSuccess) g.memory_clock_mhz = v / 1000;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrEccEnabled, i) == cudaSuccess) g.ecc = v ? 1 : 0;
    cudaGetLastError();   // an attribute a driver does not report is not an error for later calls
    g.mig = g.name.find("MIG") != std::string::npos;
    info.gpus.push_back(g);
  }
  info.name = prop.name;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.total_memory = prop.totalGlobalMem;
  info.multiprocessors = prop.multiProcessorCount;
  info.reason = unsupported_reason(prop);
  info.available = info.reason.empty();
  return info;
}

// ---- device memory -----------------------------------------------------------------------------
// One process-wide caching pool over cudaMalloc/cudaFree (host/backends/caching_pool.h,
// docs/cuda.md, Device memory): a batch's tensors, parameters and CUB temporaries come back from
// its cache, so after the first batch no launch calls cudaMalloc or cudaFree.
//
// Stream order: every kernel and copy of divscope runs on the legacy default stream, so a block
// released right after its last reader was launched is written only by work queued after that
// reader. cudaFree used to synchronise the device; nothing does now, and nothing needs it: every
// copy to the host is a synchronous cudaMemcpy into pageable memory, which waits for the work
// queued before it. (A kernel's fault now surfaces at the next synchronous call, not at a free.)
namespace {

thread_local cudaError_t t_malloc_error = cudaSuccess;   // why the pool's last cudaMalloc failed

// The margin left outside the pool: what the CUDA context still takes after the first
// allocation and cannot come from the pool -- modules loaded lazily at a kernel's first launch,
// the local memory (stacks) sized for the largest kernel, the runtime's own buffers. 256 MiB, or
// 5% of the device for large ones.
constexpr size_t kContextMargin = size_t(256) << 20;

CachingPool& pool() {
  // Never destroyed: at exit the CUDA runtime may be unloaded before static destructors run
  // (cudaFree would fail, cudaErrorCudartUnloading); the driver frees the context's memory.
  static CachingPool* const p = new CachingPool(
      [](size_t bytes) -> void* {
        void* q = nullptr;
        const cudaError_t err = cudaMalloc(&q, bytes);
        if (err == cudaSuccess) return q;
        t_malloc_error = err;
        cudaGetLastError();   // an allocation failure is not sticky; clear it for the next call
        return nullptr;
      },
      [](void* q) { CUDA_CHECK_PRINT(cudaFree(q)); });
  return *p;
}

// The pool's limit, set at the first allocation or the first look at the statistics: the
// device's free memory then, less the margin.
void set_limit_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
      cudaGetLastError();   // no device: cudaMalloc will say so
      return;
    }
    const size_t margin = std::max(kContextMargin, total_bytes / 20);
    pool().set_limit(static_cast<int64_t>(free_bytes > margin ? free_bytes - margin : 0));
  });
}

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

}  // namespace

void* device_alloc(size_t bytes, const std::string& what) {
  if (bytes == 0) return nullptr;
  set_limit_once();
  t_malloc_error = cudaSuccess;
  void* p = pool().allocate(bytes);
  if (p) return p;
  const CachingPool::Stats s = pool().stats();
  const std::string why = t_malloc_error != cudaSuccess
                              ? std::string(cudaGetErrorString(t_malloc_error))
                              : "the limit of " + mib(s.limit) + " (free device memory at first use, less " +
                                    "a margin for the CUDA context) is reached";
  throw RuntimeFault("out of device memory allocating " + std::to_string(bytes) + " bytes for " +
                     what + ": " + why + "; divscope holds " + mib(s.live) + " in live tensors and " +
                     mib(s.reserved - s.live) + " cached");
}

void device_free(void* p) noexcept {
  if (p) pool().release(p);
}

// The limit is set here too, so that a backend can check a batch fits before its first allocation.
CachingPool::Stats device_memory_stats() {
  set_limit_once();
  return pool().stats();
}
void device_memory_release_cached() { pool().release_cached(); }
void device_memory_reset_peak() { pool().reset_peak(); }

void copy_to_device(void* dst, const void* src, size_t bytes, const std::string& what) {
  if (bytes == 0) return;
  cudaError_t err = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
  if (err != cudaSuccess)
    throw RuntimeFault("CUDA error copying " + std::to_string(bytes) + " bytes to the device for " +
                       what + ": " + cudaGetErrorString(err));
}

void copy_to_host(void* dst, const void* src, size_t bytes, const std::string& what) {
  if (bytes == 0) return;
  cudaError_t err = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
  if (err != cudaSuccess)
    throw RuntimeFault("CUDA error copying " + std::to_string(bytes) + " bytes to the host for " +
                       what + ": " + cudaGetErrorString(err));
}

void copy_on_device(void* dst, const void* src, size_t bytes, const std::string& what) {
  if (bytes == 0) return;
  cudaError_t err = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
  if (err != cudaSuccess)
    throw RuntimeFault("CUDA error copying " + std::to_string(bytes) + " bytes on the device for " +
                       what + ": " + cudaGetErrorString(err));
}

void device_fill_nan(void* p, size_t elements, bool is_double) {
  if (elements == 0) return;
  const int blocks = static_cast<int>(std::min<long long>(ceil_div(elements, kFillBlock), kFillMaxBlocks));
  if (is_double)
    fill_nan_kernel<<<blocks, kFillBlock>>>(static_cast<double*>(p), elements, bits_f64(0x7ff8000000000000ull));
  else
    fill_nan_kernel<<<blocks, kFillBlock>>>(static_cast<float*>(p), elements, bits_f32(0x7fc00000u));
  check_launch("fill_nan_kernel", "poison");
}

void device_synchronize(const std::string& what) {
  cudaError_t err = cudaDeviceSynchronize();
  if (err != cudaSuccess)
    throw RuntimeFault("CUDA error while running " + what + ": " + cudaGetErrorString(err));
}

}  // namespace divscope
