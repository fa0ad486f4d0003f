// Kernel shapes that only real hardware can get wrong (issue "correct in the corners"), against
// the CPU path of every mode through the harness of kernel_test_util.h (output poisoned with NaN
// before each launch, two input regimes, strict bitwise, fp64 by the reference cross-check's
// rule, run-to-run and Backend bitwise):
//   - GEMMs of several tiles in both M and N (300 x 300: 3 x 3 tiles of the 128-wide float SIMT
//     kernel, 5 x 5 of the 64-wide fp64 one, several of the tensor-core tiles), K = 37 (not a
//     multiple of 4, 8 or 16: every k tile ends ragged) in both B layouts: linear (B = W [N, K],
//     k contiguous) and matmul (B [K, N], n contiguous).
//   - more than 65,535 of what a grid might put in gridDim.y/z: batched GEMM entries (the launcher
//     splits gridDim.z at 65,535), conv and conv_transpose groups (the same z), attention heads,
//     groupnorm rows, softmax lines, reduce outputs and pooled planes -- and more rows than the 2^20 blocks the
//     row kernels launch before looping inside a block.
//   - batch 1 in every op family.
// NaN/Inf inputs in every mode and op are in tests/test_strict_nan.cpp (NanInf/...). Without a
// device every test skips with the reason. Every grid of kernels/ was read for its limits: all
// are one-dimensional (gridDim.x up to 2^31 - 1, capped and grid-strided) except the GEMM
// family's gridDim.z, which gemm_common.cuh launches in chunks of 65,535.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "kernel_test_util.h"

namespace divscope {
namespace {

using namespace kernel_test;

Built conv(Gen& g, Shape x, Shape w, int64_t groups, Ints pad = {1, 1}) {
  return make("conv2d", {std::move(x)},
              {{"stride", Ints{1, 1}}, {"padding", pad}, {"dilation", Ints{1, 1}}, {"groups", groups}},
              {{"weight", g.tensor(w)}, {"bias", g.tensor({w[0]})}});
}

Built sdpa(Shape q, Shape k, Shape v, int64_t causal) {
  return make("scaled_dot_product_attention", {std::move(q), std::move(k), std::move(v)},
              {{"is_causal", causal}});
}

constexpr int64_t kOverZ = 65537;   // > 65,535, the largest gridDim.y / gridDim.z

const std::vector<OpCase>& cases() {
  static const std::vector<OpCase> all = {
      // ---- tiles in both M and N, ragged K, both B layouts ----
      {"Linear300x300K37", true, [](Gen& g) {
         return make("linear", {{300, 37}}, {}, {{"weight", g.tensor({300, 37})}, {"bias", g.tensor({300})}});
       }},
      {"Matmul300x300K37", true, [](Gen&) { return make("matmul", {{1, 300, 37}, {1, 37, 300}}); }},
      {"MatmulBatched300x300K37", true, [](Gen&) { return make("matmul", {{3, 300, 37}, {3, 37, 300}}); }},
      {"Linear300x300K1", true, [](Gen& g) {
         return make("linear", {{300, 1}}, {}, {{"weight", g.tensor({300, 1})}});
       }},
      {"Conv300Channels", true, [](Gen& g) { return conv(g, {1, 37, 17, 18}, {300, 37, 1, 1}, 1, {0, 0}); }},
      // ---- beyond 65,535 in one grid dimension ----
      {"MatmulBatch65537", true, [](Gen&) { return make("matmul", {{kOverZ, 2, 3}, {kOverZ, 3, 5}}); }},
      {"MatmulBroadcastBatch65537", true, [](Gen&) { return make("matmul", {{kOverZ, 2, 3}, {1, 3, 5}}); }},
      {"ConvGroups65537", true, [](Gen& g) { return conv(g, {1, kOverZ, 2, 2}, {kOverZ, 1, 1, 1}, kOverZ, {0, 0}); }},
      {"ConvTransposeGroups65537", true, [](Gen& g) {
         return make("conv_transpose2d", {{1, kOverZ, 1, 2}},
                     {{"stride", Ints{1, 1}}, {"padding", Ints{0, 0}}, {"output_padding", Ints{0, 0}},
                      {"dilation", Ints{1, 1}}, {"groups", kOverZ}},
                     {{"weight", g.tensor({kOverZ, 1, 1, 2})}});
       }},
      {"SdpaHeads65537", false, [](Gen&) { return sdpa({kOverZ, 1, 2, 4}, {kOverZ, 1, 3, 4}, {kOverZ, 1, 3, 2}, 0); }},
      {"GroupNormRows80000", false, [](Gen&) {
         return make("groupnorm", {{2, 80000, 1}}, {{"num_groups", int64_t{40000}}, {"eps", 1e-5}});
       }},
      {"SoftmaxLines70000", false, [](Gen&) { return make("softmax", {{70000, 3}}, {{"axis", int64_t{-1}}}); }},
      {"LayerNormRowsOver2Pow20", false, [](Gen&) {
         return make("layernorm", {{(int64_t(1) << 20) + 3, 2}}, {{"normalized_shape", Ints{2}}, {"eps", 1e-5}});
       }},
      {"ReduceSumOutputs65537", true, [](Gen&) {
         return make("reduce_sum", {{kOverZ, 5}}, {{"axes", Ints{1}}, {"keepdim", int64_t{0}}});
       }},
      {"GlobalAvgPoolPlanes70000", true, [](Gen&) { return make("global_avgpool2d", {{kOverZ, 1, 2, 2}}); }},
      // ---- batch 1 ----
      {"LinearBatch1", true, [](Gen& g) {
         return make("linear", {{1, 37}}, {}, {{"weight", g.tensor({300, 37})}, {"bias", g.tensor({300})}});
       }},
      {"MatmulBatch1", true, [](Gen&) { return make("matmul", {{1, 1, 7}, {1, 7, 3}}); }},
      {"ConvBatch1", true, [](Gen& g) { return conv(g, {1, 3, 9, 11}, {5, 3, 3, 3}, 1); }},
      {"LayerNormBatch1", false, [](Gen& g) {
         return make("layernorm", {{1, 300}}, {{"normalized_shape", Ints{300}}, {"eps", 1e-5}},
                     {{"weight", g.tensor({300})}, {"bias", g.tensor({300})}});
       }},
      {"GroupNormBatch1", false, [](Gen&) {
         return make("groupnorm", {{1, 6, 50}}, {{"num_groups", int64_t{3}}, {"eps", 1e-5}});
       }},
      {"SoftmaxBatch1", false, [](Gen&) { return make("softmax", {{1, 5}}, {{"axis", int64_t{-1}}}); }},
      {"SdpaBatch1", false, [](Gen&) { return sdpa({1, 1, 1, 4}, {1, 1, 3, 4}, {1, 1, 3, 2}, 1); }},
      {"ReduceMaxBatch1", true, [](Gen&) {
         return make("reduce_max", {{1, 700}}, {{"axes", Ints{1}}, {"keepdim", int64_t{1}}});
       }},
      {"AvgPoolBatch1", true, [](Gen&) {
         return make("avgpool2d", {{1, 1, 5, 5}}, {{"kernel_size", Ints{3, 3}}, {"stride", Ints{2, 2}}, {"padding", Ints{1, 1}}});
       }},
  };
  return all;
}

class KernelCorner : public ::testing::TestWithParam<std::tuple<int, Mode>> {
 protected:
  void run(Regime regime) {
    DIVSCOPE_REQUIRE_GPU();
    run_case(cases()[std::get<0>(GetParam())], std::get<1>(GetParam()), regime);
  }
};

TEST_P(KernelCorner, IntegersExact) { run(Regime::integers); }
TEST_P(KernelCorner, RealWithinTolerance) { run(Regime::real); }

INSTANTIATE_TEST_SUITE_P(
    KernelsCorners, KernelCorner,
    ::testing::Combine(::testing::Range(0, static_cast<int>(cases().size())), ::testing::ValuesIn(kModes)),
    [](const ::testing::TestParamInfo<std::tuple<int, Mode>>& info) {
      return std::string(cases()[std::get<0>(info.param)].name) + "_" + mode_title(std::get<1>(info.param));
    });

// The statistics pass over more than 65,535 samples (one segment each): the per-sample stats of
// the device equal the CPU's counts.
TEST(KernelCornerCompare, PerSampleOver65535Samples) {
  DIVSCOPE_REQUIRE_GPU();
  const Shape shape{kOverZ, 3};
  Gen g{Regime::real, std::mt19937_64(seed_of("compare 65537"))};
  const Tensor ref = g.tensor(shape);
  TensorF cand(shape);
  for (size_t i = 0; i < ref.data.size(); ++i) cand.data[i] = static_cast<float>(ref.data[i]);
  cand.data[3 * 70000 / 2] = 1e3f;   // one sample far off (sample 35000)
  CompareOptions opt;
  opt.atol = 1e-3;
  auto dc = to_device(cand.data);
  auto dr = to_device(ref.data);
  const std::vector<LayerStats> dev = compare_device_per_sample(
      Mode::fp32, static_cast<const float*>(dc.get()), static_cast<const double*>(dr.get()), shape, opt, "test");
  ASSERT_EQ(dev.size(), static_cast<size_t>(kOverZ));
  int64_t mism = 0;
  for (const LayerStats& s : dev) mism += s.mismatch;
  EXPECT_EQ(mism, 1);
  EXPECT_EQ(dev[35000].mismatch, 1);
  EXPECT_EQ(dev[kOverZ - 1].count, 3);
}

}  // namespace
}  // namespace divscope
