// Reports of an analysis (README, Commands): console table, JSON (versioned), JUnit XML, HTML.
#pragma once
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

#include "analysis/analysis.h"

namespace divscope {

struct ReportContext {
  const Model* model = nullptr;
  std::string model_path, recording_path, backend;
  nlohmann::json environment;           // this machine's record (docs/environment.md)
  nlohmann::json capture_environment;   // the recording's capturing machine, normalized; null when none
  nlohmann::json tolerance;   // what was asked for: defaults, flags, file
};

constexpr int kReportVersion = 2;

nlohmann::json stats_json(const LayerStats& s);
// Writes `j` (indented, one trailing newline) to `path`; InputError naming it when it cannot.
void write_json(const nlohmann::json& j, const std::string& path);
nlohmann::json report_json(const AnalysisResult& r, const ReportContext& ctx);
// One layer's verdict in a word or two, as the console table and the HTML page show it:
// "DIVERGED (collapse) [own error]", "ok", ...; LayerResult::reason says why in numbers.
std::string layer_verdict(const LayerResult& lr);

struct ConsoleOptions {
  bool quiet = false;           // each mode's verdict line and the result line only
  std::string table = "auto";   // auto | all | none (rows of the per-mode tables)
};
void print_console(const AnalysisResult& r, const ReportContext& ctx, std::ostream& out,
                   const ConsoleOptions& o = {});
void write_junit(const AnalysisResult& r, const ReportContext& ctx, const std::string& path);
// One self-contained HTML file: header, inline-SVG rel_l2 plots, per-mode tables.
void write_html(const AnalysisResult& r, const ReportContext& ctx, const std::string& path);

}  // namespace divscope
