// Device query and error checking (DESIGN §2): everything the rest of kernels/ builds on.
#include <cuda_runtime.h>

#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {

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
  info.available = true;
  info.name = prop.name;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.total_memory = prop.totalGlobalMem;
  info.multiprocessors = prop.multiProcessorCount;
  return info;
}

}  // namespace divscope
