// Every kernel against the CPU path of the same mode (STYLE 3, 9, 10): relu, gelu, add, batchnorm,
// layernorm, softmax, log_softmax, maxpool2d, flatten, and the GEMM family (linear, matmul,
// conv2d) from kernels/gemm.cu and conv.cu. Each case runs through cuda_launch_layer -- the CUDA
// backend's own launch step -- with the output poisoned (NaN) before every launch, on ragged
// shapes (nothing a multiple of a tile; K = 1; K = 1500; D = 3000 > 256 lanes), in two regimes:
//   integers: small non-zero integers. For ops whose result is then exact (relu, add, pools,
//             flatten, batchnorm with a power-of-two denominator, the GEMMs: sums of small
//             products stay below 2^24) every mode must equal the CPU value exactly; ops with a
//             transcendental or a division (gelu, softmax, layernorm) use the tolerance.
//   real:     uniform random values, compared with the mode's tolerance (README, What divscope run computes) -- the GPU and
//             the CPU round the same operations in another order or with another libm.
// strict is bitwise equal to the CPU strict path in both regimes (docs/ops.md, Precision modes: strict reductions), fp64
// to the CPU reference wherever the op calls no libm function (docs/ops.md, FP64 on a device),
// and every mode is bitwise equal to itself across two launches and through the Backend interface.
// Without a device every test skips with the reason.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "backends/backend.h"
#include "backends/cuda_backend.h"
#include "errors.h"
#include "kernel_test_util.h"
#include "graph/ops.h"
#include "reference/modes.h"
#include "reference/reference.h"

namespace divscope {
namespace {

using namespace kernel_test;

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

class KernelOp : public ::testing::TestWithParam<std::tuple<int, Mode>> {
 protected:
  void run(Regime regime) {
    DIVSCOPE_REQUIRE_GPU();
    run_case(cases()[std::get<0>(GetParam())], std::get<1>(GetParam()), regime);
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
