// The analysis driver: the same answer whatever the thread count, and streaming over batches
// gives the same statistics as the batches one by one merged.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>

#include "analysis/analysis.h"
#include "errors.h"
#include "io/h5io.h"
#include "io/h5wrap.h"
#include "report/report.h"

using namespace divscope;

namespace {

nlohmann::json analyze_json(const std::string& example, unsigned threads) {
  const std::string dir = std::string(DIVSCOPE_SOURCE_DIR) + "/data/";
  Model m = read_model(dir + example + ".model.h5");
  AnalysisOptions opt;
  opt.modes = {Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict};
  opt.threads = threads;
  auto backend = make_cpu_backend();
  AnalysisResult r = analyze(m, dir + example + ".recording.h5", *backend, opt);
  ReportContext ctx;
  ctx.model = &m;
  ctx.backend = "cpu";
  return report_json(r, ctx);
}

}  // namespace

TEST(Analysis, ThreadCountDoesNotChangeAnyNumber) {
  for (const char* ex : {"cnn", "transformer", "planted_fp16_overflow"}) {
    SCOPED_TRACE(ex);
    const nlohmann::json one = analyze_json(ex, 1), two = analyze_json(ex, 2), four = analyze_json(ex, 4);
    EXPECT_EQ(one.dump(), two.dump());
    EXPECT_EQ(one.dump(), four.dump());
  }
}

TEST(Analysis, BatchesMergeLikeOneBigComparison) {
  const std::string dir = std::string(DIVSCOPE_SOURCE_DIR) + "/data/";
  Model m = read_model(dir + "mlp.model.h5");
  auto backend = make_cpu_backend();
  AnalysisOptions all;
  all.modes = {Mode::fp16};
  AnalysisResult r = analyze(m, dir + "mlp.recording.h5", *backend, all);
  int64_t count = 0, mismatch = 0;
  double err2 = 0, max_abs = 0;
  for (int64_t b = 0; b < r.batches; ++b) {
    AnalysisOptions one = all;
    one.batch_begin = b;
    one.batch_end = b + 1;
    AnalysisResult rb = analyze(m, dir + "mlp.recording.h5", *backend, one);
    const LayerStats& s = rb.modes[0].layers.back().chained;
    count += s.count;
    mismatch += s.mismatch;
    err2 += s.sum_err2;
    max_abs = std::max(max_abs, s.max_abs);
  }
  const LayerStats& whole = r.modes[0].layers.back().chained;
  EXPECT_EQ(whole.count, count);
  EXPECT_EQ(whole.mismatch, mismatch);
  EXPECT_DOUBLE_EQ(whole.sum_err2, err2);
  EXPECT_EQ(whole.max_abs, max_abs);
}

namespace {

// The CPU backend with one layer that is not reproducible: every second run of it flips the last
// bit of one element, as a kernel with an unordered atomic reduction might.
class FlakyBackend : public Backend {
 public:
  explicit FlakyBackend(std::string layer) : layer_(std::move(layer)), cpu_(make_cpu_backend()) {}
  std::string name() const override { return "flaky"; }
  void reference(const Layer& l, const std::vector<const Tensor*>& in, Tensor& out) override {
    cpu_->reference(l, in, out);
  }
  void forward(Mode m, const Layer& l, const std::vector<const TensorF*>& in, TensorF& out) override {
    cpu_->forward(m, l, in, out);
    if (l.name == layer_ && (calls_++ % 2 == 1)) out.data[out.size() / 2] = std::nextafter(out.data[out.size() / 2], 1e30f);
  }

 private:
  std::string layer_;
  std::unique_ptr<Backend> cpu_;
  int calls_ = 0;
};

}  // namespace

TEST(Analysis, RepeatFindsALayerThatDoesNotReproduceItself) {
  const std::string dir = std::string(DIVSCOPE_SOURCE_DIR) + "/data/";
  Model m = read_model(dir + "mlp.model.h5");
  const std::string flaky = m.layers[1].name;
  AnalysisOptions opt;
  opt.modes = {Mode::fp32};
  opt.batch_end = 1;
  {
    FlakyBackend backend(flaky);
    AnalysisResult once = analyze(m, dir + "mlp.recording.h5", backend, opt);
    EXPECT_EQ(once.modes[0].layers[1].nondeterministic, 0);   // one run cannot see it
  }
  opt.repeat = 3;
  FlakyBackend backend(flaky);
  AnalysisResult r = analyze(m, dir + "mlp.recording.h5", backend, opt);
  const ModeResult& mr = r.modes[0];
  EXPECT_EQ(mr.layers[0].nondeterministic, 0);
  EXPECT_EQ(mr.layers[1].nondeterministic, 1);
  EXPECT_TRUE(mr.layers[1].diverged);
  EXPECT_EQ(mr.first_divergent, 1);
  EXPECT_FALSE(r.passed());
}

TEST(Analysis, EveryLayerInFp32UnderMixedPrecisionIsTheFp32Run) {
  const std::string dir = std::string(DIVSCOPE_SOURCE_DIR) + "/data/";
  Model m = read_model(dir + "cnn.model.h5");
  auto backend = make_cpu_backend();
  AnalysisOptions opt;
  opt.modes = {Mode::fp32, Mode::fp16};
  opt.isolated = false;
  opt.fp32_layers.assign(m.layers.size(), true);
  AnalysisResult r = analyze(m, dir + "cnn.recording.h5", *backend, opt);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    SCOPED_TRACE(m.layers[i].name);
    const LayerStats &a = r.modes[0].layers[i].chained, &b = r.modes[1].layers[i].chained;
    EXPECT_EQ(a.sum_err2, b.sum_err2);
    EXPECT_EQ(a.max_abs, b.max_abs);
    EXPECT_EQ(r.modes[1].layers[i].isolated.count, 0);   // chained only
  }
  // And with none promoted, fp16 is fp16 again (the fp16 run differs from fp32 somewhere).
  opt.fp32_layers.assign(m.layers.size(), false);
  AnalysisResult plain = analyze(m, dir + "cnn.recording.h5", *backend, opt);
  EXPECT_NE(plain.modes[1].layers.back().chained.sum_err2, r.modes[1].layers.back().chained.sum_err2);
}

TEST(Analysis, ALayerTooLargeForThisMachineIsRefusedBeforeAnyWork) {
  const std::string dir = std::string(DIVSCOPE_SOURCE_DIR) + "/data/";
  Model m = read_model(dir + "mlp.model.h5");
  // A recording without activations (they would give the shape away at open).
  const std::string rec = ::testing::TempDir() + "divscope_huge_" + std::to_string(getpid()) + ".h5";
  {
    h5::File f = h5::File::create(rec);
    h5::Object root = f.root();
    root.write_attr("divscope_format", AttrValue(std::string("recording")));
    root.write_attr("divscope_version", AttrValue(int64_t{1}));
    Shape shape{2};
    shape.insert(shape.end(), m.inputs[0].shape.begin(), m.inputs[0].shape.end());
    root.create_group("batches").create_group("000000").write_dataset(m.inputs[0].name, Tensor(shape, 0.5));
  }
  m.layers[1].out_shape = {1 << 20, 1 << 20, 1 << 10};   // as an absurd stride or dilation gives
  auto backend = make_cpu_backend();
  AnalysisOptions opt;
  opt.modes = {Mode::fp16};
  try {
    analyze(m, rec, *backend, opt);
    FAIL() << "expected a RuntimeFault";
  } catch (const RuntimeFault& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'" + m.layers[1].name + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("GB as float64"), std::string::npos) << msg;
  }
  std::remove(rec.c_str());
}
