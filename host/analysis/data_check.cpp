// Data and reference checks (data_check.h, docs/data-checks.md).
#include "analysis/data_check.h"

#include "backends/values.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace divscope {
namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// Elements per sample of a batch-first tensor (0 for an empty one).
int64_t per_sample(const Tensor& t) {
  if (t.shape.empty() || t.shape[0] <= 0) return 0;
  return t.size() / t.shape[0];
}

// Row `s` of a batch-first tensor; a batch-1 tensor (a constant) gives its only row.
const double* sample_row(const Tensor& t, int64_t s) {
  const int64_t row = (t.shape.empty() || t.shape[0] == 1) ? 0 : s;
  return t.ptr() + row * per_sample(t);
}

double median(std::vector<double> v) {
  const size_t n = v.size();
  std::nth_element(v.begin(), v.begin() + n / 2, v.end());
  double hi = v[n / 2];
  if (n % 2) return hi;
  double lo = *std::max_element(v.begin(), v.begin() + n / 2);
  return 0.5 * (lo + hi);
}

constexpr size_t kMinBatchesForOutliers = 4;
constexpr double kRmsRatio = 10.0;       // rms > 10x or < 0.1x the median batch rms
constexpr double kMeanMads = 10.0;       // |mean - median mean| > 10 MAD ...
constexpr double kMeanRmsFraction = 0.5; // ... and > 0.5 median rms
constexpr int64_t kDeadMinElements = 9;  // reference_dead: more than 8 elements per sample

void check_float_sample(const GraphInput& gi, const double* x, int64_t n, int64_t b,
                        int64_t s, FindingList& agg) {
  int64_t nan = 0, inf = 0;
  bool all_zero = true, constant = true;
  for (int64_t k = 0; k < n; ++k) {
    const double v = x[k];
    if (std::isnan(v)) {
      ++nan;
    } else if (std::isinf(v)) {
      ++inf;
    }
    all_zero = all_zero && v == 0;
    constant = constant && v == x[0];
  }
  if (nan || inf) {
    agg.add({"input_nonfinite", b, s, gi.name,
             std::to_string(nan) + " NaN, " + std::to_string(inf) + " Inf among " +
                 std::to_string(n) + " values"});
    return;
  }
  if (n < 2) return;
  if (all_zero)
    agg.add({"input_all_zero", b, s, gi.name, "all " + std::to_string(n) + " values are 0"});
  else if (constant)
    agg.add({"input_constant", b, s, gi.name,
             "all " + std::to_string(n) + " values equal " + num(x[0])});
}

void check_outliers(const GraphInput& gi, const std::vector<InputChecker::BatchStat>& stats,
                    FindingList& agg) {
  if (stats.size() < kMinBatchesForOutliers) return;
  std::vector<double> rms, mean;
  for (const InputChecker::BatchStat& st : stats) {
    rms.push_back(st.rms);
    mean.push_back(st.mean);
  }
  const double med_rms = median(rms), med_mean = median(mean);
  std::vector<double> dev;
  for (double m : mean) dev.push_back(std::fabs(m - med_mean));
  const double mad = median(dev);
  const std::string over = " over " + std::to_string(stats.size()) + " batches";
  for (const InputChecker::BatchStat& st : stats) {
    std::string why;
    if (med_rms > 0 && st.rms > kRmsRatio * med_rms)
      why = "RMS " + num(st.rms) + " is " + num(st.rms / med_rms) + "x the median batch RMS " +
            num(med_rms) + over;
    else if (med_rms > 0 && st.rms < med_rms / kRmsRatio)
      why = "RMS " + num(st.rms) + " is " + num(st.rms / med_rms) + "x the median batch RMS " +
            num(med_rms) + over;
    else if (med_rms == 0 && st.rms > 0)
      why = "RMS " + num(st.rms) + " where the median batch RMS is 0" + over;
    else if (const double d = std::fabs(st.mean - med_mean);
             d > kMeanMads * mad && d > kMeanRmsFraction * med_rms && d > 0)
      why = "mean " + num(st.mean) + " is " + num(d) + " from the median batch mean " +
            num(med_mean) + " (MAD " + num(mad) + ", median RMS " + num(med_rms) + ")" + over;
    if (!why.empty()) agg.add({"input_outlier_batch", st.batch, -1, gi.name, why});
  }
}

}  // namespace

InputChecker::InputChecker(const Model& m)
    : model_(&m),
      vocab_(m.inputs.size(), -1),
      vocab_layer_(m.inputs.size()),
      stats_(m.inputs.size()),
      binary_(m.inputs.size(), 1) {
  // Per int64 input: the smallest embedding table it feeds, and that layer.
  for (const Layer& l : m.layers) {
    if (l.op != "embedding" || l.refs.empty() || !l.refs[0].is_input) continue;
    const Tensor* w = l.param("weight");
    if (!w || w->shape.empty()) continue;
    int64_t& v = vocab_[l.refs[0].index];
    if (v < 0 || w->shape[0] < v) {
      v = w->shape[0];
      vocab_layer_[l.refs[0].index] = l.name;
    }
  }
}

void InputChecker::check_indices(size_t i, const Tensor& t, int64_t b) {
  const GraphInput& gi = model_->inputs[i];
  if (vocab_[i] < 0) return;
  const int64_t N = t.shape.empty() ? 0 : t.shape[0], n = per_sample(t);
  const double V = static_cast<double>(vocab_[i]);
  for (int64_t s = 0; s < N; ++s) {
    const double* x = t.ptr() + s * n;
    int64_t bad = 0, first = -1;
    for (int64_t k = 0; k < n; ++k)
      if (!(x[k] >= 0 && x[k] < V)) {
        if (!bad) first = k;
        ++bad;
      }
    if (bad)
      found_.add({"index_out_of_range", b, s, gi.name,
                  "index " + num(x[first]) + " at position " + std::to_string(first) +
                      " is outside [0, " + std::to_string(vocab_[i]) + ") of embedding '" +
                      vocab_layer_[i] + "' (" + std::to_string(bad) + " of " +
                      std::to_string(n) + " indices)"});
  }
}

void InputChecker::on_batch(int64_t b, const std::vector<Tensor>& inputs) {
  const Model& m = *model_;
  for (size_t i = 0; i < m.inputs.size() && i < inputs.size(); ++i) {
    const GraphInput& gi = m.inputs[i];
    if (gi.constant) continue;
    const Tensor& t = inputs[i];
    if (gi.dtype == "int64") {
      check_indices(i, t, b);
      continue;
    }
    const int64_t N = t.shape.empty() ? 0 : t.shape[0], n = per_sample(t);
    double sum = 0, sum2 = 0;
    int64_t count = 0;
    bool bin = binary_[i];
    for (int64_t s = 0; s < N; ++s) {
      const double* x = t.ptr() + s * n;
      check_float_sample(gi, x, n, b, s, found_);
      for (int64_t k = 0; k < n; ++k)
        if (std::isfinite(x[k])) {
          sum += x[k];
          sum2 += x[k] * x[k];
          ++count;
          bin = bin && (x[k] == 0 || x[k] == 1);
        }
    }
    binary_[i] = bin;
    if (count) stats_[i].push_back({b, std::sqrt(sum2 / count), sum / count});
  }
}

std::vector<DataFinding> InputChecker::findings() const {
  const Model& m = *model_;
  // A mask (every value 0 or 1) is constant wherever nothing is masked, and its batch
  // statistics follow the padding: neither is a data problem.
  FindingList out;
  for (const DataFinding& f : found_.list()) {
    const int i = m.find_input(f.where);
    if (f.kind == "input_constant" && i >= 0 && binary_[i]) continue;
    out.add(f);
  }
  for (size_t i = 0; i < m.inputs.size(); ++i)
    if (!m.inputs[i].constant && m.inputs[i].dtype != "int64" && !binary_[i])
      check_outliers(m.inputs[i], stats_[i], out);
  return out.list();
}

std::vector<DataFinding> check_inputs(const Model& m, const RecordingReader& rec, int64_t b0,
                                      int64_t b1) {
  InputChecker checker(m);
  b1 = std::min<int64_t>(b1, static_cast<int64_t>(rec.num_batches()));
  for (int64_t b = std::max<int64_t>(b0, 0); b < b1; ++b)
    checker.on_batch(b, rec.read_batch(static_cast<size_t>(b)));
  return checker.findings();
}

const std::vector<std::string>& dead_checked_ops() {
  static const std::vector<std::string> ops = {
      "linear",    "matmul",      "conv2d",     "conv_transpose2d", "batchnorm2d",
      "layernorm", "rmsnorm",     "groupnorm",  "relu",             "leaky_relu",
      "gelu",      "silu",        "sigmoid",    "tanh",             "hardswish",
      "hardsigmoid", "hardtanh",  "softmax",    "log_softmax",      "exp"};
  return ops;
}

void FindingList::add(DataFinding f) {
  auto key = std::make_pair(f.kind, f.where);
  auto it = index_.find(key);
  if (it != index_.end()) {
    found_[it->second].occurrences += f.occurrences;
    return;
  }
  index_.emplace(std::move(key), found_.size());
  found_.push_back(std::move(f));
}

ReferenceHealthTracker::ReferenceHealthTracker(const Model& m) {
  const std::vector<std::string>& ops = dead_checked_ops();
  for (const Layer& l : m.layers)
    dead_checked_.push_back(std::find(ops.begin(), ops.end(), l.op) != ops.end());
}

void ReferenceHealthTracker::on_layer(const Layer& l, const std::vector<const Tensor*>& in,
                                      const Tensor& out, int64_t batch) {
  on_layer(l, summarize_host(out.ptr(), out.shape), in.size(),
           [&](size_t k) { return in[k]; }, batch);
}

void ReferenceHealthTracker::on_layer(const Layer& l, const ReferenceSummary& out, size_t inputs,
                                      const std::function<const Tensor*(size_t)>& input,
                                      int64_t batch) {
  const int64_t N = static_cast<int64_t>(out.samples.size());
  const int64_t n = N > 0 ? out.health.ref_finite + out.health.ref_nan + out.health.ref_inf : 0;
  const int64_t per = N > 0 ? n / N : 0;
  if (N <= 0) return;
  if (batch != batch_ || static_cast<int64_t>(sample_nonfinite_.size()) != N) {
    batch_ = batch;
    sample_nonfinite_.assign(N, 0);
  }
  const std::vector<std::string>& ops = dead_checked_ops();
  const bool dead_op = l.index >= 0 && l.index < static_cast<int>(dead_checked_.size())
                           ? dead_checked_[l.index] != 0
                           : std::find(ops.begin(), ops.end(), l.op) != ops.end();
  const bool check_dead = per >= kDeadMinElements && dead_op;
  // The inputs are read only for a sample that is non-finite or entirely zero (on a device
  // backend: fetched then, once per layer).
  std::vector<const Tensor*> in(inputs, nullptr);
  std::vector<char> fetched(inputs, 0);
  auto input_at = [&](size_t k) {
    if (!fetched[k]) in[k] = input(k), fetched[k] = 1;
    return in[k];
  };
  for (int64_t s = 0; s < N; ++s) {
    const SampleHealth& h = out.samples[s];
    if (h.nonfinite > 0) {
      if (sample_nonfinite_[s]) continue;
      sample_nonfinite_[s] = 1;   // reported here, or inherited from a non-finite input
      bool inputs_finite = true;
      for (size_t k = 0; k < inputs && inputs_finite; ++k) {
        const Tensor* t = input_at(k);
        if (!t || per_sample(*t) == 0) continue;
        const double* x = sample_row(*t, s);
        for (int64_t j = 0, m = per_sample(*t); j < m && inputs_finite; ++j)
          inputs_finite = std::isfinite(x[j]);
      }
      if (inputs_finite)
        found_.add({"reference_nonfinite", batch, s, l.name,
             std::to_string(h.nan) + " NaN, " + std::to_string(h.inf) + " Inf among " +
                 std::to_string(per) + " values of the output, from finite inputs"});
      continue;
    }
    if (!h.all_zero || !check_dead) continue;
    bool inputs_nonzero = true;
    for (size_t k = 0; k < inputs; ++k) {
      const Tensor* t = input_at(k);
      if (!t || per_sample(*t) == 0) continue;
      const double* x = sample_row(*t, s);
      bool any = false;
      for (int64_t j = 0, m = per_sample(*t); j < m && !any; ++j) any = x[j] != 0;
      if (!any) {
        inputs_nonzero = false;
        break;
      }
    }
    if (!inputs_nonzero) continue;
    std::string why = "all " + std::to_string(per) + " output values are 0 while its inputs are not";
    const Tensor* w = l.param("weight");
    const Tensor* bias = l.param("bias");
    auto zero = [](const Tensor* t) {
      return !t || std::all_of(t->data.begin(), t->data.end(), [](double v) { return v == 0; });
    };
    if (w && zero(w) && zero(bias))
      why += " (its weight" + std::string(bias ? " and bias are" : " is") +
             " all zero: an untrained, zero-initialised layer?)";
    found_.add({"reference_dead", batch, s, l.name, why});
  }
}

std::vector<DataFinding> ReferenceHealthTracker::findings() const { return found_.list(); }

std::string finding_line(const DataFinding& f) {
  static const std::map<std::string, std::string> what = {
      {"input_nonfinite", "NaN/Inf in the input"},
      {"input_all_zero", "all-zero input"},
      {"input_constant", "constant input"},
      {"index_out_of_range", "index out of range"},
      {"input_outlier_batch", "outlier batch"},
      {"reference_nonfinite", "FP64 reference becomes non-finite"},
      {"reference_dead", "FP64 reference output entirely zero"}};
  auto it = what.find(f.kind);
  std::string line = (it != what.end() ? it->second : f.kind) + ": ";
  line += (f.kind.rfind("reference_", 0) == 0 ? "layer '" : "input '") + f.where + "'";
  if (f.batch >= 0) line += ", batch " + std::to_string(f.batch);
  if (f.sample >= 0) line += ", sample " + std::to_string(f.sample);
  line += ": " + f.detail;
  if (f.occurrences > 1) {
    const bool batches = f.kind == "input_outlier_batch", many = f.occurrences > 2;
    line += " (and " + std::to_string(f.occurrences - 1) + " more " +
            (batches ? (many ? "batches" : "batch") : (many ? "samples" : "sample")) + ")";
  }
  return line;
}

}  // namespace divscope
