#include <sstream>

#include "errors.h"
#include "io/atomic_file.h"
#include "env.h"
#include "report.h"
#include "report/text.h"

namespace divscope {
namespace {

}  // namespace

// One testsuite per mode, one testcase per layer; a diverged layer is a failure.
void write_junit(const AnalysisResult& r, const ReportContext& ctx, const std::string& path) {
  std::ostringstream f;   // written whole, then replaced atomically
  const Model& m = *ctx.model;
  // The data and reference checks: one test case, failed by every finding.
  int tests = 1, failures = r.data_healthy() ? 0 : 1;
  for (const ModeResult& mr : r.modes)
    for (const LayerResult& lr : mr.layers) {
      ++tests;
      failures += lr.diverged;
    }
  f << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  f << "<testsuites name=\"divscope " << markup_escape(m.name) << "\" tests=\"" << tests
    << "\" failures=\"" << failures << "\">\n";
  f << "  <testsuite name=\"data\" tests=\"1\" failures=\"" << (r.data_healthy() ? 0 : 1) << "\">\n";
  // Which machines (docs/environment.md): this one, and the capturing one with the differences
  // known to change numerics, as properties a CI page shows beside the results.
  if (ctx.environment.is_object()) {
    f << "    <properties>\n";
    auto prop = [&](const std::string& k, const std::string& v) {
      f << "      <property name=\"" << markup_escape(k) << "\" value=\"" << markup_escape(v) << "\"/>\n";
    };
    prop("machine", env_machine(ctx.environment));
    prop("gpu", env_gpu_line(ctx.environment));
    prop("software", env_software_line(ctx.environment));
    if (ctx.capture_environment.is_object()) {
      prop("captured_on", env_machine(ctx.capture_environment));
      for (const EnvDifference& e : diff_environments(ctx.capture_environment, ctx.environment))
        if (!e.note.empty() && e.group != "host")
          prop("environment_difference", e.group + " " + e.field + ": " + e.a + " (capture) vs " + e.b + " — " + e.note);
    }
    f << "    </properties>\n";
  }
  f << "    <testcase classname=\"divscope.data\" name=\"inputs and FP64 reference\">";
  if (!r.data_healthy()) {
    f << "\n      <failure message=\"" << r.findings.size()
      << " data/reference finding(s): fix the data or the model before judging precision\" type=\"data\">";
    for (const DataFinding& d : r.findings) f << markup_escape(finding_line(d)) << "\n";
    f << "</failure>\n    ";
  }
  f << "</testcase>\n  </testsuite>\n";
  for (const ModeResult& mr : r.modes) {
    int mf = 0;
    for (const LayerResult& lr : mr.layers) mf += lr.diverged;
    f << "  <testsuite name=\"" << mode_name(mr.mode) << "\" tests=\"" << mr.layers.size()
      << "\" failures=\"" << mf << "\">\n";
    for (size_t i = 0; i < mr.layers.size(); ++i) {
      const LayerResult& lr = mr.layers[i];
      f << "    <testcase classname=\"divscope." << mode_name(mr.mode) << "\" name=\""
        << markup_escape(m.layers[i].name) << "\">";
      if (lr.diverged) {
        const LayerStats& s = lr.chained;
        f << "\n      <failure message=\"" << mode_name(mr.mode) << ": layer '"
          << markup_escape(m.layers[i].name) << "' diverged (" << rule_name(lr.rule) << "): "
          << markup_escape(lr.reason) << "\" type=\"" << rule_name(lr.rule) << "\">"
          << "max_abs=" << s.max_abs << ", rel_l2=" << s.rel_l2() << ", mismatch=" << s.mismatch << "/"
          << s.count << ", NaN=" << s.nan << ", Inf=" << s.inf << "</failure>\n    ";
      }
      f << "</testcase>\n";
    }
    f << "  </testsuite>\n";
  }
  f << "</testsuites>\n";
  write_text_atomically(path, "the JUnit report", [&](std::ostream& o) { o << f.str(); });
}

}  // namespace divscope
