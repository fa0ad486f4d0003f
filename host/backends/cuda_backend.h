// The CUDA backend's launch step (host/cuda_backend.cpp), shared by the backend and the kernel
// tests (which poison the output before it). Only meaningful in a CUDA build with a device; in a
// CPU-only build it throws RuntimeFault.
#pragma once
#include <vector>

#include "graph/model.h"
#include "precision.h"
#include "graph/tensor.h"

namespace divscope {

// Runs layer L in mode m (fp64: double tensors, the reference; else float tensors holding
// storage values) on DEVICE inputs of full shapes `in_shapes` into the DEVICE output of full
// shape {N} + L.out_shape. Uploads the layer's parameters (rounded to the mode's storage) on
// every call. Throws InputError for an op without a kernel or shapes the layer does not accept.
void cuda_launch_layer(Mode m, const Layer& L, const std::vector<Shape>& in_shapes,
                       const std::vector<const void*>& in_dev, void* out_dev);

}  // namespace divscope
