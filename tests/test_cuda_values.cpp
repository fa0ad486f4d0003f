// The CUDA backend's device values (backends/values.h, docs/cuda.md, Device memory) against the
// CPU backend's host values, on seeded inputs that carry the awkward cases: NaNs of several
// payloads and both signs (signalling ones too), infinities, signed zeros, subnormals of double,
// float and half, values beyond fp16's and float's range, fp16/bf16 halfway cases.
//   to_storage and perturbed: bit for bit, every mode, from double and from float;
//   bitwise_differences and summarize: equal; compare: within the device-compare tolerances
//   (tests/test_kernels_compare.cpp: counts, maxima and histograms exact, sums to 1e-12);
//   a three-layer chain on values (parameters cached per analysis) bit for bit the host-tensor
//   path (parameters uploaded per call), and strict bit for bit the CPU;
//   the pool: a second identical batch makes no cudaMalloc, and dropping the values gives every
//   byte back.
// Every test needs a GPU and skips, saying why, without one. Outputs of the value calls are
// poisoned (NaN) before each launch: the pool hands out recycled blocks, so a kernel that skipped
// an element could otherwise pass on the previous call's result.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>

#include "errors.h"
#include "kernel_test_util.h"

namespace divscope {
namespace {

using kernel_test::Built;
using kernel_test::Gen;
using kernel_test::Regime;
using kernel_test::make;

constexpr Mode kFloatModes[] = {Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict};

// Seeded values, one in five an awkward case.
Tensor awkward(const Shape& shape, uint64_t seed) {
  static const double kCases[] = {
      bits_f64(0x7ff8000000000000ull), bits_f64(0xfff8000000000000ull),   // quiet NaNs, both signs
      bits_f64(0x7ff0000000000001ull), bits_f64(0x7ff4000000000123ull),   // signalling NaNs
      bits_f64(0x7ffc0000deadbeefull),                                   // a payload in both halves
      std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
      0.0, -0.0, 1e-310, -4e-320,            // double subnormals (float: 0)
      1e-40, -3e-42, 1e-39,                  // float subnormals
      3e-8, -6e-6, 1e-5,                     // half subnormals, half's smallest normal nearby
      65504.0, 65520.0, -70000.0, 3e38, 1e39, -1e300,   // at and beyond fp16's and float's range
      1.0 + 0x1p-11, 1.0 + 0x1p-8, 1.0 + 3 * 0x1p-11,   // fp16 / bf16 halfway cases
      1.0 + 0x1p-24, 1.0 + 0x1p-29};                     // float halfway, below a float ulp
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(-4, 4);
  std::uniform_int_distribution<size_t> pick(0, 5 * (sizeof kCases / sizeof kCases[0]));
  Tensor t(shape);
  for (double& v : t.data) {
    const size_t k = pick(g);
    v = k < sizeof kCases / sizeof kCases[0] ? kCases[k] : u(g);
  }
  t.data[0] = 1.5;   // one element surely non-zero and finite
  return t;
}

// Finite values near double's range clamped to 1e30, so that the sums of squares stay finite
// (inf - inf would make every tolerance check fail).
Tensor within_sums(Tensor t) {
  for (double& v : t.data)
    if (std::isfinite(v) && std::fabs(v) > 1e30) v = std::copysign(1e30, v);
  return t;
}

TensorF as_float(const Tensor& t) {
  TensorF f(t.shape);
  for (size_t i = 0; i < t.data.size(); ++i) f.data[i] = static_cast<float>(t.data[i]);
  return f;
}

// The next device allocation of `elements` values gets a block of NaNs: the pool's cache is
// emptied, then holds that block alone.
void poison_next(int64_t elements, bool is_double) {
  device_memory_release_cached();
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(elements, 1)) * (is_double ? 8 : 4);
  void* p = device_alloc(bytes, "poison");
  device_fill_nan(p, static_cast<size_t>(elements), is_double);
  device_free(p);
}

struct Backends {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  std::unique_ptr<Backend> gpu = make_cuda_backend();
};

TEST(CudaValues, ToStorageBitwise) {
  DIVSCOPE_REQUIRE_GPU();
  Backends b;
  const Tensor t = awkward({3, 7, 11}, 101);
  const TensorF f = as_float(t);
  const Value hd = b.cpu->upload(t), hf = b.cpu->upload(f);
  const Value dd = b.gpu->upload(t), df = b.gpu->upload(f);
  for (Mode m : kFloatModes)
    for (bool round : {true, false})
      for (bool from_double : {true, false}) {
        SCOPED_TRACE(std::string(mode_name(m)) + (round ? " rounded" : " cast") +
                     (from_double ? " from double" : " from float") + ", seed 101");
        poison_next(t.size(), false);
        const TensorF gpu = b.gpu->download_float(b.gpu->to_storage(from_double ? dd : df, m, round));
        const TensorF cpu = b.cpu->download_float(b.cpu->to_storage(from_double ? hd : hf, m, round));
        EXPECT_EQ(gpu.shape, cpu.shape);
        EXPECT_EQ(first_bit_difference(cpu.data, gpu.data), -1);
      }
}

TEST(CudaValues, PerturbedBitwise) {
  DIVSCOPE_REQUIRE_GPU();
  Backends b;
  const Tensor t = awkward({4, 1000}, 202);
  const Value h = b.cpu->upload(t), d = b.gpu->upload(t);
  for (const auto& [batch, value] : {std::pair<int64_t, int64_t>{0, 0}, {3, 17}, {12345, -2}}) {
    SCOPED_TRACE("batch " + std::to_string(batch) + ", value " + std::to_string(value) + ", seed 202");
    poison_next(t.size(), true);
    const Tensor gpu = b.gpu->download(b.gpu->perturbed(d, batch, value));
    const Tensor cpu = b.cpu->download(b.cpu->perturbed(h, batch, value));
    EXPECT_EQ(first_bit_difference(cpu.data, gpu.data), -1);
    EXPECT_NE(first_bit_difference(t.data, gpu.data), -1) << "nothing was perturbed";
  }
}

TEST(CudaValues, BitwiseDifferences) {
  DIVSCOPE_REQUIRE_GPU();
  Backends b;
  const TensorF x = as_float(awkward({5, 333}, 303));
  TensorF y = x;
  int64_t planted = 0;
  for (size_t i = 0; i < y.data.size(); i += 7, ++planted) {
    const uint32_t u = f32_bits(y.data[i]);
    y.data[i] = bits_f32(i % 2 ? u ^ 1u : u ^ 0x80000000u);   // last bit, or the sign (0 vs -0, NaN sign)
  }
  const int64_t gpu = b.gpu->bitwise_differences(b.gpu->upload(x), b.gpu->upload(y));
  EXPECT_EQ(gpu, planted);
  EXPECT_EQ(gpu, b.cpu->bitwise_differences(b.cpu->upload(x), b.cpu->upload(y)));
  EXPECT_EQ(b.gpu->bitwise_differences(b.gpu->upload(x), b.gpu->upload(x)), 0);
  const TensorF other = as_float(awkward({2, 3}, 304));
  EXPECT_EQ(b.gpu->bitwise_differences(b.gpu->upload(x), b.gpu->upload(other)), x.size());
}

TEST(CudaValues, SummarizeEqualsCpu) {
  DIVSCOPE_REQUIRE_GPU();
  Backends b;
  Tensor t = within_sums(awkward({4, 6, 5}, 404));
  for (int64_t k = 30; k < 60; ++k) t.data[k] = k % 3 ? 0.0 : -0.0;   // sample 1: all zero
  for (int64_t k = 60; k < 90; ++k)                                   // sample 2: Inf, no NaN
    t.data[k] = std::isfinite(t.data[k]) ? t.data[k] : std::numeric_limits<double>::infinity();
  const ReferenceSummary cpu = b.cpu->summarize(b.cpu->upload(t));
  const ReferenceSummary gpu = b.gpu->summarize(b.gpu->upload(t));
  const LayerStats &c = cpu.health, &g = gpu.health;
  ASSERT_GT(c.ref_finite, 0);
  for (auto f : {&LayerStats::ref_nan, &LayerStats::ref_inf, &LayerStats::ref_finite,
                 &LayerStats::ref_zero, &LayerStats::over_fp16, &LayerStats::over_bf16,
                 &LayerStats::under_fp16, &LayerStats::under_bf16})
    EXPECT_EQ(c.*f, g.*f);
  EXPECT_EQ(c.ref_min, g.ref_min);
  EXPECT_EQ(c.ref_max, g.ref_max);
  EXPECT_NEAR(c.ref_sum, g.ref_sum, 1e-12 * std::sqrt(c.ref_finite * c.ref_sumsq));
  EXPECT_NEAR(c.ref_sumsq, g.ref_sumsq, 1e-12 * c.ref_sumsq);
  EXPECT_EQ(cpu.abs_max, gpu.abs_max);
  ASSERT_EQ(cpu.samples.size(), gpu.samples.size());
  for (size_t s = 0; s < cpu.samples.size(); ++s) {
    SCOPED_TRACE("sample " + std::to_string(s));
    EXPECT_EQ(cpu.samples[s].nonfinite, gpu.samples[s].nonfinite);
    EXPECT_EQ(cpu.samples[s].nan, gpu.samples[s].nan);
    EXPECT_EQ(cpu.samples[s].inf, gpu.samples[s].inf);
    EXPECT_EQ(cpu.samples[s].all_zero, gpu.samples[s].all_zero);
  }
  EXPECT_TRUE(gpu.samples[1].all_zero);
  EXPECT_FALSE(gpu.samples[0].all_zero);
}

// Counts, maxima and histograms exactly; sums to 1e-12 of their scale (CUB adds in another order).
void expect_same_stats(const LayerStats& c, const LayerStats& g) {
  for (auto f : {&LayerStats::count, &LayerStats::nan, &LayerStats::inf, &LayerStats::ref_nan,
                 &LayerStats::ref_inf, &LayerStats::nonfinite_new, &LayerStats::mismatch,
                 &LayerStats::flushed, &LayerStats::ref_finite, &LayerStats::ref_zero})
    EXPECT_EQ(c.*f, g.*f);
  for (auto f : {&LayerStats::max_abs, &LayerStats::max_rel, &LayerStats::min_rtol,
                 &LayerStats::max_ulp, &LayerStats::ref_min, &LayerStats::ref_max})
    EXPECT_EQ(c.*f, g.*f);
  EXPECT_EQ(c.max_abs_index, g.max_abs_index);
  EXPECT_EQ(c.err_hist, g.err_hist);
  EXPECT_EQ(c.ulp_hist, g.ulp_hist);
  const double dot_scale = std::sqrt(c.sum_ref2 * c.sum_cand2);
  const double ref_scale = std::sqrt(static_cast<double>(c.ref_finite) * c.ref_sumsq);
  for (auto f : {&LayerStats::sum_abs, &LayerStats::sum_err2, &LayerStats::sum_ref2,
                 &LayerStats::sum_cand2, &LayerStats::sum_dot, &LayerStats::ref_sum,
                 &LayerStats::ref_sumsq}) {
    const double scale = f == &LayerStats::sum_dot ? dot_scale : f == &LayerStats::ref_sum ? ref_scale : 0.0;
    EXPECT_LE(std::fabs(c.*f - g.*f), 1e-12 * std::max({std::fabs(c.*f), std::fabs(g.*f), scale}));
  }
}

TEST(CudaValues, CompareEqualsCpu) {
  DIVSCOPE_REQUIRE_GPU();
  Backends b;
  const Tensor ref = within_sums(awkward({6, 257}, 505));
  const Value rh = b.cpu->upload(ref), rd = b.gpu->upload(ref);
  // Candidates: the reference perturbed (double), and that in each float storage.
  const Value ph = b.cpu->perturbed(rh, 1, 2), pd = b.gpu->perturbed(rd, 1, 2);
  for (Mode m : {Mode::fp64, Mode::fp32, Mode::fp16, Mode::bf16}) {
    SCOPED_TRACE(std::string("storage ") + mode_name(m) + ", seed 505");
    const Value ch = m == Mode::fp64 ? ph : b.cpu->to_storage(ph, m, true);
    const Value cd = m == Mode::fp64 ? pd : b.gpu->to_storage(pd, m, true);
    const CompareOptions opt{m, 1e-3, 1e-3, -1, true};
    SampleErrors sc, sg;
    const LayerStats c = b.cpu->compare(ch, rh, opt, &sc, "test");
    ASSERT_GT(c.sum_ref2, 0);
    expect_same_stats(c, b.gpu->compare(cd, rd, opt, &sg, "test"));
    EXPECT_EQ(sc.mismatch, sg.mismatch);
    EXPECT_EQ(sc.nonfinite_new, sg.nonfinite_new);
    EXPECT_EQ(sc.max_abs, sg.max_abs);
    ASSERT_EQ(sc.err2.size(), sg.err2.size());
    for (size_t s = 0; s < sc.err2.size(); ++s) {
      EXPECT_LE(std::fabs(sc.err2[s] - sg.err2[s]), 1e-12 * std::fabs(sc.err2[s])) << "sample " << s;
      EXPECT_LE(std::fabs(sc.ref2[s] - sg.ref2[s]), 1e-12 * std::fabs(sc.ref2[s])) << "sample " << s;
    }
  }
}

// linear (ragged K, bias) -> gelu -> linear, batch 4.
std::vector<Built> chain(uint64_t seed) {
  Gen g{Regime::real, std::mt19937_64(seed)};
  std::vector<Built> c;
  c.push_back(make("linear", {{4, 13}}, {}, {{"weight", g.tensor({9, 13})}, {"bias", g.tensor({9})}}));
  c.push_back(make("gelu", {{4, 9}}, {{"approximate", std::string("none")}}));
  c.push_back(make("linear", {{4, 9}}, {}, {{"weight", g.tensor({5, 9})}}));
  for (size_t i = 0; i < c.size(); ++i) c[i].layer.name = "chain" + std::to_string(i);
  return c;
}

// The chain, its input and its model, from one seed.
struct ChainCase {
  std::vector<Built> layers;
  Tensor x;
  Model model;
  explicit ChainCase(uint64_t seed) : layers(chain(seed)) {
    Gen g{Regime::real, std::mt19937_64(seed + 1)};
    x = g.tensor({4, 13});
    for (const Built& b : layers) model.layers.push_back(b.layer);
  }
};

// Mode m's chain on the backend's values from the double input x; each output poisoned first
// where `poison`.
Value run_chain(Backend& be, Mode m, const std::vector<Built>& c, const Value& x, bool poison) {
  Value v = m == Mode::fp64 ? x : be.to_storage(x, m, true);
  for (const Built& b : c) {
    if (poison) poison_next(4 * numel(b.layer.out_shape), m == Mode::fp64);
    v = m == Mode::fp64 ? be.reference(b.layer, {&v}) : be.forward(m, b.layer, {&v});
  }
  return v;
}

// The value path with parameters cached for the analysis; the host-tensor path after it, without
// the cache (each call uploads its parameters).
TEST(CudaValues, ChainEqualsHostTensorPath) {
  DIVSCOPE_REQUIRE_GPU();
  Backends b;
  const ChainCase cc(606);
  const std::vector<Built>& c = cc.layers;
  const Tensor& x = cc.x;
  for (Mode m : {Mode::fp64, Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict}) {
    SCOPED_TRACE(std::string(mode_name(m)) + ", seeds 606/607");
    b.gpu->begin_analysis(cc.model);
    const Value out = run_chain(*b.gpu, m, c, b.gpu->upload(x), true);
    b.gpu->end_analysis();
    if (m == Mode::fp64) {
      Tensor t = x;
      for (const Built& l : c) {
        Tensor o;
        b.gpu->reference(l.layer, {&t}, o);
        t = std::move(o);
      }
      EXPECT_EQ(first_bit_difference(t.data, b.gpu->download(out).data), -1);
      continue;
    }
    const TensorF values = b.gpu->download_float(out);
    TensorF t = kernel_test::in_mode<float>(m, x);
    for (const Built& l : c) {
      TensorF o;
      b.gpu->forward(m, l.layer, {&t}, o);
      t = std::move(o);
    }
    ASSERT_EQ(t.shape, values.shape);
    EXPECT_EQ(first_bit_difference(t.data, values.data), -1) << "values against host tensors";
    if (m == Mode::strict) {
      const TensorF cpu = b.cpu->download_float(run_chain(*b.cpu, m, c, b.cpu->upload(x), false));
      EXPECT_EQ(first_bit_difference(cpu.data, values.data), -1) << "strict against the CPU";
    }
  }
}

// One batch as the analysis runs it: every value of the chain held at once, each mode's compared.
void run_batch(Backend& gpu, const std::vector<Built>& c, const Tensor& x) {
  const Value xd = gpu.upload(x);
  std::vector<Value> ref{xd};
  for (const Built& b : c) ref.push_back(gpu.reference(b.layer, {&ref.back()}));
  for (Mode m : {Mode::fp16, Mode::strict}) {
    Value v = gpu.to_storage(xd, m, true);
    for (size_t i = 0; i < c.size(); ++i) {
      v = gpu.forward(m, c[i].layer, {&v});
      SampleErrors samples;
      gpu.compare(v, ref[i + 1], CompareOptions{m, 0, 0, -1, true}, &samples, c[i].layer.name);
      gpu.bitwise_differences(v, gpu.to_storage(ref[i + 1], m, true));
    }
  }
  gpu.summarize(ref.back());
  gpu.perturbed(ref.back(), 0, 2);
}

TEST(CudaValues, PoolReusesBlocks) {
  DIVSCOPE_REQUIRE_GPU();
  Backends b;
  const ChainCase cc(707);
  const CachingPool::Stats start = device_memory_stats();
  b.gpu->begin_analysis(cc.model);
  run_batch(*b.gpu, cc.layers, cc.x);   // warm-up: the pool's cudaMalloc calls, the parameters uploaded
  const CachingPool::Stats warm = device_memory_stats();
  run_batch(*b.gpu, cc.layers, cc.x);
  const CachingPool::Stats again = device_memory_stats();
  EXPECT_EQ(again.system_allocs, warm.system_allocs) << "the second batch called cudaMalloc";
  EXPECT_EQ(again.live, warm.live) << "the second batch's values were not all given back";
  EXPECT_GT(again.requests, warm.requests);
  EXPECT_EQ(b.gpu->memory().system_allocs, again.system_allocs);
  b.gpu->end_analysis();   // the cached parameters go back too
  EXPECT_EQ(device_memory_stats().live, start.live);
  EXPECT_GE(b.gpu->memory().limit, 0) << "no limit known";
}

TEST(CudaValues, OutOfMemoryNamesTheRequest) {
  DIVSCOPE_REQUIRE_GPU();
  try {
    device_alloc(size_t(1) << 60, "a test's impossible tensor");
    FAIL() << "no error";
  } catch (const RuntimeFault& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("out of device memory allocating 1152921504606846976 bytes for a test's "
                        "impossible tensor"), std::string::npos) << what;
    EXPECT_NE(what.find("cached"), std::string::npos) << what;
  }
}

TEST(CudaValues, HostValueIsAnError) {
  DIVSCOPE_REQUIRE_GPU();
  Backends b;
  const std::vector<Built> c = chain(808);
  const Value host = b.cpu->upload(Tensor(Shape{4, 13}));
  EXPECT_THROW(b.gpu->reference(c[0].layer, {&host}), RuntimeFault);
  EXPECT_THROW(b.gpu->to_storage(host, Mode::fp16, true), RuntimeFault);
  const Value f = b.gpu->upload(TensorF(Shape{4, 13}));
  EXPECT_THROW(b.gpu->reference(c[0].layer, {&f}), RuntimeFault) << "a float value as the reference's input";
}

}  // namespace
}  // namespace divscope
