// The model format v2 ops' kernels (notes/new_ops_contract.md) against the CPU path of the same
// mode, in the style of tests/test_kernels_ops2.cpp (STYLE 3, 9, 10): hardtanh, hardswish,
// hardsigmoid, sqrt, rsqrt, exp, log, abs, neg, erf, sub, div, pow, maximum, minimum, where,
// reduce_mean/sum/max, concat, slice, expand, adaptive_avgpool2d. Each case runs through
// cuda_launch_layer with the output poisoned (NaN), on ragged shapes, in two regimes:
//   integers: small non-zero integers; ops built from IEEE-exact steps (selections, + - * / sqrt,
//             copies, the sums of reductions and pools) must equal the CPU value in every mode;
//             exp, log, erf and pow use the tolerance.
//   real:     uniform random values, compared with the mode's tolerance (README, What divscope run computes).
// Every input also holds NaN, +Inf and -Inf at seeded positions (docs/ops.md, Precision modes:
// NaN: strict outputs carry one NaN pattern on both sides and are compared bit for bit). Binary ops, where and expand get a
// constant operand of batch 1 (broadcast over the batch). strict is bitwise equal to the CPU
// strict path in both regimes (docs/ops.md, Precision modes: strict reductions), and every mode is bitwise equal to itself across two
// launches and through the Backend interface. Without a device every test skips with the reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <tuple>

#include "kernel_test_util.h"

namespace divscope {
namespace {

using namespace kernel_test;

constexpr double kInf = std::numeric_limits<double>::infinity();

// NaN, +Inf, -Inf at three seeded positions of t's first sample (tensors of at least 8
// elements), so that the later samples of a reduction or a pool keep finite outputs.
void add_specials(Gen& g, Tensor& t) {
  if (t.data.size() < 8) return;
  const size_t sample = t.data.size() / static_cast<size_t>(t.shape[0]);
  std::uniform_int_distribution<size_t> pos(0, std::max<size_t>(sample, 8) - 1);
  for (double v : {std::nan(""), kInf, -kInf}) t.data[pos(g.rng)] = v;
}

// Default inputs (g.tensor per input shape) with the specials added; `positive` takes |x| first
// (sqrt, rsqrt, log: the specials and one -1 and one 0 still reach the edges of the domain).
std::function<std::vector<Tensor>(Gen&, const Built&)> with_specials(bool positive = false) {
  return [positive](Gen& g, const Built& b) {
    std::vector<Tensor> in;
    for (const Shape& s : b.in_shapes) {
      Tensor t = g.tensor(s, -2, 2);
      if (positive) {
        for (double& v : t.data) v = std::fabs(v);
        if (t.data.size() >= 8) {
          t.data[1] = -1;
          t.data[2] = 0;
        }
      }
      add_specials(g, t);
      in.push_back(std::move(t));
    }
    return in;
  };
}

// where: cond is 0 (about half), non-zero or NaN; a and b as usual.
std::vector<Tensor> where_inputs(Gen& g, const Built& b) {
  std::vector<Tensor> in = with_specials()(g, b);
  std::uniform_int_distribution<int> coin(0, 1);
  for (double& v : in[0].data)
    if (coin(g.rng)) v = 0;
  return in;
}

// pow: the exponents with strict short forms (2, 0.5, 1, 3, -1, 0), other integers (sign rules
// for a < 0) and fractions (NaN for a < 0), plus the specials in both operands.
std::vector<Tensor> pow_inputs(Gen& g, const Built& b) {
  std::vector<Tensor> in = with_specials()(g, b);
  static const double kExp[] = {2, 0.5, 1, 3, -1, 0, 4, -2, 1.5, -0.75, 2.25};
  std::uniform_int_distribution<size_t> pick(0, std::size(kExp) - 1);
  for (double& v : in[1].data)
    if (std::isfinite(v)) v = kExp[pick(g.rng)];
  return in;
}

Built unary_op(const char* op, Shape x = {3, 37, 5}) { return make(op, {std::move(x)}); }

Built reduce_op(const char* op, Shape x, Ints axes, int64_t keepdim) {
  return make(op, {std::move(x)}, {{"axes", axes}, {"keepdim", keepdim}});
}

Built adaptive(Shape x, Ints out) {
  return make("adaptive_avgpool2d", {std::move(x)}, {{"output_size", out}});
}

const std::vector<OpCase>& cases() {
  static const std::vector<OpCase> all = {
      // ---- unary math ----
      {"Hardtanh", true, [](Gen&) {
         return make("hardtanh", {{3, 37, 5}}, {{"min_val", -1.5}, {"max_val", 2.0}});
       }, with_specials()},
      {"Relu6", true, [](Gen&) {
         return make("hardtanh", {{2, 300}}, {{"min_val", 0.0}, {"max_val", 6.0}});
       }, with_specials()},
      {"Hardswish", true, [](Gen&) { return unary_op("hardswish"); }, with_specials()},
      {"Hardsigmoid", true, [](Gen&) { return unary_op("hardsigmoid"); }, with_specials()},
      {"Sqrt", true, [](Gen&) { return unary_op("sqrt"); }, with_specials(true)},
      {"Rsqrt", true, [](Gen&) { return unary_op("rsqrt"); }, with_specials(true)},
      {"Exp", false, [](Gen&) { return unary_op("exp"); }, with_specials()},
      {"Log", false, [](Gen&) { return unary_op("log"); }, with_specials(true)},
      {"Abs", true, [](Gen&) { return unary_op("abs"); }, with_specials()},
      {"Neg", true, [](Gen&) { return unary_op("neg"); }, with_specials()},
      {"Erf", false, [](Gen&) { return unary_op("erf", {2, 5, 77}); }, with_specials()},
      // ---- binary (a constant of batch 1 in the broadcast cases) ----
      {"Sub", true, [](Gen&) { return make("sub", {{2, 3, 5, 7}, {2, 3, 5, 7}}); }, with_specials()},
      {"SubConstant", true, [](Gen&) { return make("sub", {{1, 3, 1, 7}, {4, 3, 5, 7}}); },
       with_specials()},
      {"Div", true, [](Gen&) { return make("div", {{2, 1, 5, 1}, {2, 3, 1, 7}}); }, with_specials()},
      {"DivConstant", true, [](Gen&) { return make("div", {{3, 4, 9}, {1, 1, 9}}); }, with_specials()},
      {"Pow", false, [](Gen&) { return make("pow", {{2, 3, 41}, {2, 3, 41}}); }, pow_inputs},
      {"PowConstantExponent", false, [](Gen&) { return make("pow", {{3, 5, 11}, {1, 5, 1}}); },
       pow_inputs},
      {"Maximum", true, [](Gen&) { return make("maximum", {{2, 3, 5, 7}, {2, 3, 5, 7}}); },
       with_specials()},
      {"MinimumConstant", true, [](Gen&) { return make("minimum", {{1, 3, 1}, {5, 3, 13}}); },
       with_specials()},
      {"Where", true, [](Gen&) { return make("where", {{2, 3, 5, 7}, {2, 3, 5, 7}, {2, 3, 5, 7}}); },
       where_inputs},
      {"WhereBroadcast", true, [](Gen&) {   // cond per sample, a a constant, b per sample
         return make("where", {{3, 1, 9}, {1, 4, 9}, {3, 4, 1}});
       }, where_inputs},
      // ---- reductions: R < 256 (one thread per output), R >= 256 (one block), axes apart ----
      {"ReduceSumLast", true, [](Gen&) { return reduce_op("reduce_sum", {3, 5, 7}, {2}, 0); },
       with_specials()},
      {"ReduceSumMiddleKeep", true, [](Gen&) { return reduce_op("reduce_sum", {2, 40, 9}, {1}, 1); },
       with_specials()},
      {"ReduceSumWide", true, [](Gen&) { return reduce_op("reduce_sum", {2, 3, 700}, {-1}, 0); },
       with_specials()},
      {"ReduceSumApartWide", true, [](Gen&) {   // R = 30 * 11 = 330, not contiguous
         return reduce_op("reduce_sum", {2, 30, 5, 11}, {1, 3}, 0);
       }, with_specials()},
      {"ReduceMeanTwoAxes", true, [](Gen&) { return reduce_op("reduce_mean", {3, 4, 6, 5}, {2, 3}, 1); },
       with_specials()},
      {"ReduceMeanApart", true, [](Gen&) {   // R = 17 * 9 = 153
         return reduce_op("reduce_mean", {2, 17, 4, 9}, {-1, 1}, 0);
       }, with_specials()},
      {"ReduceMeanWide", true, [](Gen&) { return reduce_op("reduce_mean", {2, 300, 3}, {1}, 0); },
       with_specials()},
      {"ReduceMaxLast", true, [](Gen&) { return reduce_op("reduce_max", {3, 5, 13}, {2}, 0); },
       with_specials()},
      {"ReduceMaxWideKeep", true, [](Gen&) {
         return reduce_op("reduce_max", {2, 3, 20, 31}, {2, 3}, 1);
       }, with_specials()},
      {"ReduceMaxApart", true, [](Gen&) { return reduce_op("reduce_max", {2, 7, 3, 5}, {1, 3}, 0); },
       with_specials()},
      // ---- data movement ----
      {"Concat", true, [](Gen&) {
         return make("concat", {{2, 3, 5}, {2, 4, 5}, {2, 1, 5}}, {{"axis", int64_t{1}}});
       }, with_specials()},
      {"ConcatLastAxis", true, [](Gen&) {
         return make("concat", {{2, 3, 5}, {2, 3, 2}}, {{"axis", int64_t{-1}}});
       }, with_specials()},
      {"ConcatOne", true, [](Gen&) { return make("concat", {{3, 4, 7}}, {{"axis", int64_t{2}}}); },
       with_specials()},
      {"Slice", true, [](Gen&) {
         return make("slice", {{2, 10, 7}},
                     {{"axis", int64_t{1}}, {"start", int64_t{1}}, {"end", int64_t{9}}, {"step", int64_t{3}}});
       }, with_specials()},
      {"SliceLast", true, [](Gen&) {
         return make("slice", {{3, 4, 11}},
                     {{"axis", int64_t{-1}}, {"start", int64_t{2}}, {"end", int64_t{11}}});
       }, with_specials()},
      {"ExpandConstantLike", true, [](Gen&) {   // a constant expanded to the batch of `like`
         return make("expand", {{1, 3, 1}, {4, 5}}, {{"shape", Ints{3, 6}}});
       }, with_specials()},
      {"Expand", true, [](Gen&) { return make("expand", {{2, 1, 5}}, {{"shape", Ints{4, -1}}}); },
       with_specials()},
      // ---- adaptive_avgpool2d ----
      {"AdaptiveAvgPool", true, [](Gen&) { return adaptive({2, 3, 7, 9}, {3, 4}); }, with_specials()},
      {"AdaptiveAvgPoolUp", true, [](Gen&) { return adaptive({1, 2, 5, 5}, {7, 3}); },
       with_specials()},
      {"AdaptiveAvgPoolGlobal", true, [](Gen&) {   // 40 x 33 = 1320 > 256 lanes per window
         return adaptive({2, 2, 40, 33}, {1, 1});
       }, with_specials()},
  };
  return all;
}

class KernelV2Op : public ::testing::TestWithParam<std::tuple<int, Mode>> {
 protected:
  void run(Regime regime) {
    DIVSCOPE_REQUIRE_GPU();
    run_case(cases()[std::get<0>(GetParam())], std::get<1>(GetParam()), regime);
  }
};

TEST_P(KernelV2Op, IntegersExact) { run(Regime::integers); }
TEST_P(KernelV2Op, RealWithinTolerance) { run(Regime::real); }

INSTANTIATE_TEST_SUITE_P(
    KernelsV2, KernelV2Op,
    ::testing::Combine(::testing::Range(0, static_cast<int>(cases().size())), ::testing::ValuesIn(kModes)),
    [](const ::testing::TestParamInfo<std::tuple<int, Mode>>& info) {
      return std::string(cases()[std::get<0>(info.param)].name) + "_" + mode_title(std::get<1>(info.param));
    });

// neg and abs touch only the sign bit (neg(+0) = -0, abs(-0) = +0): bitwise with the CPU in every
// mode, zeros included (the tolerance check above cannot tell -0 from +0).
TEST(KernelV2Sign, NegAbsBitwiseOnZeros) {
  DIVSCOPE_REQUIRE_GPU();
  for (const char* op : {"neg", "abs"}) {
    const Built b = make(op, {{2, 6}});
    Tensor x(b.in_shapes[0]);
    x.data = {0.0, -0.0, 1.5, -2.0, kInf, -kInf, std::nan(""), 3.0, -0.0, 0.0, 1e-30, -7.25};
    for (Mode m : kModes) {
      SCOPED_TRACE(std::string(op) + " " + mode_name(m));
      if (m == Mode::fp64) {
        const auto r = run_both<double>(m, b, {x});
        EXPECT_EQ(first_difference_nan_equal(r[0], r[1]), -1);
      } else {
        const auto r = run_both<float>(m, b, {x});
        EXPECT_EQ(first_difference_nan_equal(r[0], r[1]), -1);
      }
    }
  }
}

}  // namespace
}  // namespace divscope
