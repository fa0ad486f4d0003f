// The second op set's kernels against the CPU path of the same mode, in the style of
// tests/test_kernels.cpp (STYLE 3, 9, 10): conv_transpose2d, groupnorm, rmsnorm, leaky_relu, silu,
// sigmoid, tanh, mul, avgpool2d, global_avgpool2d, upsample_nearest2d, reshape, permute,
// embedding, scaled_dot_product_attention. Each case runs through cuda_launch_layer with the
// output poisoned (NaN), on ragged shapes, in two regimes:
//   integers: small non-zero integers; ops whose result is then exact (mul, leaky_relu, pools --
//             the same exact sum divided by the same divisor --, copies, gathers, the transposed
//             convolution's sums) must equal the CPU value in every mode; ops with a
//             transcendental, a square root or a softmax use the tolerance.
//   real:     uniform random values, compared with the mode's tolerance (DESIGN §7).
// strict is bitwise equal to the CPU strict path in both regimes (DESIGN §5.1), and every mode is
// bitwise equal to itself across two launches and through the Backend interface. Bad embedding
// indices are an InputError naming the layer. Without a device every test skips with the reason.
// The harness mirrors test_kernels.cpp's (same seeds, tolerances and checks).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <tuple>

#include "backend.h"
#include "cuda_backend.h"
#include "errors.h"
#include "kernel_test_util.h"
#include "ops.h"
#include "reference/modes.h"
#include "reference/reference.h"

namespace divscope {
namespace {

enum class Regime { integers, real };

struct Gen {
  Regime regime;
  std::mt19937_64 rng;
  // A non-zero value: an integer in [-3, 3] \ {0}, or uniform in [lo, hi] away from 0.
  double next(double lo = -2, double hi = 2) {
    if (regime == Regime::integers) {
      int v = static_cast<int>(std::uniform_int_distribution<int>(-3, 2)(rng));
      return v >= 0 ? v + 1 : v;
    }
    double v = std::uniform_real_distribution<double>(lo, hi)(rng);
    return std::fabs(v) < 1e-3 ? 0.5 : v;
  }
  Tensor tensor(const Shape& s, double lo = -2, double hi = 2) {
    Tensor t(s);
    for (double& v : t.data) v = next(lo, hi);
    return t;
  }
};

struct Built {
  Layer layer;
  std::vector<Shape> in_shapes;   // full shapes, batch first
};

struct OpCase {
  const char* name;
  bool exact_on_integers;
  std::function<Built(Gen&)> build;
  // Inputs; empty: g.tensor(shape) for each input.
  std::function<std::vector<Tensor>(Gen&, const Built&)> inputs = {};
};

using Ints = std::vector<int64_t>;

Built make(const std::string& op, std::vector<Shape> in_shapes,
           std::map<std::string, AttrValue> attrs = {}, std::map<std::string, Tensor> params = {}) {
  Built b;
  b.layer.name = "test_" + op;
  b.layer.op = op;
  b.layer.path = "/layers/0000";
  b.layer.attrs = std::move(attrs);
  b.layer.params = std::move(params);
  for (size_t i = 0; i < in_shapes.size(); ++i)
    b.layer.refs.push_back(ValueRef{true, static_cast<int>(i)});   // graph inputs (embedding)
  b.in_shapes = std::move(in_shapes);
  Shape out = find_op(op)->infer(b.layer, b.in_shapes);
  b.layer.out_shape.assign(out.begin() + 1, out.end());
  return b;
}

Built conv_t(Gen& g, Shape x, Ints stride, Ints pad, Ints opad, Ints dil, int64_t groups,
             Shape w, bool bias) {
  std::map<std::string, Tensor> params{{"weight", g.tensor(w)}};
  if (bias) params["bias"] = g.tensor({w[1] * groups});
  return make("conv_transpose2d", {std::move(x)},
              {{"stride", stride}, {"padding", pad}, {"output_padding", opad}, {"dilation", dil},
               {"groups", groups}},
              std::move(params));
}

Built avgpool(Shape x, Ints k, Ints s, Ints p, int64_t ceil_mode, int64_t include_pad) {
  return make("avgpool2d", {std::move(x)},
              {{"kernel_size", k}, {"stride", s}, {"padding", p}, {"ceil_mode", ceil_mode},
               {"count_include_pad", include_pad}});
}

Built sdpa(Shape q, Shape k, Shape v, int64_t causal, double scale = 0) {
  std::map<std::string, AttrValue> attrs{{"is_causal", causal}};
  if (scale != 0) attrs["scale"] = scale;
  return make("scaled_dot_product_attention", {std::move(q), std::move(k), std::move(v)},
              std::move(attrs));
}

// Indices: integers in [0, V), as the int64 graph input arrives (converted to the element type).
std::vector<Tensor> indices(Gen& g, const Built& b) {
  const int64_t V = b.layer.param("weight")->shape[0];
  Tensor t(b.in_shapes[0]);
  for (double& v : t.data) v = static_cast<double>(std::uniform_int_distribution<int64_t>(0, V - 1)(g.rng));
  t.data[0] = static_cast<double>(V - 1);   // the last row is reachable
  return {t};
}

const std::vector<OpCase>& cases() {
  static const std::vector<OpCase> all = {
      {"ConvTranspose", true, [](Gen& g) {
         return conv_t(g, {2, 3, 5, 7}, {1, 1}, {0, 0}, {0, 0}, {1, 1}, 1, {3, 4, 3, 3}, true);
       }},
      {"ConvTransposeStridePad", true, [](Gen& g) {
         return conv_t(g, {2, 3, 5, 6}, {2, 3}, {1, 1}, {1, 2}, {1, 1}, 1, {3, 5, 3, 4}, true);
       }},
      {"ConvTransposeGroupsDilation", true, [](Gen& g) {
         return conv_t(g, {1, 4, 6, 5}, {2, 1}, {2, 0}, {0, 0}, {2, 3}, 2, {4, 3, 3, 2}, false);
       }},
      {"ConvTransposeManyChannels", true, [](Gen& g) {   // K = 70 * 4 spans several k tiles
         return conv_t(g, {1, 70, 4, 3}, {2, 2}, {0, 1}, {1, 0}, {1, 1}, 1, {70, 9, 2, 2}, true);
       }},
      {"GroupNorm", false, [](Gen& g) {
         return make("groupnorm", {{2, 6, 5, 7}}, {{"num_groups", int64_t{3}}, {"eps", 1e-5}},
                     {{"weight", g.tensor({6})}, {"bias", g.tensor({6})}});
       }},
      {"GroupNormWideNoAffine", false, [](Gen&) {   // 2 * 300 = 600 > 256 lanes per group
         return make("groupnorm", {{2, 4, 300}}, {{"num_groups", int64_t{2}}, {"eps", 1e-5}});
       }},
      {"GroupNormRank2", false, [](Gen& g) {
         return make("groupnorm", {{3, 8}}, {{"num_groups", int64_t{4}}, {"eps", 1e-3}},
                     {{"weight", g.tensor({8})}});
       }},
      {"RmsNorm", false, [](Gen& g) {
         return make("rmsnorm", {{3, 5, 7}}, {{"normalized_shape", Ints{7}}, {"eps", 1e-6}},
                     {{"weight", g.tensor({7})}});
       }},
      {"RmsNormWideNoWeight", false, [](Gen&) {
         return make("rmsnorm", {{2, 3, 700}}, {{"normalized_shape", Ints{3, 700}}, {"eps", 1e-6}});
       }},
      {"LeakyRelu", true, [](Gen&) {
         return make("leaky_relu", {{3, 37, 5}}, {{"negative_slope", 0.01}});
       }},
      {"Silu", false, [](Gen&) { return make("silu", {{3, 333}}); }},
      {"Sigmoid", false, [](Gen&) { return make("sigmoid", {{2, 5, 77}}); }},
      {"Tanh", false, [](Gen&) { return make("tanh", {{4, 129}}); }},
      {"MulSame", true, [](Gen&) { return make("mul", {{2, 3, 5, 7}, {2, 3, 5, 7}}); }},
      {"MulBroadcast", true, [](Gen&) { return make("mul", {{2, 1, 5, 1}, {2, 3, 1, 7}}); }},
      {"AvgPool", true, [](Gen&) { return avgpool({2, 3, 11, 13}, {3, 3}, {2, 2}, {1, 1}, 0, 1); }},
      {"AvgPoolCeilExcludePad", true, [](Gen&) {
         return avgpool({2, 2, 10, 9}, {3, 2}, {2, 3}, {1, 1}, 1, 0);
       }},
      {"AvgPoolCeilIncludePad", true, [](Gen&) {
         return avgpool({1, 3, 8, 7}, {4, 3}, {3, 2}, {2, 1}, 1, 1);
       }},
      {"AvgPoolLargeWindow", true, [](Gen&) {   // 20 x 15 = 300 > 256 lanes per window
         return avgpool({1, 2, 23, 17}, {20, 15}, {3, 2}, {0, 0}, 0, 1);
       }},
      {"GlobalAvgPool", true, [](Gen&) { return make("global_avgpool2d", {{2, 5, 7, 9}}); }},
      {"GlobalAvgPoolLarge", true, [](Gen&) { return make("global_avgpool2d", {{1, 3, 31, 29}}); }},
      {"Upsample", true, [](Gen&) {
         return make("upsample_nearest2d", {{2, 3, 5, 4}}, {{"scale_factor", Ints{2, 3}}});
       }},
      {"Reshape", true, [](Gen&) { return make("reshape", {{2, 3, 4, 5}}, {{"shape", Ints{5, -1}}}); }},
      {"Permute", true, [](Gen&) {
         return make("permute", {{2, 3, 4, 5}}, {{"dims", Ints{0, 3, 1, 2}}});
       }},
      {"PermuteNegative", true, [](Gen&) {
         return make("permute", {{3, 7, 2, 5}}, {{"dims", Ints{0, -1, -3, 2}}});
       }},
      {"Embedding", true, [](Gen& g) {
         return make("embedding", {{3, 7}}, {}, {{"weight", g.tensor({11, 13})}});
       }, indices},
      {"Sdpa", false, [](Gen&) { return sdpa({2, 3, 7, 16}, {2, 3, 7, 16}, {2, 3, 7, 9}, 0); }},
      {"SdpaCausal", false, [](Gen&) { return sdpa({2, 2, 9, 8}, {2, 2, 9, 8}, {2, 2, 9, 8}, 1); }},
      {"SdpaCausalRagged", false, [](Gen&) {   // Tq != Tk, explicit scale, long key axis
         return sdpa({1, 2, 5, 12}, {1, 2, 300, 12}, {1, 2, 300, 7}, 1, 0.3);
       }},
      {"SdpaRank3", false, [](Gen&) { return sdpa({3, 6, 5}, {3, 4, 5}, {3, 4, 6}, 0); }},
  };
  return all;
}

const Mode kModes[] = {Mode::fp64, Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict};

// Mode tolerance of DESIGN §7 for GPU vs CPU of the same mode (as test_kernels.cpp).
struct Tol {
  double atol, rtol;
};
Tol tolerance(Mode m) {
  switch (m) {
    case Mode::fp64: return {1e-12, 1e-11};
    case Mode::fp32: return {1e-5, 1e-4};
    case Mode::tf32: return {1e-3, 1e-2};
    case Mode::fp16: return {1e-2, 1e-2};
    case Mode::bf16: return {1e-2, 4e-2};
    case Mode::strict: return {0, 0};
  }
  return {0, 0};
}

uint64_t seed_of(const std::string& s) {   // FNV-1a: a fixed seed per test, printed on failure
  uint64_t h = 1469598103934665603ull;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

template <class T>
BasicTensor<T> in_mode(Mode m, const Tensor& t) {
  BasicTensor<T> x(t.shape);
  for (size_t i = 0; i < t.data.size(); ++i)
    x.data[i] = m == Mode::fp64 ? T(t.data[i]) : T(round_storage(m, static_cast<float>(t.data[i])));
  return x;
}

// One launch through the backend's launch step, output poisoned first.
template <class T>
std::vector<T> gpu_run(Mode m, const Built& b, const std::vector<std::vector<T>>& inputs, size_t out_n) {
  std::vector<TestDevMem> din;
  std::vector<const void*> ptrs;
  for (const auto& v : inputs) {
    din.push_back(to_device(v));
    ptrs.push_back(din.back().get());
  }
  TestDevMem dout(std::max<size_t>(out_n, 1) * sizeof(T));
  device_fill_nan(dout.get(), out_n, sizeof(T) == 8);
  cuda_launch_layer(m, b.layer, b.in_shapes, ptrs, dout.get());
  device_synchronize(b.layer.name);
  return from_device<T>(dout, out_n);
}

// The CPU path of the mode and the GPU, same inputs; returns {cpu, gpu, gpu again, backend}.
template <class T>
std::vector<std::vector<T>> run_both(Mode m, const Built& b, const std::vector<Tensor>& in64) {
  std::vector<BasicTensor<T>> in;
  for (const Tensor& t : in64) in.push_back(in_mode<T>(m, t));
  std::vector<const BasicTensor<T>*> ptrs;
  std::vector<std::vector<T>> raw;
  for (const auto& t : in) {
    ptrs.push_back(&t);
    raw.push_back(t.data);
  }
  BasicTensor<T> cpu;
  if constexpr (sizeof(T) == 8)
    reference_forward(b.layer, ptrs, cpu);
  else
    mode_forward(m, b.layer, ptrs, cpu);
  const size_t n = cpu.data.size();
  std::vector<std::vector<T>> r{cpu.data, gpu_run<T>(m, b, raw, n), gpu_run<T>(m, b, raw, n)};
  BasicTensor<T> via_backend;
  auto backend = make_cuda_backend();
  if constexpr (sizeof(T) == 8)
    backend->reference(b.layer, ptrs, via_backend);
  else
    backend->forward(m, b.layer, ptrs, via_backend);
  EXPECT_EQ(via_backend.shape, cpu.shape);
  r.push_back(via_backend.data);
  return r;
}

template <class T>
void check(Mode m, const OpCase& c, Regime regime, const std::vector<std::vector<T>>& r) {
  const auto &cpu = r[0], &gpu = r[1];
  ASSERT_EQ(cpu.size(), gpu.size());
  double norm2 = 0, scale = 1;
  for (T v : cpu) {
    norm2 += double(v) * double(v);
    if (std::isfinite(double(v))) scale = std::max(scale, std::fabs(double(v)));
  }
  ASSERT_GT(norm2, 0) << "all-zero reference output: the test would pass anything";
  const int64_t again = first_bit_difference(gpu, r[2]);
  EXPECT_EQ(again, -1) << "second launch differs at " << again;
  const int64_t backend = first_bit_difference(gpu, r[3]);
  EXPECT_EQ(backend, -1) << "Backend::forward differs from the launch at " << backend;
  if (m == Mode::strict) {
    const int64_t at = first_bit_difference(cpu, gpu);
    EXPECT_EQ(at, -1) << "strict GPU != CPU bitwise at " << at << ": cpu "
                      << (at >= 0 ? double(cpu[at]) : 0) << " gpu " << (at >= 0 ? double(gpu[at]) : 0);
    return;
  }
  const bool exact = regime == Regime::integers && c.exact_on_integers;
  const Tol tol = tolerance(m);
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double a = cpu[i], g = gpu[i];
    const bool ok = exact ? (a == g || (std::isnan(a) && std::isnan(g)))
                          : (std::isnan(a) ? std::isnan(g)
                                           : std::fabs(a - g) <= tol.atol * scale + tol.rtol * std::fabs(a));
    if (!ok && bad++ == 0) first = static_cast<int64_t>(i);
  }
  EXPECT_EQ(bad, 0) << bad << " of " << cpu.size() << " elements differ ("
                    << (exact ? "exact" : "tolerance") << "); first at " << first << ": cpu "
                    << (first >= 0 ? double(cpu[first]) : 0) << " gpu "
                    << (first >= 0 ? double(gpu[first]) : 0);
}

std::string mode_title(Mode m) {
  std::string s = mode_name(m);
  s[0] = static_cast<char>(std::toupper(s[0]));
  return s;
}

class KernelOp2 : public ::testing::TestWithParam<std::tuple<int, Mode>> {
 protected:
  void run(Regime regime) {
    DIVSCOPE_REQUIRE_GPU();
    const OpCase& c = cases()[std::get<0>(GetParam())];
    const Mode m = std::get<1>(GetParam());
    const std::string id = std::string(c.name) + "/" + mode_name(m) +
                           (regime == Regime::integers ? "/integers" : "/real");
    const uint64_t seed = seed_of(id);
    SCOPED_TRACE("case " + id + ", seed " + std::to_string(seed));
    Gen g{regime, std::mt19937_64(seed)};
    const Built b = c.build(g);
    std::vector<Tensor> in;
    if (c.inputs)
      in = c.inputs(g, b);
    else
      for (const Shape& s : b.in_shapes) in.push_back(g.tensor(s, -2, 2));
    if (m == Mode::fp64)
      check(m, c, regime, run_both<double>(m, b, in));
    else
      check(m, c, regime, run_both<float>(m, b, in));
  }
};

TEST_P(KernelOp2, IntegersExact) { run(Regime::integers); }
TEST_P(KernelOp2, RealWithinTolerance) { run(Regime::real); }

INSTANTIATE_TEST_SUITE_P(
    Kernels2, KernelOp2,
    ::testing::Combine(::testing::Range(0, static_cast<int>(cases().size())), ::testing::ValuesIn(kModes)),
    [](const ::testing::TestParamInfo<std::tuple<int, Mode>>& info) {
      return std::string(cases()[std::get<0>(info.param)].name) + "_" + mode_title(std::get<1>(info.param));
    });

// An index that is not an integer in [0, V) fails the layer with an InputError that names it and
// the first bad position, as the CPU reference does; in every mode.
TEST(KernelEmbedding, BadIndexIsInputErrorNamingTheLayer) {
  DIVSCOPE_REQUIRE_GPU();
  Gen g{Regime::integers, std::mt19937_64(seed_of("KernelEmbedding"))};
  const Built b = make("embedding", {{2, 600}}, {}, {{"weight", g.tensor({5, 3})}});
  for (double bad : {5.0, -1.0, 2.5, std::nan("")}) {
    for (Mode m : kModes) {
      SCOPED_TRACE(std::string(mode_name(m)) + ", bad index " + std::to_string(bad));
      Tensor idx(b.in_shapes[0], 1.0);
      idx.data[777] = bad;
      idx.data[1100] = bad;   // a later bad position is not the one reported
      try {
        if (m == Mode::fp64)
          gpu_run<double>(m, b, {in_mode<double>(m, idx).data}, 1200 * 3);
        else
          gpu_run<float>(m, b, {in_mode<float>(m, idx).data}, 1200 * 3);
        ADD_FAILURE() << "expected InputError";
      } catch (const InputError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("test_embedding"), std::string::npos) << what;
        EXPECT_NE(what.find("flat position 777"), std::string::npos) << what;
      }
    }
  }
}

}  // namespace
}  // namespace divscope
