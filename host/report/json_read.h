// Reading a JSON report of `divscope run --report` back (README, Commands): the inverse of stats_json
// and of the parts of report_json that `divscope merge` needs. Every error is one InputError
// naming the file and the JSON pointer of the offending value (exit 2), e.g.
// "a.json: /modes/1/layers/3/chained/sums: missing key 'err2'".
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "analysis/analysis.h"

namespace divscope {

// The inverse of stats_json: counts, maxima and their coordinates, histograms, the reference's
// range and the raw sums ("sums"). Derived metrics (rel_l2, cosine, percentiles, …) are not read
// but recomputed from those, so stats_json(stats_from_json(stats_json(s))) == stats_json(s).
// null is +inf where stats_json may write an infinite maximum or a sum that overflowed
// (max_abs, max_rel, min_rtol, max_ulp, the sums of magnitudes and squares).
// `file` and `pointer` (of `j` in its document) only name the value in errors.
LayerStats stats_from_json(const nlohmann::json& j, const std::string& file = "<json>",
                           const std::string& pointer = "");

// One report as `divscope merge` needs it. `result` holds the statistics and the per-layer
// tolerances; the verdicts (diverged, first divergent layer, culprit, amplification, baseline
// limits) are not read: judge() recomputes them.
struct ReportData {
  std::string file;
  AnalysisResult result;   // batch_begin and batches give the range [batch_begin, batch_end)
  std::string model_path, model_name, recording, backend;
  std::vector<std::string> layer_names, layer_ops, input_names;   // as the report lists them
  nlohmann::json environment, tolerance;
  int64_t batch_end() const { return result.batch_begin + result.batches; }
};

// A divscope_report of version kReportVersion with its batch range (batch_begin, batch_end);
// every mode must list the same layers and inputs.
ReportData read_report(const std::string& path);
// The same from a parsed document: `file` and `pointer` (of `j` in it) name values in errors
// (a journal holds its report at /report).
ReportData report_from_json(const nlohmann::json& j, const std::string& file, const std::string& pointer = "");

}  // namespace divscope
