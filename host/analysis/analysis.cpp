#include "analysis/analysis.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <map>
#include <memory>

#include "errors.h"
#include "io/h5io.h"
#include "reference/modes.h"
#include "reference/reference.h"
#include "parallel.h"
#include "analysis/runner.h"

namespace divscope {
namespace {

// A tensor (double reference values or float ones) in mode m's storage: cast to float, then
// rounded to the mode's format where `round` (integer indices stay as they are).
template <class T>
TensorF to_storage(const BasicTensor<T>& t, Mode m, bool round) {
  TensorF f(t.shape);
  for (int64_t i = 0; i < t.size(); ++i) {
    const float v = static_cast<float>(t.data[i]);
    f.data[i] = round ? round_storage(m, v) : v;
  }
  return f;
}

Tensor to_double(const TensorF& t) {
  Tensor d(t.shape);
  for (int64_t i = 0; i < t.size(); ++i) d.data[i] = t.data[i];
  return d;
}

double abs_max(const Tensor& t) {
  double a = 0;
  for (double v : t.data)
    if (std::isfinite(v)) a = std::max(a, std::fabs(v));
  return a;
}

// Everything one mode carries through a batch.
struct ModeRun {
  Mode mode;
  ValueStore<float> chained;
  // strict on a device backend: the CPU strict path's own chain, the bitwise reference.
  std::unique_ptr<ValueStore<float>> cpu_strict;
  std::vector<SampleDivergence> sample_first;   // per sample; layer -1 until it diverges
  SampleErrors samples;                         // the current layer's per-sample errors
  ModeRun(Mode m, const Model& model, const Liveness& live) : mode(m), chained(model, live) {}
};

bool bitwise_equal_strict(Mode m) { return m == Mode::strict; }

int64_t count_bitwise_differences(const TensorF& a, const TensorF& b) {
  if (a.shape != b.shape) return std::max(a.size(), b.size());
  int64_t n = 0;
  for (int64_t i = 0; i < a.size(); ++i) n += f32_bits(a.data[i]) != f32_bits(b.data[i]);
  return n;
}

// The device FP64 reference must agree with the CPU FP64 reference (README, What divscope run computes): checked on the
// first batch; a disagreement is a fault of the tool or the machine, not a divergence.
void cross_check_reference(const Layer& l, const std::vector<const Tensor*>& in,
                           const Tensor& device_out, const std::string& backend) {
  Tensor cpu;
  reference_forward(l, in, cpu);
  double e = 0, n = 0;
  for (int64_t i = 0; i < cpu.size(); ++i) {
    const double d = device_out.data[i] - cpu.data[i];
    e += d * d;
    n += cpu.data[i] * cpu.data[i];
  }
  const double rel = n > 0 ? std::sqrt(e / n) : std::sqrt(e);
  if (!(rel <= 1e-12))
    throw RuntimeFault(l.where() + ": the " + backend + " FP64 reference disagrees with the CPU "
                       "FP64 reference on batch 0 (rel_l2 " + std::to_string(rel) + " > 1e-12)");
}

// The mode layer `l` runs in under opt.fp32_layers, with `in` redirected to copies (in `cast`)
// rounded to the mode's storage where `l` runs in the mode and reads a float graph input or a
// layer kept in fp32.
bool mixed(const std::vector<bool>& fp32_layers, Mode mode) {
  return !fp32_layers.empty() && reduced_precision(mode);
}

Mode mixed_precision_inputs(const Model& model, const std::vector<bool>& fp32_layers, Mode mode,
                            const Layer& l, std::vector<const TensorF*>& in,
                            std::vector<TensorF>& cast) {
  if (!mixed(fp32_layers, mode)) return mode;
  if (fp32_layers[l.index]) return Mode::fp32;
  cast.reserve(l.refs.size());
  for (size_t k = 0; k < l.refs.size(); ++k) {
    const ValueRef& r = l.refs[k];
    const bool from_fp32 = r.is_input ? model.inputs[r.index].dtype != "int64" : fp32_layers[r.index];
    if (!from_fp32) continue;
    cast.push_back(to_storage(*in[k], mode, true));
    in[k] = &cast.back();
  }
  return mode;
}

// A batch is replayed whole, layer by layer: a layer whose FP64 output alone would take more
// than half of this machine's memory (an absurd stride or dilation, a huge batch) is refused
// before any work, with its size, instead of failing to allocate or swapping for hours.
void check_memory(const Model& model, int64_t batch) {
  const double phys = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  if (!(phys > 0)) return;
  for (const Layer& l : model.layers) {
    double elems = static_cast<double>(batch);
    for (int64_t d : l.out_shape) elems *= static_cast<double>(d);
    const double bytes = 8 * elems;
    if (bytes > phys / 2) {
      char msg[160];
      std::snprintf(msg, sizeof msg, "%.1f GB as float64 for a batch of %lld, more than half of this machine's %.1f GB",
                    bytes / 1e9, static_cast<long long>(batch), phys / 1e9);
      throw RuntimeFault(l.where() + ": output [" + std::to_string(batch) + ", " +
                         shape_str(l.out_shape).substr(1) + " is " + msg +
                         " (batches are replayed whole: record smaller batches)");
    }
  }
}

double sample_rel_l2(const SampleErrors& se, int64_t s) {
  return se.ref2[s] > 0 ? std::sqrt(se.err2[s] / se.ref2[s]) : (se.err2[s] > 0 ? HUGE_VAL : 0.0);
}

}  // namespace

bool AnalysisResult::passed() const {
  for (const ModeResult& m : modes)
    if (!m.passed()) return false;
  return true;
}

void judge(const Model& model, const std::string& backend, AnalysisResult& res) {
  const bool baseline = res.criterion == Criterion::baseline;
  const ModeResult* fp32 = nullptr;
  for (const ModeResult& mr : res.modes)
    if (mr.mode == Mode::fp32) fp32 = &mr;
  if (baseline && !fp32)
    throw InputError("run: --criterion baseline needs the fp32 mode (its error is the baseline)");
  for (ModeResult& mr : res.modes) {
    mr.first_divergent = mr.culprit = -1;
    for (size_t i = 0; i < mr.layers.size(); ++i) {
      LayerResult& lr = mr.layers[i];
      // strict is judged bitwise against the CPU strict path; on the CPU backend the
      // candidate is that path itself, so only a CUDA backend can break it.
      if (bitwise_equal_strict(mr.mode) && backend == "cpu") {
        lr.diverged = lr.isolated_failed = false;
      } else if (bitwise_equal_strict(mr.mode)) {
        lr.diverged = lr.strict_bitwise_mismatch > 0;
        lr.isolated_failed = false;
      } else if (baseline && judged_by_baseline(mr.mode)) {
        const LayerResult& anchor = fp32->layers[i];
        const double f = lr.tolerance.baseline_factor;
        lr.baseline_limit = baseline_limit(mr.mode, f, anchor.chained.rel_l2());
        lr.isolated_baseline_limit = baseline_limit(mr.mode, f, anchor.isolated.rel_l2());
        lr.diverged = breaks_baseline(lr.chained.rel_l2(), lr.chained.nonfinite_new, lr.baseline_limit);
        lr.isolated_failed = breaks_baseline(lr.isolated.rel_l2(), lr.isolated.nonfinite_new,
                                             lr.isolated_baseline_limit);
      } else {
        lr.diverged = breaks(lr.chained, lr.tolerance);
        lr.isolated_failed = breaks(lr.isolated, lr.tolerance);
      }
      if (lr.nondeterministic > 0) lr.diverged = true;
      if (lr.diverged && mr.first_divergent < 0) mr.first_divergent = static_cast<int>(i);
      if (lr.isolated_failed && mr.culprit < 0) mr.culprit = static_cast<int>(i);
      double in_err = 0;
      for (const ValueRef& r : model.layers[i].refs)
        in_err = std::max(in_err, r.is_input ? mr.inputs[r.index].rel_l2()
                                             : mr.layers[r.index].chained.rel_l2());
      const double out_err = lr.chained.rel_l2();
      lr.amplification = in_err > 0 && std::isfinite(out_err) ? out_err / in_err : -1;
    }
    if (bitwise_equal_strict(mr.mode)) mr.samples.clear();   // judged per layer, bitwise
    std::stable_sort(mr.samples.begin(), mr.samples.end(),
                     [](const SampleDivergence& a, const SampleDivergence& b) {
                       if (a.layer != b.layer) return a.layer < b.layer;
                       return a.rel_l2 > b.rel_l2;
                     });
  }
}

AnalysisResult analyze(const Model& model, const std::string& recording_path, Backend& backend,
                       const AnalysisOptions& opt) {
  RecordingReader rec(recording_path, model);
  const int64_t nb = static_cast<int64_t>(rec.num_batches());
  const int64_t b0 = opt.batch_begin, b1 = opt.batch_end < 0 ? nb : opt.batch_end;
  if (b0 < 0 || b0 >= b1 || b1 > nb)
    throw InputError(recording_path, "/batches",
                     "batch range " + std::to_string(b0) + ":" + std::to_string(b1) +
                         " outside the recording's " + std::to_string(nb) + " batches");
  const Liveness live = compute_liveness(model);
  const size_t nl = model.layers.size();
  const auto fp32_at = std::find(opt.modes.begin(), opt.modes.end(), Mode::fp32);
  const int fp32_index = fp32_at == opt.modes.end() ? -1 : static_cast<int>(fp32_at - opt.modes.begin());
  if (opt.criterion == Criterion::baseline && fp32_index < 0)
    throw InputError("run: --criterion baseline needs the fp32 mode (its error is the baseline)");
  if (opt.repeat < 1) throw InputError("run: --repeat must be at least 1");
  if (!opt.fp32_layers.empty() && opt.fp32_layers.size() != nl)
    throw InputError("analysis: fp32_layers has " + std::to_string(opt.fp32_layers.size()) +
                     " flags for " + std::to_string(nl) + " layers");
  const bool baseline = opt.criterion == Criterion::baseline;

  AnalysisResult res;
  res.criterion = opt.criterion;
  res.repeat = opt.repeat;
  res.batch_begin = b0;
  for (Mode m : opt.modes) {
    ModeResult mr;
    mr.mode = m;
    mr.layers.resize(nl);
    for (size_t i = 0; i < nl; ++i)
      mr.layers[i].tolerance = opt.policy.for_layer(m, model.layers[i].name);
    res.modes.push_back(std::move(mr));
  }
  res.recorded.resize(nl);
  // The CPU backend is stateless and runs the modes' tasks on every core; a device backend is
  // driven from one thread.
  std::unique_ptr<TaskPool> pool;
  if (backend.name() == "cpu" && opt.threads != 1) pool = std::make_unique<TaskPool>(opt.threads);
  std::unique_ptr<DumpWriter> dump;
  if (!opt.dump_path.empty()) dump = std::make_unique<DumpWriter>(opt.dump_path, opt.dump_environment);

  for (int64_t b = b0; b < b1; ++b) {
    std::vector<Tensor> inputs = rec.read_batch(static_cast<size_t>(b));
    const int64_t n = inputs[model.first_recorded_input()].shape[0];
    check_memory(model, n);
    res.samples += n;
    ++res.batches;

    std::vector<std::unique_ptr<ModeRun>> runs;
    for (Mode m : opt.modes) {
      auto run = std::make_unique<ModeRun>(m, model, live);
      ModeResult& mr = res.modes[runs.size()];
      mr.inputs.resize(inputs.size());
      std::vector<TensorF> fin;
      for (size_t i = 0; i < inputs.size(); ++i) {
        const bool is_float = model.inputs[i].dtype != "int64";
        fin.push_back(to_storage(inputs[i], m, is_float));
        CompareOptions co{m, 0, 0, -1};   // the rounding error of the recorded input itself
        mr.inputs[i].merge(compare_tensors(fin.back().ptr(), inputs[i].ptr(), inputs[i].shape, co), b);
        // Mixed precision: inputs arrive in fp32 and are rounded where a layer of the mode reads
        // them (mixed_precision_inputs), so a layer kept in fp32 sees them whole.
        if (mixed(opt.fp32_layers, m)) fin.back() = to_storage(inputs[i], Mode::fp32, is_float);
      }
      if (m == Mode::strict && backend.name() != "cpu") {
        run->cpu_strict = std::make_unique<ValueStore<float>>(model, live);
        run->cpu_strict->set_inputs(fin);
      }
      run->chained.set_inputs(std::move(fin));
      run->sample_first.assign(n, SampleDivergence());
      runs.push_back(std::move(run));
    }
    auto reference = [&](const Layer& l, const std::vector<const Tensor*>& in, Tensor& out) {
      backend.reference(l, in, out);
    };
    auto on_layer = [&](const Layer& l, const std::vector<const Tensor*>& ref_in, Tensor& ref_out) {
      if (b == b0 && backend.name() != "cpu") cross_check_reference(l, ref_in, ref_out, backend.name());
      const double floor = 1e-6 * abs_max(ref_out);
      const LayerStats health = reference_health(ref_out.ptr(), ref_out.size());
      if (dump) dump->write(b, "fp64", l.name, ref_out);
      if (rec.has_activation(static_cast<size_t>(b), l.name)) {
        Tensor theirs = rec.read_activation(static_cast<size_t>(b), l.name, ref_out.shape);
        CompareOptions co{Mode::fp64, 0, 0, floor, false};
        LayerStats theirs_stats = compare_tensors(theirs.ptr(), ref_out.ptr(), ref_out.shape, co);
        copy_health(theirs_stats, health);
        res.recorded[l.index].merge(theirs_stats, b);
      }

      // Every mode's chained and isolated run of this layer are independent tasks (each writes
      // only its own mode's state and its own half of the LayerResult).
      const int64_t per_sample = n ? ref_out.size() / n : 0;
      auto chained_task = [&](ModeRun& run, LayerResult& lr, const CompareOptions& co) {
        std::vector<const TensorF*> in = run.chained.inputs_of(l);
        std::vector<TensorF> cast;
        const Mode m = mixed_precision_inputs(model, opt.fp32_layers, run.mode, l, in, cast);
        TensorF chained_out;
        backend.forward(m, l, in, chained_out);
        int64_t differ = 0;
        for (int k = 1; k < opt.repeat; ++k) {
          TensorF again;
          backend.forward(m, l, in, again);
          differ = std::max(differ, count_bitwise_differences(chained_out, again));
        }
        lr.nondeterministic += differ;
        LayerStats chained = backend.compare(chained_out, ref_out, co, &run.samples, l.name);
        copy_health(chained, health);
        lr.chained.merge(chained, b);
        if (run.cpu_strict) {
          TensorF cpu_out;
          mode_forward(Mode::strict, l, run.cpu_strict->inputs_of(l), cpu_out);
          lr.strict_bitwise_mismatch += count_bitwise_differences(chained_out, cpu_out);
          run.cpu_strict->put(l.index, std::move(cpu_out));
        }
        run.chained.put(l.index, std::move(chained_out));
      };
      // Isolated: the reference's own upstream outputs, rounded to this mode's storage.
      auto isolated_task = [&](ModeRun& run, LayerResult& lr, const CompareOptions& co) {
        std::vector<TensorF> iso_in;
        std::vector<const TensorF*> iso_ptrs;
        iso_in.reserve(l.refs.size());
        for (size_t k = 0; k < l.refs.size(); ++k) {
          const ValueRef& r = l.refs[k];
          const bool is_float = !(r.is_input && model.inputs[r.index].dtype == "int64");
          iso_in.push_back(to_storage(*ref_in[k], run.mode, is_float));
        }
        for (const TensorF& t : iso_in) iso_ptrs.push_back(&t);
        TensorF iso_out;
        backend.forward(run.mode, l, iso_ptrs, iso_out);
        LayerStats isolated = backend.compare(iso_out, ref_out, co, nullptr, l.name);
        copy_health(isolated, health);
        lr.isolated.merge(isolated, b);
      };
      const size_t per_mode = opt.isolated ? 2 : 1;
      auto task = [&](size_t t) {
        ModeRun& run = *runs[t / per_mode];
        LayerResult& lr = res.modes[t / per_mode].layers[l.index];
        const CompareOptions co{run.mode, lr.tolerance.atol, lr.tolerance.rtol, floor, false};
        if (t % per_mode == 0) chained_task(run, lr, co);
        else isolated_task(run, lr, co);
      };
      if (pool) pool->run(per_mode * runs.size(), task);
      else for (size_t t = 0; t < per_mode * runs.size(); ++t) task(t);

      // Per sample: the first layer where the sample's own chained error breaks the policy
      // (after every mode's task, since the baseline criterion reads fp32's errors).
      for (size_t mi = 0; mi < runs.size(); ++mi) {
        ModeRun& run = *runs[mi];
        const LayerResult& lr = res.modes[mi].layers[l.index];
        const SampleErrors& se = run.samples;
        const bool by_baseline = baseline && judged_by_baseline(run.mode);
        for (int64_t s = 0; s < n; ++s) {
          SampleDivergence& sd = run.sample_first[s];
          if (sd.layer >= 0) continue;
          const double rel = sample_rel_l2(se, s);
          const bool broke =
              by_baseline
                  ? breaks_baseline(rel, se.nonfinite_new[s],
                                    baseline_limit(run.mode, lr.tolerance.baseline_factor,
                                                   sample_rel_l2(runs[fp32_index]->samples, s)))
                  : breaks(se.mismatch[s], se.nonfinite_new[s], per_sample, lr.tolerance);
          if (broke)
            sd = {b, s, l.index, rel, se.max_abs[s], se.mismatch[s], per_sample, se.nonfinite_new[s] > 0};
        }
      }

      for (auto& run : runs) {
        if (dump) dump->write(b, mode_name(run->mode), l.name, to_double(run->chained.layer(l.index)));
        run->chained.release_after(l.index);
        if (run->cpu_strict) run->cpu_strict->release_after(l.index);
      }
    };
    walk_batch(model, live, std::move(inputs), reference, on_layer);
    for (size_t mi = 0; mi < runs.size(); ++mi)
      for (int64_t s = 0; s < n; ++s)
        if (runs[mi]->sample_first[s].layer >= 0) res.modes[mi].samples.push_back(runs[mi]->sample_first[s]);
    if (opt.progress) opt.progress(b - b0 + 1, b1 - b0);
  }

  judge(model, backend.name(), res);
  return res;
}

}  // namespace divscope
