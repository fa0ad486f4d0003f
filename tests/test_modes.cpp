// The CPU path of every precision mode (docs/ops.md, Precision modes): exact on small integers, within the mode's
// rounding on real values, and the rounding rules themselves visible where they must be.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "graph/model.h"
#include "reference/modes.h"
#include "reference/reference.h"
#include "strict_math.h"
#include "mode_test_util.h"

using namespace divscope;
using divscope::testing::bound;
using divscope::testing::rel_l2;

namespace {

const Mode kModes[] = {Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict};

struct Case {
  Model model;
  std::vector<Tensor> inputs;   // full tensors
};

// One layer over graph inputs with the given per-sample shapes; batch n.
Case make_case(const std::string& op, std::vector<Shape> in_shapes, int64_t n,
               std::map<std::string, AttrValue> attrs, std::map<std::string, Shape> params,
               unsigned seed, bool small_ints) {
  Case c;
  c.model.file = "test";
  c.model.name = "t";
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> ints(-3, 3);
  std::uniform_real_distribution<double> reals(-1.0, 1.0);
  auto value = [&]() {
    double v = small_ints ? ints(rng) : reals(rng);
    return v == 0 ? 1.0 : v;   // non-zero everywhere
  };
  Layer l;
  l.name = "layer";
  l.op = op;
  l.path = "/layers/0000";
  for (size_t i = 0; i < in_shapes.size(); ++i) {
    std::string name = "in" + std::to_string(i);
    c.model.inputs.push_back({name, in_shapes[i], "float32"});
    l.inputs.push_back(name);
    Shape full{n};
    full.insert(full.end(), in_shapes[i].begin(), in_shapes[i].end());
    Tensor t(full);
    for (double& v : t.data) v = value();
    c.inputs.push_back(t);
  }
  l.attrs = std::move(attrs);
  for (auto& [k, s] : params) {
    Tensor t(s);
    for (double& v : t.data) v = value();
    l.params[k] = t;
  }
  c.model.layers.push_back(l);
  validate_and_infer(c.model);
  return c;
}

Tensor fp64(const Case& c) {
  std::vector<const Tensor*> in;
  for (const Tensor& t : c.inputs) in.push_back(&t);
  Tensor out;
  reference_forward(c.model.layers[0], in, out);
  return out;
}

TensorF run_mode(const Case& c, Mode m) {
  std::vector<TensorF> fin;
  for (const Tensor& t : c.inputs) {
    TensorF f(t.shape);
    for (int64_t i = 0; i < t.size(); ++i) f.data[i] = round_storage(m, static_cast<float>(t.data[i]));
    fin.push_back(f);
  }
  std::vector<const TensorF*> in;
  for (const TensorF& t : fin) in.push_back(&t);
  TensorF out;
  mode_forward(m, c.model.layers[0], in, out);
  return out;
}

std::vector<std::pair<std::string, Case>> cases(bool small_ints) {
  const std::vector<int64_t> two{2, 2}, one{1, 1}, zero{0, 0};
  std::vector<std::pair<std::string, Case>> v;
  unsigned s = small_ints ? 100 : 200;
  v.push_back({"linear", make_case("linear", {{5, 37}}, 3, {}, {{"weight", {13, 37}}, {"bias", {13}}}, s++, small_ints)});
  v.push_back({"linear_k1", make_case("linear", {{1}}, 2, {}, {{"weight", {7, 1}}}, s++, small_ints)});
  v.push_back({"matmul", make_case("matmul", {{4, 9}, {9, 6}}, 2, {}, {}, s++, small_ints)});
  v.push_back({"conv2d", make_case("conv2d", {{4, 9, 7}}, 2,
                                   {{"stride", two}, {"padding", one}, {"dilation", one}, {"groups", int64_t(2)}},
                                   {{"weight", {6, 2, 3, 2}}, {"bias", {6}}}, s++, small_ints)});
  v.push_back({"add", make_case("add", {{3, 4}, {3, 1}}, 2, {}, {}, s++, small_ints)});
  v.push_back({"relu", make_case("relu", {{17}}, 3, {}, {}, s++, small_ints)});
  v.push_back({"maxpool2d", make_case("maxpool2d", {{2, 7, 5}}, 2,
                                      {{"kernel_size", two}, {"stride", two}, {"padding", one}, {"ceil_mode", int64_t(1)}},
                                      {}, s++, small_ints)});
  v.push_back({"flatten", make_case("flatten", {{2, 3, 4}}, 2, {}, {}, s++, small_ints)});
  return v;
}

}  // namespace

// Small integers: every product and sum is exact in float and every value representable in
// fp16/bf16/tf32, so every mode must equal the FP64 reference bit for bit (indexing bugs cannot
// hide behind a tolerance).
TEST(Modes, SmallIntegersExactInEveryMode) {
  for (auto& [name, c] : cases(true)) {
    Tensor ref = fp64(c);
    double norm = 0;
    for (double v : ref.data) norm += v * v;
    ASSERT_GT(norm, 0) << name;
    for (Mode m : kModes) {
      SCOPED_TRACE(name + " " + mode_name(m));
      TensorF out = run_mode(c, m);
      ASSERT_EQ(out.shape, ref.shape);
      for (int64_t i = 0; i < ref.size(); ++i) ASSERT_EQ(double(out.data[i]), ref.data[i]) << "at " << i;
    }
  }
}

TEST(Modes, RealValuesWithinTheModesRounding) {
  for (auto& [name, c] : cases(false)) {
    Tensor ref = fp64(c);
    for (Mode m : kModes) {
      SCOPED_TRACE(name + " " + mode_name(m) + " (seed in make_case: 200+)");
      TensorF out = run_mode(c, m);
      EXPECT_LE(rel_l2(out, ref), bound(m));
      if (m == Mode::fp16 || m == Mode::bf16) {
        for (float v : out.data) ASSERT_EQ(v, round_storage(m, v)) << "output not in storage format";
      }
    }
  }
}

// tf32 rounds each GEMM operand (10 mantissa bits, ties away): 1 + 2^-12 becomes 1, and
// 1 + 2^-11 (a tie) rounds away to 1 + 2^-10; fp32 keeps both.
TEST(Modes, Tf32RoundsGemmOperandsOnly) {
  Case c = make_case("linear", {{2}}, 1, {}, {{"weight", {1, 2}}}, 1, true);
  c.inputs[0].data = {1 + std::ldexp(1.0, -12), 1 + std::ldexp(1.0, -11)};
  c.model.layers[0].params["weight"].data = {1.0, 1.0};
  EXPECT_EQ(run_mode(c, Mode::tf32).data[0], 2.0f + std::ldexp(1.0f, -10));
  EXPECT_EQ(run_mode(c, Mode::fp32).data[0], float(2 + std::ldexp(1.0, -12) + std::ldexp(1.0, -11)));
  // Elementwise ops see no operand rounding in tf32.
  Case r = make_case("relu", {{1}}, 1, {}, {}, 1, true);
  r.inputs[0].data = {1 + std::ldexp(1.0, -12)};
  EXPECT_EQ(run_mode(r, Mode::tf32).data[0], float(1 + std::ldexp(1.0, -12)));
}

// fp16 storage: results past 65504 overflow to +inf; bf16 keeps them finite.
TEST(Modes, Fp16OverflowsWhereBf16DoesNot) {
  Case c = make_case("linear", {{1}}, 1, {}, {{"weight", {1, 1}}}, 1, true);
  c.inputs[0].data = {300.0};
  c.model.layers[0].params["weight"].data = {300.0};
  EXPECT_TRUE(std::isinf(run_mode(c, Mode::fp16).data[0]));
  EXPECT_EQ(run_mode(c, Mode::bf16).data[0], round_bf16(90000.0f));
}

// strict linear is the shared strict_dot + strict_bias per output, bit for bit.
TEST(Modes, StrictLinearIsStrictDotPlusBias) {
  Case c = make_case("linear", {{300}}, 2, {}, {{"weight", {5, 300}}, {"bias", {5}}}, 7, false);
  TensorF out = run_mode(c, Mode::strict);
  const Layer& l = c.model.layers[0];
  std::vector<float> x(c.inputs[0].data.begin(), c.inputs[0].data.end());
  std::vector<float> w(l.params.at("weight").data.begin(), l.params.at("weight").data.end());
  for (int n = 0; n < 2; ++n)
    for (int o = 0; o < 5; ++o) {
      float acc = 0.0f;
      for (int k = 0; k < 300; ++k) acc = std::fma(x[n * 300 + k], w[o * 300 + k], acc);
      float want = strict_bias(acc, static_cast<float>(l.params.at("bias").data[o]));
      ASSERT_EQ(out.data[n * 5 + o], want) << "sample " << n << " output " << o;
    }
}

// strict softmax sums in the 256-lane tree: it equals the shared row functions exactly.
TEST(Modes, StrictSoftmaxUsesTheLaneTree) {
  Case c = make_case("softmax", {{1000}}, 1, {{"axis", int64_t(-1)}}, {}, 9, false);
  TensorF out = run_mode(c, Mode::strict);
  std::vector<float> x(c.inputs[0].data.begin(), c.inputs[0].data.end());
  const float m = strict_row_max(x.data(), 1000);
  const float s = strict_softmax_sum(x.data(), 1000, 1, m);
  for (int i = 0; i < 1000; ++i)
    ASSERT_EQ(out.data[i], strict_softmax_elem(strict_softmax_exp(x[i], m), s)) << i;
}
