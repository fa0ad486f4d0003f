#include <cmath>
#include <fstream>

#include "errors.h"
#include "io/atomic_file.h"

#include "env.h"
#include "report.h"

namespace divscope {
namespace {

// JSON has no infinity: +inf (exact sqnr, infinite relative error) is written as null.
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

double frac(int64_t a, int64_t n) { return n ? static_cast<double>(a) / n : 0.0; }

nlohmann::json worst_json(const SampleWorst& w) {
  return {{"rel_l2", num(w.rel_l2)},          {"rel_l2_batch", w.rel_batch},
          {"rel_l2_sample", w.rel_sample},    {"budget_use", num(w.budget_use)},
          {"kappa", num(w.kappa)},            {"budget_use_batch", w.use_batch},
          {"budget_use_sample", w.use_sample}};
}

}  // namespace

void write_json(const nlohmann::json& j, const std::string& path) {
  const std::string text = j.dump(2);
  write_text_atomically(path, "the JSON report", [&](std::ostream& o) { o << text << "\n"; });
}

nlohmann::json stats_json(const LayerStats& s) {
  nlohmann::json j;
  j["count"] = s.count;
  j["nan"] = s.nan;
  j["inf"] = s.inf;
  j["ref_nan"] = s.ref_nan;
  j["ref_inf"] = s.ref_inf;
  j["new_nonfinite"] = s.nonfinite_new;
  j["flushed_to_zero"] = s.flushed;
  j["max_abs"] = num(s.max_abs);
  j["max_abs_index"] = s.max_abs_index;
  j["max_abs_batch"] = s.max_abs_batch;
  j["max_rel"] = num(s.max_rel);
  j["mean_abs"] = num(s.mean_abs());
  j["rel_l2"] = num(s.rel_l2());
  j["cosine"] = num(s.cosine());
  j["mismatch"] = s.mismatch;
  j["mismatch_fraction"] = frac(s.mismatch, s.count);
  j["sqnr_db"] = num(s.sqnr_db());
  j["min_atol"] = num(s.min_atol());
  j["min_rtol"] = num(s.min_rtol);
  j["max_ulp"] = num(s.max_ulp);
  j["ulp_histogram"] = s.ulp_hist;   // [0]: 0 ulp, [k]: [2^(k-1), 2^k) ulp, last open-ended
  j["abs_err_histogram"] = s.err_hist;   // [0]: exact, [k]: [2^(k-49), 2^(k-48))
  j["abs_err_p50"] = num(s.err_percentile(0.5));
  j["abs_err_p99"] = num(s.err_percentile(0.99));
  j["abs_err_p999"] = num(s.err_percentile(0.999));
  // The raw sums behind the derived metrics, so that reports of disjoint batch ranges can be
  // merged exactly (divscope merge).
  j["sums"] = {{"abs", s.sum_abs},           {"err2", s.sum_err2},     {"ref2", s.sum_ref2},
               {"cand2", s.sum_cand2},       {"dot", s.sum_dot},       {"ref", s.ref_sum},
               {"ref_sq", s.ref_sumsq},      {"ref_finite", s.ref_finite}, {"ref_zero", s.ref_zero},
               {"over_fp16", s.over_fp16},   {"over_bf16", s.over_bf16},
               {"under_fp16", s.under_fp16}, {"under_bf16", s.under_bf16}};
  const int64_t fin = s.ref_finite;
  j["reference"] = {{"min", s.ref_min},
                    {"max", s.ref_max},
                    {"mean", s.ref_mean()},
                    {"std", s.ref_std()},
                    {"zero_fraction", frac(s.ref_zero, fin)},
                    {"over_fp16_max_fraction", frac(s.over_fp16, fin)},
                    {"over_bf16_max_fraction", frac(s.over_bf16, fin)},
                    {"under_fp16_min_normal_fraction", frac(s.under_fp16, fin)},
                    {"under_bf16_min_normal_fraction", frac(s.under_bf16, fin)}};
  return j;
}

nlohmann::json report_json(const AnalysisResult& r, const ReportContext& ctx) {
  const Model& m = *ctx.model;
  nlohmann::json j;
  j["divscope_report"] = kReportVersion;
  j["environment"] = ctx.environment;
  if (ctx.capture_environment.is_object()) {
    // The capturing machine against this one, field by field (docs/environment.md).
    j["capture_environment"] = ctx.capture_environment;
    j["environment_diff"] = env_diff_json(diff_environments(ctx.capture_environment, ctx.environment));
  }
  j["model"] = ctx.model_path;
  j["model_name"] = m.name;
  j["recording"] = ctx.recording_path;
  j["backend"] = ctx.backend;
  j["batches"] = r.batches;
  j["batch_begin"] = r.batch_begin;   // [batch_begin, batch_end): what divscope merge checks
  j["batch_end"] = r.batch_begin + r.batches;
  j["samples"] = r.samples;
  j["max_samples"] = r.max_samples;   // divergent sample records listed per mode, at most
  j["repeat"] = r.repeat;
  j["tolerance"] = ctx.tolerance;
  // The reference against the capturing framework's own activations, where recorded.
  j["recorded"] = nlohmann::json::array();
  for (size_t i = 0; i < r.recorded.size(); ++i)
    if (r.recorded[i].count) {
      nlohmann::json jr = stats_json(r.recorded[i]);
      jr["name"] = m.layers[i].name;
      jr["layer"] = m.layers[i].name;
      if (!m.layers[i].value.name.empty()) jr["value"] = m.layers[i].value.name;   // ONNX
      j["recorded"].push_back(jr);
    }
  // The sensitivity probe (docs/verdict.md): kappa per layer and per graph input.
  j["sensitivity"] = nlohmann::json::array();
  for (size_t i = 0; i < r.sensitivity.size(); ++i)
    j["sensitivity"].push_back({{"name", m.layers[i].name}, {"kappa", num(r.kappa(static_cast<int>(i)))},
                                {"sums", {{"err2", r.sensitivity[i].sum_err2}, {"ref2", r.sensitivity[i].sum_ref2},
                                          {"count", r.sensitivity[i].count}}}});
  j["input_sensitivity"] = nlohmann::json::array();
  for (size_t i = 0; i < r.input_sensitivity.size(); ++i)
    j["input_sensitivity"].push_back({{"name", m.inputs[i].name}, {"kappa", num(r.input_kappa(static_cast<int>(i)))},
                                      {"sums", {{"err2", r.input_sensitivity[i].sum_err2},
                                                {"ref2", r.input_sensitivity[i].sum_ref2},
                                                {"count", r.input_sensitivity[i].count}}}});
  j["modes"] = nlohmann::json::array();
  for (const ModeResult& mr : r.modes) {
    nlohmann::json jm;
    jm["mode"] = mode_name(mr.mode);
    jm["passed"] = mr.passed();
    jm["first_divergent_layer"] =
        mr.first_divergent >= 0 ? nlohmann::json(m.layers[mr.first_divergent].name) : nlohmann::json();
    jm["culprit_layer"] =
        mr.culprit >= 0 ? nlohmann::json(m.layers[mr.culprit].name) : nlohmann::json();
    jm["criterion"] = mr.mode == Mode::strict ? "bitwise equal to the CPU strict path"
                      : r.criterion == Criterion::baseline && judged_by_baseline(mr.mode)
                          ? "baseline: rel_l2 within baseline_factor of fp32's, in rounding units"
                      : r.criterion == Criterion::budget
                          ? "budget: per sample, NaN/Inf the reference lacks, rel_l2 >= collapse, or "
                            "rel_l2 > budget_factor * u_mode * kappa"
                          : "allclose(atol, rtol) with max_mismatch";
    jm["culprit_chain"] = nlohmann::json::array();
    for (const ChainLink& c : mr.culprit_chain)
      jm["culprit_chain"].push_back({{"layer", m.layers[c.layer].name},
                                     {"own_rel_l2", num(c.own_rel_l2)},
                                     {"amplification", num(c.amplification)},
                                     {"chained_rel_l2", num(c.chained_rel_l2)}});
    jm["inputs"] = nlohmann::json::array();
    for (size_t i = 0; i < mr.inputs.size(); ++i) {
      nlohmann::json ji = stats_json(mr.inputs[i]);
      ji["name"] = m.inputs[i].name;
      if (m.inputs[i].constant) ji["constant"] = true;
      jm["inputs"].push_back(ji);
    }
    jm["layers"] = nlohmann::json::array();
    for (size_t i = 0; i < mr.layers.size(); ++i) {
      const LayerResult& lr = mr.layers[i];
      nlohmann::json jl;
      jl["index"] = i;
      jl["name"] = m.layers[i].name;
      jl["op"] = m.layers[i].op;
      jl["diverged"] = lr.diverged;
      jl["isolated_diverged"] = lr.isolated_failed;
      if (mr.mode == Mode::strict) jl["strict_bitwise_mismatch"] = lr.strict_bitwise_mismatch;
      jl["amplification"] = lr.amplification >= 0 ? num(lr.amplification) : nlohmann::json();
      jl["tolerance"] = {{"atol", lr.tolerance.atol},
                         {"rtol", lr.tolerance.rtol},
                         {"max_mismatch", lr.tolerance.max_mismatch},
                         {"budget_factor", lr.tolerance.budget_factor},
                         {"collapse", lr.tolerance.collapse}};
      if (lr.tolerance.criterion) jl["tolerance"]["criterion"] = criterion_name(*lr.tolerance.criterion);
      jl["verdict"] = {{"rule", lr.rule == Rule::none ? nlohmann::json() : nlohmann::json(rule_name(lr.rule))},
                       {"reason", lr.reason},
                       {"isolated_rule", lr.isolated_rule == Rule::none ? nlohmann::json()
                                                                        : nlohmann::json(rule_name(lr.isolated_rule))},
                       {"budget_use", num(lr.chained_worst.budget_use)},
                       {"budget_factor", lr.tolerance.budget_factor},
                       {"unit", lr.unit},
                       {"isolated_unit", lr.isolated_unit}};
      jl["worst_samples"] = {{"chained", worst_json(lr.chained_worst)}, {"isolated", worst_json(lr.isolated_worst)}};
      if (lr.baseline_limit >= 0) {
        jl["tolerance"]["baseline_factor"] = lr.tolerance.baseline_factor;
        jl["tolerance"]["baseline_limit"] = num(lr.baseline_limit);
        jl["tolerance"]["isolated_baseline_limit"] = num(lr.isolated_baseline_limit);
      }
      if (r.repeat > 1) jl["nondeterministic_elements"] = lr.nondeterministic;
      jl["chained"] = stats_json(lr.chained);
      jl["isolated"] = stats_json(lr.isolated);
      jm["layers"].push_back(jl);
    }
    jm["divergent_samples"] = mr.divergent_samples;   // all of them; "samples" lists the worst
    jm["samples"] = nlohmann::json::array();
    for (const SampleDivergence& s : mr.samples)
      jm["samples"].push_back({{"batch", s.batch},
                               {"sample", s.sample},
                               {"first_divergent_layer", m.layers[s.layer].name},
                               {"rel_l2", num(s.rel_l2)},
                               {"max_abs", num(s.max_abs)},
                               {"mismatch", s.mismatch},
                               {"count", s.count},
                               {"new_nonfinite", s.nonfinite}});
    j["modes"].push_back(jm);
  }
  if (r.user_run) {
    const UserRun& ur = *r.user_run;
    const ModeResult& mr = ur.result;
    nlohmann::json ju;
    ju["dtype"] = ur.dtype;
    ju["mode"] = mode_name(mr.mode);
    ju["passed"] = mr.passed();
    ju["first_divergent_layer"] =
        mr.first_divergent >= 0 ? nlohmann::json(m.layers[mr.first_divergent].name) : nlohmann::json();
    ju["worst_vs_emulation_layer"] =
        ur.worst_vs_emulation >= 0 ? nlohmann::json(m.layers[ur.worst_vs_emulation].name) : nlohmann::json();
    ju["layers"] = nlohmann::json::array();
    for (size_t i = 0; i < mr.layers.size(); ++i) {
      const LayerResult& lr = mr.layers[i];
      if (!lr.chained.count) continue;
      nlohmann::json jl;
      jl["index"] = i;
      jl["name"] = m.layers[i].name;
      jl["diverged"] = lr.diverged;
      jl["verdict"] = {{"rule", lr.rule == Rule::none ? nlohmann::json() : nlohmann::json(rule_name(lr.rule))},
                       {"reason", lr.reason},
                       {"budget_use", num(lr.chained_worst.budget_use)},
                       {"budget_factor", lr.tolerance.budget_factor},
                       {"unit", lr.unit}};
      jl["tolerance"] = {{"budget_factor", lr.tolerance.budget_factor}, {"collapse", lr.tolerance.collapse}};
      jl["vs_emulation"] = i < ur.vs_emulation.size() && ur.vs_emulation[i] >= 0 ? num(ur.vs_emulation[i]) : nlohmann::json();
      jl["worst_samples"] = {{"chained", worst_json(lr.chained_worst)}};
      jl["chained"] = stats_json(lr.chained);
      ju["layers"].push_back(jl);
    }
    j["user_run"] = ju;
  }
  j["data_findings"] = nlohmann::json::array();
  for (const DataFinding& f : r.findings)
    j["data_findings"].push_back({{"kind", f.kind},
                                  {"where", f.where},
                                  {"batch", f.batch},
                                  {"sample", f.sample},
                                  {"detail", f.detail},
                                  {"occurrences", f.occurrences},
                                  {"line", finding_line(f)}});
  j["data_healthy"] = r.data_healthy();
  j["replayed"] = !r.stopped_on_data;
  j["passed"] = r.passed() && r.data_healthy();
  j["precision_passed"] = r.passed();
  return j;
}

}  // namespace divscope
