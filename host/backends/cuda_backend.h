// The CUDA backend's launch step (host/backends/cuda_launch.cpp), shared by the backend
// (host/backends/cuda_backend.cpp) and the kernel tests (which poison the output before it). Only
// meaningful in a CUDA build with a device; in a CPU-only build it throws RuntimeFault.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "graph/model.h"
#include "precision.h"
#include "graph/tensor.h"

namespace divscope {

// Device copies of layers' parameters, each in a mode's storage (FP64 -> float -> round_storage,
// as the CPU's param_of; double for fp64), uploaded at first use and kept until clear(). The CUDA
// backend holds one from begin_analysis to end_analysis, so a model's parameters cross the bus
// once per analysis and storage format instead of at every layer call (docs/cuda.md, Device
// memory). fp32, tf32 and strict share one copy: round_storage leaves a float as it is in all
// three (tf32 rounds GEMM operands inside the kernel, not in storage).
class CudaParamCache {
 public:
  // L's parameter `key` on the device for mode m; an empty pointer when L has none.
  std::shared_ptr<void> get(Mode m, const Layer& L, const char* key);
  void clear();

 private:
  std::mutex mu_;   // the analysis drives a device backend from one thread; cheap insurance
  std::map<std::pair<const Tensor*, Mode>, std::shared_ptr<void>> params_;
};

// Runs layer L in mode m (fp64: double tensors, the reference; else float tensors holding
// storage values) on DEVICE inputs of full shapes `in_shapes` into the DEVICE output of full
// shape {N} + L.out_shape. Parameters come from `params` when given; without it (the kernel
// tests) they are uploaded, rounded to the mode's storage, on every call and freed after it.
// Throws InputError for an op without a kernel or shapes the layer does not accept.
void cuda_launch_layer(Mode m, const Layer& L, const std::vector<Shape>& in_shapes,
                       const std::vector<const void*>& in_dev, void* out_dev,
                       CudaParamCache* params = nullptr);

}  // namespace divscope
