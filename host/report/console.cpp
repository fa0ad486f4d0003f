// The console report (docs/verdict.md, "Reading the console"): a summary per mode, the rows
// that matter — around each first divergence, the culprit, the worst layers — and the result.
#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "env.h"
#include "report.h"
#include "report/text.h"

namespace divscope {
namespace {

constexpr size_t kAllRowsUpTo = 30;   // --table auto: every row for models this small
constexpr int kAround = 2;            // rows before and after a first divergence
constexpr int kWorst = 3;             // the worst layers by budget use (or rel_l2)

// The mismatch column: a percentage, or the count where the percentage would round to zero.
std::string mismatch_cell(const LayerStats& s) {
  if (!s.count || !s.mismatch) return "0";
  const double pct = 100.0 * s.mismatch / s.count;
  if (pct >= 0.005) return fmt("%.2f%%", pct);
  return std::to_string(s.mismatch) + "/" + std::to_string(s.count);
}

std::string sci(double v) { return std::isfinite(v) ? fmt("%.3e", v) : (std::isnan(v) ? "nan" : "inf"); }

// How far into its budget a layer's worst sample went (budget criterion), e.g. "3.1/32".
std::string budget_cell(const LayerResult& lr, Criterion c) {
  if (lr.tolerance.criterion.value_or(c) != Criterion::budget) return "-";
  const double u = lr.chained_worst.budget_use;
  return (std::isfinite(u) ? fmt(u < 10 ? "%.2f" : "%.0f", u) : std::string("inf")) + "/" +
         fmt("%g", lr.tolerance.budget_factor);
}

// Which rows the table shows for one mode.
std::vector<size_t> rows_of(const ModeResult& mr, const AnalysisResult& r, const std::string& table) {
  const size_t nl = mr.layers.size();
  std::vector<size_t> rows;
  if (table == "none") return rows;
  if (table == "all" || nl <= kAllRowsUpTo) {
    for (size_t i = 0; i < nl; ++i) rows.push_back(i);
    return rows;
  }
  std::set<size_t> keep;
  auto around = [&](int i) {
    if (i < 0) return;
    for (int k = std::max(0, i - kAround); k <= std::min<int>(static_cast<int>(nl) - 1, i + kAround); ++k)
      keep.insert(static_cast<size_t>(k));
  };
  around(mr.first_divergent);
  if (mr.culprit >= 0) keep.insert(static_cast<size_t>(mr.culprit));
  for (const ChainLink& c : mr.culprit_chain) keep.insert(static_cast<size_t>(c.layer));
  std::vector<size_t> order(nl);
  for (size_t i = 0; i < nl; ++i) order[i] = i;
  auto score = [&](size_t i) {
    const LayerResult& lr = mr.layers[i];
    return lr.tolerance.criterion.value_or(r.criterion) == Criterion::budget ? lr.chained_worst.budget_use
                                                                             : lr.chained.rel_l2();
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score(a) > score(b); });
  for (int k = 0; k < kWorst && k < static_cast<int>(nl); ++k) keep.insert(order[k]);
  keep.insert(nl - 1);   // the model's last layer: what the user sees
  return {keep.begin(), keep.end()};
}

const char* criterion_words(const AnalysisResult& r, Mode m) {
  if (m == Mode::strict) return "bitwise equal to the CPU strict path; errors below are against FP64";
  if (r.criterion == Criterion::baseline && judged_by_baseline(m))
    return "baseline: rel_l2 within baseline_factor x fp32's, in rounding units";
  if (r.criterion == Criterion::allclose) return "allclose: atol + rtol*|r| element-wise";
  return "budget: per sample, rel_l2 within budget_factor x the mode's rounding x the layer's "
         "sensitivity; collapse and new NaN/Inf always fail";
}

void print_verdict_line(const AnalysisResult& r, const Model& m, const ModeResult& mr, std::ostream& out) {
  out << mode_name(mr.mode) << ": ";
  if (mr.passed()) {
    out << "PASS";
    if (mr.mode != Mode::strict && r.criterion == Criterion::budget) {
      // How close the closest layer came: the margin a user is running with.
      int worst = -1;
      for (size_t i = 0; i < mr.layers.size(); ++i)
        if (worst < 0 || mr.layers[i].chained_worst.budget_use > mr.layers[worst].chained_worst.budget_use)
          worst = static_cast<int>(i);
      if (worst >= 0)
        out << " — worst layer '" << m.layers[worst].name << "' at " << budget_cell(mr.layers[worst], r.criterion)
            << " of its budget";
    } else {
      out << " — every layer within tolerance";
    }
    out << "\n";
    return;
  }
  const LayerResult& first = mr.layers[mr.first_divergent];
  out << "FAIL — first divergent layer '" << m.layers[mr.first_divergent].name << "' (#" << mr.first_divergent
      << ", " << rule_name(first.rule) << "): " << first.reason << "\n";
  if (mr.culprit >= 0 && mr.culprit != mr.first_divergent)
    out << "  culprit '" << m.layers[mr.culprit].name << "' (#" << mr.culprit
        << "): its own error, amplified on the way, accounts for the divergence\n";
  if (mr.culprit_chain.size() > 1) {
    out << "  chain:";
    for (const ChainLink& c : mr.culprit_chain)
      out << " '" << m.layers[c.layer].name << "' (own " << sci(c.own_rel_l2) << ", x" << fmt("%.3g", c.amplification)
          << ")" << (c.layer == mr.first_divergent ? "" : " ->");
    out << "\n";
  }
  out << "  " << mr.divergent_samples << "/" << r.samples << " samples diverge";
  if (!mr.samples.empty())
    out << ", worst: batch " << mr.samples[0].batch << " sample " << mr.samples[0].sample << " at '"
        << m.layers[mr.samples[0].layer].name << "'";
  out << "\n";
}

}  // namespace

std::string layer_verdict(const LayerResult& lr) {
  std::string v = lr.diverged ? std::string("DIVERGED (") + rule_name(lr.rule) + ")" : "ok";
  if (lr.isolated_failed) v += " [own error]";
  return v;
}

void print_console(const AnalysisResult& r, const ReportContext& ctx, std::ostream& out, const ConsoleOptions& o) {
  const Model& m = *ctx.model;
  if (!o.quiet) {
    out << "divscope: model '" << m.name << "', " << r.batches << " batch(es), " << r.samples
        << " samples, backend " << ctx.backend << ", criterion " << criterion_name(r.criterion);
    if (r.repeat > 1) out << ", every layer run " << r.repeat << " times";
    out << "\n";
    // The machine first: a differing driver, flag or variable explains more than any layer.
    if (ctx.capture_environment.is_object() && ctx.environment.is_object()) {
      const std::vector<EnvDifference> d = diff_environments(ctx.capture_environment, ctx.environment);
      if (d.empty()) {
        out << "environment: the capturing machine (" << env_machine(ctx.capture_environment)
            << ") and this one do not differ\n";
      } else {
        out << "environment: A = capturing machine (" << env_machine(ctx.capture_environment)
            << "), B = this machine (" << env_machine(ctx.environment) << "): " << d.size() << " difference(s)\n";
        print_env_diff(d, out, 5);
      }
    }
    int recorded = 0, worst = -1;
    for (size_t i = 0; i < r.recorded.size(); ++i)
      if (r.recorded[i].count) {
        ++recorded;
        if (worst < 0 || r.recorded[i].rel_l2() > r.recorded[worst].rel_l2()) worst = static_cast<int>(i);
      }
    if (recorded)
      out << "recorded activations: " << recorded << " layer(s); FP64 reference vs recording: worst rel_l2 "
          << sci(r.recorded[worst].rel_l2()) << " at '" << m.layers[worst].name << "'"
          << (m.layers[worst].value.name.empty() ? "" : " (value " + m.layers[worst].value.name + ")") << "\n";
  }
  // Data and reference first: the model or the data is broken there, not the precision.
  if (!r.findings.empty()) {
    out << "data and reference checks: " << r.findings.size() << " finding(s) — fix these before judging precision\n";
    for (const DataFinding& f : r.findings) out << "  " << finding_line(f) << "\n";
  } else if (!o.quiet) {
    out << "data and reference checks: inputs finite, not empty or constant, no outlier batch; reference finite and alive\n";
  }
  if (r.stopped_on_data) {
    out << "result: DATA UNHEALTHY — the replay did not run (the inputs cannot go through the model)\n";
    return;
  }
  for (const ModeResult& mr : r.modes) {
    if (o.quiet) {
      print_verdict_line(r, m, mr, out);
      continue;
    }
    out << "\n== " << mode_name(mr.mode) << " ==  (" << criterion_words(r, mr.mode) << ")\n";
    const std::vector<size_t> rows = rows_of(mr, r, o.table);
    if (!rows.empty()) {
      size_t wn = 4, wo = 2;
      for (size_t i : rows) {
        wn = std::max(wn, m.layers[i].name.size());
        wo = std::max(wo, m.layers[i].op.size());
      }
      out << "   " << rpad("#", 4) << "  " << pad("name", wn) << "  " << pad("op", wo) << "  "
          << rpad("rel_l2", 10) << "  " << rpad("budget", 9) << "  " << rpad("iso_rel_l2", 10) << "  "
          << rpad("mismatch", 9) << "  verdict\n";
      size_t prev = 0;
      bool any = false;
      for (size_t i : rows) {
        if (any && i > prev + 1)
          out << "   " << rpad("...", 4) << "  (" << i - prev - 1 << (i - prev - 1 == 1 ? " row)\n" : " rows)\n");
        any = true;
        prev = i;
        const LayerResult& lr = mr.layers[i];
        std::string mark = static_cast<int>(i) == mr.first_divergent ? ">" : " ";
        mark += static_cast<int>(i) == mr.culprit ? "*" : " ";
        out << mark << " " << rpad(std::to_string(i), 4) << "  " << pad(m.layers[i].name, wn) << "  "
            << pad(m.layers[i].op, wo) << "  " << rpad(sci(lr.chained.rel_l2()), 10) << "  "
            << rpad(budget_cell(lr, r.criterion), 9) << "  " << rpad(sci(lr.isolated.rel_l2()), 10) << "  "
            << rpad(mismatch_cell(lr.chained), 9) << "  " << layer_verdict(lr) << "\n";
        if (lr.diverged && !lr.reason.empty()) out << "         " << lr.reason << "\n";
      }
      if (rows.size() < mr.layers.size())
        out << "   (" << rows.size() << " of " << mr.layers.size() << " layers shown; --table all for every row)\n";
    }
    print_verdict_line(r, m, mr, out);
  }
  if (r.user_run) {
    const UserRun& ur = *r.user_run;
    const ModeResult& mr = ur.result;
    if (!o.quiet) out << "\n== your run (" << ur.dtype << ", judged as " << mode_name(mr.mode) << ") ==\n";
    out << "your run (" << mode_name(mr.mode) << "): ";
    if (mr.passed()) {
      out << "PASS";
    } else {
      const LayerResult& f = mr.layers[mr.first_divergent];
      out << "FAIL — first divergent layer '" << m.layers[mr.first_divergent].name << "' (#" << mr.first_divergent
          << ", " << rule_name(f.rule) << "): " << f.reason;
    }
    out << "\n";
    if (ur.worst_vs_emulation >= 0) {
      const double x = ur.vs_emulation[ur.worst_vs_emulation];
      out << "  vs divscope's " << mode_name(mr.mode) << " arithmetic: worst at '" << m.layers[ur.worst_vs_emulation].name
          << "', " << fmt("%.3g", x) << "x the emulation's rel_l2";
      if (x > 8) out << " — much worse than the format explains: look at the stack (a kernel, a TF32 override, a driver)";
      out << "\n";
    }
  }
  if (!o.quiet)
    out << "\n> first divergent layer   * culprit   budget: worst sample's rel_l2 / (u_mode x sensitivity) "
           "of its budget_factor\n";
  if (!r.data_healthy())
    out << "result: DATA UNHEALTHY (" << r.findings.size() << " finding(s) above); precision: "
        << (r.passed() ? "PASS" : "DIVERGENCE FOUND") << "\n";
  else
    out << (r.passed() ? "result: PASS\n" : "result: DIVERGENCE FOUND\n");
}

}  // namespace divscope
