// host/merge and host/report/json_read: reports of `divscope run --report` over disjoint batch
// ranges merged into the report of one run over all of them, and reports read back exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "cli_util.h"
#include "analysis/compare.h"
#include "errors.h"
#include "commands/merge.h"
#include "report/json_read.h"
#include "report/report.h"

using namespace divscope;
using namespace divscope::testing;
using nlohmann::json;

namespace {

const char* kExample = "planted_fp16_overflow";   // 3 batches; fp16 diverges at 'amplify'

std::string model_file(const char* example = kExample) {
  return data_file(std::string(example) + ".model.h5");
}

// Temporary files, removed when the tests end.
struct TempFiles {
  std::map<std::string, std::string> paths;
  ~TempFiles() {
    for (const auto& kv : paths) std::remove(kv.second.c_str());
  }
};

std::string temp_file(const std::string& name) {
  static TempFiles files;
  return files.paths.emplace(name, temp_path(name)).first->second;
}

// `divscope run --backend cpu --report` over `batches` (cached: every test reuses the runs).
const std::string& report_of(const std::string& batches, const std::string& extra = "",
                             const char* example = kExample) {
  static std::map<std::string, std::string> made;
  const std::string key = std::string(example) + " " + batches + " " + extra;
  auto it = made.find(key);
  if (it != made.end()) return it->second;
  const std::string path = temp_file("merge_" + std::to_string(made.size()) + ".json");
  CliResult r = run_cli("run --backend cpu --quiet --model " + model_file(example) + " --recording " +
                        data_file(std::string(example) + ".recording.h5") + " --batches " + batches +
                        " --report " + path + " " + extra);
  EXPECT_TRUE(r.code == 0 || r.code == 1) << r.err;
  return made.emplace(key, path).first->second;
}

json load(const std::string& path) { return json::parse(read_file(path)); }

struct Merged {
  int code = -1;
  json report;
  std::string out, err;
};

Merged merge(const std::vector<std::string>& reports, const std::string& model = model_file()) {
  MergeArgs a;
  a.reports = reports;
  a.model = model;
  a.report = temp_file("merged.json");
  a.junit = temp_file("merged.xml");
  a.html = temp_file("merged.html");
  std::ostringstream out, err;
  Merged m;
  m.code = run_merge(a, out, err);
  m.report = load(a.report);
  m.out = out.str();
  m.err = err.str();
  EXPECT_FALSE(read_file(a.junit).empty());
  EXPECT_FALSE(read_file(a.html).empty());
  return m;
}

std::string merge_error(const std::vector<std::string>& reports, const std::string& model = model_file()) {
  MergeArgs a;
  a.reports = reports;
  a.model = model;
  std::ostringstream out, err;
  try {
    run_merge(a, out, err);
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "merge accepted the reports";
  return "";
}

// Keys whose numbers are sums, or computed from sums: adding the same batches in another
// grouping, b0 + (b1 + b2) against (b0 + b1) + b2, may change their last bits.
bool from_sums(const std::string& ptr, const std::string& key) {
  static const char* kKeys[] = {"abs", "err2", "ref2", "cand2", "dot", "ref", "ref_sq", "mean_abs",
                                "rel_l2", "cosine", "sqnr_db", "mean", "std", "amplification",
                                "baseline_limit", "isolated_baseline_limit"};
  if (ptr.find("/samples/") != std::string::npos) return false;   // per sample: one batch
  for (const char* k : kKeys)
    if (key == k) return true;
  return false;
}

// Everything equal; with `grouped`, numbers from sums within 1e-12 relative.
void expect_same(const json& a, const json& b, const std::string& ptr, bool grouped, const std::string& key = "") {
  if (grouped && a.is_number_float() && b.is_number_float() && from_sums(ptr, key)) {
    const double x = a.get<double>(), y = b.get<double>();
    EXPECT_LE(std::fabs(x - y), 1e-12 * std::max(std::fabs(x), std::fabs(y))) << ptr << ": " << x << " vs " << y;
    return;
  }
  ASSERT_EQ(a.type(), b.type()) << ptr << ": " << a.dump() << " vs " << b.dump();
  if (a.is_object()) {
    ASSERT_EQ(a.size(), b.size()) << ptr;
    for (auto it = a.begin(); it != a.end(); ++it) {
      ASSERT_TRUE(b.contains(it.key())) << ptr << "/" << it.key();
      expect_same(it.value(), b[it.key()], ptr + "/" + it.key(), grouped, it.key());
    }
  } else if (a.is_array()) {
    ASSERT_EQ(a.size(), b.size()) << ptr;
    for (size_t i = 0; i < a.size(); ++i) expect_same(a[i], b[i], ptr + "/" + std::to_string(i), grouped, key);
  } else {
    EXPECT_EQ(a, b) << ptr;
  }
}

// The merged report against the single run's: every key but merged_from (which only a merge
// writes) — model, recording, batches, batch_begin/batch_end, environment, tolerance, modes.
void expect_as_single_run(const Merged& m, const std::string& full, bool grouped) {
  json merged = m.report, single = load(full);
  ASSERT_TRUE(merged.contains("merged_from"));
  merged.erase("merged_from");
  expect_same(single, merged, "", grouped);
  EXPECT_EQ(m.code, single["passed"].get<bool>() ? 0 : 1);
}

std::vector<const json*> all_stats(const json& report) {
  std::vector<const json*> out;
  for (const json& r : report["recorded"]) out.push_back(&r);
  for (const json& m : report["modes"]) {
    for (const json& in : m["inputs"]) out.push_back(&in);
    for (const json& l : m["layers"]) {
      out.push_back(&l["chained"]);
      out.push_back(&l["isolated"]);
    }
  }
  return out;
}

}  // namespace

TEST(Merge, TwoShardsGiveTheSingleRunsReport) {
  const Merged m = merge({report_of("1:3"), report_of("0:1")});   // any order
  expect_as_single_run(m, report_of("0:3"), true);
  EXPECT_EQ(m.report["modes"][2]["first_divergent_layer"], "amplify");
  EXPECT_NE(m.out.find("fp16: FAIL"), std::string::npos) << m.out;
  EXPECT_EQ(m.report["merged_from"][0]["batch_end"], 1);
  EXPECT_EQ(m.report["merged_from"][1]["batch_begin"], 1);
}

// Every shard after the first holds one batch: the sums are added in the run's own order, so
// the merged report is the single run's bit for bit.
TEST(Merge, SingleBatchTailsAreBitwiseTheSingleRun) {
  expect_as_single_run(merge({report_of("2:3"), report_of("0:1"), report_of("1:2")}), report_of("0:3"), false);
  expect_as_single_run(merge({report_of("0:2"), report_of("2:3")}), report_of("0:3"), false);
}

TEST(Merge, BaselineCriterion) {
  const std::string extra = "--criterion baseline --modes fp32,fp16,bf16";
  const Merged m = merge({report_of("0:1", extra), report_of("1:3", extra)});
  expect_as_single_run(m, report_of("0:3", extra), true);
  EXPECT_GE(m.report["modes"][1]["layers"][0]["tolerance"]["baseline_limit"].get<double>(), 0);
}

TEST(Merge, RepeatedRunsAddTheirNondeterministicCounts) {
  const Merged m = merge({report_of("0:1", "--repeat 2"), report_of("1:3", "--repeat 2")});
  expect_as_single_run(m, report_of("0:3", "--repeat 2"), true);
  EXPECT_TRUE(m.report["modes"][0]["layers"][0].contains("nondeterministic_elements"));
  const std::string e = merge_error({report_of("0:1"), report_of("1:3", "--repeat 2")});
  EXPECT_NE(e.find(": /repeat: '2', but "), std::string::npos) << e;
}

TEST(Merge, OverlapGapAndMissingRangeRejected) {
  std::string e = merge_error({report_of("0:2"), report_of("1:3")});
  EXPECT_NE(e.find(report_of("1:3") + ": batches 1:3 overlap batches 0:2"), std::string::npos) << e;
  e = merge_error({report_of("0:1"), report_of("0:1")});
  EXPECT_NE(e.find("overlap"), std::string::npos) << e;
  e = merge_error({report_of("2:3"), report_of("0:1")});
  EXPECT_NE(e.find("batches 1:2 are in no report"), std::string::npos) << e;
  // A report of an older divscope does not say which batches it covers.
  json old = load(report_of("0:1"));
  old.erase("batch_begin");
  const std::string path = temp_file("merge_old.json");
  std::ofstream(path) << old.dump();
  e = merge_error({path, report_of("1:3")});
  EXPECT_NE(e.find(path + ": /: missing key 'batch_begin'"), std::string::npos) << e;
}

TEST(Merge, DifferentModelsRejected) {
  // --model is another model than the reports'.
  std::string e = merge_error({report_of("0:1"), report_of("1:3")}, model_file("planted_layernorm_offset"));
  EXPECT_NE(e.find(report_of("0:1") + ": /model_name:"), std::string::npos) << e;
  // One report is of another model.
  const std::string other = report_of("1:3", "", "planted_layernorm_offset");
  e = merge_error({report_of("0:1"), other});
  EXPECT_NE(e.find(other + ": /model_name:"), std::string::npos) << e;
}

TEST(Merge, DifferentModesBackendOrToleranceRejected) {
  std::string e = merge_error({report_of("0:1"), report_of("1:3", "--modes fp16,bf16")});
  EXPECT_NE(e.find("/modes: '2 modes', but " + report_of("0:1") + " has '5 modes'"), std::string::npos) << e;
  e = merge_error({report_of("0:1"), report_of("1:3", "--atol 0.5")});
  EXPECT_NE(e.find(report_of("1:3", "--atol 0.5") + ": /modes/0/layers/0/tolerance:"), std::string::npos) << e;
  json cuda = load(report_of("1:3"));
  cuda["backend"] = "cuda";
  const std::string path = temp_file("merge_cuda.json");
  std::ofstream(path) << cuda.dump();
  e = merge_error({report_of("0:1"), path});
  EXPECT_NE(e.find(path + ": /backend: 'cuda', but"), std::string::npos) << e;
}

TEST(Merge, TruncatedOrNonJsonReportRejected) {
  const std::string text = read_file(report_of("1:3"));
  const std::string truncated = temp_file("merge_truncated.json"), garbage = temp_file("merge_garbage.json");
  std::ofstream(truncated) << text.substr(0, text.size() / 2);
  std::ofstream(garbage) << "divscope\n";
  for (const std::string& bad : {truncated, garbage, temp_file("merge_missing.json")}) {
    const std::string e = merge_error({report_of("0:1"), bad});
    EXPECT_EQ(e.rfind(bad + ": /: ", 0), 0u) << e;
  }
  const std::string other_json = temp_file("merge_other.json");
  std::ofstream(other_json) << R"({"divscope_diff": 1})";
  EXPECT_NE(merge_error({other_json}).find("not a divscope report"), std::string::npos);
}

TEST(JsonRead, RoundTripOfRealReports) {
  for (const std::string& path : {report_of("0:3"), report_of("0:3", "--criterion baseline --modes fp32,fp16,bf16")}) {
    const json rep = load(path);
    const std::vector<const json*> stats = all_stats(rep);
    ASSERT_GT(stats.size(), 20u);
    for (const json* s : stats) {
      json expect = *s;
      // inputs and recorded entries carry their name (recorded: also `layer`, and an ONNX model's
      // `value`) beside the stats
      expect.erase("name");
      expect.erase("layer");
      expect.erase("value");
      EXPECT_EQ(stats_json(stats_from_json(*s)), expect) << s->dump();
    }
  }
}

TEST(JsonRead, RoundTripOfInfinitiesAndNonFinite) {
  // A zero reference under a non-zero candidate (min_rtol = +inf), NaN and Inf on either side,
  // subnormals: every null the writer produces must read back as what it stood for.
  std::mt19937 rng(7);
  std::normal_distribution<double> g;
  const Shape shape{4, 33};
  std::vector<double> ref(132);
  std::vector<float> cand(132);
  for (size_t i = 0; i < ref.size(); ++i) {
    ref[i] = g(rng) * 100;
    cand[i] = static_cast<float>(ref[i] * (1 + 1e-3 * g(rng)));
  }
  ref[3] = 0;
  cand[3] = 1e-30f;
  cand[5] = NAN;
  cand[6] = INFINITY;
  ref[7] = NAN;
  ref[8] = 1e-310;
  for (Mode m : {Mode::fp32, Mode::fp16, Mode::bf16}) {
    CompareOptions co{m, 1e-3, 1e-3, -1};
    LayerStats s = compare_tensors(cand.data(), ref.data(), shape, co);
    s.max_abs_batch = 5;
    ASSERT_TRUE(std::isinf(s.min_rtol));
    const json j = stats_json(s);
    const json back = json::parse(j.dump());   // through text, as merge reads it
    EXPECT_EQ(stats_json(stats_from_json(back)), j) << mode_name(m);
    const LayerStats r = stats_from_json(back);
    EXPECT_EQ(r.sum_err2, s.sum_err2);
    EXPECT_EQ(r.max_abs_index, s.max_abs_index);
    EXPECT_EQ(r.err_hist, s.err_hist);
  }
}

TEST(JsonRead, ErrorsNameFileAndPointer) {
  json rep = load(report_of("0:1"));
  rep["modes"][1]["layers"][3]["chained"]["sums"].erase("err2");
  const std::string path = temp_file("merge_bad_sums.json");
  std::ofstream(path) << rep.dump();
  try {
    read_report(path);
    ADD_FAILURE() << "read a report without sums/err2";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": /modes/1/layers/3/chained/sums: missing key 'err2'");
  }
  rep = load(report_of("0:1"));
  rep["modes"][0]["layers"][2]["isolated"]["abs_err_histogram"][7] = "x";
  std::ofstream(path) << rep.dump();
  try {
    read_report(path);
    ADD_FAILURE() << "read a histogram with a string";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              path + ": /modes/0/layers/2/isolated/abs_err_histogram/7: expected an integer, got string");
  }
  EXPECT_THROW(stats_from_json(json::array()), InputError);
}

// A shard cannot hold impossible counts or numbers (issue "Hostile files ...", part 6): a negative
// mismatch would turn a FAIL into a PASS, 1e400 parses to inf.
TEST(JsonRead, ImpossibleCountsAndNumbersNamedByPointer) {
  struct Case {
    const char* what;
    std::function<void(json&)> edit;
    std::string pointer, says;
  };
  const std::vector<Case> cases = {
      {"negative mismatch", [](json& r) { r["modes"][0]["layers"][1]["chained"]["mismatch"] = -1000000000; },
       "/modes/0/layers/1/chained/mismatch", "impossible count -1000000000"},
      {"mismatch above count", [](json& r) {
         auto& c = r["modes"][0]["layers"][1]["chained"];
         c["mismatch"] = c["count"].get<int64_t>() + 1;
       }, "/modes/0/layers/1/chained/mismatch", "impossible count"},
      {"negative count", [](json& r) { r["modes"][0]["layers"][0]["isolated"]["count"] = -1; },
       "/modes/0/layers/0/isolated/count", "impossible count -1"},
      {"negative histogram bucket", [](json& r) { r["modes"][0]["layers"][0]["chained"]["ulp_histogram"][0] = -5; },
       "/modes/0/layers/0/chained/ulp_histogram/0", "impossible count -5"},
  };
  for (const Case& c : cases) {
    json rep = load(report_of("0:1"));
    c.edit(rep);
    const std::string path = temp_file("merge_impossible.json");
    std::ofstream(path) << rep.dump();
    const std::string e = merge_error({path, report_of("1:3")});
    EXPECT_NE(e.find(path + ": " + c.pointer + ": " + c.says), std::string::npos) << c.what << ": " << e;
  }
  // 1e400 written into the text (nlohmann would not write it).
  std::string text = read_file(report_of("0:1"));
  const std::string key = "\"max_ulp\":";
  const size_t at = text.find(key);
  ASSERT_NE(at, std::string::npos);
  const size_t end = text.find_first_of(",}", at);
  text.replace(at + key.size(), end - at - key.size(), "1e400");
  const std::string path = temp_file("merge_1e400.json");
  std::ofstream(path) << text;
  const std::string e = merge_error({path, report_of("1:3")});
  EXPECT_NE(e.find(path + ": /: not a valid JSON report: number overflow"), std::string::npos) << e;
}
