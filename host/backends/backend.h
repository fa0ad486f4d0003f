// Backend interface (README, Building): where the layers run. The CPU backend emulates every mode;
// the CUDA backend runs our kernels.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "analysis/compare.h"
#include "graph/model.h"
#include "precision.h"
#include "graph/tensor.h"

namespace divscope {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;   // "cpu" | "cuda"
  // FP64 reference of one layer (full tensors, batch dim first).
  virtual void reference(const Layer& l, const std::vector<const Tensor*>& in, Tensor& out) = 0;
  // One layer in mode `m`: inputs and output hold values representable in the mode's storage.
  virtual void forward(Mode m, const Layer& l, const std::vector<const TensorF*>& in,
                       TensorF& out) = 0;
  // LayerStats of a candidate against the reference (README, What divscope run computes), with per-sample errors when
  // `samples` is given. The CPU compare by default; the CUDA backend computes them on the device.
  virtual LayerStats compare(const TensorF& cand, const Tensor& ref, const CompareOptions& opt,
                             SampleErrors* samples, const std::string& layer);
};

std::unique_ptr<Backend> make_cpu_backend();
// Our CUDA kernels (host/cuda_backend.cpp); throws RuntimeFault when built without CUDA.
std::unique_ptr<Backend> make_cuda_backend();

}  // namespace divscope
