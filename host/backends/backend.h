// Backend interface (README, Building): where the layers run. The CPU backend emulates every mode;
// the CUDA backend runs our kernels.
//
// Two ways in. The analysis (host/analysis/analysis.cpp) works on Values (backends/values.h):
// every tensor of a batch stays where the backend computes — device memory for CUDA — and only
// statistics come back (docs/memory.md). The per-layer host-tensor calls (reference, forward on
// Tensor/TensorF) are the same operations for callers that hold host tensors (tests, bisect's
// tools); on a device they upload, launch and download.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "analysis/compare.h"
#include "backends/values.h"
#include "graph/model.h"
#include "precision.h"
#include "graph/tensor.h"

namespace divscope {

class Backend {
 public:
  Backend();
  virtual ~Backend() = default;
  virtual std::string name() const = 0;   // "cpu" | "cuda"
  // FP64 reference of one layer (full tensors, batch dim first).
  virtual void reference(const Layer& l, const std::vector<const Tensor*>& in, Tensor& out) = 0;
  // One layer in mode `m`: inputs and output hold values representable in the mode's storage.
  virtual void forward(Mode m, const Layer& l, const std::vector<const TensorF*>& in,
                       TensorF& out) = 0;
  // reference / forward with the output written over input k (`io`, the tensor in[k] points to,
  // which the caller gives up), for the ops that allow it (reference.h, op_in_place_capable).
  // False, io untouched, where that does not apply; the default never applies.
  virtual bool reference_in_place(const Layer&, const std::vector<const Tensor*>&, size_t, Tensor&) {
    return false;
  }
  virtual bool forward_in_place(Mode, const Layer&, const std::vector<const TensorF*>&, size_t, TensorF&) {
    return false;
  }
  // LayerStats of a candidate against the reference (README, What divscope run computes), with per-sample errors when
  // `samples` is given. The CPU compare by default; the CUDA backend computes them on the device.
  virtual LayerStats compare(const TensorF& cand, const Tensor& ref, const CompareOptions& opt,
                             SampleErrors* samples, const std::string& layer);

  // ---- Values (docs/memory.md). Defaults: host memory, the CPU paths. ----
  // A host tensor into the backend.
  virtual Value upload(const Tensor& t);
  virtual Value upload(const TensorF& t);
  // A value's elements on the host: the value itself for a host value, else a copy.
  virtual Tensor download(const Value& v);
  virtual TensorF download_float(const Value& v);
  // The host tensor behind a host value (no copy); nullptr for a device value.
  static const Tensor* host_double(const Value& v);
  static const TensorF* host_float(const Value& v);
  // FP64 reference / mode `m` of one layer on the backend's values.
  virtual Value reference(const Layer& l, const std::vector<const Value*>& in);
  virtual Value forward(Mode m, const Layer& l, const std::vector<const Value*>& in);
  // reference / forward where the caller lets go of input `donate` (< 0: none): a value no later
  // layer reads. A host value that no other handle holds may take the output in place (the
  // in-place variants above; docs/memory.md), which the returned value then shares; otherwise,
  // and for device values, the same as reference / forward.
  Value reference_donating(const Layer& l, const std::vector<const Value*>& in, int donate);
  Value forward_donating(Mode m, const Layer& l, const std::vector<const Value*>& in, int donate);
  // `v` (double or float) as floats in mode m's storage: cast to float, then rounded to the
  // mode's format where `round` (integer indices stay as they are).
  virtual Value to_storage(const Value& v, Mode m, bool round);
  // A copy of the double value `v` with element k times probe_factor(batch, value, k)
  // (reference/probe.h): the sensitivity probe's perturbation.
  virtual Value perturbed(const Value& v, int64_t batch, int64_t value);
  // perturbed(v) where the caller gives `v` up: a host value no other handle holds is perturbed
  // in place (the same values; no copy).
  Value perturbed_donating(Value v, int64_t batch, int64_t value);
  // Candidate (float or double) against the double reference.
  virtual LayerStats compare(const Value& cand, const Value& ref, const CompareOptions& opt,
                             SampleErrors* samples, const std::string& layer);
  // Elements whose bits differ (float values of one shape; different shapes: the larger size).
  virtual int64_t bitwise_differences(const Value& a, const Value& b);
  // Health, largest finite |value| and per-sample counts of a double reference output.
  virtual ReferenceSummary summarize(const Value& ref);
  virtual ValueMemory memory() const;
  virtual void reset_peak();
  // analyze() brackets each run with these: a device backend keeps every layer's parameters,
  // rounded to each mode's storage, from the first use until end_analysis() (uploaded once per
  // model and mode), and may check the model fits. end_analysis() also runs when the analysis
  // throws.
  virtual void begin_analysis(const Model&) {}
  virtual void end_analysis() {}

 protected:
  // Host values: a Tensor/TensorF owned by the value, counted in memory().
  Value host_value(Tensor t);
  Value host_value(TensorF t);

 private:
  struct HostCounter;
  template <class T>
  Value make_host_value(BasicTensor<T> t);
  std::shared_ptr<HostCounter> host_counter_;
  HostCounter& counter();
};

std::unique_ptr<Backend> make_cpu_backend();
// Our CUDA kernels (host/cuda_backend.cpp); throws RuntimeFault when built without CUDA.
std::unique_ptr<Backend> make_cuda_backend();

}  // namespace divscope
