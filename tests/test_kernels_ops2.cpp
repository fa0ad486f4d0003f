// The second op set's kernels against the CPU path of the same mode, in the style of
// tests/test_kernels.cpp (STYLE 3, 9, 10): conv_transpose2d, groupnorm, rmsnorm, leaky_relu, silu,
// sigmoid, tanh, mul, avgpool2d, global_avgpool2d, upsample_nearest2d, reshape, permute,
// embedding, scaled_dot_product_attention. Each case runs through cuda_launch_layer with the
// output poisoned (NaN), on ragged shapes, in two regimes:
//   integers: small non-zero integers; ops whose result is then exact (mul, leaky_relu, pools --
//             the same exact sum divided by the same divisor --, copies, gathers, the transposed
//             convolution's sums) must equal the CPU value in every mode; ops with a
//             transcendental, a square root or a softmax use the tolerance.
//   real:     uniform random values, compared with the mode's tolerance (README, What divscope run computes).
// strict is bitwise equal to the CPU strict path in both regimes (docs/ops.md, Precision modes: strict reductions), and every mode is
// bitwise equal to itself across two launches and through the Backend interface. Bad embedding
// indices are an InputError naming the layer. Without a device every test skips with the reason.
// The harness is test_kernels.cpp's, in kernel_test_util.h (same seeds, tolerances and checks).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
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

class KernelOp2 : public ::testing::TestWithParam<std::tuple<int, Mode>> {
 protected:
  void run(Regime regime) {
    DIVSCOPE_REQUIRE_GPU();
    run_case(cases()[std::get<0>(GetParam())], std::get<1>(GetParam()), regime);
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
