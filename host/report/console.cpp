#include <cstdio>
#include <string>

#include "report.h"
#include "report/text.h"

namespace divscope {
namespace {

}  // namespace

std::string layer_verdict(const LayerResult& lr) {
  const LayerStats& s = lr.chained;
  std::string v = lr.diverged ? "DIVERGED" : "ok";
  if (s.nonfinite_new) v += " (" + std::to_string(s.nan) + " NaN, " + std::to_string(s.inf) + " Inf)";
  if (lr.strict_bitwise_mismatch)
    v += " (" + std::to_string(lr.strict_bitwise_mismatch) + " elements \u2260 CPU strict)";
  if (lr.nondeterministic) v += " (" + std::to_string(lr.nondeterministic) + " elements differ run to run)";
  if (lr.diverged && lr.baseline_limit >= 0 && !s.nonfinite_new)
    v += " (limit " + fmt("%.3e", lr.baseline_limit) + ")";
  if (lr.isolated_failed) v += " [own error]";
  return v;
}

void print_console(const AnalysisResult& r, const ReportContext& ctx, std::ostream& out) {
  const Model& m = *ctx.model;
  size_t wn = 4, wo = 2;
  for (const Layer& l : m.layers) {
    wn = std::max(wn, l.name.size());
    wo = std::max(wo, l.op.size());
  }
  out << "divscope: model '" << m.name << "', " << r.batches << " batch(es), " << r.samples
      << " samples, backend " << ctx.backend;
  if (r.repeat > 1) out << ", every layer run " << r.repeat << " times";
  out << "\n";
  int recorded = 0, worst = -1;
  for (size_t i = 0; i < r.recorded.size(); ++i)
    if (r.recorded[i].count) {
      ++recorded;
      if (worst < 0 || r.recorded[i].rel_l2() > r.recorded[worst].rel_l2()) worst = static_cast<int>(i);
    }
  if (recorded)
    out << "recorded activations: " << recorded << " layer(s); FP64 reference vs recording: worst rel_l2 "
        << fmt("%.3e", r.recorded[worst].rel_l2()) << " at '" << m.layers[worst].name << "'\n";
  for (const ModeResult& mr : r.modes) {
    out << "\n== " << mode_name(mr.mode) << " ==";
    if (mr.mode == Mode::strict)
      out << "  (verdict: bitwise equal to the CPU strict path; errors below are against FP64)";
    else if (r.criterion == Criterion::baseline && judged_by_baseline(mr.mode))
      out << "  (verdict: baseline — rel_l2 within baseline_factor x fp32's, in rounding units)";
    out << "\n";
    out << "   " << rpad("#", 3) << "  " << pad("name", wn) << "  " << pad("op", wo) << "  "
        << rpad("max_abs", 10) << "  " << rpad("rel_l2", 10) << "  " << rpad("mismatch%", 9)
        << "  " << rpad("iso_rel_l2", 10) << "  verdict\n";
    for (size_t i = 0; i < mr.layers.size(); ++i) {
      const LayerResult& lr = mr.layers[i];
      const LayerStats& s = lr.chained;
      std::string mark = static_cast<int>(i) == mr.first_divergent ? ">" : " ";
      mark += static_cast<int>(i) == mr.culprit ? "*" : " ";
      const std::string verdict = layer_verdict(lr);
      const double mis = s.count ? 100.0 * s.mismatch / s.count : 0;
      out << mark << " " << rpad(std::to_string(i), 3) << "  " << pad(m.layers[i].name, wn) << "  "
          << pad(m.layers[i].op, wo) << "  " << rpad(fmt("%.3e", s.max_abs), 10) << "  "
          << rpad(fmt("%.3e", s.rel_l2()), 10) << "  " << rpad(fmt("%.2f", mis), 9) << "  "
          << rpad(fmt("%.3e", lr.isolated.rel_l2()), 10) << "  " << verdict << "\n";
    }
    out << mode_name(mr.mode) << ": ";
    if (mr.passed()) {
      out << "PASS — every layer within tolerance\n";
    } else {
      out << "FAIL — first divergent layer '" << m.layers[mr.first_divergent].name << "' (#"
          << mr.first_divergent << ")";
      if (mr.culprit >= 0)
        out << ", culprit '" << m.layers[mr.culprit].name << "' (#" << mr.culprit << ")";
      out << "; " << mr.samples.size() << "/" << r.samples << " samples diverge";
      if (!mr.samples.empty())
        out << ", worst: batch " << mr.samples[0].batch << " sample " << mr.samples[0].sample
            << " at '" << m.layers[mr.samples[0].layer].name << "'";
      out << "\n";
    }
  }
  out << "\n> first divergent layer   * culprit (first layer whose isolated run fails)\n";
  out << (r.passed() ? "result: PASS\n" : "result: DIVERGENCE FOUND\n");
}

}  // namespace divscope
