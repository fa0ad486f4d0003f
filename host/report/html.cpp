// The HTML report (README, What divscope run computes, §8): one self-contained file — inline CSS and SVG, no scripts,
// fonts or links — with the run's header, a log-scale plot of every mode's rel_l2 per layer
// (chained and isolated), the per-mode layer tables and the worst samples.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "errors.h"
#include "io/atomic_file.h"
#include "env.h"
#include "report.h"
#include "report/text.h"

namespace divscope {
namespace {

// rel_l2 of 0 (exact) and anything below is drawn on this floor line: FP64's own relative
// resolution is ~1e-16, so smaller errors carry no information.
constexpr double kFloor = 1e-17;
constexpr int kTopSamples = 20;
constexpr int kLabelChars = 28;   // longer layer names are cut on the plot (full in the table)
constexpr const char* kRed = "#d62728";

constexpr const char* kCss = R"(
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em}h2{font-size:1.2em;margin-top:1.6em}
.badge{padding:.15em .6em;border-radius:.3em;color:#fff;font-weight:bold}
.pass{background:#2a8a3a}.fail{background:#c62828}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:2px 6px}th{background:#f0f0f0}
td.n{text-align:right;font-family:ui-monospace,monospace}
tr.div td{background:#fde2e2}tr.first td{background:#f8b4b4}
table.info th{text-align:left}
svg{display:block;margin:.5em 0}
summary{cursor:pointer;font-weight:bold}
.note{color:#555;font-size:13px}
)";

std::string sci(double v) { return std::isfinite(v) ? fmt("%.3e", v) : std::isnan(v) ? "NaN" : v > 0 ? "Inf" : "-Inf"; }
std::string pct(int64_t a, int64_t n) { return fmt("%.2f", n ? 100.0 * a / n : 0.0); }

// A cut that does not split a UTF-8 sequence.
std::string shorten(const std::string& s) {
  if (s.size() <= kLabelChars) return s;
  size_t n = kLabelChars - 1;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n) + "\u2026";
}

// Stable colour per mode, so a mode looks the same in every report.
const char* colour(Mode m) {
  switch (m) {
    case Mode::fp32: return "#1f77b4";
    case Mode::tf32: return "#ff7f0e";
    case Mode::fp16: return "#2ca02c";
    case Mode::bf16: return "#9467bd";
    case Mode::strict: return "#8c564b";
    default: return "#7f7f7f";
  }
}

// The value at a key path of a JSON object as text, "" when absent (a context without an
// environment still gives a report).

std::string mode_summary(const ModeResult& mr, const AnalysisResult& r, const Model& m) {
  std::string s = std::string(mode_name(mr.mode)) + ": ";
  if (mr.passed()) return s + "PASS — every layer within tolerance";
  auto layer = [&](int i) { return "<b>" + markup_escape(m.layers[i].name) + "</b> (#" + std::to_string(i) + ")"; };
  s += "FAIL — first divergent layer " + layer(mr.first_divergent) + " (" +
       rule_name(mr.layers[mr.first_divergent].rule) + ": " + markup_escape(mr.layers[mr.first_divergent].reason) + ")";
  if (mr.culprit >= 0) s += ", culprit " + layer(mr.culprit);
  if (mr.culprit_chain.size() > 1) {
    s += "; chain:";
    for (const ChainLink& c : mr.culprit_chain)
      s += " " + markup_escape(m.layers[c.layer].name) + " (own " + sci(c.own_rel_l2) + ", &times;" +
           fmt("%.3g", c.amplification) + ")" + (c.layer == mr.first_divergent ? "" : " &rarr;");
  }
  s += "; " + std::to_string(mr.divergent_samples) + "/" + std::to_string(r.samples) + " samples diverge";
  return s;
}

void write_header(std::ostream& o, const AnalysisResult& r, const ReportContext& ctx) {
  const Model& m = *ctx.model;
  const nlohmann::json& env = ctx.environment;
  o << "<h1>divscope report: " << markup_escape(m.name) << " <span class=\"badge "
    << (!r.data_healthy() ? "fail\">DATA UNHEALTHY" : r.passed() ? "pass\">PASS" : "fail\">FAIL")
    << "</span></h1>\n<table class=\"info\">\n";
  auto row = [&](const char* k, const std::string& v) {
    o << "<tr><th>" << k << "</th><td>" << v << "</td></tr>\n";
  };
  row("model", markup_escape(ctx.model_path) + " (" + std::to_string(m.layers.size()) + " layers)");
  row("recording", markup_escape(ctx.recording_path));
  row("backend", markup_escape(ctx.backend));
  row("batches / samples", std::to_string(r.batches) + " / " + std::to_string(r.samples));
  if (env.is_object()) {
    row("host", markup_escape(env_host_line(env)));
    row("GPU", markup_escape(env_gpu_line(env)));
    row("divscope", markup_escape(env_software_line(env)));
    if (ctx.capture_environment.is_object()) {
      row("captured on", markup_escape(env_machine(ctx.capture_environment) + " · " +
                                       env_software_line(ctx.capture_environment)));
      const std::vector<EnvDifference> d = diff_environments(ctx.capture_environment, env);
      size_t numerics = 0;
      for (const EnvDifference& e : d) numerics += !e.note.empty() && e.group != "host";
      row("environment", std::to_string(d.size()) + " difference(s) from the capturing machine, " +
                             std::to_string(numerics) + " known to change numerics (table below)");
    }
  } else {
    row("environment", "not captured");
  }
  o << "</table>\n";
  if (ctx.capture_environment.is_object() && env.is_object()) {
    const std::vector<EnvDifference> d = diff_environments(ctx.capture_environment, env);
    if (!d.empty()) {
      o << "<details" << (d.empty() ? "" : " open") << "><summary>Capturing machine (A) vs this machine (B): "
        << d.size() << " difference(s)</summary>\n<table class=\"info\"><tr><th>group</th><th>field</th>"
           "<th>A</th><th>B</th><th>why it matters</th></tr>\n";
      for (const EnvDifference& e : d)
        o << "<tr" << (e.note.empty() || e.group == "host" ? "" : " class=\"div\"") << "><td>" << markup_escape(e.group)
          << "</td><td>" << markup_escape(e.field) << "</td><td>" << markup_escape(e.a) << "</td><td>"
          << markup_escape(e.b) << "</td><td>" << markup_escape(e.note) << "</td></tr>\n";
      o << "</table></details>\n";
    }
  }
  if (!r.findings.empty()) {
    o << "<p class=\"div\"><b>Data and reference checks: " << r.findings.size()
      << " finding(s)</b> — the model or the data is broken here, not the precision:</p>\n<ul>\n";
    for (const DataFinding& f : r.findings) o << "<li>" << markup_escape(finding_line(f)) << "</li>\n";
    o << "</ul>\n";
  } else {
    o << "<p>Data and reference checks: no finding.</p>\n";
  }
  o << "<ul>\n";
  for (const ModeResult& mr : r.modes)
    o << "<li><a href=\"#mode-" << mode_name(mr.mode) << "\">" << mode_summary(mr, r, m) << "</a></li>\n";
  o << "</ul>\n";
}

// Geometry of one plot: layer index to x, log10(rel_l2) to y; Inf/NaN go to a band above the axis.
struct Plot {
  int layers = 1;
  double lo = -17, hi = 0;   // log10 range of the axis, whole decades
  int w = 1000, ml = 80, mr = 20, mt = 60, height = 300, mb = 60;   // height: of the axis box
  int bottom() const { return mt + height; }
  int total() const { return mt + height + mb; }
  double x(size_t i) const { return ml + (i + 0.5) * (w - ml - mr) / layers; }
  double y(double v) const {
    if (!std::isfinite(v)) return mt - 16;
    const double l = std::log10(std::max(v, kFloor));
    return mt + (hi - l) / (hi - lo) * height;
  }
};

// One log10 range for both plots, so chained and isolated errors read against the same axis;
// the bottom margin fits the longest rotated layer label.
void plot_layout(const AnalysisResult& r, const Model& m, Plot& p) {
  p.layers = std::max<int>(1, static_cast<int>(m.layers.size()));
  size_t chars = 0;
  for (size_t i = 0; i < m.layers.size(); ++i)
    chars = std::max(chars, std::to_string(i).size() + 1 + shorten(m.layers[i].name).size());
  p.mb = 24 + static_cast<int>(5.6 * chars);
  double lo = 1e300, hi = -1e300;
  bool floored = false;
  for (const ModeResult& mr : r.modes)
    for (const LayerResult& lr : mr.layers)
      for (double v : {lr.chained.rel_l2(), lr.isolated.rel_l2()}) {
        if (!std::isfinite(v)) continue;
        if (v <= kFloor) { floored = true; continue; }
        lo = std::min(lo, std::floor(std::log10(v)));
        hi = std::max(hi, std::ceil(std::log10(v)));
      }
  if (floored || lo > hi) lo = std::log10(kFloor);
  if (hi < lo + 1) hi = lo + 1;
  p.lo = lo;
  p.hi = hi;
}

void svg_axes(std::ostream& o, const Plot& p, const Model& m) {
  const int bottom = p.bottom(), span = static_cast<int>(p.hi - p.lo);
  const int every = std::max(1, static_cast<int>(std::ceil(span * 16.0 / p.height)));
  for (int k = 0; k <= span; ++k) {
    const int e = static_cast<int>(p.hi) - k;
    const double y = p.y(std::pow(10.0, e));
    o << "<line x1=\"" << p.ml << "\" x2=\"" << p.w - p.mr << "\" y1=\"" << y << "\" y2=\"" << y
      << "\" stroke=\"#e4e4e4\"/>\n";
    if (k % every == 0 || k == span)
      o << "<text x=\"" << p.ml - 6 << "\" y=\"" << y + 4 << "\" font-size=\"11\" text-anchor=\"end\">"
        << (std::pow(10.0, e) <= kFloor ? "0 / \u2264" : "") << "1e" << e << "</text>\n";
  }
  const double yf = p.y(kFloor);
  if (p.lo <= std::log10(kFloor))
    o << "<line x1=\"" << p.ml << "\" x2=\"" << p.w - p.mr << "\" y1=\"" << yf << "\" y2=\"" << yf
      << "\" stroke=\"#999\" stroke-dasharray=\"2,3\"><title>floor: exact (0) and rel_l2 below "
      << sci(kFloor) << " are drawn here</title></line>\n";
  o << "<text x=\"" << p.ml - 6 << "\" y=\"" << p.y(INFINITY) + 4
    << "\" font-size=\"11\" text-anchor=\"end\">Inf/NaN</text>\n";
  o << "<rect x=\"" << p.ml << "\" y=\"" << p.mt << "\" width=\"" << p.w - p.ml - p.mr << "\" height=\""
    << bottom - p.mt << "\" fill=\"none\" stroke=\"#888\"/>\n";
  const int label_every = std::max(1, static_cast<int>(std::ceil(p.layers * 13.0 / (p.w - p.ml - p.mr))));
  for (int i = 0; i < p.layers; ++i) {
    const double x = p.x(i);
    o << "<line x1=\"" << x << "\" x2=\"" << x << "\" y1=\"" << bottom << "\" y2=\"" << bottom + 4
      << "\" stroke=\"#888\"/>\n";
    if (i % label_every == 0)
      o << "<text font-size=\"11\" text-anchor=\"end\" transform=\"translate(" << x + 3 << ","
        << bottom + 8 << ") rotate(-60)\">" << i << " " << markup_escape(shorten(m.layers[i].name)) << "</text>\n";
  }
  o << "<text x=\"12\" y=\"" << (p.mt + bottom) / 2 << "\" font-size=\"12\" text-anchor=\"middle\" "
    << "transform=\"rotate(-90 12," << (p.mt + bottom) / 2 << ")\">rel_l2 (log10)</text>\n";
}

void svg_legend(std::ostream& o, const AnalysisResult& r, bool isolated) {
  double x = 70;
  for (const ModeResult& mr : r.modes) {
    o << "<line x1=\"" << x << "\" x2=\"" << x + 22 << "\" y1=\"14\" y2=\"14\" stroke=\"" << colour(mr.mode)
      << "\" stroke-width=\"2\"/><circle cx=\"" << x + 11 << "\" cy=\"14\" r=\"3\" fill=\"" << colour(mr.mode)
      << "\"/><text x=\"" << x + 27 << "\" y=\"18\" font-size=\"12\">" << mode_name(mr.mode) << "</text>\n";
    x += 40 + 8 * std::string(mode_name(mr.mode)).size();
  }
  const char* what = isolated ? "own error (isolated run fails)" : "diverged layer";
  const char* line = isolated ? "culprit" : "first divergent layer";
  o << "<circle cx=\"" << x + 6 << "\" cy=\"14\" r=\"5.5\" fill=\"#bbb\" stroke=\"" << kRed
    << "\" stroke-width=\"2\"/><text x=\"" << x + 16 << "\" y=\"18\" font-size=\"12\">" << what << "</text>\n";
  x += 30 + 6.5 * std::string(what).size();
  o << "<line x1=\"" << x << "\" x2=\"" << x << "\" y1=\"6\" y2=\"22\" stroke=\"#555\" stroke-dasharray=\"5,4\"/>"
    << "<text x=\"" << x + 6 << "\" y=\"18\" font-size=\"12\">" << line << "</text>\n";
  x += 22 + 6.5 * std::string(line).size();
  o << "<polygon points=\"" << x << ",18 " << x + 5 << ",9 " << x + 10 << ",18\" fill=\"#555\"/>"
    << "<text x=\"" << x + 15 << "\" y=\"18\" font-size=\"12\">rel_l2 Inf/NaN</text>\n";
}

// rel_l2 per layer, one polyline and marker set per mode; `isolated` plots the isolated runs
// (own error) and marks the culprit, otherwise the chained runs and the first divergent layer.
void svg_plot(std::ostream& o, const AnalysisResult& r, const Model& m, const Plot& p, bool isolated) {
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" font-family=\"sans-serif\" class=\""
    << (isolated ? "isolated" : "chained") << "\" width=\"" << p.w << "\" height=\"" << p.total()
    << "\" viewBox=\"0 0 " << p.w << " " << p.total() << "\">\n";
  svg_legend(o, r, isolated);
  svg_axes(o, p, m);
  for (size_t k = 0; k < r.modes.size(); ++k) {
    const ModeResult& mr = r.modes[k];
    const char* c = colour(mr.mode);
    const int mark = isolated ? mr.culprit : mr.first_divergent;
    if (mark >= 0) {
      const double x = p.x(mark);
      o << "<line x1=\"" << x << "\" x2=\"" << x << "\" y1=\"" << p.mt << "\" y2=\"" << p.bottom()
        << "\" stroke=\"" << c << "\" stroke-width=\"1.5\" stroke-dasharray=\"6,4\"><title>"
        << mode_name(mr.mode) << ": " << (isolated ? "culprit " : "first divergent layer ")
        << markup_escape(m.layers[mark].name) << " (#" << mark << ")</title></line>\n"
        << "<text x=\"" << x + 4 << "\" y=\"" << p.mt + 14 + 13 * k << "\" font-size=\"11\" fill=\"" << c
        << "\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\">" << mode_name(mr.mode) << "</text>\n";
    }
    o << "<polyline class=\"mode-" << mode_name(mr.mode) << "\" fill=\"none\" stroke=\"" << c
      << "\" stroke-width=\"1.5\" points=\"";
    for (size_t i = 0; i < mr.layers.size(); ++i) {
      const LayerStats& s = isolated ? mr.layers[i].isolated : mr.layers[i].chained;
      o << p.x(i) << "," << p.y(s.rel_l2()) << " ";
    }
    o << "\"/>\n";
    for (size_t i = 0; i < mr.layers.size(); ++i) {
      const LayerResult& lr = mr.layers[i];
      const LayerStats& s = isolated ? lr.isolated : lr.chained;
      const bool bad = isolated ? lr.isolated_failed : lr.diverged;
      const double x = p.x(i), y = p.y(s.rel_l2()), v = s.rel_l2();
      if (!std::isfinite(v))
        o << "<polygon points=\"" << x - 5 << "," << y + 4 << " " << x << "," << y - 5 << " " << x + 5
          << "," << y + 4 << "\" fill=\"" << c << "\"";
      else
        o << "<circle cx=\"" << x << "\" cy=\"" << y << "\" r=\"" << (bad ? 5.5 : 3) << "\" fill=\"" << c << "\"";
      if (bad) o << " stroke=\"" << kRed << "\" stroke-width=\"2\"";
      o << "><title>" << mode_name(mr.mode) << " #" << i << " " << markup_escape(m.layers[i].name) << " ("
        << markup_escape(m.layers[i].op) << "): rel_l2 " << sci(v) << ", mismatch " << pct(s.mismatch, s.count)
        << " %, " << s.nan << " NaN, " << s.inf << " Inf" << (bad ? ", DIVERGED" : "") << "</title></"
        << (std::isfinite(v) ? "circle" : "polygon") << ">\n";
    }
  }
  o << "</svg>\n";
}

std::string verdict(const ModeResult& mr, size_t i) {
  std::string v = layer_verdict(mr.layers[i]);
  if (!mr.layers[i].reason.empty()) v += ": " + mr.layers[i].reason;
  if (static_cast<int>(i) == mr.first_divergent) v += " [first]";
  if (static_cast<int>(i) == mr.culprit) v += " [culprit]";
  return v;
}

void mode_section(std::ostream& o, const ModeResult& mr, const AnalysisResult& r, const Model& m) {
  const char* name = mode_name(mr.mode);
  o << "<h2 id=\"mode-" << name << "\">" << mode_summary(mr, r, m) << "</h2>\n";
  if (mr.mode == Mode::strict)
    o << "<p class=\"note\">verdict: bitwise equal to the CPU strict path; errors below are against FP64</p>\n";
  o << "<details" << (mr.passed() ? "" : " open") << "><summary>" << name << ": " << mr.layers.size()
    << " layers</summary>\n<table>\n<tr><th>#</th><th>name</th><th>op</th><th>max_abs</th><th>rel_l2</th>"
    << "<th>mismatch %</th><th>max_ulp</th><th>isolated rel_l2</th><th>amplification</th><th>verdict</th></tr>\n";
  for (size_t i = 0; i < mr.layers.size(); ++i) {
    const LayerResult& lr = mr.layers[i];
    const LayerStats& s = lr.chained;
    const bool first = static_cast<int>(i) == mr.first_divergent;
    o << "<tr" << (first ? " class=\"div first\"" : lr.diverged ? " class=\"div\"" : "") << "><td class=\"n\">"
      << i << "</td><td>" << markup_escape(m.layers[i].name) << "</td><td>" << markup_escape(m.layers[i].op)
      << "</td><td class=\"n\">" << sci(s.max_abs) << "</td><td class=\"n\">" << sci(s.rel_l2())
      << "</td><td class=\"n\">" << pct(s.mismatch, s.count) << "</td><td class=\"n\">" << sci(s.max_ulp)
      << "</td><td class=\"n\">" << sci(lr.isolated.rel_l2()) << "</td><td class=\"n\">"
      << (lr.amplification >= 0 ? sci(lr.amplification) : "\u2014") << "</td><td>" << markup_escape(verdict(mr, i))
      << "</td></tr>\n";
  }
  o << "</table>\n</details>\n";
  if (mr.samples.empty()) return;
  const size_t shown = std::min(mr.samples.size(), static_cast<size_t>(kTopSamples));
  o << "<p>Divergent samples, earliest and worst first (" << shown << " of " << mr.divergent_samples
    << "):</p>\n<table>\n<tr><th>batch</th><th>sample</th><th>first divergent layer</th><th>rel_l2</th>"
    << "<th>max_abs</th><th>mismatch</th><th>new NaN/Inf</th></tr>\n";
  for (size_t k = 0; k < shown; ++k) {
    const SampleDivergence& s = mr.samples[k];
    o << "<tr><td class=\"n\">" << s.batch << "</td><td class=\"n\">" << s.sample << "</td><td>"
      << markup_escape(m.layers[s.layer].name) << " (#" << s.layer << ")</td><td class=\"n\">" << sci(s.rel_l2)
      << "</td><td class=\"n\">" << sci(s.max_abs) << "</td><td class=\"n\">" << s.mismatch << "/" << s.count
      << "</td><td>" << (s.nonfinite ? "yes" : "no") << "</td></tr>\n";
  }
  o << "</table>\n";
}

// The FP64 reference against the capturing framework's own activations, where recorded.
void recorded_section(std::ostream& o, const AnalysisResult& r, const Model& m) {
  if (std::none_of(r.recorded.begin(), r.recorded.end(), [](const LayerStats& s) { return s.count > 0; }))
    return;
  o << "<h2>Recorded activations: FP64 reference vs the capturing framework</h2>\n<table>\n<tr><th>#</th>"
    << "<th>name</th><th>op</th><th>count</th><th>max_abs</th><th>max_rel</th><th>rel_l2</th><th>NaN</th>"
    << "<th>Inf</th></tr>\n";
  for (size_t i = 0; i < r.recorded.size(); ++i) {
    const LayerStats& s = r.recorded[i];
    if (!s.count) continue;
    o << "<tr><td class=\"n\">" << i << "</td><td>" << markup_escape(m.layers[i].name) << "</td><td>"
      << markup_escape(m.layers[i].op) << "</td><td class=\"n\">" << s.count << "</td><td class=\"n\">" << sci(s.max_abs)
      << "</td><td class=\"n\">" << sci(s.max_rel) << "</td><td class=\"n\">" << sci(s.rel_l2())
      << "</td><td class=\"n\">" << s.nan << "</td><td class=\"n\">" << s.inf << "</td></tr>\n";
  }
  o << "</table>\n";
}

}  // namespace

void write_html(const AnalysisResult& r, const ReportContext& ctx, const std::string& path) {
  std::ostringstream f;   // written whole, then replaced atomically
  const Model& m = *ctx.model;
  f << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>divscope: "
    << markup_escape(m.name) << "</title>\n<style>" << kCss << "</style>\n</head>\n<body>\n";
  write_header(f, r, ctx);
  Plot p;
  plot_layout(r, m, p);
  f << "<h2>Chained rel_l2 per layer (the error the user sees)</h2>\n";
  svg_plot(f, r, m, p, false);
  f << "<h2>Isolated rel_l2 per layer (each layer's own error, fed the reference's inputs)</h2>\n";
  p.height = 200;
  svg_plot(f, r, m, p, true);
  f << "<p class=\"note\">Exact results (rel_l2 0) and errors below " << sci(kFloor)
    << " lie on the dotted floor line; hover a point for its numbers.</p>\n";
  for (const ModeResult& mr : r.modes) mode_section(f, mr, r, m);
  recorded_section(f, r, m);
  f << "</body>\n</html>\n";
  write_text_atomically(path, "the HTML report", [&](std::ostream& o) { o << f.str(); });
}

}  // namespace divscope
