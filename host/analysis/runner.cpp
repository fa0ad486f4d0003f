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

BatchPlan plan_batch(const Model& m, const Liveness& live, int64_t n, size_t float_modes) {
  // Elements of one sample of each value (checked_mul: shapes are validated, but a plan must not
  // overflow where the run would refuse).
  auto elems = [&](const Shape& s) { return checked_mul(n, numel(s), "batch plan"); };
  std::vector<int64_t> in_e, out_e;
  for (const auto& i : m.inputs) in_e.push_back(elems(i.shape));
  for (const Layer& l : m.layers) out_e.push_back(elems(l.out_shape));
  BatchPlan p;
  const int64_t per_elem_chains = 2 * 8 + static_cast<int64_t>(float_modes) * 4;
  // One sweep: live_e holds the elements live in one chain while layer i runs (every input
  // from the start, each output from its layer on), less those whose last reader ran before i.
  const int nl = static_cast<int>(m.layers.size());
  std::vector<int64_t> freed(m.layers.size(), 0);   // elements whose last reader is layer i
  int64_t live_e = 0;
  for (size_t k = 0; k < in_e.size(); ++k) {
    live_e = checked_add(live_e, in_e[k], "batch plan");
    if (live.input_last[k] < nl) freed[live.input_last[k]] = checked_add(freed[live.input_last[k]], in_e[k], "batch plan");
  }
  for (int j = 0; j < nl; ++j)
    if (live.layer_last[j] < nl) freed[live.layer_last[j]] = checked_add(freed[live.layer_last[j]], out_e[j], "batch plan");
  for (const Layer& l : m.layers) {
    const int i = l.index;
    live_e = checked_add(live_e, out_e[i], "batch plan");
    int64_t reads = 0;
    for (const ValueRef& r : l.refs) reads = checked_add(reads, r.is_input ? in_e[r.index] : out_e[r.index], "batch plan");
    const int64_t transient = checked_add(checked_mul(8, out_e[i], "batch plan"),
                                          checked_mul(4, checked_add(reads, 2 * out_e[i], "batch plan"), "batch plan"),
                                          "batch plan");
    const int64_t bytes = checked_add(checked_mul(per_elem_chains, live_e, "batch plan"), transient, "batch plan");
    if (bytes > p.value_bytes) {
      p.value_bytes = bytes;
      p.peak_layer = i;
    }
    live_e -= freed[i];
  }
  for (const Layer& l : m.layers)
    for (const auto& [key, t] : l.params)
      p.param_bytes = checked_add(p.param_bytes,
                                  checked_mul(t.size(), 8 + 4 * static_cast<int64_t>(float_modes), "batch plan"),
                                  "batch plan");
  return p;
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
