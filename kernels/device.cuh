// CUDA error checking and RAII device buffers (from the pool), for kernels/*.cu only.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdio>
#include <string>

#include "host/errors.h"
#include "kernels/kernels.h"   // device_alloc, device_free

namespace divscope {

// Throws RuntimeFault with the file, line and the expression text.
#define CUDA_CHECK(expr)                                                                    \
  do {                                                                                      \
    cudaError_t divscope_err_ = (expr);                                                     \
    if (divscope_err_ != cudaSuccess)                                                       \
      throw ::divscope::RuntimeFault(std::string("CUDA error: ") +                          \
                                     cudaGetErrorString(divscope_err_) + " in " #expr " at " \
                                     __FILE__ ":" + std::to_string(__LINE__));              \
  } while (0)

// For destructors: prints instead of throwing.
#define CUDA_CHECK_PRINT(expr)                                                           \
  do {                                                                                   \
    cudaError_t divscope_err_ = (expr);                                                  \
    if (divscope_err_ != cudaSuccess)                                                    \
      std::fprintf(stderr, "divscope: CUDA error %s in %s at %s:%d\n",                  \
                   cudaGetErrorString(divscope_err_), #expr, __FILE__, __LINE__);        \
  } while (0)

// After every launch: names the kernel and the layer it ran for.
inline void check_launch(const char* kernel, const std::string& layer) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw RuntimeFault(std::string("CUDA error in kernel ") + kernel + " (layer '" + layer +
                       "'): " + cudaGetErrorString(err));
}

constexpr int ceil_div(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

// Device memory from the pool (device_alloc, kernels/device.cu): a CUB temporary or a kernel's
// scratch costs no cudaMalloc after the first batch. Out of memory throws RuntimeFault naming `what`.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n, const std::string& what = "buffer")
      : ptr_(static_cast<T*>(device_alloc(n * sizeof(T), what))), n_(n) {}
  ~DeviceBuffer() { device_free(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), n_(o.n_) { o.ptr_ = nullptr; o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      device_free(ptr_);
      ptr_ = o.ptr_; n_ = o.n_; o.ptr_ = nullptr; o.n_ = 0;
    }
    return *this;
  }
  T* get() const { return ptr_; }
  size_t size() const { return n_; }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

}  // namespace divscope
