// host/diff: `divscope diff A.h5 B.h5` on dumps written here with DumpWriter (small-integer
// values, so every expected metric is exact), and on two dumps of the same CPU run.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "cli_util.h"
#include "commands/diff.h"
#include "errors.h"
#include "io/h5io.h"

using namespace divscope;
using namespace divscope::testing;

namespace {

const char* kEnvA = R"({"host": {"hostname": "alpha"}, "cuda": {"available": true, "gpu": "NVIDIA H100"}})";
const char* kEnvB = R"({"host": {"hostname": "beta"}, "cuda": {"available": false}})";

// Topological order z.in -> m.mid -> a.out is the reverse of name order, so a result in name
// order would name the wrong first layer.
const char* kLayers[] = {"z.in", "m.mid", "a.out"};

Tensor counting(const Shape& s, double start) {
  Tensor t(s);
  for (int64_t i = 0; i < t.size(); ++i) t.data[i] = start + static_cast<double>(i);
  return t;
}

// One dump: batches 0 and 1, `modes`, the three layers [2, 3]; `edit` may change a tensor
// (batch, mode, layer) before it is written, or return false to leave it out.
template <class Edit>
std::string write_dump(const std::string& name, const char* env, Edit edit,
                       const std::vector<const char*>& modes = {"fp64", "fp16"}) {
  const std::string path = temp_path(name);
  DumpWriter w(path, env);
  for (size_t b = 0; b < 2; ++b)
    for (const char* mode : modes)
      for (int l = 0; l < 3; ++l) {
        Tensor t = counting({2, 3}, 1 + 10.0 * l + 100.0 * b);
        if (edit(b, std::string(mode), std::string(kLayers[l]), t)) w.write(b, mode, kLayers[l], t);
      }
  return path;
}

std::string plain_dump(const std::string& name, const char* env = kEnvA) {
  return write_dump(name, env, [](size_t, const std::string&, const std::string&, Tensor&) { return true; });
}

struct Ran {
  int code;
  std::string out, err;
};

Ran diff(DiffArgs a) {
  std::ostringstream out, err;
  int code = run_diff(a, out, err);
  return {code, out.str(), err.str()};
}

DiffArgs args(const std::string& a, const std::string& b) {
  DiffArgs d;
  d.a = a;
  d.b = b;
  return d;
}

const LayerDiff& layer(const DiffResult& r, const std::string& mode, const std::string& name) {
  for (const ModeDiff& m : r.modes)
    if (m.mode == mode)
      for (const LayerDiff& l : m.layers)
        if (l.name == name) return l;
  throw std::runtime_error(mode + "/" + name + " not in the diff");
}

const ModeDiff& mode_of(const DiffResult& r, const std::string& mode) {
  for (const ModeDiff& m : r.modes)
    if (m.mode == mode) return m;
  throw std::runtime_error(mode + " not in the diff");
}

void expect_input_error(const DiffArgs& a, const std::vector<std::string>& parts) {
  try {
    diff_dumps(a);
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
  }
}

// B = A with fp16 m.mid [batch 1, element (1, 2)] one ulp up and a.out [batch 0, (0, 1)] + 4.
std::string one_ulp_dump(const std::string& name) {
  return write_dump(name, kEnvB, [](size_t b, const std::string& mode, const std::string& l, Tensor& t) {
    if (mode == "fp16" && l == "m.mid" && b == 1) t.data[5] = std::nextafter(t.data[5], 1e9);
    if (mode == "fp16" && l == "a.out" && b == 0) t.data[1] += 4;
    return true;
  });
}

}  // namespace

TEST(Diff, IdenticalDumpsPassAndNameBothMachines) {
  const std::string a = plain_dump("same_a.h5"), b = plain_dump("same_b.h5", kEnvB);
  Ran r = diff(args(a, b));
  EXPECT_EQ(r.code, kExitOk) << r.out;
  EXPECT_NE(r.out.find("NVIDIA H100 on host alpha"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("host beta (no CUDA device)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fp16: identical (3 layers, 2 batches)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fp64: identical"), std::string::npos) << r.out;
  DiffResult d = diff_dumps(args(a, b));
  ASSERT_EQ(d.modes.size(), 2u);
  EXPECT_EQ(d.modes[0].mode, "fp64");   // the order written, not name order
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(d.modes[1].layers[i].name, kLayers[i]);
  EXPECT_EQ(layer(d, "fp16", "m.mid").stats.count, 12);
  EXPECT_EQ(layer(d, "fp16", "m.mid").batches, 2);
  std::remove(a.c_str());
  std::remove(b.c_str());
}

TEST(Diff, OneUlpIsDifferentAndTheFirstLayerIsTopological) {
  const std::string a = plain_dump("ulp_a.h5"), b = one_ulp_dump("ulp_b.h5");
  DiffResult d = diff_dumps(args(a, b));
  EXPECT_FALSE(d.passed());
  EXPECT_TRUE(mode_of(d, "fp64").identical());
  const ModeDiff& m = mode_of(d, "fp16");
  ASSERT_EQ(m.first_different, 1);
  EXPECT_EQ(m.layers[1].name, "m.mid");
  const LayerDiff& mid = m.layers[1];
  EXPECT_EQ(mid.bitwise_different, 1);
  EXPECT_EQ(mid.stats.mismatch, 1);
  // Element 116 (= 111 + 5) moved one ulp: 2^(6-52). ||A|| over both batches: 11..16, 111..116.
  EXPECT_EQ(mid.stats.max_abs, std::ldexp(1.0, -46));
  EXPECT_EQ(mid.stats.max_abs_batch, 1);
  EXPECT_EQ(mid.stats.max_abs_index, (std::vector<int64_t>{1, 2}));
  double norm2 = 0;
  for (int v = 11; v <= 16; ++v) norm2 += v * v + (v + 100.0) * (v + 100.0);
  EXPECT_DOUBLE_EQ(mid.stats.rel_l2(), std::ldexp(1.0, -46) / std::sqrt(norm2));
  EXPECT_EQ(m.layers[2].stats.max_abs, 4);
  EXPECT_EQ(m.layers[2].stats.max_abs_index, (std::vector<int64_t>{0, 1}));

  Ran r = diff(args(a, b));
  EXPECT_EQ(r.code, kExitDiverged);
  EXPECT_NE(r.out.find("fp16: DIFFERENT — first different layer 'm.mid'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2/3 layers differ"), std::string::npos) << r.out;
  std::remove(a.c_str());
  std::remove(b.c_str());
}

TEST(Diff, ToleranceAcceptsSmallDifferencesButKeepsTheBitwiseCount) {
  const std::string a = plain_dump("tol_a.h5"), b = one_ulp_dump("tol_b.h5");
  DiffArgs loose = args(a, b);
  loose.atol = 4;   // |b - a| <= 4 everywhere
  Ran r = diff(loose);
  EXPECT_EQ(r.code, kExitOk) << r.out;
  EXPECT_NE(r.out.find("within tolerance"), std::string::npos) << r.out;
  EXPECT_EQ(layer(diff_dumps(loose), "fp16", "m.mid").bitwise_different, 1);

  DiffArgs rel = args(a, b);
  rel.rtol = 1e-15;   // covers the ulp (1.2e-16 relative) but not a.out's +4
  DiffResult d = diff_dumps(rel);
  EXPECT_EQ(mode_of(d, "fp16").layers[mode_of(d, "fp16").first_different].name, "a.out");

  DiffArgs bad = args(a, b);
  bad.atol = -1;
  expect_input_error(bad, {"--atol"});
  std::remove(a.c_str());
  std::remove(b.c_str());
}

TEST(Diff, ShapeMismatchIsADifferenceNotACrash) {
  const std::string a = plain_dump("shape_a.h5");
  const std::string b = write_dump("shape_b.h5", kEnvB, [](size_t b, const std::string&, const std::string& l, Tensor& t) {
    if (l == "a.out" && b == 0) t = counting({2, 4}, 1);
    return true;
  });
  DiffResult d = diff_dumps(args(a, b));
  const LayerDiff& out = layer(d, "fp64", "a.out");
  EXPECT_TRUE(out.different);
  EXPECT_EQ(out.shape_mismatch, 1);
  EXPECT_EQ(out.batches, 1);   // batch 1 still compared
  EXPECT_EQ(out.shape_b, (Shape{2, 4}));
  Ran r = diff(args(a, b));
  EXPECT_EQ(r.code, kExitDiverged);
  EXPECT_NE(r.out.find("DIFFERENT shape [2, 3] vs [2, 4]"), std::string::npos) << r.out;
  std::remove(a.c_str());
  std::remove(b.c_str());
}

TEST(Diff, EntriesInOnlyOneDumpAreListedAndDifferentUnlessCommonOnly) {
  // B lacks fp16 m.mid of batch 1 and has an extra mode.
  const std::string a = plain_dump("only_a.h5");
  const std::string b = write_dump("only_b.h5", kEnvB, [](size_t b, const std::string& mode, const std::string& l, Tensor&) {
    return !(mode == "fp16" && l == "m.mid" && b == 1);
  }, {"fp64", "fp16", "bf16"});
  DiffResult d = diff_dumps(args(a, b));
  ASSERT_EQ(d.modes.size(), 3u);
  EXPECT_EQ(d.modes[2].mode, "bf16");
  EXPECT_EQ(d.modes[2].first_different, 0);
  const ModeDiff& m = mode_of(d, "fp16");
  EXPECT_EQ(m.first_different, 1);
  EXPECT_EQ(m.layers[1].only_in_a, (std::vector<size_t>{1}));
  EXPECT_EQ(m.layers[1].batches, 1);
  nlohmann::json j = diff_json(d, args(a, b));
  ASSERT_EQ(j["only_in_a"].size(), 1u);
  EXPECT_EQ(j["only_in_a"][0]["layer"], "m.mid");
  EXPECT_EQ(j["only_in_a"][0]["batches"], nlohmann::json::array({1}));
  EXPECT_EQ(j["only_in_b"].size(), 3u);   // bf16: the three layers, both batches

  Ran r = diff(args(a, b));
  EXPECT_EQ(r.code, kExitDiverged);
  EXPECT_NE(r.out.find("1 layer(s) with batches only in A: 'm.mid'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bf16: only in B (3 layers), not compared — DIFFERENT"), std::string::npos) << r.out;
  DiffArgs common = args(a, b);
  common.common_only = true;
  r = diff(common);
  EXPECT_EQ(r.code, kExitOk) << r.out;
  EXPECT_NE(r.err.find("7 entries in only one dump ignored"), std::string::npos) << r.err;
  std::remove(a.c_str());
  std::remove(b.c_str());
}

TEST(Diff, LayerOrderMergesWhatEitherDumpWrote) {
  // Only B wrote m.mid: it still sits between z.in and a.out.
  const std::string a = write_dump("merge_a.h5", kEnvA, [](size_t, const std::string&, const std::string& l, Tensor&) {
    return l != "m.mid";
  });
  const std::string b = plain_dump("merge_b.h5", kEnvB);
  DiffArgs only16 = args(a, b);
  only16.modes = "fp16";
  DiffResult d = diff_dumps(only16);
  ASSERT_EQ(d.modes.size(), 1u);
  ASSERT_EQ(d.modes[0].layers.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(d.modes[0].layers[i].name, kLayers[i]);
  EXPECT_EQ(d.modes[0].layers[1].only_in_b, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(d.modes[0].first_different, 1);
  only16.modes = "bf16";
  expect_input_error(only16, {"--modes", "'bf16'"});
  only16.modes = "fp16,fp16";
  expect_input_error(only16, {"--modes", "twice"});
  std::remove(a.c_str());
  std::remove(b.c_str());
}

TEST(Diff, NanEqualsNanAndInfinitiesMustMatch) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  auto special = [&](double last) {
    return [=](size_t b, const std::string& mode, const std::string& l, Tensor& t) {
      if (b == 0 && mode == "fp16" && l == "z.in") {
        t.data[0] = nan;
        t.data[1] = inf;
        t.data[2] = 0.0;
        t.data[5] = last;
      }
      return true;
    };
  };
  const std::string a = write_dump("nan_a.h5", kEnvA, special(nan));
  const std::string same = write_dump("nan_same.h5", kEnvB, special(nan));
  const std::string num = write_dump("nan_num.h5", kEnvB, special(7.0));
  const std::string neg = write_dump("nan_neg.h5", kEnvB, [&](size_t b, const std::string& mode, const std::string& l, Tensor& t) {
    special(nan)(b, mode, l, t);
    if (b == 0 && mode == "fp16" && l == "z.in") {
      t.data[1] = -inf;
      t.data[2] = -0.0;
    }
    return true;
  });
  EXPECT_TRUE(diff_dumps(args(a, same)).passed());
  const DiffResult rn = diff_dumps(args(a, num)), rs = diff_dumps(args(a, neg));
  const LayerDiff& n = layer(rn, "fp16", "z.in");
  EXPECT_EQ(n.stats.mismatch, 1);
  EXPECT_TRUE(n.different);
  const LayerDiff& s = layer(rs, "fp16", "z.in");
  EXPECT_EQ(s.stats.mismatch, 1);           // inf vs -inf; -0 equals 0 ...
  EXPECT_EQ(s.bitwise_different, 2);        // ... but not bitwise
  for (const std::string& p : {a, same, num, neg}) std::remove(p.c_str());
}

TEST(Diff, BadInputIsAnInputErrorNamingTheFile) {
  const std::string a = plain_dump("bad_a.h5");
  const std::string model = data_file("mlp.model.h5");
  expect_input_error(args(a, model), {model, "\"model\", expected \"dump\""});
  const std::string missing = temp_path("no_such_dump.h5");
  expect_input_error(args(missing, a), {missing});
  const std::string empty = temp_path("empty.dump.h5");
  { DumpWriter w(empty, kEnvA); }
  expect_input_error(args(empty, empty), {empty, "in common"});
  std::remove(empty.c_str());
  std::remove(a.c_str());
}

TEST(Diff, ReportHasTheDocumentedKeys) {
  const std::string a = plain_dump("rep_a.h5"), b = one_ulp_dump("rep_b.h5");
  DiffArgs d = args(a, b);
  d.report = temp_path("diff_report.json");
  EXPECT_EQ(diff(d).code, kExitDiverged);
  nlohmann::json j = nlohmann::json::parse(read_file(d.report));
  EXPECT_EQ(j["divscope_diff"], 1);
  EXPECT_EQ(j["environment_a"]["host"]["hostname"], "alpha");
  EXPECT_EQ(j["tolerance"]["atol"], 0.0);
  EXPECT_FALSE(j["passed"].get<bool>());
  const nlohmann::json& m = j["modes"][1];
  EXPECT_EQ(m["mode"], "fp16");
  EXPECT_FALSE(m["identical"].get<bool>());
  EXPECT_EQ(m["first_different_layer"], "m.mid");
  const nlohmann::json& l = m["layers"][1];
  for (const char* k : {"name", "index", "batches", "count", "max_abs", "rel_l2", "bitwise_different",
                        "mismatch", "different", "max_abs_batch", "max_abs_index"})
    EXPECT_TRUE(l.contains(k)) << k;
  EXPECT_EQ(l["index"], 1);
  EXPECT_TRUE(j["modes"][0]["first_different_layer"].is_null());
  std::remove(d.report.c_str());
  std::remove(a.c_str());
  std::remove(b.c_str());
}

// Two CPU runs of the same model and recording must be bit-identical (STYLE 9).
TEST(Diff, TwoCpuRunsOfTheSameModelAreIdentical) {
  const std::string one = temp_path("run1.dump.h5"), two = temp_path("run2.dump.h5");
  for (const std::string& dump : {one, two}) {
    CliResult r = run_cli("run --backend cpu --quiet --modes fp16 --model " + data_file("mlp.model.h5") +
                          " --recording " + data_file("mlp.recording.h5") + " --dump " + dump);
    ASSERT_TRUE(r.code == 0 || r.code == 1) << r.err;
  }
  DiffResult d = diff_dumps(args(one, two));
  EXPECT_TRUE(d.passed());
  ASSERT_EQ(d.modes.size(), 2u);
  EXPECT_EQ(d.modes[0].mode, "fp64");
  EXPECT_EQ(d.modes[1].mode, "fp16");
  for (const ModeDiff& m : d.modes) {
    EXPECT_TRUE(m.identical()) << m.mode;
    ASSERT_FALSE(m.layers.empty());
    for (const LayerDiff& l : m.layers) {
      EXPECT_GT(l.stats.count, 0) << l.name;
      EXPECT_EQ(l.bitwise_different, 0) << l.name;
    }
  }
  std::remove(one.c_str());
  std::remove(two.c_str());
}
