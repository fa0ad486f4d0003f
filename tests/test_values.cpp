// Values on a backend (backends/values.h, docs/memory.md): the caching pool, the host values of
// the CPU backend, and the analysis' orchestration — which value lives where, when it is freed,
// what reaches the host — driven through the same Backend interface the CUDA backend implements.
// FakeDevice below keeps its values in CachingPool blocks the analysis cannot look into (as device
// memory) and computes with the CPU paths, so everything but the kernel launches of a device run
// is exercised without a GPU.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "analysis/analysis.h"
#include "analysis/runner.h"
#include "backends/caching_pool.h"
#include "errors.h"
#include "io/h5io.h"
#include "io/h5wrap.h"
#include "reference/modes.h"
#include "reference/reference.h"
#include "scratch_dir.h"

using namespace divscope;
namespace fs = std::filesystem;

namespace {

// ---- the pool -----------------------------------------------------------------------------------

struct CountingSystem {
  int64_t allocs = 0, frees = 0, live = 0;
  CachingPool pool{[this](size_t n) {
                     ++allocs;
                     ++live;
                     return std::malloc(n);
                   },
                   [this](void* p) {
                     ++frees;
                     --live;
                     std::free(p);
                   }};
};

TEST(CachingPool, SecondPassOfTheSameRequestsMakesNoSystemAllocation) {
  CountingSystem sys;
  const std::vector<size_t> sizes = {100, 4096, 513, 3u << 20, 7u << 20, 1, 1u << 20};
  for (int pass = 0; pass < 3; ++pass) {
    std::vector<void*> got;
    for (size_t n : sizes) {
      void* p = sys.pool.allocate(n);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0xab, n);   // the whole request is usable (ASan checks the bounds)
      got.push_back(p);
    }
    for (void* p : got) sys.pool.release(p);
    EXPECT_EQ(sys.allocs, static_cast<int64_t>(sizes.size())) << "pass " << pass;
  }
  const CachingPool::Stats s = sys.pool.stats();
  EXPECT_EQ(s.live, 0);
  EXPECT_EQ(s.requests, 3 * static_cast<int64_t>(sizes.size()));
  EXPECT_EQ(s.hits, 2 * static_cast<int64_t>(sizes.size()));
  EXPECT_GT(s.reserved, 0);
  sys.pool.release_cached();
  EXPECT_EQ(sys.pool.stats().reserved, 0);
  EXPECT_EQ(sys.live, 0);
}

TEST(CachingPool, SizeClassesAndPeak) {
  EXPECT_EQ(CachingPool::round_size(1), 512u);
  EXPECT_EQ(CachingPool::round_size(512), 512u);
  EXPECT_EQ(CachingPool::round_size(513), 1024u);
  EXPECT_EQ(CachingPool::round_size((1u << 20) + 1), 2u << 20);
  CountingSystem sys;
  void* a = sys.pool.allocate(1000);
  void* b = sys.pool.allocate(3000);
  EXPECT_EQ(sys.pool.stats().peak, 1024 + 3072);
  sys.pool.release(a);
  sys.pool.reset_peak();
  EXPECT_EQ(sys.pool.stats().peak, 3072);
  // A small block serves its own class (600 B -> 1024 B: a's block), not another one.
  void* c = sys.pool.allocate(1600);
  EXPECT_NE(c, a);
  void* c2 = sys.pool.allocate(600);
  EXPECT_EQ(c2, a);
  // A large cached block serves a request down to 3/4 of its size, not a much smaller one.
  void* big = sys.pool.allocate(8u << 20);
  sys.pool.release(big);
  EXPECT_EQ(sys.pool.allocate(7u << 20), big);
  void* small_one = sys.pool.allocate(2u << 20);
  EXPECT_NE(small_one, big);
  EXPECT_EQ(sys.pool.allocate(0), nullptr);
  sys.pool.release(nullptr);
  int foreign = 0;
  sys.pool.release(&foreign);
  EXPECT_EQ(sys.pool.foreign_releases(), 1);
  for (void* p : {b, c, c2, big, small_one}) sys.pool.release(p);
  EXPECT_EQ(sys.pool.stats().live, 0);
}

TEST(CachingPool, LimitGivesTheCacheBackBeforeRefusing) {
  CountingSystem sys;
  sys.pool.set_limit(6u << 20);
  void* a = sys.pool.allocate(4u << 20);
  ASSERT_NE(a, nullptr);
  sys.pool.release(a);   // cached: 4 MiB reserved
  void* b = sys.pool.allocate(2u << 20);   // 4 MiB block is too big to serve 2 MiB (3/4 rule)
  ASSERT_NE(b, nullptr) << "4 + 2 MiB fit the 6 MiB limit";
  void* c = sys.pool.allocate(4u << 20);   // served from the cache
  EXPECT_EQ(c, a);
  EXPECT_EQ(sys.pool.allocate(2u << 20), nullptr) << "10 MiB > the 6 MiB limit";
  sys.pool.release(c);
  sys.pool.release(b);
  // 6 MiB class: no cached block serves it and 6 + 6 MiB pass the limit, so the cached 4 and
  // 2 MiB go back to the system first.
  void* d = sys.pool.allocate(4u << 20 | 1);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(sys.frees, 2);
  EXPECT_EQ(sys.pool.stats().reserved, 6 << 20);
  sys.pool.release(d);
}

// ---- host values --------------------------------------------------------------------------------

TEST(Values, HostValuesAreTheTensorAndCountTheirBytes) {
  auto cpu = make_cpu_backend();
  {
    Tensor t(Shape{3, 5}, 2.5);
    const Value v = cpu->upload(t);
    EXPECT_EQ(v.where(), Value::Where::host);
    EXPECT_TRUE(v.is_double());
    EXPECT_EQ(v.bytes(), 15 * sizeof(double));
    ASSERT_NE(Backend::host_double(v), nullptr);
    EXPECT_EQ(Backend::host_double(v)->data, t.data);
    EXPECT_EQ(Backend::host_float(v), nullptr);
    EXPECT_EQ(cpu->memory().live, 15 * 8);
    const Value f = cpu->to_storage(v, Mode::fp16, true);
    EXPECT_FALSE(f.is_double());
    EXPECT_EQ(cpu->memory().live, 15 * 8 + 15 * 4);
    EXPECT_EQ(cpu->bitwise_differences(f, f), 0);
  }
  EXPECT_EQ(cpu->memory().live, 0);
  EXPECT_EQ(cpu->memory().peak, 15 * 12);
}

// ---- a device in host memory --------------------------------------------------------------------

class FakeDevice : public Backend {
 public:
  int64_t system_allocs = 0, downloads = 0, begun = 0, ended = 0;
  int64_t limit = -1;
  CachingPool pool{[this](size_t n) {
                     ++system_allocs;
                     return std::malloc(n);
                   },
                   [](void* p) { std::free(p); }};

  std::string name() const override { return "fake-device"; }
  void reference(const Layer& l, const std::vector<const Tensor*>& in, Tensor& out) override {
    reference_forward(l, in, out);
  }
  void forward(Mode m, const Layer& l, const std::vector<const TensorF*>& in, TensorF& out) override {
    mode_forward(m, l, in, out);
  }
  Value upload(const Tensor& t) override { return put(t); }
  Value upload(const TensorF& t) override { return put(t); }
  Tensor download(const Value& v) override {
    ++downloads;
    return get<double>(v);
  }
  TensorF download_float(const Value& v) override {
    ++downloads;
    return get<float>(v);
  }
  Value reference(const Layer& l, const std::vector<const Value*>& in) override {
    std::vector<Tensor> h;
    for (const Value* v : in) h.push_back(get<double>(*v));
    std::vector<const Tensor*> p;
    for (const Tensor& t : h) p.push_back(&t);
    Tensor out;
    reference_forward(l, p, out);
    return put(out);
  }
  Value forward(Mode m, const Layer& l, const std::vector<const Value*>& in) override {
    std::vector<TensorF> h;
    for (const Value* v : in) h.push_back(get<float>(*v));
    std::vector<const TensorF*> p;
    for (const TensorF& t : h) p.push_back(&t);
    TensorF out;
    mode_forward(m, l, p, out);
    return put(out);
  }
  Value to_storage(const Value& v, Mode m, bool round) override {
    return put(v.is_double() ? divscope::to_storage(get<double>(v), m, round)
                             : divscope::to_storage(get<float>(v), m, round));
  }
  Value perturbed(const Value& v, int64_t batch, int64_t value) override {
    Value host = Backend::upload(get<double>(v));
    return put(*Backend::host_double(Backend::perturbed(host, batch, value)));
  }
  LayerStats compare(const Value& cand, const Value& ref, const CompareOptions& opt, SampleErrors* se,
                     const std::string&) override {
    const Tensor r = get<double>(ref);
    if (cand.is_double()) return compare_tensors(get<double>(cand).ptr(), r.ptr(), r.shape, opt, se);
    return compare_tensors(get<float>(cand).ptr(), r.ptr(), r.shape, opt, se);
  }
  int64_t bitwise_differences(const Value& a, const Value& b) override {
    return Backend::bitwise_differences(Backend::upload(get<float>(a)), Backend::upload(get<float>(b)));
  }
  ReferenceSummary summarize(const Value& ref) override {
    const Tensor r = get<double>(ref);
    return summarize_host(r.ptr(), r.shape);
  }
  ValueMemory memory() const override {
    const CachingPool::Stats s = pool.stats();
    ValueMemory m;
    m.live = s.live;
    m.peak = s.peak;
    m.reserved = s.reserved;
    m.system_allocs = s.system_allocs;
    m.requests = s.requests;
    m.limit = limit;
    return m;
  }
  void reset_peak() override { pool.reset_peak(); }
  void begin_analysis(const Model&) override { ++begun; }
  void end_analysis() override { ++ended; }

 private:
  template <class T>
  Value put(const BasicTensor<T>& t) {
    const size_t bytes = t.data.size() * sizeof(T);
    void* p = pool.allocate(bytes);
    if (bytes && !p) throw RuntimeFault("fake device: out of memory");
    if (bytes) std::memcpy(p, t.data.data(), bytes);
    return Value(t.shape, std::is_same<T, double>::value, Value::Where::device, p,
                 std::shared_ptr<void>(p, [this](void* q) { pool.release(q); }));
  }
  template <class T>
  BasicTensor<T> get(const Value& v) {
    if (v.where() != Value::Where::device || v.is_double() != std::is_same<T, double>::value)
      throw RuntimeFault("fake device: a value of the wrong kind");
    BasicTensor<T> t(v.shape());
    if (t.size()) std::memcpy(t.data.data(), v.data(), t.data.size() * sizeof(T));
    return t;
  }
};

const std::string kData = std::string(DIVSCOPE_SOURCE_DIR) + "/data/";

void expect_same_stats(const LayerStats& a, const LayerStats& b, const std::string& what) {
  EXPECT_EQ(a.count, b.count) << what;
  EXPECT_EQ(a.nan, b.nan) << what;
  EXPECT_EQ(a.inf, b.inf) << what;
  EXPECT_EQ(a.mismatch, b.mismatch) << what;
  EXPECT_EQ(a.nonfinite_new, b.nonfinite_new) << what;
  EXPECT_EQ(std::memcmp(&a.sum_err2, &b.sum_err2, sizeof(double)), 0) << what;
  EXPECT_EQ(std::memcmp(&a.sum_ref2, &b.sum_ref2, sizeof(double)), 0) << what;
  EXPECT_EQ(std::memcmp(&a.max_abs, &b.max_abs, sizeof(double)), 0) << what;
  EXPECT_EQ(a.err_hist, b.err_hist) << what;
  EXPECT_EQ(a.ref_zero, b.ref_zero) << what;
  EXPECT_EQ(a.ref_finite, b.ref_finite) << what;
}

void expect_same_results(const Model& m, const AnalysisResult& a, const AnalysisResult& b) {
  ASSERT_EQ(a.modes.size(), b.modes.size());
  for (size_t mi = 0; mi < a.modes.size(); ++mi) {
    const ModeResult &x = a.modes[mi], &y = b.modes[mi];
    EXPECT_EQ(x.first_divergent, y.first_divergent) << mode_name(x.mode);
    EXPECT_EQ(x.culprit, y.culprit) << mode_name(x.mode);
    EXPECT_EQ(x.divergent_samples, y.divergent_samples) << mode_name(x.mode);
    for (size_t i = 0; i < x.inputs.size(); ++i) expect_same_stats(x.inputs[i], y.inputs[i], "input");
    for (size_t i = 0; i < x.layers.size(); ++i) {
      const std::string w = std::string(mode_name(x.mode)) + " " + m.layers[i].name;
      expect_same_stats(x.layers[i].chained, y.layers[i].chained, w + " chained");
      expect_same_stats(x.layers[i].isolated, y.layers[i].isolated, w + " isolated");
      EXPECT_EQ(x.layers[i].strict_bitwise_mismatch, 0) << w;
      EXPECT_EQ(y.layers[i].strict_bitwise_mismatch, 0) << w;
      EXPECT_EQ(x.layers[i].diverged, y.layers[i].diverged) << w;
    }
  }
  for (size_t i = 0; i < a.sensitivity.size(); ++i) expect_same_stats(a.sensitivity[i], b.sensitivity[i], "probe");
  for (size_t i = 0; i < a.recorded.size(); ++i) expect_same_stats(a.recorded[i], b.recorded[i], "recorded");
  ASSERT_EQ(a.findings.size(), b.findings.size());
  for (size_t i = 0; i < a.findings.size(); ++i) {
    EXPECT_EQ(a.findings[i].kind, b.findings[i].kind);
    EXPECT_EQ(a.findings[i].where, b.findings[i].where);
    EXPECT_EQ(a.findings[i].detail, b.findings[i].detail);
  }
}

AnalysisOptions all_modes() {
  AnalysisOptions opt;
  opt.modes = {Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict};
  opt.threads = 1;
  return opt;
}

TEST(ValueOrchestration, DeviceValuesGiveTheCpuResultsOnEveryExample) {
  for (const char* name : {"mlp", "cnn", "resnet", "transformer", "ops", "planted_fp16_overflow"}) {
    SCOPED_TRACE(name);
    const Model m = read_model(kData + name + ".model.h5");
    const std::string rec = kData + name + ".recording.h5";
    auto cpu = make_cpu_backend();
    FakeDevice dev;
    const AnalysisResult a = analyze(m, rec, *cpu, all_modes());
    const AnalysisResult b = analyze(m, rec, dev, all_modes());
    expect_same_results(m, a, b);
    EXPECT_EQ(dev.begun, 1);
    EXPECT_EQ(dev.ended, 1);
    EXPECT_EQ(dev.memory().live, 0) << "every value of the run went back to the pool";
    EXPECT_EQ(cpu->memory().live, 0) << "every host value of the run was freed";
  }
}

// Models built in memory: x [width] -> (linear, relu) x depth.
Tensor randn(Shape s, unsigned seed, double scale = 1.0) {
  Tensor t(std::move(s));
  std::mt19937 g(seed);
  std::normal_distribution<double> d(0.0, 1.0);
  for (double& v : t.data) v = scale * d(g);
  return t;
}

Model chain(int depth, int64_t width) {
  Model m;
  m.file = "<test>";
  m.name = "chain" + std::to_string(depth);
  m.inputs = {{"x", {width}, "float32"}};
  std::string prev = "x";
  for (int i = 0; i < depth; ++i) {
    Layer fc;
    fc.name = "fc" + std::to_string(i);
    fc.op = "linear";
    fc.inputs = {prev};
    fc.params["weight"] = randn({width, width}, 10 + i, 1.0 / std::sqrt(static_cast<double>(width)));
    Layer act;
    act.name = "act" + std::to_string(i);
    act.op = "relu";
    act.inputs = {fc.name};
    prev = act.name;
    m.layers.push_back(fc);
    m.layers.push_back(act);
  }
  for (size_t i = 0; i < m.layers.size(); ++i) {
    m.layers[i].index = static_cast<int>(i);
    m.layers[i].path = "/layers/" + h5::padded(i, 4);
  }
  validate_and_infer(m);
  return m;
}

std::string temp_path(const std::string& name) {
  static const ScratchDir dir("divscope_values_");
  return dir.path + "/" + name;
}

// `batches` batches of `n` samples of x [width], random; optional NaN at batch 1 sample 0.
std::string recording(const std::string& name, int batches, int64_t n, int64_t width, bool nan = false) {
  const std::string path = temp_path(name);
  h5::File f = h5::File::create(path);
  h5::Object root = f.root();
  root.write_attr("divscope_format", std::string("recording"));
  root.write_attr("divscope_version", int64_t{2});
  h5::Object bs = root.create_group("batches");
  for (int b = 0; b < batches; ++b) {
    Tensor x = randn({n, width}, 100 + b);
    if (nan && b == 1) x.data[3] = std::nan("");
    bs.create_group(h5::padded(b, 6)).write_dataset("x", x);
  }
  return path;
}

TEST(ValueOrchestration, SteadyStateMakesNoSystemAllocationAndNothingComesBack) {
  const Model m = chain(4, 32);
  const std::string rec = recording("steady.recording.h5", 4, 8, 32, /*nan=*/true);
  FakeDevice dev;
  std::vector<int64_t> allocs_after, downloads_after;
  AnalysisOptions opt = all_modes();
  opt.progress = [&](int64_t, int64_t) {
    allocs_after.push_back(dev.system_allocs);
    downloads_after.push_back(dev.downloads);
  };
  const AnalysisResult r = analyze(m, rec, dev, opt);
  ASSERT_EQ(allocs_after.size(), 4u);
  // Batch 0 fills the pool; later batches (same shapes) only reuse it: no cudaMalloc per launch.
  EXPECT_EQ(allocs_after[3], allocs_after[0]);
  // Batch 0 brings the reference's inputs and outputs to the host for the FP64 cross-check;
  // batch 1 has a NaN sample, whose layers' inputs the reference-health check reads (one layer
  // per value at most); batches 2 and 3 bring nothing back but statistics.
  EXPECT_GT(downloads_after[0], 0);
  EXPECT_EQ(downloads_after[3], downloads_after[2]);
  EXPECT_EQ(downloads_after[2], downloads_after[1]);
  EXPECT_LE(downloads_after[1] - downloads_after[0], static_cast<int64_t>(m.layers.size()));
  EXPECT_EQ(dev.memory().live, 0);
  // The same findings as the CPU backend (the NaN input, and no reference finding from it).
  auto cpu = make_cpu_backend();
  expect_same_results(m, analyze(m, rec, *cpu, all_modes()), r);
}

// The capturing framework's activations (/activations) and the user's own run
// (/run_activations) are read on the host and compared on the backend: the same statistics as
// on the CPU.
TEST(ValueOrchestration, RecordedAndUserRunActivationsCompareOnTheBackend) {
  const Model m = chain(3, 16);
  const std::string path = temp_path("activations.recording.h5");
  {
    h5::File f = h5::File::create(path);
    h5::Object root = f.root();
    root.write_attr("divscope_format", std::string("recording"));
    root.write_attr("divscope_version", int64_t{2});
    h5::Object bs = root.create_group("batches");
    for (int b = 0; b < 3; ++b) {
      const Tensor x = randn({4, 16}, 300 + b);
      h5::Object g = bs.create_group(h5::padded(b, 6));
      g.write_dataset("x", x);
      h5::Object rec = g.create_group("activations"), run = g.create_group("run_activations");
      run_reference_batch(m, {x}, [&](const Layer& l, const Tensor& out) {
        Tensor noisy = out;
        for (int64_t k = 0; k < noisy.size(); ++k) noisy.data[k] *= 1 + 1e-7 * ((k * 7 + l.index) % 5 - 2);
        rec.write_dataset(l.name, noisy);
        for (int64_t k = 0; k < noisy.size(); ++k) noisy.data[k] = static_cast<float>(noisy.data[k]);
        run.write_dataset(l.name, noisy);
      });
    }
  }
  auto cpu = make_cpu_backend();
  FakeDevice dev;
  const AnalysisResult a = analyze(m, path, *cpu, all_modes());
  const AnalysisResult b = analyze(m, path, dev, all_modes());
  expect_same_results(m, a, b);
  ASSERT_TRUE(a.user_run && b.user_run);
  EXPECT_EQ(a.user_run->dtype, "float64");
  ASSERT_EQ(a.user_run->result.layers.size(), b.user_run->result.layers.size());
  for (size_t i = 0; i < a.user_run->result.layers.size(); ++i)
    expect_same_stats(a.user_run->result.layers[i].chained, b.user_run->result.layers[i].chained,
                      "user run " + m.layers[i].name);
  EXPECT_GT(a.recorded[0].count, 0);
}

TEST(ValueOrchestration, DumpTensorsAreTheOnlyOtherTraffic) {
  const Model m = chain(2, 16);
  const std::string rec = recording("dump.recording.h5", 3, 4, 16);
  FakeDevice a, b;
  AnalysisOptions opt = all_modes();
  analyze(m, rec, a, opt);
  opt.dump_path = temp_path("values.dump.h5");
  opt.dump_batch_begin = 2;
  analyze(m, rec, b, opt);
  // Batch 2 dumped: the reference and 5 modes of every layer.
  EXPECT_EQ(b.downloads - a.downloads, 6 * static_cast<int64_t>(m.layers.size()));
}

TEST(ValueOrchestration, PeakFollowsTheLivenessPlanNotTheDepth) {
  std::vector<int64_t> peaks;
  for (int depth : {3, 12}) {
    SCOPED_TRACE(depth);
    const Model m = chain(depth, 64);
    const std::string rec = recording("plan" + std::to_string(depth) + ".recording.h5", 2, 16, 64);
    FakeDevice dev;
    analyze(m, rec, dev, all_modes());
    const BatchPlan plan = plan_batch(m, compute_liveness(m), 16, 5);
    // Pool blocks are rounded up to 512 bytes: allow one block of slack per value of the plan.
    const int64_t values_in_plan = 2 + 5 + 4;
    EXPECT_LE(dev.memory().peak, plan.value_bytes + values_in_plan * 512 * 4);
    EXPECT_GT(dev.memory().peak, plan.value_bytes / 4) << "the plan is a bound, not a wild one";
    EXPECT_EQ(plan.param_bytes, depth * 64 * 64 * (8 + 4 * 5));
    peaks.push_back(dev.memory().peak);
  }
  EXPECT_EQ(peaks[0], peaks[1]) << "activations are freed as soon as no later layer reads them";
}

TEST(ValueOrchestration, ABatchThatDoesNotFitIsRefusedBeforeItRunsWithTheBytesNeeded) {
  const Model m = chain(3, 64);
  const std::string rec = recording("fit.recording.h5", 2, 16, 64);
  FakeDevice dev;
  dev.limit = 100000;
  AnalysisOptions opt = all_modes();
  int64_t batches_done = 0;
  opt.progress = [&](int64_t, int64_t) { ++batches_done; };
  try {
    analyze(m, rec, dev, opt);
    FAIL() << "a batch larger than the device was accepted";
  } catch (const RuntimeFault& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("batch 0 (16 samples) needs"), std::string::npos) << msg;
    EXPECT_NE(msg.find("GB available"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--backend cpu"), std::string::npos) << msg;
  }
  EXPECT_EQ(batches_done, 0);
  EXPECT_EQ(dev.ended, 1) << "end_analysis runs when the analysis throws";
  EXPECT_EQ(dev.memory().live, 0);
  const BatchPlan plan = plan_batch(m, compute_liveness(m), 16, 5);
  dev.limit = plan.value_bytes + plan.param_bytes;
  EXPECT_NO_THROW(analyze(m, rec, dev, opt)) << "the plan's own bytes are enough";
}

TEST(ValueOrchestration, HostBackendPeakIsBoundedToo) {
  const Model m = chain(12, 64);
  const std::string rec = recording("host.recording.h5", 2, 16, 64);
  auto cpu = make_cpu_backend();
  analyze(m, rec, *cpu, all_modes());
  const BatchPlan plan = plan_batch(m, compute_liveness(m), 16, 5);
  EXPECT_LE(cpu->memory().peak, plan.value_bytes);
  EXPECT_EQ(cpu->memory().live, 0);
}

}  // namespace
