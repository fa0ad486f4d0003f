#include "analysis/runner.h"

#include "reference/reference.h"

namespace divscope {

Liveness compute_liveness(const Model& m) {
  Liveness live;
  live.input_last.assign(m.inputs.size(), -1);
  live.layer_last.assign(m.layers.size(), -1);
  for (const Layer& l : m.layers)
    for (const ValueRef& r : l.refs)
      (r.is_input ? live.input_last[r.index] : live.layer_last[r.index]) = l.index;
  const int end = static_cast<int>(m.layers.size());
  for (const std::string& o : m.outputs) {
    int li = m.find_layer(o);
    if (li >= 0) live.layer_last[li] = end;
    int gi = m.find_input(o);
    if (gi >= 0) live.input_last[gi] = end;
  }
  // A value nobody reads is freed as soon as it has been seen.
  for (int& last : live.input_last) last = last < 0 ? 0 : last;
  for (size_t i = 0; i < live.layer_last.size(); ++i)
    if (live.layer_last[i] < 0) live.layer_last[i] = static_cast<int>(i);
  return live;
}

void walk_batch(const Model& m, const Liveness& live, std::vector<Tensor> inputs,
                const ReferenceFn& reference, const LayerFn& on_layer) {
  ValueStore<double> store(m, live);
  store.set_inputs(std::move(inputs));
  for (const Layer& l : m.layers) {
    const std::vector<const Tensor*> in = store.inputs_of(l);
    Tensor out;
    reference(l, in, out);
    if (on_layer) on_layer(l, in, out);
    store.put(l.index, std::move(out));
    store.release_after(l.index);
  }
}

void run_reference_batch(const Model& m, std::vector<Tensor> inputs,
                         const std::function<void(const Layer&, const Tensor&)>& on_layer) {
  walk_batch(m, compute_liveness(m), std::move(inputs), reference_forward,
             [&](const Layer& l, const std::vector<const Tensor*>&, Tensor& out) {
               if (on_layer) on_layer(l, out);
             });
}

}  // namespace divscope
