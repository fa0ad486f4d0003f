#include "json_read.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <map>

#include "errors.h"
#include "report.h"

namespace divscope {
namespace {

using nlohmann::json;

constexpr double kInf = std::numeric_limits<double>::infinity();

// A value of the report and where it is, so that every error names the file and the pointer.
struct Node {
  const json& j;
  const std::string& file;
  std::string ptr;   // JSON pointer; "" is the root

  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(file, ptr.empty() ? "/" : ptr, what);
  }
  [[noreturn]] void wrong_type(const char* want) const {
    fail(std::string("expected ") + want + ", got " + j.type_name());
  }
  bool has(const char* key) const { return j.is_object() && j.contains(key); }
  Node at(const char* key) const {
    if (!j.is_object()) wrong_type("an object");
    const auto it = j.find(key);
    if (it == j.end()) fail(std::string("missing key '") + key + "'");
    return {*it, file, ptr + "/" + key};
  }
  size_t array_size() const {
    if (!j.is_array()) wrong_type("an array");
    return j.size();
  }
  Node at(size_t i) const { return {j.at(i), file, ptr + "/" + std::to_string(i)}; }
  double number() const {
    if (!j.is_number()) wrong_type("a number");
    const double v = j.get<double>();
    // 1e400 parses to inf: JSON has no infinities, a report never holds one (null stands for it).
    if (!std::isfinite(v)) fail("number out of range");
    return v;
  }
  // A count: an integer in [0, hi].
  int64_t count(int64_t hi, const std::string& of) const {
    const int64_t v = integer();
    if (v < 0 || v > hi)
      fail("impossible count " + std::to_string(v) + " (must be between 0 and " + of + ", " + std::to_string(hi) + ")");
    return v;
  }
  double number_or_inf() const { return j.is_null() ? kInf : number(); }
  int64_t integer() const {
    if (!j.is_number_integer()) wrong_type("an integer");
    return j.get<int64_t>();
  }
  bool boolean() const {
    if (!j.is_boolean()) wrong_type("a boolean");
    return j.get<bool>();
  }
  std::string string() const {
    if (!j.is_string()) wrong_type("a string");
    return j.get<std::string>();
  }
};

template <size_t N>
void read_hist(const Node& n, std::array<int64_t, N>& h) {
  if (n.array_size() != N) n.fail("expected " + std::to_string(N) + " buckets, got " + std::to_string(n.j.size()));
  for (size_t b = 0; b < N; ++b) h[b] = n.at(b).count(std::numeric_limits<int64_t>::max(), "any");
}

LayerStats read_stats(const Node& n) {
  LayerStats s;
  // Every count is checked against the element count: a shard cannot turn a FAIL into a PASS
  // with a negative mismatch.
  s.count = n.at("count").count(std::numeric_limits<int64_t>::max() / 2, "any");
  const std::string of = "the element count";
  s.nan = n.at("nan").count(s.count, of);
  s.inf = n.at("inf").count(s.count, of);
  s.ref_nan = n.at("ref_nan").count(s.count, of);
  s.ref_inf = n.at("ref_inf").count(s.count, of);
  s.nonfinite_new = n.at("new_nonfinite").count(s.count, of);
  s.mismatch = n.at("mismatch").count(s.count, of);
  s.flushed = n.at("flushed_to_zero").count(s.count, of);
  s.max_abs = n.at("max_abs").number_or_inf();
  const Node index = n.at("max_abs_index");
  for (size_t i = 0; i < index.array_size(); ++i) s.max_abs_index.push_back(index.at(i).integer());
  s.max_abs_batch = n.at("max_abs_batch").integer();
  s.max_rel = n.at("max_rel").number_or_inf();
  s.min_rtol = n.at("min_rtol").number_or_inf();
  s.max_ulp = n.at("max_ulp").number_or_inf();
  read_hist(n.at("ulp_histogram"), s.ulp_hist);
  read_hist(n.at("abs_err_histogram"), s.err_hist);
  const Node sums = n.at("sums");
  s.sum_abs = sums.at("abs").number_or_inf();
  s.sum_err2 = sums.at("err2").number_or_inf();
  s.sum_ref2 = sums.at("ref2").number_or_inf();
  s.sum_cand2 = sums.at("cand2").number_or_inf();
  s.sum_dot = sums.at("dot").number();
  s.ref_sum = sums.at("ref").number();
  s.ref_sumsq = sums.at("ref_sq").number_or_inf();
  s.ref_finite = sums.at("ref_finite").count(s.count, of);
  s.ref_zero = sums.at("ref_zero").count(s.count, of);
  s.over_fp16 = sums.at("over_fp16").count(s.count, of);
  s.over_bf16 = sums.at("over_bf16").count(s.count, of);
  s.under_fp16 = sums.at("under_fp16").count(s.count, of);
  s.under_bf16 = sums.at("under_bf16").count(s.count, of);
  const Node ref = n.at("reference");
  s.ref_min = ref.at("min").number();
  s.ref_max = ref.at("max").number();
  return s;
}

Tolerance read_tolerance(const Node& n) {
  Tolerance t;
  t.atol = n.at("atol").number();
  t.rtol = n.at("rtol").number();
  t.max_mismatch = n.at("max_mismatch").number();
  // Written only where the baseline criterion judged the layer; judge() needs nothing else.
  if (n.has("baseline_factor")) t.baseline_factor = n.at("baseline_factor").number();
  t.budget_factor = n.at("budget_factor").number();
  t.collapse = n.at("collapse").number();
  if (n.has("criterion")) {
    Criterion c;
    if (!parse_criterion(n.at("criterion").string(), &c)) n.at("criterion").fail("unknown criterion");
    t.criterion = c;
  }
  return t;
}

SampleWorst read_worst(const Node& n) {
  SampleWorst w;
  w.rel_l2 = n.at("rel_l2").number_or_inf();
  w.rel_batch = n.at("rel_l2_batch").integer();
  w.rel_sample = n.at("rel_l2_sample").integer();
  w.budget_use = n.at("budget_use").number_or_inf();
  w.kappa = n.at("kappa").number_or_inf();
  w.use_batch = n.at("budget_use_batch").integer();
  w.use_sample = n.at("budget_use_sample").integer();
  return w;
}

// The probe's sums behind kappa (count, err2, ref2): all that kappa and a merge need.
LayerStats read_sensitivity(const Node& n) {
  LayerStats s;
  const Node sums = n.at("sums");
  s.count = sums.at("count").integer();
  s.sum_err2 = sums.at("err2").number_or_inf();
  s.sum_ref2 = sums.at("ref2").number_or_inf();
  return s;
}

int layer_index(const Node& n, const std::map<std::string, int>& index_of) {
  const std::string name = n.string();
  const auto it = index_of.find(name);
  if (it == index_of.end()) n.fail("layer '" + name + "' is not among the report's layers");
  return it->second;
}

// The first mode lists the report's layers and inputs (names[i] is added); later modes must
// list the same.
const std::string& listed(const Node& n, const char* key, std::vector<std::string>& names, size_t i) {
  const std::string v = n.at(key).string();
  if (i == names.size()) names.push_back(v);
  else if (v != names[i]) n.at(key).fail("'" + v + "', but the first mode has '" + names[i] + "'");
  return names[i];
}

ModeResult read_mode(const Node& m, ReportData& d, std::map<std::string, int>& index_of) {
  const bool first = d.layer_names.empty();
  ModeResult mr;
  const Node mode = m.at("mode");
  if (!parse_mode(mode.string(), &mr.mode) || mr.mode == Mode::fp64)
    mode.fail("unknown mode '" + mode.string() + "'");
  const Node layers = m.at("layers");
  const size_t nl = layers.array_size();
  if (first && nl == 0) layers.fail("no layers");
  if (!first && nl != d.layer_names.size())
    layers.fail(std::to_string(nl) + " layers, but the first mode has " + std::to_string(d.layer_names.size()));
  for (size_t i = 0; i < nl; ++i) {
    const Node l = layers.at(i);
    if (l.at("index").integer() != static_cast<int64_t>(i)) l.at("index").fail("expected " + std::to_string(i));
    index_of[listed(l, "name", d.layer_names, i)] = static_cast<int>(i);
    listed(l, "op", d.layer_ops, i);
    LayerResult lr;
    lr.tolerance = read_tolerance(l.at("tolerance"));
    if (l.has("strict_bitwise_mismatch")) lr.strict_bitwise_mismatch = l.at("strict_bitwise_mismatch").integer();
    if (l.has("nondeterministic_elements")) lr.nondeterministic = l.at("nondeterministic_elements").integer();
    lr.chained = read_stats(l.at("chained"));
    lr.isolated = read_stats(l.at("isolated"));
    const Node verdict = l.at("verdict");
    lr.unit = verdict.at("unit").number();
    lr.isolated_unit = verdict.at("isolated_unit").number();
    const Node worst = l.at("worst_samples");
    lr.chained_worst = read_worst(worst.at("chained"));
    lr.isolated_worst = read_worst(worst.at("isolated"));
    mr.layers.push_back(std::move(lr));
  }
  const Node inputs = m.at("inputs");
  if (!first && inputs.array_size() != d.input_names.size())
    inputs.fail(std::to_string(inputs.j.size()) + " inputs, but the first mode has " +
                std::to_string(d.input_names.size()));
  for (size_t i = 0; i < inputs.array_size(); ++i) {
    listed(inputs.at(i), "name", d.input_names, i);
    mr.inputs.push_back(read_stats(inputs.at(i)));
  }
  const Node samples = m.at("samples");
  for (size_t i = 0; i < samples.array_size(); ++i) {
    const Node s = samples.at(i);
    SampleDivergence sd;
    sd.batch = s.at("batch").integer();
    sd.sample = s.at("sample").integer();
    sd.layer = layer_index(s.at("first_divergent_layer"), index_of);
    sd.rel_l2 = s.at("rel_l2").number_or_inf();
    sd.max_abs = s.at("max_abs").number_or_inf();
    sd.mismatch = s.at("mismatch").integer();
    sd.count = s.at("count").integer();
    sd.nonfinite = s.at("new_nonfinite").boolean();
    mr.samples.push_back(sd);
  }
  // Reports before records were bounded list every divergent sample.
  mr.divergent_samples = m.has("divergent_samples") ? m.at("divergent_samples").integer()
                                                     : static_cast<int64_t>(mr.samples.size());
  if (mr.divergent_samples < static_cast<int64_t>(mr.samples.size()))
    m.at("divergent_samples").fail("fewer divergent samples than the " + std::to_string(mr.samples.size()) + " listed");
  return mr;
}

}  // namespace

LayerStats stats_from_json(const nlohmann::json& j, const std::string& file, const std::string& pointer) {
  return read_stats(Node{j, file, pointer});
}

ReportData read_report(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw InputError(path, "/", "cannot open the report");
  json j;
  try {
    j = json::parse(f);
  } catch (const json::parse_error& e) {
    throw InputError(path, "/", "not a JSON report (truncated?): parse error at byte " + std::to_string(e.byte));
  } catch (const json::exception& e) {   // e.g. 1e400: "number overflow"
    std::string why = e.what();
    const size_t sp = why.find("] ");
    throw InputError(path, "/", "not a valid JSON report: " + (sp == std::string::npos ? why : why.substr(sp + 2)));
  }
  return report_from_json(j, path);
}

ReportData report_from_json(const json& j, const std::string& path, const std::string& pointer) {
  const Node root{j, path, pointer};
  if (!root.has("divscope_report")) root.fail("not a divscope report (no key 'divscope_report')");
  const Node version = root.at("divscope_report");
  if (version.integer() != kReportVersion)
    version.fail("report version " + std::to_string(version.integer()) + "; this divscope reads version " +
                 std::to_string(kReportVersion));
  ReportData d;
  d.file = path;
  d.model_path = root.at("model").string();
  d.model_name = root.at("model_name").string();
  d.recording = root.at("recording").string();
  d.backend = root.at("backend").string();
  d.environment = root.at("environment").j;
  d.tolerance = root.at("tolerance").j;
  AnalysisResult& r = d.result;
  if (!root.has("batch_begin"))
    root.fail("missing key 'batch_begin': the report does not say which batches it covers (written by "
              "an older divscope; run it again)");
  r.batch_begin = root.at("batch_begin").integer();
  r.batches = root.at("batches").integer();
  r.samples = root.at("samples").integer();
  r.max_samples = root.has("max_samples") ? root.at("max_samples").integer() : kDefaultMaxSamples;
  if (r.max_samples < 0) root.at("max_samples").fail("negative");
  const Node end = root.at("batch_end");
  if (r.batch_begin < 0 || r.batches < 1 || end.integer() != d.batch_end())
    end.fail("batches " + std::to_string(r.batch_begin) + ":" + std::to_string(end.integer()) +
             " do not hold the report's " + std::to_string(r.batches) + " batches");
  const int64_t repeat = root.at("repeat").integer();
  if (repeat < 1) root.at("repeat").fail("must be at least 1");
  r.repeat = static_cast<int>(repeat);
  const Node criterion = root.at("tolerance").at("criterion");
  if (!parse_criterion(criterion.string(), &r.criterion))
    criterion.fail("unknown criterion '" + criterion.string() + "'");

  std::map<std::string, int> index_of;
  const Node modes = root.at("modes");
  if (modes.array_size() == 0) modes.fail("no modes");
  for (size_t i = 0; i < modes.array_size(); ++i) r.modes.push_back(read_mode(modes.at(i), d, index_of));
  r.recorded.resize(d.layer_names.size());
  const Node recorded = root.at("recorded");
  for (size_t i = 0; i < recorded.array_size(); ++i) {
    const Node rec = recorded.at(i);
    r.recorded[layer_index(rec.at("name"), index_of)] = read_stats(rec);
  }
  if (root.has("user_run")) {
    const Node u = root.at("user_run");
    UserRun ur;
    ur.dtype = u.at("dtype").string();
    if (!parse_mode(u.at("mode").string(), &ur.result.mode)) u.at("mode").fail("unknown mode");
    ur.result.layers.resize(d.layer_names.size());
    const Node layers = u.at("layers");
    for (size_t i = 0; i < layers.array_size(); ++i) {
      const Node l = layers.at(i);
      LayerResult& lr = ur.result.layers.at(static_cast<size_t>(layer_index(l.at("name"), index_of)));
      lr.unit = l.at("verdict").at("unit").number();
      lr.tolerance.budget_factor = l.at("tolerance").at("budget_factor").number();
      lr.tolerance.collapse = l.at("tolerance").at("collapse").number();
      lr.chained = read_stats(l.at("chained"));
      lr.chained_worst = read_worst(l.at("worst_samples").at("chained"));
    }
    r.user_run = ur;
  }
  const Node found = root.at("data_findings");
  for (size_t i = 0; i < found.array_size(); ++i) {
    const Node f = found.at(i);
    DataFinding df;
    df.kind = f.at("kind").string();
    df.where = f.at("where").string();
    df.batch = f.at("batch").integer();
    df.sample = f.at("sample").integer();
    df.detail = f.at("detail").string();
    df.occurrences = f.at("occurrences").integer();
    if (df.occurrences < 1) f.at("occurrences").fail("must be at least 1");
    r.findings.push_back(df);
  }
  if (!root.at("replayed").boolean()) root.at("replayed").fail("the report's replay did not run (data unhealthy): nothing to merge");
  const Node sens = root.at("sensitivity");
  if (sens.array_size() != d.layer_names.size())
    sens.fail(std::to_string(sens.array_size()) + " entries for " + std::to_string(d.layer_names.size()) + " layers");
  for (size_t i = 0; i < sens.array_size(); ++i) {
    if (layer_index(sens.at(i).at("name"), index_of) != static_cast<int>(i)) sens.at(i).at("name").fail("out of order");
    r.sensitivity.push_back(read_sensitivity(sens.at(i)));
  }
  const Node isens = root.at("input_sensitivity");
  for (size_t i = 0; i < isens.array_size(); ++i) r.input_sensitivity.push_back(read_sensitivity(isens.at(i)));
  return d;
}

}  // namespace divscope
