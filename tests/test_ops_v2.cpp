// The model-format-v2 ops (notes/new_ops_contract.md) beyond their FP64 oracle
// (test_reference.cpp): every mode's CPU path against the FP64 reference, the strict path equal
// to its strict_math.h formula bit for bit (NaN/Inf included), and one-line attribute errors
// that name the layer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "errors.h"
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
  std::vector<Tensor> inputs;   // full tensors; batch 1 where `batches` said so
};

enum class Fill { SmallInts, Reals, Positive };

// One layer over graph inputs with full shapes `shapes` (a batch of 1 is a v2 constant operand).
Case make_case(const std::string& op, const std::vector<Shape>& shapes,
               std::map<std::string, AttrValue> attrs, unsigned seed, Fill fill) {
  Case c;
  c.model.file = "test";
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> ints(-3, 3);
  std::uniform_real_distribution<double> reals(-2.0, 2.0);
  Layer l;
  l.name = op + "_layer";
  l.op = op;
  l.path = "/layers/0000";
  for (size_t i = 0; i < shapes.size(); ++i) {
    const std::string name = "in" + std::to_string(i);
    GraphInput gi;
    gi.name = name;
    gi.shape = Shape(shapes[i].begin() + 1, shapes[i].end());
    gi.dtype = "float32";
    c.model.inputs.push_back(gi);
    l.inputs.push_back(name);
    Tensor t(shapes[i]);
    for (double& v : t.data) {
      v = fill == Fill::SmallInts ? ints(rng) : reals(rng);
      if (fill == Fill::Positive) v = std::fabs(v) + 0.25;
      if (v == 0) v = 1;   // non-zero everywhere (the where condition gets zeros below)
    }
    c.inputs.push_back(t);
  }
  l.attrs = std::move(attrs);
  c.model.layers.push_back(l);
  validate_and_infer(c.model);
  if (op == "where")
    for (size_t i = 0; i < c.inputs[0].data.size(); i += 3) c.inputs[0].data[i] = 0;
  return c;
}

Tensor fp64(const Case& c) {
  std::vector<const Tensor*> in;
  for (const Tensor& t : c.inputs) in.push_back(&t);
  Tensor out;
  reference_forward(c.model.layers[0], in, out);
  return out;
}

std::vector<TensorF> mode_inputs(const Case& c, Mode m) {
  std::vector<TensorF> fin;
  for (const Tensor& t : c.inputs) {
    TensorF f(t.shape);
    for (int64_t i = 0; i < t.size(); ++i) f.data[i] = round_storage(m, static_cast<float>(t.data[i]));
    fin.push_back(f);
  }
  return fin;
}

TensorF run_mode(const Case& c, Mode m) {
  std::vector<TensorF> fin = mode_inputs(c, m);
  std::vector<const TensorF*> in;
  for (const TensorF& t : fin) in.push_back(&t);
  TensorF out;
  mode_forward(m, c.model.layers[0], in, out);
  return out;
}

using Attrs = std::map<std::string, AttrValue>;
using Ints = std::vector<int64_t>;

struct OpCase {
  std::string name, op;
  std::vector<Shape> shapes;
  Attrs attrs;
  bool exact_on_ints;   // every value stays a small integer: every mode equals FP64 exactly
  Fill reals = Fill::Reals;
};

std::vector<OpCase> op_cases() {
  const Attrs none;
  return {
      {"hardtanh", "hardtanh", {{2, 3, 7}}, {{"min_val", -1.0}, {"max_val", 2.0}}, true},
      {"hardswish", "hardswish", {{2, 3, 7}}, none, false},
      {"hardsigmoid", "hardsigmoid", {{2, 3, 7}}, none, false},
      {"sqrt", "sqrt", {{2, 11}}, none, false, Fill::Positive},
      {"rsqrt", "rsqrt", {{2, 11}}, none, false, Fill::Positive},
      {"exp", "exp", {{2, 11}}, none, false},
      {"log", "log", {{2, 11}}, none, false, Fill::Positive},
      {"abs", "abs", {{2, 11}}, none, true},
      {"neg", "neg", {{2, 11}}, none, true},
      {"erf", "erf", {{2, 11}}, none, false},
      {"sub_batch1", "sub", {{3, 4, 5}, {1, 4, 1}}, none, true},
      {"div", "div", {{2, 4, 5}, {2, 1, 5}}, none, false},
      {"pow", "pow", {{2, 4, 5}, {1, 4, 5}}, none, false, Fill::Positive},
      {"maximum", "maximum", {{3, 4, 5}, {1, 4, 5}}, none, true},
      {"minimum", "minimum", {{3, 4, 5}, {3, 1, 5}}, none, true},
      {"where", "where", {{3, 4, 5}, {1, 4, 5}, {3, 4, 1}}, none, true},
      {"reduce_sum", "reduce_sum", {{2, 3, 7, 3}}, {{"axes", Ints{2, 1}}}, true},   // |sum| <= 63: bf16-exact
      {"reduce_sum_long", "reduce_sum", {{2, 5, 300, 3}}, {{"axes", Ints{2, 1}}}, false},
      {"reduce_mean", "reduce_mean", {{2, 7, 9}}, {{"axes", Ints{-1}}, {"keepdim", int64_t(1)}}, false},
      {"reduce_max", "reduce_max", {{2, 7, 9}}, {{"axes", Ints{1, 2}}}, true},
      {"concat", "concat", {{2, 3, 4}, {2, 5, 4}}, {{"axis", int64_t(-2)}}, true},
      {"slice", "slice", {{2, 3, 11}}, {{"axis", int64_t(2)}, {"start", int64_t(1)}, {"end", int64_t(10)}, {"step", int64_t(4)}}, true},
      {"expand", "expand", {{1, 3, 1}, {4, 2}}, {{"shape", Ints{3, 5}}}, true},
      {"adaptive_avgpool2d", "adaptive_avgpool2d", {{2, 3, 7, 10}}, {{"output_size", Ints{3, 4}}}, false},
  };
}

}  // namespace

TEST(OpsV2Modes, SmallIntegersExactInEveryMode) {
  unsigned seed = 300;
  for (const OpCase& oc : op_cases()) {
    if (!oc.exact_on_ints) continue;
    Case c = make_case(oc.op, oc.shapes, oc.attrs, seed++, Fill::SmallInts);
    Tensor ref = fp64(c);
    double norm = 0;
    for (double v : ref.data) norm += v * v;
    ASSERT_GT(norm, 0) << oc.name;
    for (Mode m : kModes) {
      SCOPED_TRACE(oc.name + " " + mode_name(m) + " seed " + std::to_string(seed - 1));
      TensorF out = run_mode(c, m);
      ASSERT_EQ(out.shape, ref.shape);
      for (int64_t i = 0; i < ref.size(); ++i) ASSERT_EQ(double(out.data[i]), ref.data[i]) << "at " << i;
    }
  }
}

TEST(OpsV2Modes, RealValuesWithinTheModesRounding) {
  unsigned seed = 400;
  for (const OpCase& oc : op_cases()) {
    Case c = make_case(oc.op, oc.shapes, oc.attrs, seed++, oc.reals);
    Tensor ref = fp64(c);
    for (Mode m : kModes) {
      SCOPED_TRACE(oc.name + " " + mode_name(m) + " seed " + std::to_string(seed - 1));
      TensorF out = run_mode(c, m);
      ASSERT_EQ(out.shape, ref.shape);
      EXPECT_LE(rel_l2(out, ref), bound(m));
      if (m == Mode::fp16 || m == Mode::bf16) {
        for (float v : out.data) ASSERT_EQ(v, round_storage(m, v)) << "output not in storage format";
      }
    }
  }
}

namespace {

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// The special values every strict op is fed (docs/ops.md, Precision modes: NaN), first in input 0.
void poison_specials(Case& c) {
  const double sp[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0, 3.0, -3.0};
  for (size_t i = 0; i < 7 && i < c.inputs[0].data.size(); ++i) c.inputs[0].data[i] = sp[i];
}

// strict output == f(float inputs) bit for bit, element by element (same-shape inputs), a NaN
// as the one pattern strict outputs carry (strict_canonical).
void expect_strict_elementwise(Case c, const std::function<float(const std::vector<float>&)>& f) {
  poison_specials(c);
  std::vector<TensorF> fin = mode_inputs(c, Mode::strict);
  TensorF out = run_mode(c, Mode::strict);
  int64_t mismatches = 0;
  for (int64_t i = 0; i < out.size(); ++i) {
    std::vector<float> args;
    for (const TensorF& t : fin) args.push_back(t.data[i]);
    mismatches += !same_bits(out.data[i], strict_canonical(f(args)));
  }
  EXPECT_EQ(mismatches, 0) << c.model.layers[0].op;
}

}  // namespace

TEST(OpsV2Strict, ElementwiseOpsAreTheirStrictMathFormulas) {
  using V = const std::vector<float>&;
  const Shape s{2, 3, 7};
  auto one = [&](const std::string& op, Attrs a = {}) { return make_case(op, {s}, a, 7, Fill::Reals); };
  auto two = [&](const std::string& op) { return make_case(op, {s, s}, {}, 8, Fill::Reals); };
  expect_strict_elementwise(one("hardtanh", {{"min_val", -1.0}, {"max_val", 2.0}}),
                            [](V x) { return strict_hardtanh(x[0], -1.0f, 2.0f); });
  expect_strict_elementwise(one("hardswish"), [](V x) { return strict_hardswish(x[0]); });
  expect_strict_elementwise(one("hardsigmoid"), [](V x) { return strict_hardsigmoid(x[0]); });
  expect_strict_elementwise(one("sqrt"), [](V x) { return s_sqrt(x[0]); });
  expect_strict_elementwise(one("rsqrt"), [](V x) { return strict_rsqrt(x[0]); });
  expect_strict_elementwise(one("exp"), [](V x) { return strict_exp(x[0]); });
  expect_strict_elementwise(one("log"), [](V x) { return strict_log(x[0]); });
  expect_strict_elementwise(one("erf"), [](V x) { return strict_erf(x[0]); });
  expect_strict_elementwise(one("abs"), [](V x) { return s_abs(x[0]); });
  expect_strict_elementwise(one("neg"), [](V x) { return s_neg(x[0]); });
  expect_strict_elementwise(two("sub"), [](V x) { return s_sub(x[0], x[1]); });
  expect_strict_elementwise(two("div"), [](V x) { return s_div(x[0], x[1]); });
  expect_strict_elementwise(two("pow"), [](V x) { return strict_pow(x[0], x[1]); });
  expect_strict_elementwise(two("maximum"), [](V x) { return strict_maximum(x[0], x[1]); });
  expect_strict_elementwise(two("minimum"), [](V x) { return strict_minimum(x[0], x[1]); });
  expect_strict_elementwise(make_case("where", {s, s, s}, {}, 9, Fill::Reals),
                            [](V x) { return x[0] != 0.0f ? x[1] : x[2]; });
}

// Reductions: the row of §5.1 is the reduced elements in row-major order of the reduced axes.
TEST(OpsV2Strict, ReductionsSumTheirRowInTheLaneTree) {
  Case c = make_case("reduce_sum", {{2, 5, 300, 3}}, {{"axes", Ints{2, 1}}}, 11, Fill::Reals);
  std::vector<TensorF> fin = mode_inputs(c, Mode::strict);
  const float* x = fin[0].ptr();
  TensorF sum = run_mode(c, Mode::strict);
  for (int n = 0; n < 2; ++n)
    for (int k = 0; k < 3; ++k) {
      const float want = strict_reduce(1500, [&](long long i) {
        return x[n * 4500 + (i / 300) * 900 + (i % 300) * 3 + k];
      });
      ASSERT_TRUE(same_bits(sum.data[n * 3 + k], want)) << n << " " << k;
    }
  c.model.layers[0].op = "reduce_mean";
  TensorF mean = run_mode(c, Mode::strict);
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(same_bits(mean.data[i], strict_mean_of_sum(sum.data[i], 1500))) << i;
  c.inputs[0].data[905] = NAN;   // n 0, axis-1 index 1, k 2
  c.model.layers[0].op = "reduce_max";
  TensorF mx = run_mode(c, Mode::strict);
  EXPECT_TRUE(std::isnan(mx.data[2]));
  for (int i : {0, 1, 3, 4, 5}) {
    const int n = i / 3, k = i % 3;
    float m = -s_inf();
    for (int j = 0; j < 1500; ++j) m = strict_max_step(m, x[n * 4500 + (j / 300) * 900 + (j % 300) * 3 + k]);
    ASSERT_TRUE(same_bits(mx.data[i], strict_max_finish(m))) << i;
  }
}

TEST(OpsV2Strict, AdaptiveAvgPoolSumsEachWindowInTheLaneTree) {
  Case c = make_case("adaptive_avgpool2d", {{1, 2, 7, 10}}, {{"output_size", Ints{3, 4}}}, 12, Fill::Reals);
  std::vector<TensorF> fin = mode_inputs(c, Mode::strict);
  TensorF out = run_mode(c, Mode::strict);
  for (int p = 0; p < 2; ++p)
    for (int oy = 0; oy < 3; ++oy)
      for (int ox = 0; ox < 4; ++ox) {
        const int y0 = oy * 7 / 3, y1 = ((oy + 1) * 7 + 2) / 3, x0 = ox * 10 / 4, x1 = ((ox + 1) * 10 + 3) / 4;
        const int ww = x1 - x0, count = (y1 - y0) * ww;
        const float* x = fin[0].ptr() + p * 70;
        const float s = strict_reduce(count, [&](long long i) { return x[(y0 + i / ww) * 10 + x0 + i % ww]; });
        ASSERT_TRUE(same_bits(out.data[(p * 3 + oy) * 4 + ox], s_div(s, static_cast<float>(count))));
      }
}

// ---- attribute validation: one line, InputError, naming the layer ---------------------------

namespace {

void expect_rejected(const std::string& op, const std::vector<Shape>& per_sample, Attrs attrs,
                     const std::string& expect) {
  Model m;
  m.file = "bad.h5";
  Layer l;
  l.name = "bad_" + op;
  l.op = op;
  l.path = "/layers/0000";
  for (size_t i = 0; i < per_sample.size(); ++i) {
    GraphInput gi;
    gi.name = "in" + std::to_string(i);
    gi.shape = per_sample[i];
    gi.dtype = "float32";
    m.inputs.push_back(gi);
    l.inputs.push_back("in" + std::to_string(i));
  }
  l.attrs = std::move(attrs);
  m.layers.push_back(l);
  try {
    validate_and_infer(m);
    ADD_FAILURE() << op << ": accepted, expected an error containing '" << expect << "'";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad_" + op), std::string::npos) << msg;
    EXPECT_NE(msg.find(expect), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

}  // namespace

TEST(OpsV2Attributes, BadAttributesAreInputErrorsNamingTheLayer) {
  expect_rejected("hardtanh", {{4}}, {{"min_val", 2.0}, {"max_val", 1.0}}, "must be <= max_val");
  expect_rejected("hardtanh", {{4}}, {{"max_val", 1.0}}, "missing attribute 'min_val'");
  expect_rejected("reduce_sum", {{3, 4}}, {{"axes", Ints{}}}, "axes must not be empty");
  expect_rejected("reduce_sum", {{3, 4}}, {{"axes", Ints{0}}}, "batch dim");
  expect_rejected("reduce_mean", {{3, 4}}, {{"axes", Ints{1, -2}}}, "twice");
  expect_rejected("reduce_max", {{3, 4}}, {{"axes", Ints{3}}}, "out of range");
  expect_rejected("reduce_sum", {{3, 4}}, {{"axes", Ints{1}}, {"keepdim", int64_t(2)}}, "keepdim must be 0 or 1");
  expect_rejected("concat", {{3, 4}, {3, 4}}, {{"axis", int64_t(-3)}}, "batch dim");
  expect_rejected("concat", {{3, 4}, {2, 4}}, {{"axis", int64_t(2)}}, "differs");
  expect_rejected("concat", {{3, 4}, {3}}, {{"axis", int64_t(1)}}, "same rank");
  expect_rejected("slice", {{5}}, {{"axis", int64_t(1)}, {"start", int64_t(3)}, {"end", int64_t(3)}}, "start < end");
  expect_rejected("slice", {{5}}, {{"axis", int64_t(1)}, {"start", int64_t(0)}, {"end", int64_t(6)}}, "<= 5");
  expect_rejected("slice", {{5}}, {{"axis", int64_t(1)}, {"start", int64_t(0)}, {"end", int64_t(2)}, {"step", int64_t(0)}}, "step must be >= 1");
  expect_rejected("slice", {{5}}, {{"axis", int64_t(0)}, {"start", int64_t(0)}, {"end", int64_t(1)}}, "batch dim");
  expect_rejected("expand", {{3, 1}}, {{"shape", Ints{3}}}, "2 entries");
  expect_rejected("expand", {{3, 1}}, {{"shape", Ints{4, 2}}}, "cannot expand");
  expect_rejected("expand", {{3, 1}}, {{"shape", Ints{3, 0}}}, "positive or -1");
  expect_rejected("adaptive_avgpool2d", {{2, 5, 5}}, {{"output_size", Ints{0, 2}}}, "positive");
  expect_rejected("adaptive_avgpool2d", {{5, 5}}, {{"output_size", Ints{2, 2}}}, "rank 4");
  expect_rejected("where", {{3, 4}, {3, 4}, {2, 4}}, {}, "do not broadcast");
  expect_rejected("pow", {{3, 4}, {3, 5}}, {}, "do not broadcast");
}
