// The element-wise steps between layers that keep a batch on the device (host/backends/
// cuda_backend.cpp, docs/cuda.md, Device memory): a value cast to a mode's storage, the probe's
// perturbation, and the count of elements whose bits differ. The first two are the host's own
// steps (host/analysis/analysis.cpp to_storage, the Backend's perturbed) bit for bit, NaNs
// included: the CPU statistics and dumps of a device run must not depend on where it ran.
#include <cub/device/device_reduce.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <algorithm>
#include <cstdint>

#include "host/reference/probe.h"
#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 8192;   // grid-stride cap, see relu_gelu_add.cu

int grid_for(int64_t n) { return static_cast<int>(std::min<int64_t>((n + kBlock - 1) / kBlock, kMaxBlocks)); }

// double -> float as the host's static_cast does it on x86-64 (cvtsd2ss) and AArch64 (fcvt):
// round to nearest, subnormals kept; a NaN keeps its sign and the top 23 bits of its payload,
// quieted. The GPU's cvt.rn.f32.f64 is the same for numbers but need not keep a NaN's payload.
__device__ float narrow(double x) {
  if (isnan(x)) {
    const uint64_t u = f64_bits(x);
    return bits_f32(static_cast<uint32_t>(u >> 32 & 0x80000000u) | 0x7fc00000u |
                    static_cast<uint32_t>(u >> 29 & 0x003fffffu));
  }
  return static_cast<float>(x);
}
__device__ float narrow(float x) { return x; }

template <class X>
__global__ void to_storage_kernel(Mode m, bool round, const X* __restrict__ x, float* __restrict__ y,
                                  int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = narrow(x[i]);
    y[i] = round ? round_storage(m, v) : v;
  }
}

// A NaN element stays itself, quieted (what the host's multiply gives for a NaN operand; the
// GPU's would be its canonical NaN). --fmad=false keeps probe_factor's multiply and add apart,
// as -ffp-contract=off does on the host.
__global__ void perturb_kernel(const double* __restrict__ x, double* __restrict__ y, int64_t n,
                               int64_t batch, int64_t value) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const double v = x[k];
    y[k] = isnan(v) ? bits_f64(f64_bits(v) | 0x0008000000000000ull) : v * probe_factor(batch, value, k);
  }
}

struct BitsDiffer {
  const uint32_t* a;
  const uint32_t* b;
  __host__ __device__ int64_t operator()(int64_t i) const { return a[i] != b[i] ? 1 : 0; }
};

}  // namespace

void to_storage_device(Mode m, bool round, const void* x, bool x_is_double, float* y, int64_t n,
                       const std::string& layer) {
  if (n <= 0) return;
  if (x_is_double)
    to_storage_kernel<<<grid_for(n), kBlock>>>(m, round, static_cast<const double*>(x), y, n);
  else
    to_storage_kernel<<<grid_for(n), kBlock>>>(m, round, static_cast<const float*>(x), y, n);
  check_launch("to_storage_kernel", layer);
}

void perturb_device(const double* x, double* y, int64_t n, int64_t batch, int64_t value,
                    const std::string& layer) {
  if (n <= 0) return;
  perturb_kernel<<<grid_for(n), kBlock>>>(x, y, n, batch, value);
  check_launch("perturb_kernel", layer);
}

// One CUB sum of 0/1 per element (two-phase call; the temporaries come from the pool).
int64_t count_bit_differences_device(const float* a, const float* b, int64_t n,
                                     const std::string& layer) {
  if (n <= 0) return 0;
  const auto differs = thrust::make_transform_iterator(
      thrust::counting_iterator<int64_t>(0),
      BitsDiffer{reinterpret_cast<const uint32_t*>(a), reinterpret_cast<const uint32_t*>(b)});
  DeviceBuffer<int64_t> sum(1, layer + " bit differences");
  size_t bytes = 0;
  CUDA_CHECK(cub::DeviceReduce::Sum(nullptr, bytes, differs, sum.get(), n));
  DeviceBuffer<unsigned char> temp(std::max<size_t>(bytes, 1), layer + " bit differences temp storage");
  CUDA_CHECK(cub::DeviceReduce::Sum(temp.get(), bytes, differs, sum.get(), n));
  check_launch("count_bit_differences", layer);
  int64_t count = 0;
  copy_to_host(&count, sum.get(), sizeof count, layer + " bit differences");
  return count;
}

}  // namespace divscope
