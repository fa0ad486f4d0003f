// Divergent sample records are bounded (issue "Speed on real networks without a GPU", part 4):
// every divergent sample is counted, the worst max_samples are kept, and the kept ones are those
// one sort of all of them would keep, however the batches were grouped.
#include <gtest/gtest.h>

#include <random>

#include "analysis/analysis.h"
#include "io/h5io.h"
#include "report/report.h"

using namespace divscope;

TEST(SamplesBound, KeepingInStepsKeepsWhatOneSortKeeps) {
  std::mt19937_64 rng(5);
  std::vector<SampleDivergence> all;
  for (int i = 0; i < 5000; ++i) {
    SampleDivergence s;
    s.batch = i / 32;
    s.sample = i % 32;
    s.layer = static_cast<int>(rng() % 7);
    s.rel_l2 = static_cast<double>(rng() % 50) / 8;   // many ties: batch order must decide
    all.push_back(s);
  }
  for (int64_t k : {0, 1, 10, 333, 4999, 5000, 6000}) {
    SCOPED_TRACE(k);
    std::vector<SampleDivergence> once = all;
    keep_worst_samples(once, k);
    std::vector<SampleDivergence> steps;
    for (size_t i = 0; i < all.size(); i += 97) {
      steps.insert(steps.end(), all.begin() + i, all.begin() + std::min(all.size(), i + 97));
      if (static_cast<int64_t>(steps.size()) > 2 * k) keep_worst_samples(steps, k);
    }
    keep_worst_samples(steps, k);
    ASSERT_EQ(once.size(), steps.size());
    for (size_t i = 0; i < once.size(); ++i) {
      EXPECT_EQ(once[i].batch, steps[i].batch) << i;
      EXPECT_EQ(once[i].sample, steps[i].sample) << i;
    }
  }
}

TEST(SamplesBound, RunCountsEveryDivergentSampleAndListsTheWorst) {
  const std::string dir = std::string(DIVSCOPE_SOURCE_DIR) + "/data/";
  Model m = read_model(dir + "planted_fp16_overflow.model.h5");
  auto backend = make_cpu_backend();
  AnalysisOptions opt;
  opt.modes = {Mode::fp16, Mode::bf16};
  opt.max_samples = 1 << 30;
  const AnalysisResult all = analyze(m, dir + "planted_fp16_overflow.recording.h5", *backend, opt);
  opt.max_samples = 5;
  const AnalysisResult few = analyze(m, dir + "planted_fp16_overflow.recording.h5", *backend, opt);
  ASSERT_GT(all.modes[0].divergent_samples, 5) << "the example must have more divergent samples than kept";
  for (size_t mi = 0; mi < all.modes.size(); ++mi) {
    const ModeResult& a = all.modes[mi];
    const ModeResult& f = few.modes[mi];
    EXPECT_EQ(a.divergent_samples, static_cast<int64_t>(a.samples.size()));
    EXPECT_EQ(f.divergent_samples, a.divergent_samples);
    ASSERT_EQ(f.samples.size(), std::min<size_t>(5, a.samples.size()));
    for (size_t i = 0; i < f.samples.size(); ++i) {
      EXPECT_EQ(f.samples[i].batch, a.samples[i].batch);
      EXPECT_EQ(f.samples[i].sample, a.samples[i].sample);
      EXPECT_EQ(f.samples[i].rel_l2, a.samples[i].rel_l2);
    }
    EXPECT_EQ(f.first_divergent, a.first_divergent);
  }
  ReportContext ctx;
  ctx.model = &m;
  ctx.backend = "cpu";
  const nlohmann::json j = report_json(few, ctx);
  EXPECT_EQ(j["max_samples"], 5);
  EXPECT_EQ(j["modes"][0]["divergent_samples"], all.modes[0].divergent_samples);
  EXPECT_EQ(j["modes"][0]["samples"].size(), 5u);
}
