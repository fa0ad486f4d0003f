// The one layer walker (README, What divscope run computes, STYLE 5): walks a model's layers in topological order over
// one batch, keeping only the activations that a later layer (or the model output) still reads.
#pragma once
#include <functional>
#include <vector>

#include "backends/values.h"
#include "graph/model.h"
#include "graph/tensor.h"

namespace divscope {

// For every graph input and layer output, the index of the last layer that reads it;
// model outputs live to the end (index = number of layers).
struct Liveness {
  std::vector<int> input_last;
  std::vector<int> layer_last;
};
Liveness compute_liveness(const Model& m);

// Live values of one run (the reference, the probe or one mode's chained run), full shapes.
// V is a host tensor (BasicTensor<T>: ValueStore) or a backend's Value (ValueSlots, docs/memory.md).
// A value is dropped as soon as its last reader has run: its memory freed, or on a device back to
// the pool the moment that reader has been launched.
template <class V>
class LiveValues {
 public:
  LiveValues(const Model& m, const Liveness& live) : model_(&m), live_(&live) {}
  void set_inputs(std::vector<V> inputs) {
    inputs_ = std::move(inputs);
    layers_.assign(model_->layers.size(), V());
  }
  const V& get(const ValueRef& r) const { return r.is_input ? inputs_[r.index] : layers_[r.index]; }
  std::vector<const V*> inputs_of(const Layer& l) const {
    std::vector<const V*> v;
    for (const ValueRef& r : l.refs) v.push_back(&get(r));
    return v;
  }
  void put(int layer, V v) { layers_[layer] = std::move(v); }
  const V& layer(int i) const { return layers_[i]; }
  // Drops every value whose last reader is `layer`.
  void release_after(int layer) {
    for (size_t i = 0; i < inputs_.size(); ++i)
      if (live_->input_last[i] == layer) inputs_[i] = V();
    for (size_t i = 0; i < layers_.size(); ++i)
      if (live_->layer_last[i] == layer) layers_[i] = V();
  }

 private:
  const Model* model_;
  const Liveness* live_;
  std::vector<V> inputs_;
  std::vector<V> layers_;
};
template <class T>
using ValueStore = LiveValues<BasicTensor<T>>;
using ValueSlots = LiveValues<Value>;

// What one batch of n samples holds on a backend at most, from the liveness plan
// (docs/memory.md): at layer i, every value still to be read and layer i's output, in the
// reference and probe chains (float64) and in each float mode's chain (float32), plus the layer's
// transients (the probe's perturbed copy, one run's inputs rounded to storage, an isolated or
// repeated output). The modes' runs of a layer go one after the other on a device; `value_bytes`
// bounds the peak of Backend::memory() for such a run. `param_bytes`: every parameter once in
// float64 and once per float mode.
struct BatchPlan {
  int64_t value_bytes = 0;
  int64_t param_bytes = 0;
  int peak_layer = -1;   // the layer at which value_bytes is reached
};
BatchPlan plan_batch(const Model& m, const Liveness& live, int64_t n, size_t float_modes);

// The walker: for each layer in order, computes its FP64 reference with `reference`, hands the
// layer, its reference inputs and output to `on_layer` (where every other run of the layer
// happens), then frees the reference activations no later layer reads. Callers that keep
// activations of their own free them with the same Liveness after each layer.
using ReferenceFn =
    std::function<void(const Layer&, const std::vector<const Tensor*>&, Tensor&)>;
using LayerFn =
    std::function<void(const Layer&, const std::vector<const Tensor*>& in, Tensor& out)>;
void walk_batch(const Model& m, const Liveness& live, std::vector<Tensor> inputs,
                const ReferenceFn& reference, const LayerFn& on_layer);

// The FP64 reference alone over one batch (the CPU reference ops); `on_layer(layer, output)`
// after each layer.
void run_reference_batch(const Model& m, std::vector<Tensor> inputs,
                         const std::function<void(const Layer&, const Tensor&)>& on_layer);

}  // namespace divscope
