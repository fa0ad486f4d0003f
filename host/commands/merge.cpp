// `divscope merge`: the partial results are added in batch order with LayerStats::merge — the
// same operation, in the same order, as the run adds its batches — and judged once at the end.
#include "commands/merge.h"

#include <algorithm>

#include "analysis/analysis.h"
#include "errors.h"
#include "io/h5io.h"
#include "io/onnx_model.h"
#include "commands/paths.h"
#include "report/json_read.h"
#include "report/report.h"

namespace divscope {
namespace {

std::string range(const ReportData& p) {
  return std::to_string(p.result.batch_begin) + ":" + std::to_string(p.batch_end());
}

std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string tolerance_str(const Tolerance& t) {
  return nlohmann::json{{"atol", t.atol}, {"rtol", t.rtol}, {"max_mismatch", t.max_mismatch},
                        {"baseline_factor", t.baseline_factor}}.dump();
}

void same(const ReportData& p, const std::string& ptr, const std::string& mine, const ReportData& first,
          const std::string& theirs) {
  if (mine != theirs) throw InputError(p.file, ptr, "'" + mine + "', but " + first.file + " has '" + theirs + "'");
}

// The report was made with the model given: judge() reads its graph, the reports its names.
void check_model(const ReportData& p, const Model& m, const std::string& model_path) {
  auto differ = [&](const std::string& ptr, const std::string& mine, const std::string& theirs) {
    if (mine != theirs)
      throw InputError(p.file, ptr, "'" + mine + "', but --model " + model_path + " has '" + theirs + "'");
  };
  differ("/model_name", p.model_name, m.name);
  differ("/modes/0/layers", std::to_string(p.layer_names.size()) + " layers", std::to_string(m.layers.size()) + " layers");
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const std::string at = "/modes/0/layers/" + std::to_string(i);
    differ(at + "/name", p.layer_names[i], m.layers[i].name);
    differ(at + "/op", p.layer_ops[i], m.layers[i].op);
  }
  differ("/modes/0/inputs", std::to_string(p.input_names.size()) + " inputs", std::to_string(m.inputs.size()) + " inputs");
  for (size_t i = 0; i < m.inputs.size(); ++i)
    differ("/modes/0/inputs/" + std::to_string(i) + "/name", p.input_names[i], m.inputs[i].name);
}

// What makes two reports' numbers parts of one run. The recording is compared by file name:
// shards may run in different directories or on different machines.
void check_compatible(const ReportData& p, const ReportData& first) {
  const AnalysisResult &r = p.result, &f = first.result;
  same(p, "/recording", base_name(p.recording), first, base_name(first.recording));
  same(p, "/backend", p.backend, first, first.backend);
  same(p, "/repeat", std::to_string(r.repeat), first, std::to_string(f.repeat));
  same(p, "/tolerance/criterion", criterion_name(r.criterion), first, criterion_name(f.criterion));
  same(p, "/modes", std::to_string(r.modes.size()) + " modes", first, std::to_string(f.modes.size()) + " modes");
  for (size_t m = 0; m < r.modes.size(); ++m) {
    const std::string at = "/modes/" + std::to_string(m);
    same(p, at + "/mode", mode_name(r.modes[m].mode), first, mode_name(f.modes[m].mode));
    for (size_t i = 0; i < r.modes[m].layers.size(); ++i)
      same(p, at + "/layers/" + std::to_string(i) + "/tolerance", tolerance_str(r.modes[m].layers[i].tolerance),
           first, tolerance_str(f.modes[m].layers[i].tolerance));
  }
}

// The reports, sorted by batch, must cover one range: an overlap would count batches twice, a
// gap (a shard missing) would pass a gate on fewer batches than asked for.
void check_ranges(const std::vector<ReportData>& parts) {
  for (size_t i = 1; i < parts.size(); ++i) {
    const ReportData &prev = parts[i - 1], &p = parts[i];
    if (p.result.batch_begin < prev.batch_end())
      throw InputError("merge: " + p.file + ": batches " + range(p) + " overlap batches " + range(prev) +
                       " of " + prev.file);
    if (p.result.batch_begin > prev.batch_end())
      throw InputError("merge: " + p.file + ": batches " + std::to_string(prev.batch_end()) + ":" +
                       std::to_string(p.result.batch_begin) + " are in no report (between " + prev.file +
                       " and " + p.file + "); the merged report must cover one range");
  }
}

}  // namespace

int run_merge(const MergeArgs& a, std::ostream& out, std::ostream& err) {
  if (a.reports.empty()) throw InputError("merge: no reports given");
  if (a.model.empty()) throw InputError("merge: --model is required (judging reads the model's graph)");
  std::vector<NamedPath> inputs{{"--model", a.model}, {"--recording", a.recording}};
  for (const std::string& r : a.reports) inputs.push_back({"report", r});
  check_output_paths("merge", inputs, {{"--report", a.report}, {"--junit", a.junit}, {"--html", a.html}});
  const Model model = load_model(a.model, a.recording);
  std::vector<ReportData> parts;
  for (const std::string& path : a.reports) {
    parts.push_back(read_report(path));
    check_model(parts.back(), model, a.model);
    check_compatible(parts.back(), parts.front());
  }
  std::stable_sort(parts.begin(), parts.end(), [](const ReportData& x, const ReportData& y) {
    return x.result.batch_begin < y.result.batch_begin;
  });
  check_ranges(parts);
  for (const ReportData& p : parts)
    if (p.environment != parts.front().environment)
      err << "divscope: merge: " << p.file << " was written in another environment than " << parts.front().file
          << " (see merged_from in the JSON report)\n";

  AnalysisResult res = parts.front().result;
  for (size_t i = 1; i < parts.size(); ++i) add_batches(res, parts[i].result, BatchesFrom::report);
  judge(model, parts.front().backend, res);

  ReportContext ctx;
  ctx.model = &model;
  ctx.model_path = a.model;
  ctx.recording_path = parts.front().recording;
  ctx.backend = parts.front().backend;
  ctx.environment = parts.front().environment;
  ctx.tolerance = parts.front().tolerance;
  if (a.table != "auto" && a.table != "all" && a.table != "none")
    throw InputError("merge: --table must be auto, all or none, got '" + a.table + "'");
  print_console(res, ctx, out, {a.quiet, a.table});
  if (!a.report.empty()) {
    nlohmann::json j = report_json(res, ctx);
    for (const ReportData& p : parts)
      j["merged_from"].push_back({{"report", p.file},
                                  {"batch_begin", p.result.batch_begin},
                                  {"batch_end", p.batch_end()},
                                  {"environment", p.environment}});
    write_json(j, a.report);
  }
  if (!a.junit.empty()) write_junit(res, ctx, a.junit);
  if (!a.html.empty()) write_html(res, ctx, a.html);
  if (!res.data_healthy()) return kExitDataUnhealthy;
  return res.passed() ? kExitOk : kExitDiverged;
}

}  // namespace divscope
