// Every kernel against the CPU path of the same mode (STYLE 3, 9, 10): relu, gelu, add, batchnorm,
// layernorm, softmax, log_softmax, maxpool2d, flatten, and the GEMM family (linear, matmul,
// conv2d) from kernels/gemm.cu and conv.cu. Each case runs through cuda_launch_layer -- the CUDA
// backend's own launch step -- with the output poisoned (NaN) before every launch, on ragged
// shapes (nothing a multiple of a tile; K = 1; K = 1500; D = 3000 > 256 lanes), in two regimes:
//   integers: small non-zero integers. For ops whose result is then exact (relu, add, pools,
//             flatten, batchnorm with a power-of-two denominator, the GEMMs: sums of small
//             products stay below 2^24) every mode must equal the CPU value exactly; ops with a
//             transcendental or a division (gelu, softmax, layernorm) use the tolerance.
//   real:     uniform random values, compared with the mode's tolerance (DESIGN §7) -- the GPU and
//             the CPU round the same operations in another order or with another libm.
// strict is bitwise equal to the CPU strict path in both regimes (DESIGN §5.1), and every mode is
// bitwise equal to itself across two launches and through the Backend interface.
// Without a device every test skips with the reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <sstream>
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
};

Built make(const std::string& op, std::vector<Shape> in_shapes,
           std::map<std::string, AttrValue> attrs = {}, std::map<std::string, Tensor> params = {}) {
  Built b;
  b.layer.name = "test_" + op;
  b.layer.op = op;
  b.layer.path = "/layers/0000";
  b.layer.attrs = std::move(attrs);
  b.layer.params = std::move(params);
  b.in_shapes = std::move(in_shapes);
  Shape out = find_op(op)->infer(b.layer, b.in_shapes);
  b.layer.out_shape.assign(out.begin() + 1, out.end());
  return b;
}

using Ints = std::vector<int64_t>;

const std::vector<OpCase>& cases() {
  static const std::vector<OpCase> all = {
      {"Relu", true, [](Gen&) { return make("relu", {{3, 37, 5}}); }},
      {"GeluErf", false, [](Gen&) { return make("gelu", {{3, 333}}, {{"approximate", std::string("none")}}); }},
      {"GeluTanh", false, [](Gen&) { return make("gelu", {{2, 5, 77}}, {{"approximate", std::string("tanh")}}); }},
      {"AddSame", true, [](Gen&) { return make("add", {{2, 3, 5, 7}, {2, 3, 5, 7}}); }},
      {"AddBroadcast", true, [](Gen&) { return make("add", {{2, 1, 5, 1}, {2, 3, 1, 7}}); }},
      {"AddBroadcastRank2", true, [](Gen&) { return make("add", {{3, 129}, {3, 1}}); }},
      {"BatchNorm", true, [](Gen& g) {
         const int64_t C = 3;
         Tensor var({C}, 4.0);   // integers: sqrt(4 + 0) = 2, every quotient exact
         if (g.regime == Regime::real) var = g.tensor({C}, 0.5, 2.0);
         return make("batchnorm2d", {{2, C, 5, 7}},
                     {{"eps", g.regime == Regime::real ? 1e-5 : 0.0}},
                     {{"weight", g.tensor({C})}, {"bias", g.tensor({C})},
                      {"running_mean", g.tensor({C})}, {"running_var", var}});
       }},
      {"BatchNormOneByOne", true, [](Gen& g) {
         const int64_t C = 17;
         Tensor var({C}, 4.0);
         if (g.regime == Regime::real) var = g.tensor({C}, 0.5, 2.0);
         return make("batchnorm2d", {{1, C, 1, 1}}, {{"eps", g.regime == Regime::real ? 1e-5 : 0.0}},
                     {{"weight", g.tensor({C})}, {"bias", g.tensor({C})},
                      {"running_mean", g.tensor({C})}, {"running_var", var}});
       }},
      {"LayerNormRow", false, [](Gen& g) {
         return make("layernorm", {{3, 5, 7}}, {{"normalized_shape", Ints{7}}, {"eps", 1e-5}},
                     {{"weight", g.tensor({7})}, {"bias", g.tensor({7})}});
       }},
      {"LayerNormWide", false, [](Gen& g) {
         return make("layernorm", {{2, 3, 1000}}, {{"normalized_shape", Ints{3, 1000}}, {"eps", 1e-5}},
                     {{"weight", g.tensor({3, 1000})}, {"bias", g.tensor({3, 1000})}});
       }},
      {"LayerNormNoAffine", false, [](Gen&) {
         return make("layernorm", {{4, 300}}, {{"normalized_shape", Ints{300}}, {"eps", 1e-5}});
       }},
      {"LayerNormD1", false, [](Gen& g) {
         return make("layernorm", {{5, 1}}, {{"normalized_shape", Ints{1}}, {"eps", 1e-5}},
                     {{"weight", g.tensor({1})}, {"bias", g.tensor({1})}});
       }},
      {"SoftmaxLast", false, [](Gen&) { return make("softmax", {{3, 7, 5}}, {{"axis", int64_t{-1}}}); }},
      {"SoftmaxMiddle", false, [](Gen&) { return make("softmax", {{3, 7, 5}}, {{"axis", int64_t{1}}}); }},
      {"SoftmaxLong", false, [](Gen&) { return make("softmax", {{2, 1000}}, {{"axis", int64_t{1}}}); }},
      {"LogSoftmax", false, [](Gen&) { return make("log_softmax", {{4, 300}}, {{"axis", int64_t{-1}}}); }},
      {"MaxPool", true, [](Gen&) {
         return make("maxpool2d", {{2, 3, 11, 13}},
                     {{"kernel_size", Ints{3, 3}}, {"stride", Ints{2, 2}}, {"padding", Ints{1, 1}}});
       }},
      {"MaxPoolDilationCeil", true, [](Gen&) {
         return make("maxpool2d", {{2, 2, 10, 9}},
                     {{"kernel_size", Ints{3, 2}}, {"stride", Ints{2, 3}}, {"padding", Ints{1, 1}},
                      {"dilation", Ints{2, 1}}, {"ceil_mode", int64_t{1}}});
       }},
      {"Flatten", true, [](Gen&) { return make("flatten", {{2, 3, 4, 5}}); }},
      {"Linear", true, [](Gen& g) {
         return make("linear", {{5, 33}}, {}, {{"weight", g.tensor({17, 33})}, {"bias", g.tensor({17})}});
       }},
      {"LinearK1", true, [](Gen& g) { return make("linear", {{3, 7, 1}}, {}, {{"weight", g.tensor({4, 1})}}); }},
      {"LinearLargeK", true, [](Gen& g) {
         return make("linear", {{2, 1500}}, {}, {{"weight", g.tensor({9, 1500})}, {"bias", g.tensor({9})}});
       }},
      {"Matmul", true, [](Gen&) { return make("matmul", {{2, 3, 17, 9}, {2, 3, 9, 13}}); }},
      {"MatmulBroadcast", true, [](Gen&) { return make("matmul", {{2, 1, 5, 3}, {2, 4, 3, 6}}); }},
      {"Conv", true, [](Gen& g) {
         return make("conv2d", {{2, 3, 9, 11}},
                     {{"stride", Ints{1, 1}}, {"padding", Ints{1, 1}}, {"dilation", Ints{1, 1}}, {"groups", int64_t{1}}},
                     {{"weight", g.tensor({5, 3, 3, 3})}, {"bias", g.tensor({5})}});
       }},
      {"ConvGroupsStrideDilation", true, [](Gen& g) {
         return make("conv2d", {{1, 4, 7, 8}},
                     {{"stride", Ints{2, 1}}, {"padding", Ints{0, 1}}, {"dilation", Ints{1, 2}}, {"groups", int64_t{2}}},
                     {{"weight", g.tensor({6, 2, 2, 3})}, {"bias", g.tensor({6})}});
       }},
      {"Conv1x1", true, [](Gen& g) {
         return make("conv2d", {{2, 16, 5, 5}},
                     {{"stride", Ints{1, 1}}, {"padding", Ints{0, 0}}, {"dilation", Ints{1, 1}}, {"groups", int64_t{1}}},
                     {{"weight", g.tensor({8, 16, 1, 1})}});
       }},
  };
  return all;
}

const Mode kModes[] = {Mode::fp64, Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict};

// Mode tolerance of DESIGN §7 for GPU vs CPU of the same mode; atol scales with the output's
// magnitude (a long dot product's rounding error grows with it). fp64: both sides are double.
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

// One launch through the backend's launch step, output poisoned first.
template <class T>
std::vector<T> gpu_run(Mode m, const Built& b, const std::vector<std::vector<T>>& inputs, size_t out_n) {
  std::vector<TestDevMem> din;
  std::vector<const void*> ptrs;
  for (const auto& v : inputs) {
    din.push_back(to_device(v));
    ptrs.push_back(din.back().get());
  }
  TestDevMem dout(out_n * sizeof(T));
  device_fill_nan(dout.get(), out_n, sizeof(T) == 8);
  cuda_launch_layer(m, b.layer, b.in_shapes, ptrs, dout.get());
  device_synchronize(b.layer.name);
  return from_device<T>(dout, out_n);
}

// The CPU path of the mode and the GPU, same inputs; returns {cpu, gpu, gpu again, backend}.
template <class T>
std::vector<std::vector<T>> run_both(Mode m, const Built& b, const std::vector<Tensor>& in64) {
  std::vector<BasicTensor<T>> in;
  for (const Tensor& t : in64) {
    BasicTensor<T> x(t.shape);
    for (size_t i = 0; i < t.data.size(); ++i)
      x.data[i] = m == Mode::fp64 ? T(t.data[i]) : T(round_storage(m, static_cast<float>(t.data[i])));
    in.push_back(std::move(x));
  }
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
  // Run to run, and through the Backend interface: bitwise in every mode.
  const int64_t again = first_bit_difference(gpu, r[2]);
  EXPECT_EQ(again, -1) << "second launch differs at " << again;
  const int64_t backend = first_bit_difference(gpu, r[3]);
  EXPECT_EQ(backend, -1) << "Backend::forward differs from the launch at " << backend;
  const bool exact = m == Mode::strict || (regime == Regime::integers && c.exact_on_integers);
  if (m == Mode::strict) {
    const int64_t at = first_bit_difference(cpu, gpu);
    EXPECT_EQ(at, -1) << "strict GPU != CPU bitwise at " << at << ": cpu "
                      << (at >= 0 ? double(cpu[at]) : 0) << " gpu " << (at >= 0 ? double(gpu[at]) : 0);
    return;
  }
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

class KernelOp : public ::testing::TestWithParam<std::tuple<int, Mode>> {
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
    for (const Shape& s : b.in_shapes) in.push_back(g.tensor(s, -2, 2));
    if (m == Mode::fp64)
      check(m, c, regime, run_both<double>(m, b, in));
    else
      check(m, c, regime, run_both<float>(m, b, in));
  }
};

TEST_P(KernelOp, IntegersExact) { run(Regime::integers); }
TEST_P(KernelOp, RealWithinTolerance) { run(Regime::real); }

INSTANTIATE_TEST_SUITE_P(
    Kernels, KernelOp,
    ::testing::Combine(::testing::Range(0, static_cast<int>(cases().size())), ::testing::ValuesIn(kModes)),
    [](const ::testing::TestParamInfo<std::tuple<int, Mode>>& info) {
      return std::string(cases()[std::get<0>(info.param)].name) + "_" + mode_title(std::get<1>(info.param));
    });

// An op without a kernel (every op of the table has one now; a made-up op stands in for the
// next one added) says which layer and op, and where to go instead.
TEST(KernelBackend, OpWithoutKernelIsInputError) {
  DIVSCOPE_REQUIRE_GPU();
  Layer L;
  L.name = "test_no_kernel";
  L.op = "no_such_op";
  L.path = "/layers/0000";
  L.out_shape = {3};
  try {   // the launch step checks for a kernel before it touches a pointer
    cuda_launch_layer(Mode::fp32, L, {{2, 3}}, {nullptr}, nullptr);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA kernel for op 'no_such_op'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test_no_kernel"), std::string::npos) << e.what();
  }
}

// Without a device (or without CUDA) the backend cannot be made, and says why.
TEST(KernelBackend, NoDeviceIsRuntimeFault) {
  if (query_device().available) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_THROW(make_cuda_backend(), RuntimeFault);
}

}  // namespace
}  // namespace divscope
