#include "analysis/analysis.h"

#include "env.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <map>
#include <memory>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "errors.h"
#include "interrupt.h"
#include "io/h5io.h"
#include "reference/modes.h"
#include "reference/probe.h"
#include "reference/reference.h"
#include "parallel.h"
#include "analysis/reference_check.h"
#include "analysis/runner.h"

namespace divscope {

static_assert(kProbeRelDelta == kProbeDelta, "reference/probe.h and analysis/verdict.h disagree on the probe's delta");

namespace {

// Everything one mode carries through a batch.
struct ModeRun {
  Mode mode;
  ValueSlots chained;   // on the backend
  // strict on a device backend: the CPU strict path's own chain, the bitwise reference.
  std::unique_ptr<ValueStore<float>> cpu_strict;
  std::vector<SampleDivergence> sample_first;   // per sample; layer -1 until it diverges
  SampleErrors samples;                         // the current layer's per-sample errors
  SampleErrors iso_samples;                     // the same for its isolated run
  // This batch's seconds (PassTimes); the chained and isolated tasks run at the same time, so
  // each keeps its own.
  double chained_s = 0, chained_compare_s = 0, isolated_s = 0, isolated_compare_s = 0;
  ModeRun(Mode m, const Model& model, const Liveness& live) : mode(m), chained(model, live) {}
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool bitwise_equal_strict(Mode m) { return m == Mode::strict; }

// The device FP64 reference must agree with the CPU FP64 reference (docs/ops.md, FP64 on a
// device): bit for bit where the op calls no libm function, within a bound from the data's
// conditioning where it does. Checked on the first batch; a disagreement is a fault of the tool
// or the machine, not a divergence.
void cross_check_reference(const Layer& l, const std::vector<const Tensor*>& in,
                           const Tensor& device_out, const std::string& backend) {
  Tensor cpu;
  reference_forward(l, in, cpu);
  const ReferenceAgreement a = compare_device_reference(l, in, cpu, device_out);
  if (!a.ok())
    throw RuntimeFault(l.where() + ": the " + backend + " FP64 reference disagrees with the CPU "
                       "FP64 reference on batch 0: " + a.describe());
}

// The mode layer `l` runs in under opt.fp32_layers, with `in` redirected to copies (in `cast`)
// rounded to the mode's storage where `l` runs in the mode and reads a float graph input or a
// layer kept in fp32.
bool mixed(const std::vector<bool>& fp32_layers, Mode mode) {
  return !fp32_layers.empty() && reduced_precision(mode);
}

Mode mixed_precision_inputs(const Model& model, const std::vector<bool>& fp32_layers, Mode mode,
                            const Layer& l, Backend& backend, std::vector<const Value*>& in,
                            std::vector<Value>& cast) {
  if (!mixed(fp32_layers, mode)) return mode;
  if (fp32_layers[l.index]) return Mode::fp32;
  cast.reserve(l.refs.size());
  for (size_t k = 0; k < l.refs.size(); ++k) {
    const ValueRef& r = l.refs[k];
    const bool from_fp32 = r.is_input ? model.inputs[r.index].dtype != "int64" : fp32_layers[r.index];
    if (!from_fp32) continue;
    cast.push_back(backend.to_storage(*in[k], mode, true));
    in[k] = &cast.back();
  }
  return mode;
}

// A value's elements on the host: the backend's own tensor when it is there, else a copy.
template <class T>
class HostView {
 public:
  HostView(Backend& backend, const Value& v) : view_(host(v)) {
    if (view_) return;
    if constexpr (std::is_same<T, double>::value) copy_ = backend.download(v);
    else copy_ = backend.download_float(v);
    view_ = &copy_;
  }
  const BasicTensor<T>& operator*() const { return *view_; }
  const BasicTensor<T>* get() const { return view_; }

 private:
  static const BasicTensor<T>* host(const Value& v) {
    if constexpr (std::is_same<T, double>::value) return Backend::host_double(v);
    else return Backend::host_float(v);
  }
  const BasicTensor<T>* view_;
  BasicTensor<T> copy_;
};
using HostTensor = HostView<double>;
using HostTensorF = HostView<float>;

// A host candidate (recorded activations) against a reference value: on the host when the
// reference is there, else uploaded to the backend.
LayerStats compare_host(Backend& backend, const Tensor& cand, const Value& ref, const CompareOptions& co,
                        SampleErrors* se, const std::string& layer) {
  if (const Tensor* r = Backend::host_double(ref)) return compare_tensors(cand.ptr(), r->ptr(), r->shape, co, se);
  return backend.compare(backend.upload(cand), ref, co, se, layer);
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

// A backend with a memory limit (a device) must hold the whole batch (docs/memory.md): the
// liveness plan's peak and every parameter in float64 and each mode's storage, checked before
// the batch starts, so a batch that cannot fit is refused with the bytes it needs instead of
// failing half-way.
void check_backend_memory(const Model& model, const BatchPlan& plan, int64_t n, Backend& backend,
                          int64_t batch) {
  const ValueMemory mem = backend.memory();
  if (mem.limit < 0) return;
  const double need = static_cast<double>(plan.value_bytes) + static_cast<double>(plan.param_bytes);
  if (need <= static_cast<double>(mem.limit)) return;
  char msg[320];
  std::snprintf(msg, sizeof msg,
                "batch %lld (%lld samples) needs %.2f GB on the %s backend (%.2f GB of activations at "
                "layer '%s', %.2f GB of parameters), %.2f GB available",
                static_cast<long long>(batch), static_cast<long long>(n), need / 1e9, backend.name().c_str(),
                plan.value_bytes / 1e9, plan.peak_layer >= 0 ? model.layers[plan.peak_layer].name.c_str() : "",
                plan.param_bytes / 1e9, mem.limit / 1e9);
  throw RuntimeFault(std::string(msg) + ": record smaller batches, run fewer --modes, or use --backend cpu");
}

// A sample's rel_l2; NaN/Inf the reference lacks make it infinite (as LayerStats::rel_l2).
double sample_rel_l2(const SampleErrors& se, int64_t s) {
  if (se.nonfinite_new[s] > 0) return HUGE_VAL;
  return se.ref2[s] > 0 ? std::sqrt(se.err2[s] / se.ref2[s]) : (se.err2[s] > 0 ? HUGE_VAL : 0.0);
}

double kappa_of(double probe_rel_l2) {
  const double k = probe_rel_l2 / kProbeDelta;
  return std::isfinite(k) ? std::max(k, 1.0) : HUGE_VAL;
}

// Ops whose output, in every mode, is exactly a selection of what they read (no rounding): the
// probe does not perturb them (a rounding that no mode does would inflate kappa).
bool exact_op(const std::string& op) {
  static const char* const kExact[] = {"relu", "maxpool2d", "upsample_nearest2d", "flatten",
                                       "reshape", "permute", "hardtanh", "abs", "neg", "maximum",
                                       "minimum", "where", "reduce_max", "concat", "slice", "expand"};
  for (const char* e : kExact)
    if (op == e) return true;
  return false;
}

// Length of the longest sum behind one output element of layer l (the dot product of a GEMM or
// conv, the row of a norm, softmax or reduction, the window of an average pool); 1 elsewhere.
int64_t reduction_length(const Model& model, const Layer& l) {
  auto in_shape = [&](size_t k) -> Shape {
    if (k >= l.refs.size()) return {};
    const ValueRef& r = l.refs[k];
    return r.is_input ? model.inputs[r.index].shape : model.layers[r.index].out_shape;
  };
  auto count = [](const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= std::max<int64_t>(d, 1);
    return n;
  };
  const Tensor* w = l.param("weight");
  const std::string& op = l.op;
  if (op == "linear" && w && w->shape.size() == 2) return w->shape[1];
  if (op == "conv2d" && w && w->shape.size() == 4) return w->shape[1] * w->shape[2] * w->shape[3];
  if (op == "conv_transpose2d" && w && w->shape.size() == 4)
    return w->shape[0] / std::max<int64_t>(l.attr_int("groups", 1), 1) * w->shape[2] * w->shape[3];
  if (op == "matmul") {
    const Shape a = in_shape(0);
    return a.empty() ? 1 : a.back();
  }
  if (op == "scaled_dot_product_attention") {
    const Shape q = in_shape(0), k = in_shape(1);
    return std::max<int64_t>(q.empty() ? 1 : q.back(), k.size() >= 2 ? k[k.size() - 2] : 1);
  }
  if (op == "layernorm" || op == "rmsnorm") return count(l.attr_ints("normalized_shape"));
  if (op == "groupnorm") return count(in_shape(0)) / std::max<int64_t>(l.attr_int("num_groups"), 1);
  if (op == "softmax" || op == "log_softmax") {
    const Shape x = in_shape(0);
    int64_t a = l.attr_int("axis");
    const int64_t rank = static_cast<int64_t>(x.size()) + 1;   // with the batch dim
    if (a < 0) a += rank;
    return a >= 1 && a < rank ? x[a - 1] : 1;
  }
  if (op == "reduce_sum" || op == "reduce_mean" || op == "avgpool2d" || op == "global_avgpool2d" ||
      op == "adaptive_avgpool2d")
    return std::max<int64_t>(count(in_shape(0)) / std::max<int64_t>(count(l.out_shape), 1), 1);
  return 1;
}

// The input of layer l that no later layer reads (-1: none): the probe and the modes' chains
// let it go to the backend, which may write l's output over it (Backend::forward_donating).
// The reference's inputs are not given up: the isolated runs read them after the layer.
int donatable_input(const Layer& l, const Liveness& live) {
  for (size_t k = 0; k < l.refs.size(); ++k) {
    const ValueRef& r = l.refs[k];
    const int last = r.is_input ? live.input_last[static_cast<size_t>(r.index)]
                                : live.layer_last[static_cast<size_t>(r.index)];
    if (last == l.index) return static_cast<int>(k);
  }
  return -1;
}

// What the analysis keeps of a probe comparison: its sums, all that kappa needs (a report
// holds the same, and a device backend's compare may fill more than a sums-only one).
LayerStats probe_sums(const LayerStats& f) {
  LayerStats t;
  t.count = f.count;
  t.sum_err2 = f.sum_err2;
  t.sum_ref2 = f.sum_ref2;
  return t;
}

// Per-sample kappa of a probe comparison.
std::vector<double> sample_kappas(const SampleErrors& se, int64_t n) {
  std::vector<double> k(static_cast<size_t>(n), 1.0);
  for (int64_t s = 0; s < n && s < static_cast<int64_t>(se.err2.size()); ++s)
    k[s] = se.ref2[s] > 0 ? kappa_of(std::sqrt(se.err2[s] / se.ref2[s])) : 1.0;
  return k;
}

std::string fmt_num(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string at_sample(int64_t batch, int64_t sample) {
  return "batch " + std::to_string(batch) + " sample " + std::to_string(sample);
}

// Rule and reason of one run (chained or isolated) of a layer under the budget criterion.
Rule budget_layer_rule(const LayerStats& st, const SampleWorst& w, const Tolerance& t) {
  if (st.nonfinite_new > 0) return Rule::nonfinite;
  if (!(w.rel_l2 < t.collapse)) return Rule::collapse;
  if (w.budget_use > t.budget_factor) return Rule::budget;
  return Rule::none;
}

// What the reference's range says about a mode's storage: values beyond its largest finite
// number, or below its smallest normal one (precision lost to subnormals, or flushed).
std::string range_note(Mode m, const LayerStats& st) {
  const int64_t fin = st.ref_finite;
  if (!fin || (m != Mode::fp16 && m != Mode::bf16)) return "";
  const int64_t over = m == Mode::fp16 ? st.over_fp16 : st.over_bf16;
  const int64_t under = m == Mode::fp16 ? st.under_fp16 : st.under_bf16;
  std::string r;
  if (over * 100 >= fin)
    r += "; " + fmt_num("%.0f", 100.0 * over / fin) + "% of the reference beyond " + mode_name(m) + "'s largest value (overflow)";
  if (under * 100 >= fin)
    r += "; " + fmt_num("%.0f", 100.0 * under / fin) + "% of the reference below " + mode_name(m) +
         "'s smallest normal (underflow)";
  return r;
}

std::string explain(Rule rule, Mode m, const LayerResult& lr, const LayerStats& st,
                    const SampleWorst& w) {
  const Tolerance& t = lr.tolerance;
  switch (rule) {
    case Rule::nonfinite:
      return std::to_string(st.nonfinite_new) + " NaN/Inf where the reference is finite (" +
             std::to_string(st.nan) + " NaN, " + std::to_string(st.inf) + " Inf of " +
             std::to_string(st.count) + ")" + range_note(m, st);
    case Rule::collapse: {
      std::string r = "collapsed: rel_l2 " + fmt_num("%.3g", w.rel_l2) + " >= " +
                      fmt_num("%g", t.collapse) + " at " + at_sample(w.rel_batch, w.rel_sample);
      const int64_t nonzero = st.ref_finite - st.ref_zero;
      if (nonzero > 0 && st.flushed * 100 >= nonzero)
        r += "; " + fmt_num("%.0f", 100.0 * st.flushed / nonzero) +
             "% of the reference's nonzero elements flushed to zero";
      return r + range_note(m, st);
    }
    case Rule::budget: {
      const double unit = lr.unit > 0 ? lr.unit : unit_roundoff(m);
      return "rel_l2 " + fmt_num("%.3g", w.budget_use * unit * w.kappa) + " = " +
             fmt_num("%.3g", w.budget_use) + "x what " + mode_name(m) + "'s rounding (" +
             fmt_num("%.2g", unit) + ") x the layer's sensitivity (" + fmt_num("%.3g", w.kappa) +
             ") explains, budget " + fmt_num("%g", t.budget_factor) + "x, at " +
             at_sample(w.use_batch, w.use_sample) + range_note(m, st);
    }
    case Rule::allclose:
      return std::to_string(st.mismatch) + " of " + std::to_string(st.count) +
             " elements outside atol " + fmt_num("%g", t.atol) + " + rtol " + fmt_num("%g", t.rtol) +
             "*|r| (" + fmt_num("%.3g", st.count ? 100.0 * st.mismatch / st.count : 0) +
             "%, allowed " + fmt_num("%g", 100 * t.max_mismatch) + "%)";
    case Rule::baseline:
      return "rel_l2 " + fmt_num("%.3g", st.rel_l2()) + " > limit " + fmt_num("%.3g", lr.baseline_limit) +
             " (baseline_factor " + fmt_num("%g", t.baseline_factor) + " x fp32's error in " +
             mode_name(m) + "'s rounding units)";
    case Rule::bitwise:
      return std::to_string(lr.strict_bitwise_mismatch) + " elements differ bitwise from the CPU strict path";
    case Rule::nondeterministic:
      return std::to_string(lr.nondeterministic) + " elements differ from run to run";
    default: return "";
  }
}

// Cause before effect: among the layers at or before the first divergent layer d that feed it,
// the one whose own (isolated) error, amplified on the way to d, is largest; and the path of
// largest amplification from it to d.
void find_culprit(const Model& model, const AnalysisResult& res, ModeResult& mr) {
  mr.culprit_chain.clear();
  const int d = mr.first_divergent;
  if (d < 0) return;
  const bool probed = res.sensitivity.size() == model.layers.size() && !res.sensitivity.empty() &&
                      res.sensitivity[0].count > 0;
  // Amplification of layer k: its kappa over its worst input's (probe), or the mode's own
  // chained amplification where no probe ran (reports of older versions).
  auto amp = [&](int k) {
    if (!probed) return mr.layers[k].amplification > 0 ? mr.layers[k].amplification : 1.0;
    double in = 0;
    for (const ValueRef& r : model.layers[k].refs)
      in = std::max(in, r.is_input ? (model.inputs[r.index].dtype == "int64" ? 0.0 : res.input_kappa(r.index))
                                   : res.kappa(r.index));
    const double a = in > 0 ? res.kappa(k) / in : 1.0;
    return std::isfinite(a) ? a : 1.0;
  };
  // best[k]: the largest product of amplifications on a path from k (exclusive) to d.
  std::vector<double> best(static_cast<size_t>(d) + 1, -1.0);
  std::vector<int> next(static_cast<size_t>(d) + 1, -1);
  best[d] = 1;
  for (int k = d; k >= 0; --k) {
    if (best[k] < 0) continue;   // does not feed d
    const double through = k == d ? 1.0 : best[k];
    const double a = amp(k);
    for (const ValueRef& r : model.layers[k].refs) {
      if (r.is_input) continue;
      const double v = through * a;
      if (v > best[r.index]) {
        best[r.index] = v;
        next[r.index] = k;
      }
    }
  }
  // Scanned from d backwards, an earlier layer takes over only when it accounts for more than
  // twice as much: a layer's isolated error already holds its inputs' storage rounding amplified
  // by the layer itself, so the same rounding seen one layer earlier, times that amplification,
  // is no stronger evidence (and would pull every culprit towards the first layer).
  int culprit = d;
  double top = -1;
  for (int k = d; k >= 0; --k) {
    if (best[k] < 0) continue;
    const LayerResult& lr = mr.layers[k];
    double c = (lr.isolated.count ? lr.isolated.rel_l2() : 0.0) * best[k];
    if (std::isnan(c)) c = HUGE_VAL;
    if (top < 0 || c > 2 * top || (std::isinf(c) && c >= top)) {
      top = c;
      culprit = k;
    }
  }
  mr.culprit = culprit;
  for (int k = culprit; k >= 0; k = k == d ? -1 : next[k]) {
    ChainLink link;
    link.layer = k;
    link.own_rel_l2 = mr.layers[k].isolated.rel_l2();
    link.amplification = amp(k);
    link.chained_rel_l2 = mr.layers[k].chained.rel_l2();
    mr.culprit_chain.push_back(link);
  }
}

}  // namespace

void SampleWorst::add(double rel, double use, double k, int64_t batch, int64_t sample) {
  if (std::isnan(rel)) rel = HUGE_VAL;
  if (std::isnan(use)) use = HUGE_VAL;
  if (rel_batch < 0 || rel > rel_l2) {
    rel_l2 = rel;
    rel_batch = batch;
    rel_sample = sample;
  }
  if (use_batch < 0 || use > budget_use) {
    budget_use = use;
    kappa = k;
    use_batch = batch;
    use_sample = sample;
  }
}

void SampleWorst::merge(const SampleWorst& o) {
  if (o.rel_batch >= 0 && (rel_batch < 0 || o.rel_l2 > rel_l2)) {
    rel_l2 = o.rel_l2;
    rel_batch = o.rel_batch;
    rel_sample = o.rel_sample;
  }
  if (o.use_batch >= 0 && (use_batch < 0 || o.budget_use > budget_use)) {
    budget_use = o.budget_use;
    kappa = o.kappa;
    use_batch = o.use_batch;
    use_sample = o.use_sample;
  }
}

double AnalysisResult::kappa(int layer) const {
  if (layer < 0 || static_cast<size_t>(layer) >= sensitivity.size() || !sensitivity[layer].count) return 1;
  return kappa_of(sensitivity[layer].rel_l2());
}

double AnalysisResult::input_kappa(int input) const {
  if (input < 0 || static_cast<size_t>(input) >= input_sensitivity.size() || !input_sensitivity[input].count)
    return 1;
  return kappa_of(input_sensitivity[input].rel_l2());
}

bool AnalysisResult::passed() const {
  for (const ModeResult& m : modes)
    if (!m.passed()) return false;
  return !user_run || user_run->result.passed();
}

// The user's run: the budget rules wherever activations were recorded, and how it compares with
// divscope's emulation of the same mode.
void judge_user_run(AnalysisResult& res) {
  if (!res.user_run) return;
  UserRun& ur = *res.user_run;
  ModeResult& mr = ur.result;
  mr.first_divergent = mr.culprit = -1;
  mr.culprit_chain.clear();
  const ModeResult* emu = nullptr;
  for (const ModeResult& m : res.modes)
    if (m.mode == mr.mode) emu = &m;
  ur.vs_emulation.assign(mr.layers.size(), -1);
  ur.worst_vs_emulation = -1;
  for (size_t i = 0; i < mr.layers.size(); ++i) {
    LayerResult& lr = mr.layers[i];
    if (!lr.chained.count) continue;
    lr.rule = budget_layer_rule(lr.chained, lr.chained_worst, lr.tolerance);
    lr.diverged = lr.rule != Rule::none;
    lr.reason = explain(lr.rule, mr.mode, lr, lr.chained, lr.chained_worst);
    if (lr.diverged && mr.first_divergent < 0) mr.first_divergent = static_cast<int>(i);
    if (emu) {
      const double mine = emu->layers[i].chained.rel_l2(), theirs = lr.chained.rel_l2();
      const double floor = unit_roundoff(mr.mode);   // below one rounding, a ratio means nothing
      ur.vs_emulation[i] = std::max(theirs, floor) / std::max(mine, floor);
      if (ur.worst_vs_emulation < 0 || ur.vs_emulation[i] > ur.vs_emulation[ur.worst_vs_emulation])
        ur.worst_vs_emulation = static_cast<int>(i);
    }
  }
  mr.culprit = mr.first_divergent;
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
      const Criterion crit = lr.tolerance.criterion.value_or(res.criterion);
      lr.rule = lr.isolated_rule = Rule::none;
      lr.baseline_limit = lr.isolated_baseline_limit = -1;
      // strict is judged bitwise against the CPU strict path; on the CPU backend the
      // candidate is that path itself, so only a CUDA backend can break it.
      if (bitwise_equal_strict(mr.mode)) {
        if (backend != "cpu" && lr.strict_bitwise_mismatch > 0) lr.rule = Rule::bitwise;
      } else if (crit == Criterion::baseline && judged_by_baseline(mr.mode)) {
        const LayerResult& anchor = fp32->layers[i];
        const double f = lr.tolerance.baseline_factor;
        lr.baseline_limit = baseline_limit(mr.mode, f, anchor.chained.rel_l2());
        lr.isolated_baseline_limit = baseline_limit(mr.mode, f, anchor.isolated.rel_l2());
        if (breaks_baseline(lr.chained.rel_l2(), lr.chained.nonfinite_new, lr.baseline_limit))
          lr.rule = lr.chained.nonfinite_new ? Rule::nonfinite : Rule::baseline;
        if (breaks_baseline(lr.isolated.rel_l2(), lr.isolated.nonfinite_new, lr.isolated_baseline_limit))
          lr.isolated_rule = lr.isolated.nonfinite_new ? Rule::nonfinite : Rule::baseline;
      } else if (crit == Criterion::budget) {
        lr.rule = budget_layer_rule(lr.chained, lr.chained_worst, lr.tolerance);
        lr.isolated_rule = budget_layer_rule(lr.isolated, lr.isolated_worst, lr.tolerance);
      } else {
        if (breaks(lr.chained, lr.tolerance)) lr.rule = lr.chained.nonfinite_new ? Rule::nonfinite : Rule::allclose;
        if (breaks(lr.isolated, lr.tolerance))
          lr.isolated_rule = lr.isolated.nonfinite_new ? Rule::nonfinite : Rule::allclose;
      }
      if (lr.nondeterministic > 0) lr.rule = Rule::nondeterministic;
      lr.diverged = lr.rule != Rule::none;
      lr.isolated_failed = lr.isolated_rule != Rule::none;
      lr.reason = explain(lr.rule, mr.mode, lr, lr.chained, lr.chained_worst);
      if (lr.diverged && mr.first_divergent < 0) mr.first_divergent = static_cast<int>(i);
      double in_err = 0;
      for (const ValueRef& r : model.layers[i].refs)
        in_err = std::max(in_err, r.is_input ? mr.inputs[r.index].rel_l2()
                                             : mr.layers[r.index].chained.rel_l2());
      const double out_err = lr.chained.rel_l2();
      lr.amplification = in_err > 0 && std::isfinite(out_err) && std::isfinite(in_err) ? out_err / in_err : -1;
    }
    find_culprit(model, res, mr);
    if (bitwise_equal_strict(mr.mode)) {   // judged per layer, bitwise
      mr.samples.clear();
      mr.divergent_samples = 0;
    }
    keep_worst_samples(mr.samples, res.max_samples);
  }
  judge_user_run(res);
}

void keep_worst_samples(std::vector<SampleDivergence>& samples, int64_t k) {
  std::stable_sort(samples.begin(), samples.end(), [](const SampleDivergence& a, const SampleDivergence& b) {
    if (a.layer != b.layer) return a.layer < b.layer;
    return a.rel_l2 > b.rel_l2;
  });
  if (k >= 0 && static_cast<int64_t>(samples.size()) > k) samples.resize(static_cast<size_t>(k));
}

void add_batches(AnalysisResult& to, const AnalysisResult& from, BatchesFrom source) {
  const bool report = source == BatchesFrom::report;
  // A batch's statistics are merged whole (a LayerStats merged into an empty one is copied, so
  // adding one batch at a time gives the sums of adding each layer's directly). A report's
  // max_abs_batch is already the absolute batch of its maximum: merging with it keeps it, and a
  // tie keeps the earlier batch, as the run does; a report's empty statistics add nothing.
  auto add = [report](LayerStats& t, const LayerStats& f) {
    if (!report || f.count) t.merge(f, f.max_abs_batch);
  };
  // The probe keeps only its sums (probe_sums: all that kappa needs), in a run and a report.
  auto add_probe = [](LayerStats& t, const LayerStats& f) {
    t.count += f.count;
    t.sum_err2 += f.sum_err2;
    t.sum_ref2 += f.sum_ref2;
  };
  to.batches += from.batches;
  to.samples += from.samples;
  for (size_t i = 0; i < to.recorded.size() && i < from.recorded.size(); ++i) add(to.recorded[i], from.recorded[i]);
  for (size_t i = 0; i < to.sensitivity.size() && i < from.sensitivity.size(); ++i)
    add_probe(to.sensitivity[i], from.sensitivity[i]);
  for (size_t i = 0; i < to.input_sensitivity.size() && i < from.input_sensitivity.size(); ++i)
    add_probe(to.input_sensitivity[i], from.input_sensitivity[i]);
  for (size_t m = 0; m < to.modes.size() && m < from.modes.size(); ++m) {
    ModeResult& mt = to.modes[m];
    const ModeResult& mf = from.modes[m];
    if (mt.inputs.size() < mf.inputs.size()) mt.inputs.resize(mf.inputs.size());
    for (size_t i = 0; i < mf.inputs.size(); ++i) add(mt.inputs[i], mf.inputs[i]);
    for (size_t i = 0; i < mt.layers.size() && i < mf.layers.size(); ++i) {
      LayerResult& lt = mt.layers[i];
      const LayerResult& lf = mf.layers[i];
      add(lt.chained, lf.chained);
      add(lt.isolated, lf.isolated);
      lt.strict_bitwise_mismatch += lf.strict_bitwise_mismatch;
      lt.nondeterministic += lf.nondeterministic;
      lt.chained_worst.merge(lf.chained_worst);
      lt.isolated_worst.merge(lf.isolated_worst);
    }
    // Appended in batch order (judge() sorts stably, so ties stay in batch order); bounded:
    // sorted and cut back to max_samples whenever twice that many have gathered.
    mt.samples.insert(mt.samples.end(), mf.samples.begin(), mf.samples.end());
    mt.divergent_samples += mf.divergent_samples;
    if (static_cast<int64_t>(mt.samples.size()) >= 2 * std::max<int64_t>(to.max_samples, 1))
      keep_worst_samples(mt.samples, to.max_samples);
  }
  if (from.user_run && !to.user_run) {
    to.user_run = from.user_run;
  } else if (from.user_run) {
    for (size_t i = 0; i < to.user_run->result.layers.size() && i < from.user_run->result.layers.size(); ++i) {
      LayerResult& lt = to.user_run->result.layers[i];
      const LayerResult& lf = from.user_run->result.layers[i];
      if (!lf.chained.count) continue;
      if (!lt.chained.count) lt.unit = lf.unit, lt.tolerance = lf.tolerance;
      add(lt.chained, lf.chained);
      lt.chained_worst.merge(lf.chained_worst);
    }
  }
  if (!report) return;   // a run's findings are gathered by its checks
  // Findings of each kind and place: one, with the earliest example and every occurrence
  // (outlier batches are judged per shard: a merge cannot recompute them).
  for (const DataFinding& f : from.findings) {
    auto same = std::find_if(to.findings.begin(), to.findings.end(), [&](const DataFinding& g) {
      return g.kind == f.kind && g.where == f.where;
    });
    if (same == to.findings.end()) to.findings.push_back(f);
    else same->occurrences += f.occurrences;
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
  // The longest sum behind each layer: its own, and (chained) the longest upstream.
  std::vector<int64_t> own_sum(nl), chain_sum(nl);
  for (const Layer& l : model.layers) {
    own_sum[l.index] = chain_sum[l.index] = reduction_length(model, l);
    for (const ValueRef& r : l.refs)
      if (!r.is_input) chain_sum[l.index] = std::max(chain_sum[l.index], chain_sum[r.index]);
  }
  const auto fp32_at = std::find(opt.modes.begin(), opt.modes.end(), Mode::fp32);
  const int fp32_index = fp32_at == opt.modes.end() ? -1 : static_cast<int>(fp32_at - opt.modes.begin());
  if (opt.criterion == Criterion::baseline && fp32_index < 0)
    throw InputError("run: --criterion baseline needs the fp32 mode (its error is the baseline)");
  if (opt.repeat < 1) throw InputError("run: --repeat must be at least 1");
  if (!opt.fp32_layers.empty() && opt.fp32_layers.size() != nl)
    throw InputError("analysis: fp32_layers has " + std::to_string(opt.fp32_layers.size()) +
                     " flags for " + std::to_string(nl) + " layers");

  // The dump's selection, checked before any work: every glob names a layer, and the batches
  // asked for meet the replayed range.
  std::vector<bool> dump_layer(nl, true);
  int64_t d0 = b0, d1 = b1;
  DumpOptions dump_options;
  if (!opt.dump_path.empty()) {
    DumpSelection& sel = dump_options.selection;
    if (!opt.dump_layers.empty()) {
      dump_layer.assign(nl, false);
      for (const std::string& g : opt.dump_layers) {
        bool any = false;
        for (const Layer& l : model.layers)
          if (glob_match(g, l.name)) any = dump_layer[l.index] = true;
        if (!any)
          throw InputError("run: --dump-layers: '" + g + "' matches no layer of model '" + model.name + "'");
      }
    }
    if (!opt.dump_layers.empty()) sel.layers = opt.dump_layers;
    d0 = std::max(b0, opt.dump_batch_begin);
    d1 = opt.dump_batch_end < 0 ? b1 : std::min(b1, opt.dump_batch_end);
    if (d0 >= d1)
      throw InputError("run: --dump-batches " + std::to_string(opt.dump_batch_begin) + ":" +
                       (opt.dump_batch_end < 0 ? std::string() : std::to_string(opt.dump_batch_end)) +
                       " selects none of the replayed batches " + std::to_string(b0) + ":" +
                       std::to_string(b1));
    if (opt.dump_batch_begin > 0 || opt.dump_batch_end >= 0) sel.batches = std::make_pair(d0, d1);
    if (opt.dump_version) dump_options.version = opt.dump_version;
  }

  AnalysisResult res;
  res.criterion = opt.criterion;
  res.repeat = opt.repeat;
  res.batch_begin = b0;
  if (opt.max_samples < 0) throw InputError("run: --max-samples must be 0 or more");
  res.max_samples = opt.max_samples;
  for (Mode m : opt.modes) {
    ModeResult mr;
    mr.mode = m;
    mr.layers.resize(nl);
    for (size_t i = 0; i < nl; ++i) {
      mr.layers[i].tolerance = opt.policy.for_layer(m, model.layers[i].name);
      mr.layers[i].unit = effective_roundoff(m, chain_sum[i]);
      mr.layers[i].isolated_unit = effective_roundoff(m, own_sum[i]);
    }
    res.modes.push_back(std::move(mr));
  }
  res.recorded.resize(nl);
  res.sensitivity.resize(nl);
  res.input_sensitivity.resize(model.inputs.size());
  const AnalysisResult skeleton = res;   // each batch's statistics start from this
  // The CPU backend is stateless and runs the modes' tasks on every core; a device backend is
  // driven from one thread.
  std::unique_ptr<TaskPool> pool;
  if (backend.name() == "cpu" && opt.threads != 1) pool = std::make_unique<TaskPool>(opt.threads);
  // Data first: every recorded input of the range, before any layer runs.
  const auto analysis_start = std::chrono::steady_clock::now();
  res.findings = check_inputs(model, rec, b0, b1);
  res.times.checks += seconds_since(analysis_start);
  res.times.chained.assign(opt.modes.size(), 0);
  res.times.isolated.assign(opt.modes.size(), 0);
  res.times.compare.assign(opt.modes.size(), 0);
  if (opt.on_input_findings) opt.on_input_findings(res.findings);
  for (const DataFinding& f : res.findings)
    if (f.kind == "index_out_of_range") {
      res.stopped_on_data = true;
      return res;
    }
  ReferenceHealthTracker ref_health(model);
  // The backend keeps what it caches for this model (a device: parameters per mode) until the
  // analysis ends, however it ends.
  struct AnalysisScope {
    Backend& backend;
    AnalysisScope(Backend& b, const Model& m) : backend(b) { backend.begin_analysis(m); }
    ~AnalysisScope() { backend.end_analysis(); }
  } scope(backend, model);
  // Resume: the interrupted run's finished batches first, as if they had just run.
  int64_t first = b0;
  if (opt.resume) {
    first = opt.resume_from;
    if (first <= b0 || first >= b1 || opt.resume->batches != first - b0)
      throw InputError("run --resume: the journal's batches " + std::to_string(b0) + ":" +
                       std::to_string(first) + " do not fit the run's range " + std::to_string(b0) +
                       ":" + std::to_string(b1));
    add_batches(res, *opt.resume, BatchesFrom::run);
    for (const DataFinding& f : opt.resume->findings)
      if (f.kind.rfind("reference_", 0) == 0) ref_health.restore(f);
  }
  // The user's own run, when the recording holds it: its mode from the dtype (and, for float32,
  // TF32 allowed on a GPU by the capturing machine's flags).
  Mode user_mode = Mode::fp32;
  bool tf32_allowed = false;
  try {
    const nlohmann::json env = normalize_env(nlohmann::json::parse(rec.capture_environment()));
    const auto& fl = env.at("flags");
    tf32_allowed = !env.at("hardware").value("gpus", nlohmann::json::array()).empty() &&
                   (fl.value("torch.backends.cuda.matmul.allow_tf32", false) ||
                    fl.value("torch.backends.cudnn.allow_tf32", false));
  } catch (const std::exception&) {
  }
  std::unique_ptr<DumpWriter> dump;
  if (!opt.dump_path.empty()) {
    // A dump names a layer's dataset with '/' turned into '|': two layers that differ only
    // there would meet mid-run. Said before any work instead.
    std::map<std::string, const Layer*> seen;
    for (const Layer& l : model.layers) {
      auto [it, fresh] = seen.emplace(dump_name(l.name), &l);
      if (!fresh)
        throw InputError(model.file, l.path, "layers '" + it->second->name + "' and '" + l.name +
                                                 "' have the same name in a dump ('/' is stored as '|'); "
                                                 "rename one, or run without --dump");
    }
  }
  if (!opt.dump_path.empty())
    dump = std::make_unique<DumpWriter>(opt.dump_path, opt.dump_environment, dump_options, opt.resume_dump,
                                        opt.resume ? opt.resume_from : 0);

  // Every batch's statistics are gathered apart and added to the run's when the batch is done
  // (in batch order: the same sums as adding each layer's directly), so that a signal leaves
  // exactly the finished batches in `res` and the journal.
  std::vector<DataFinding> ref_done = ref_health.findings();
  int64_t b = first;
  try {
  for (; b < b1; ++b) {
    throw_if_interrupted();
    AnalysisResult cur = skeleton;
    auto t_read = std::chrono::steady_clock::now();
    std::vector<Tensor> inputs = rec.read_batch(static_cast<size_t>(b));
    res.times.read += seconds_since(t_read);
    const int64_t n = inputs[model.first_recorded_input()].shape[0];
    check_memory(model, n);
    const BatchPlan plan = plan_batch(model, live, n, opt.modes.size());
    check_backend_memory(model, plan, n, backend, b);
    res.times.values_plan = std::max(res.times.values_plan, plan.value_bytes);
    const bool dump_batch = dump && b >= d0 && b < d1;
    cur.samples += n;
    ++cur.batches;

    // Every tensor of the batch lives on the backend from here (docs/memory.md): the recorded
    // inputs go up once; the reference, the probe and every mode's chain are Values.
    std::vector<Value> in_vals;
    in_vals.reserve(inputs.size());
    for (const Tensor& t : inputs) in_vals.push_back(backend.upload(t));
    ValueSlots ref(model, live);
    ref.set_inputs(in_vals);

    // The sensitivity probe's own FP64 chain, and every value's per-sample kappa in this batch.
    ValueSlots probe(model, live);
    std::vector<std::vector<double>> input_kappa_s(inputs.size()), kappa_s(nl);
    {
      std::vector<Value> pin = in_vals;
      for (size_t i = 0; i < pin.size(); ++i) {
        if (model.inputs[i].dtype == "int64") continue;
        pin[i] = backend.perturbed(in_vals[i], b, -1 - static_cast<int64_t>(i));
        SampleErrors se;
        const CompareOptions co{Mode::fp64, 0, 0, -1, false, true};
        cur.input_sensitivity[i].merge(probe_sums(backend.compare(pin[i], in_vals[i], co, &se, model.inputs[i].name)), b);
        input_kappa_s[i] = sample_kappas(se, inputs[i].shape.empty() ? 0 : inputs[i].shape[0]);
      }
      probe.set_inputs(std::move(pin));
    }
    // Per-sample kappa of what layer l reads (its worst float input), for the isolated budget.
    auto input_kappa = [&](const Layer& l, int64_t s) {
      double k = 0;
      for (const ValueRef& r : l.refs) {
        const std::vector<double>& v = r.is_input ? input_kappa_s[r.index] : kappa_s[r.index];
        if (v.empty()) continue;
        k = std::max(k, v[v.size() == 1 ? 0 : s]);   // constants: one sample, broadcast
      }
      return k > 0 ? k : 1.0;
    };

    std::vector<std::unique_ptr<ModeRun>> runs;
    for (Mode m : opt.modes) {
      auto run = std::make_unique<ModeRun>(m, model, live);
      ModeResult& mr = cur.modes[runs.size()];
      mr.inputs.resize(inputs.size());
      std::vector<Value> fin;
      for (size_t i = 0; i < inputs.size(); ++i) {
        const bool is_float = model.inputs[i].dtype != "int64";
        fin.push_back(backend.to_storage(in_vals[i], m, is_float));
        CompareOptions co{m, 0, 0, -1};   // the rounding error of the recorded input itself
        mr.inputs[i].merge(backend.compare(fin.back(), in_vals[i], co, nullptr, model.inputs[i].name), b);
        // Mixed precision: inputs arrive in fp32 and are rounded where a layer of the mode reads
        // them (mixed_precision_inputs), so a layer kept in fp32 sees them whole.
        if (mixed(opt.fp32_layers, m)) fin.back() = backend.to_storage(in_vals[i], Mode::fp32, is_float);
      }
      if (m == Mode::strict && backend.name() != "cpu") {
        // The CPU strict path, on the host: the bitwise oracle of strict on a device.
        std::vector<TensorF> host_in;
        for (size_t i = 0; i < inputs.size(); ++i)
          host_in.push_back(to_storage(inputs[i], m, model.inputs[i].dtype != "int64"));
        run->cpu_strict = std::make_unique<ValueStore<float>>(model, live);
        run->cpu_strict->set_inputs(std::move(host_in));
      }
      run->chained.set_inputs(std::move(fin));
      run->sample_first.assign(n, SampleDivergence());
      runs.push_back(std::move(run));
    }
    in_vals.clear();   // held by the chains that still read them
    inputs.clear();
    inputs.shrink_to_fit();

    auto on_layer = [&](const Layer& l, const std::vector<const Value*>& ref_in, const Value& ref_out) {
      throw_if_interrupted();
      auto t0 = std::chrono::steady_clock::now();
      const ReferenceSummary summary = backend.summarize(ref_out);
      {
        // Inputs come to the host only for a sample the checks flag (docs/data-checks.md).
        std::vector<std::unique_ptr<HostTensor>> fetched(ref_in.size());
        ref_health.on_layer(l, summary, ref_in.size(), [&](size_t k) {
          if (!fetched[k]) fetched[k] = std::make_unique<HostTensor>(backend, *ref_in[k]);
          return fetched[k]->get();
        }, b);
      }
      if (b == b0 && backend.name() != "cpu") {
        std::vector<HostTensor> hin;
        hin.reserve(ref_in.size());
        std::vector<const Tensor*> hp;
        for (const Value* v : ref_in) hin.emplace_back(backend, *v);
        for (const HostTensor& h : hin) hp.push_back(h.get());
        cross_check_reference(l, hp, *HostTensor(backend, ref_out), backend.name());
      }
      const double floor = 1e-6 * summary.abs_max;
      const LayerStats& health = summary.health;
      res.times.checks += seconds_since(t0);
      // The probe's run of this layer: a task beside the modes' (it writes only the probe's
      // chain, this layer's sensitivity and kappa_s[l], read after every task has run).
      const int donate = donatable_input(l, live);
      auto probe_task = [&] {
        const auto tp = std::chrono::steady_clock::now();
        Value probe_out = backend.reference_donating(l, probe.inputs_of(l), donate);
        probe.release_after(l.index);   // this layer's inputs: probe_out may now be their only holder
        if (!exact_op(l.op)) probe_out = backend.perturbed_donating(std::move(probe_out), b, l.index);
        SampleErrors se;
        const CompareOptions co{Mode::fp64, 0, 0, floor, false, true};
        cur.sensitivity[l.index].merge(probe_sums(backend.compare(probe_out, ref_out, co, &se, l.name)), b);
        kappa_s[l.index] = sample_kappas(se, n);
        probe.put(l.index, std::move(probe_out));
        probe.release_after(l.index);   // an output nobody reads goes at once
        res.times.probe += seconds_since(tp);
      };
      t0 = std::chrono::steady_clock::now();
      if (dump_batch && dump_layer[l.index]) dump->write(b, "fp64", l.name, *HostTensor(backend, ref_out), Mode::fp64);
      SampleErrors user_se;
      bool user_compared = false;
      if (rec.has_run_activation(static_cast<size_t>(b), l.name)) {
        std::string dtype;
        Tensor theirs = rec.read_run_activation(static_cast<size_t>(b), l.name, ref_out.shape(), &dtype);
        if (!cur.user_run) {
          cur.user_run.emplace();
          cur.user_run->dtype = dtype;
          user_mode = dtype == "float16" ? Mode::fp16 : dtype == "bfloat16" ? Mode::bf16
                      : dtype == "float64" ? Mode::fp64 : tf32_allowed ? Mode::tf32 : Mode::fp32;
          ModeResult& ur = cur.user_run->result;
          ur.mode = user_mode;
          ur.layers.resize(nl);
          for (size_t i = 0; i < nl; ++i) {
            ur.layers[i].tolerance = opt.policy.for_layer(user_mode == Mode::fp64 ? Mode::fp32 : user_mode,
                                                          model.layers[i].name);
            ur.layers[i].unit = user_mode == Mode::fp64
                                    ? std::sqrt(static_cast<double>(chain_sum[i])) * unit_roundoff(Mode::fp64)
                                    : effective_roundoff(user_mode, chain_sum[i]);
          }
        }
        const CompareOptions co{user_mode, 0, 0, floor, false};
        LayerStats st = compare_host(backend, theirs, ref_out, co, &user_se, l.name);
        copy_health(st, health);
        cur.user_run->result.layers[l.index].chained.merge(st, b);
        user_compared = true;   // its worst samples need this layer's kappa: after the probe
      }
      if (rec.has_activation(static_cast<size_t>(b), l.name)) {
        Tensor theirs = rec.read_activation(static_cast<size_t>(b), l.name, ref_out.shape());
        CompareOptions co{Mode::fp64, 0, 0, floor, false};
        LayerStats theirs_stats = compare_host(backend, theirs, ref_out, co, nullptr, l.name);
        copy_health(theirs_stats, health);
        cur.recorded[l.index].merge(theirs_stats, b);
      }
      res.times.checks += seconds_since(t0);

      // The probe and every mode's chained and isolated run of this layer are independent tasks
      // (each writes only its own state and its own part of the LayerResult).
      const int64_t per_sample = n ? ref_out.size() / n : 0;
      auto chained_task = [&](ModeRun& run, LayerResult& lr, const CompareOptions& co) {
        std::vector<const Value*> in = run.chained.inputs_of(l);
        std::vector<Value> cast;
        const Mode m = mixed_precision_inputs(model, opt.fp32_layers, run.mode, l, backend, in, cast);
        auto t0 = std::chrono::steady_clock::now();
        // A repeated run reads the inputs again: nothing is given up then.
        Value chained_out = backend.forward_donating(m, l, in, opt.repeat > 1 ? -1 : donate);
        int64_t differ = 0;
        for (int k = 1; k < opt.repeat; ++k)
          differ = std::max(differ, backend.bitwise_differences(chained_out, backend.forward(m, l, in)));
        cast.clear();
        lr.nondeterministic += differ;
        run.chained_s += seconds_since(t0);
        t0 = std::chrono::steady_clock::now();
        LayerStats chained = backend.compare(chained_out, ref_out, co, &run.samples, l.name);
        run.chained_compare_s += seconds_since(t0);
        copy_health(chained, health);
        lr.chained.merge(chained, b);
        if (run.cpu_strict) {
          TensorF cpu_out;
          mode_forward(Mode::strict, l, run.cpu_strict->inputs_of(l), cpu_out);
          lr.strict_bitwise_mismatch += backend.bitwise_differences(chained_out, backend.upload(cpu_out));
          run.cpu_strict->put(l.index, std::move(cpu_out));
        }
        run.chained.put(l.index, std::move(chained_out));
      };
      // Isolated: the reference's own upstream outputs, rounded to this mode's storage.
      auto isolated_task = [&](ModeRun& run, LayerResult& lr, const CompareOptions& co) {
        auto t0 = std::chrono::steady_clock::now();
        Value iso_out;
        {
          std::vector<Value> iso_in;
          std::vector<const Value*> iso_ptrs;
          iso_in.reserve(l.refs.size());
          for (size_t k = 0; k < l.refs.size(); ++k) {
            const ValueRef& r = l.refs[k];
            const bool is_float = !(r.is_input && model.inputs[r.index].dtype == "int64");
            iso_in.push_back(backend.to_storage(*ref_in[k], run.mode, is_float));
          }
          for (const Value& t : iso_in) iso_ptrs.push_back(&t);
          // The rounded inputs are this task's own: the output may take the first one's place.
          iso_out = backend.forward_donating(run.mode, l, iso_ptrs, 0);
        }
        run.isolated_s += seconds_since(t0);
        t0 = std::chrono::steady_clock::now();
        LayerStats isolated = backend.compare(iso_out, ref_out, co, &run.iso_samples, l.name);
        run.isolated_compare_s += seconds_since(t0);
        copy_health(isolated, health);
        lr.isolated.merge(isolated, b);
      };
      const size_t per_mode = opt.isolated ? 2 : 1;
      auto task = [&](size_t t) {
        if (t == 0) return probe_task();   // first: the longest
        --t;
        ModeRun& run = *runs[t / per_mode];
        LayerResult& lr = cur.modes[t / per_mode].layers[l.index];
        const CompareOptions co{run.mode, lr.tolerance.atol, lr.tolerance.rtol, floor, false};
        if (t % per_mode == 0) chained_task(run, lr, co);
        else isolated_task(run, lr, co);
      };
      if (pool) pool->run(1 + per_mode * runs.size(), task);
      else for (size_t t = 0; t < 1 + per_mode * runs.size(); ++t) task(t);

      // Per sample: the worst samples under the budget criterion, and the first layer where the
      // sample's own chained error breaks the policy (after every mode's task, since the
      // baseline criterion reads fp32's errors).
      const std::vector<double>& ks = kappa_s[l.index];
      if (user_compared) {
        LayerResult& ulr = cur.user_run->result.layers[l.index];
        for (int64_t s = 0; s < n && s < static_cast<int64_t>(user_se.err2.size()); ++s) {
          const double rel = sample_rel_l2(user_se, s);
          ulr.chained_worst.add(rel, rel / (ulr.unit * ks[s]), ks[s], b, s);
        }
      }
      for (size_t mi = 0; mi < runs.size(); ++mi) {
        ModeRun& run = *runs[mi];
        LayerResult& lr = cur.modes[mi].layers[l.index];
        const SampleErrors& se = run.samples;
        const Criterion crit = lr.tolerance.criterion.value_or(opt.criterion);
        const bool by_baseline = crit == Criterion::baseline && judged_by_baseline(run.mode);
        const double u = lr.unit;
        for (int64_t s = 0; s < n; ++s) {
          const double rel = sample_rel_l2(se, s);
          lr.chained_worst.add(rel, rel / (u * ks[s]), ks[s], b, s);
          if (opt.isolated) {
            const double rel_iso = sample_rel_l2(run.iso_samples, s);
            const double k_iso = std::max(ks[s] / input_kappa(l, s), 1.0);
            lr.isolated_worst.add(rel_iso, rel_iso / (lr.isolated_unit * k_iso), k_iso, b, s);
          }
          SampleDivergence& sd = run.sample_first[s];
          if (sd.layer >= 0) continue;
          const bool broke =
              by_baseline
                  ? breaks_baseline(rel, se.nonfinite_new[s],
                                    baseline_limit(run.mode, lr.tolerance.baseline_factor,
                                                   sample_rel_l2(runs[fp32_index]->samples, s)))
              : crit == Criterion::budget
                  ? budget_rule(rel, se.nonfinite_new[s] > 0, ks[s], u, lr.tolerance) != Rule::none
                  : breaks(se.mismatch[s], se.nonfinite_new[s], per_sample, lr.tolerance);
          if (broke)
            sd = {b, s, l.index, rel, se.max_abs[s], se.mismatch[s], per_sample, se.nonfinite_new[s] > 0};
        }
      }

      for (auto& run : runs) {
        if (dump_batch && dump_layer[l.index]) {
          // In its mode's storage precision; a layer that bisect keeps in fp32 holds floats.
          const bool in_fp32 = mixed(opt.fp32_layers, run->mode) && opt.fp32_layers[l.index];
          dump->write(b, mode_name(run->mode), l.name, *HostTensorF(backend, run->chained.layer(l.index)),
                      in_fp32 ? Mode::fp32 : run->mode);
        }
        run->chained.release_after(l.index);
        if (run->cpu_strict) run->cpu_strict->release_after(l.index);
      }
    };
    for (const Layer& l : model.layers) {
      const std::vector<const Value*> ref_in = ref.inputs_of(l);
      const auto t0 = std::chrono::steady_clock::now();
      Value ref_out = backend.reference(l, ref_in);
      res.times.reference += seconds_since(t0);
      on_layer(l, ref_in, ref_out);
      ref.put(l.index, std::move(ref_out));
      ref.release_after(l.index);
    }
    for (size_t mi = 0; mi < runs.size(); ++mi)
      for (int64_t s = 0; s < n; ++s)
        if (runs[mi]->sample_first[s].layer >= 0) {
          cur.modes[mi].samples.push_back(runs[mi]->sample_first[s]);
          ++cur.modes[mi].divergent_samples;
        }
    add_batches(res, cur, BatchesFrom::run);
    for (size_t mi = 0; mi < runs.size(); ++mi) {
      res.times.chained[mi] += runs[mi]->chained_s;
      res.times.isolated[mi] += runs[mi]->isolated_s;
      res.times.compare[mi] += runs[mi]->chained_compare_s + runs[mi]->isolated_compare_s;
    }
    ref_done = ref_health.findings();
    if (dump) dump->checkpoint();
    if (opt.checkpoint) opt.checkpoint({res, ref_done, b + 1, 0, {}});
    if (opt.progress) opt.progress(b - b0 + 1, b1 - b0);
  }
  } catch (const Interrupted& e) {
    // The unfinished batch is dropped: from the dump too, which is kept for --resume.
    std::string partial;
    if (dump) partial = dump->suspend(static_cast<size_t>(b));
    if (opt.checkpoint) opt.checkpoint({res, ref_done, b, e.signal(), partial});
    throw;
  }

  if (dump) dump->finish();   // renamed into place only now: a failed run leaves no half dump
  for (const DataFinding& f : ref_health.findings()) res.findings.push_back(f);
  judge(model, backend.name(), res);
  res.times.wall = seconds_since(analysis_start);
  res.times.values_peak = backend.memory().peak;
  return res;
}

}  // namespace divscope
