#include "runner.h"

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

void run_reference_batch(const Model& m, std::vector<Tensor> inputs,
                         const std::function<void(const Layer&, const Tensor&)>& on_layer) {
  Liveness live = compute_liveness(m);
  ValueStore<double> store(m, live);
  store.set_inputs(std::move(inputs));
  for (const Layer& l : m.layers) {
    Tensor out;
    reference_forward(l, store.inputs_of(l), out);
    if (on_layer) on_layer(l, out);
    store.put(l.index, std::move(out));
    store.release_after(l.index);
  }
}

}  // namespace divscope
