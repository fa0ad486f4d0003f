// NaN and Inf through every op (docs/ops.md, Precision modes: NaN).
//
// CPU (runs everywhere): every strict layer output carries one NaN pattern, kStrictNanBits
// (0x7fc00000), whatever made the NaN -- a NaN input of any payload or sign, a signalling NaN,
// inf - inf, 0 * inf, silu(-inf), a softmax over infinities -- and the payload of an input NaN
// never changes any output bit. Every op of the op table has a case here (a new op must add one).
// GPU (skips without a device, saying why): the same cases, each input holding NaNs of four bit
// patterns and both infinities, in every mode against the CPU path of the mode -- strict bit for
// bit, NaNs included; fp64 by the reference cross-check's rule; the other modes by their
// tolerance, NaN where the CPU has NaN and the same infinities.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <tuple>

#include "kernel_test_util.h"
#include "strict_math.h"

namespace divscope {
namespace {

using namespace kernel_test;

constexpr double kInf = std::numeric_limits<double>::infinity();

// A double NaN that converts to the float NaN with these bits (the float payload sits in the
// double's top fraction bits; the conversion drops the low 29).
double nan_of_float_bits(uint32_t f) {
  return bits_f64((static_cast<uint64_t>(f & 0x80000000u) << 32) | 0x7ff0000000000000ull |
                  (static_cast<uint64_t>(f & 0x007fffffu) << 29));
}

// What x86 and NVIDIA hardware make, a payload, and a signalling NaN.
const uint32_t kNanInputs[] = {0xffc00000u, 0x7fffffffu, 0x7fc00001u, 0x7fa00000u};

// The four NaNs and both infinities at seeded positions of the first sample (the later samples
// keep finite outputs, so every output tensor has finite values to compare too). `nan_bits`
// replaces every NaN pattern (to check that payloads do not matter).
void add_specials(Gen& g, Tensor& t, uint32_t nan_bits = 0) {
  const size_t sample = t.data.size() / static_cast<size_t>(std::max<int64_t>(t.shape[0], 1));
  if (sample < 6) return;
  std::uniform_int_distribution<size_t> pos(0, sample - 1);
  for (uint32_t f : kNanInputs) t.data[pos(g.rng)] = nan_of_float_bits(nan_bits ? nan_bits : f);
  t.data[pos(g.rng)] = kInf;
  t.data[pos(g.rng)] = -kInf;
}

// Inputs: g.tensor per input shape with the specials added (`positive`: |x| first, for sqrt,
// rsqrt and log -- the specials still reach their domain's edges).
std::function<std::vector<Tensor>(Gen&, const Built&)> specials(bool positive = false,
                                                              uint32_t nan_bits = 0) {
  return [=](Gen& g, const Built& b) {
    std::vector<Tensor> in;
    for (const Shape& s : b.in_shapes) {
      Tensor t = g.tensor(s);
      if (positive)
        for (double& v : t.data) v = std::fabs(v);
      add_specials(g, t, nan_bits);
      in.push_back(std::move(t));
    }
    return in;
  };
}

// embedding: integer indices (row 0 included); the NaNs and infinities are in the table.
std::vector<Tensor> embedding_inputs(Gen& g, const Built& b) {
  const int64_t V = b.layer.param("weight")->shape[0];
  Tensor t(b.in_shapes[0]);
  for (double& v : t.data) v = static_cast<double>(std::uniform_int_distribution<int64_t>(0, V - 1)(g.rng));
  t.data[0] = 0;
  return {t};
}

Tensor table_with_specials(Gen& g) {
  Tensor w = g.tensor({6, 5});
  w.data[0] = nan_of_float_bits(0xffc00000u);   // row 0, read by index 0
  w.data[1] = kInf;
  w.data[7] = -kInf;
  return w;
}

Built unary(const char* op) { return make(op, {{3, 40}}); }
Built binary(const char* op) { return make(op, {{2, 3, 9}, {2, 3, 9}}); }

// One case per op of the table, small and ragged. The bool is exact_on_integers (unused here:
// the inputs are real).
std::vector<OpCase> make_cases(uint32_t nan_bits) {
  const auto sp = specials(false, nan_bits), pos = specials(true, nan_bits);
  return {
      {"Linear", false, [](Gen& g) {
         return make("linear", {{3, 37}}, {}, {{"weight", g.tensor({5, 37})}, {"bias", g.tensor({5})}});
       }, sp},
      {"Matmul", false, [](Gen&) { return make("matmul", {{2, 3, 5, 4}, {2, 3, 4, 6}}); }, sp},
      {"Conv", false, [](Gen& g) {
         return make("conv2d", {{2, 3, 6, 7}},
                     {{"stride", Ints{1, 1}}, {"padding", Ints{1, 1}}, {"dilation", Ints{1, 1}}, {"groups", int64_t{1}}},
                     {{"weight", g.tensor({4, 3, 3, 3})}, {"bias", g.tensor({4})}});
       }, sp},
      {"ConvTranspose", false, [](Gen& g) {
         return make("conv_transpose2d", {{2, 3, 4, 5}},
                     {{"stride", Ints{2, 2}}, {"padding", Ints{1, 0}}, {"output_padding", Ints{1, 0}},
                      {"dilation", Ints{1, 1}}, {"groups", int64_t{1}}},
                     {{"weight", g.tensor({3, 2, 3, 3})}, {"bias", g.tensor({2})}});
       }, sp},
      {"BatchNorm", false, [](Gen& g) {
         return make("batchnorm2d", {{2, 3, 4, 5}}, {{"eps", 1e-5}},
                     {{"weight", g.tensor({3})}, {"bias", g.tensor({3})},
                      {"running_mean", g.tensor({3})}, {"running_var", g.tensor({3}, 0.5, 2.0)}});
       }, sp},
      {"LayerNorm", false, [](Gen& g) {
         return make("layernorm", {{3, 4, 20}}, {{"normalized_shape", Ints{20}}, {"eps", 1e-5}},
                     {{"weight", g.tensor({20})}, {"bias", g.tensor({20})}});
       }, sp},
      {"RmsNorm", false, [](Gen& g) {
         return make("rmsnorm", {{3, 4, 20}}, {{"normalized_shape", Ints{20}}, {"eps", 1e-6}},
                     {{"weight", g.tensor({20})}});
       }, sp},
      {"GroupNorm", false, [](Gen& g) {
         return make("groupnorm", {{2, 6, 5}}, {{"num_groups", int64_t{3}}, {"eps", 1e-5}},
                     {{"weight", g.tensor({6})}, {"bias", g.tensor({6})}});
       }, sp},
      {"Relu", false, [](Gen&) { return unary("relu"); }, sp},
      {"Silu", false, [](Gen&) { return unary("silu"); }, sp},
      {"Sigmoid", false, [](Gen&) { return unary("sigmoid"); }, sp},
      {"Tanh", false, [](Gen&) { return unary("tanh"); }, sp},
      {"LeakyRelu", false, [](Gen&) { return make("leaky_relu", {{3, 40}}, {{"negative_slope", 0.01}}); }, sp},
      {"GeluErf", false, [](Gen&) { return make("gelu", {{3, 40}}, {{"approximate", std::string("none")}}); }, sp},
      {"GeluTanh", false, [](Gen&) { return make("gelu", {{3, 40}}, {{"approximate", std::string("tanh")}}); }, sp},
      {"Softmax", false, [](Gen&) { return make("softmax", {{3, 4, 9}}, {{"axis", int64_t{-1}}}); }, sp},
      {"LogSoftmax", false, [](Gen&) { return make("log_softmax", {{3, 4, 9}}, {{"axis", int64_t{1}}}); }, sp},
      {"Add", false, [](Gen&) { return binary("add"); }, sp},
      {"Mul", false, [](Gen&) { return binary("mul"); }, sp},
      {"MaxPool", false, [](Gen&) {
         return make("maxpool2d", {{2, 3, 8, 9}},
                     {{"kernel_size", Ints{3, 3}}, {"stride", Ints{2, 2}}, {"padding", Ints{1, 1}}});
       }, sp},
      {"AvgPool", false, [](Gen&) {
         return make("avgpool2d", {{2, 3, 8, 9}},
                     {{"kernel_size", Ints{3, 2}}, {"stride", Ints{2, 2}}, {"padding", Ints{1, 1}}});
       }, sp},
      {"GlobalAvgPool", false, [](Gen&) { return make("global_avgpool2d", {{2, 3, 5, 5}}); }, sp},
      {"AdaptiveAvgPool", false, [](Gen&) {
         return make("adaptive_avgpool2d", {{2, 3, 7, 9}}, {{"output_size", Ints{3, 4}}});
       }, sp},
      {"Upsample", false, [](Gen&) {
         return make("upsample_nearest2d", {{2, 3, 3, 4}}, {{"scale_factor", Ints{2, 3}}});
       }, sp},
      {"Flatten", false, [](Gen&) { return make("flatten", {{2, 3, 4, 5}}); }, sp},
      {"Reshape", false, [](Gen&) { return make("reshape", {{2, 3, 4, 5}}, {{"shape", Ints{5, -1}}}); }, sp},
      {"Permute", false, [](Gen&) { return make("permute", {{2, 3, 4, 5}}, {{"dims", Ints{0, 3, 1, 2}}}); }, sp},
      {"Embedding", false, [](Gen& g) {
         return make("embedding", {{3, 7}}, {}, {{"weight", table_with_specials(g)}});
       }, embedding_inputs},
      {"Sdpa", false, [](Gen&) {
         return make("scaled_dot_product_attention", {{2, 2, 5, 8}, {2, 2, 6, 8}, {2, 2, 6, 3}},
                     {{"is_causal", int64_t{0}}});
       }, sp},
      {"Hardtanh", false, [](Gen&) { return make("hardtanh", {{3, 40}}, {{"min_val", -1.0}, {"max_val", 1.5}}); }, sp},
      {"Hardswish", false, [](Gen&) { return unary("hardswish"); }, sp},
      {"Hardsigmoid", false, [](Gen&) { return unary("hardsigmoid"); }, sp},
      {"Sqrt", false, [](Gen&) { return unary("sqrt"); }, pos},
      {"Rsqrt", false, [](Gen&) { return unary("rsqrt"); }, pos},
      {"Exp", false, [](Gen&) { return unary("exp"); }, sp},
      {"Log", false, [](Gen&) { return unary("log"); }, pos},
      {"Abs", false, [](Gen&) { return unary("abs"); }, sp},
      {"Neg", false, [](Gen&) { return unary("neg"); }, sp},
      {"Erf", false, [](Gen&) { return unary("erf"); }, sp},
      {"Sub", false, [](Gen&) { return binary("sub"); }, sp},
      {"Div", false, [](Gen&) { return binary("div"); }, sp},
      {"Pow", false, [](Gen&) { return binary("pow"); }, sp},
      {"Maximum", false, [](Gen&) { return binary("maximum"); }, sp},
      {"Minimum", false, [](Gen&) { return binary("minimum"); }, sp},
      {"Where", false, [](Gen&) { return make("where", {{2, 3, 9}, {2, 3, 9}, {2, 3, 9}}); }, sp},
      {"ReduceMean", false, [](Gen&) { return make("reduce_mean", {{2, 5, 30}}, {{"axes", Ints{2}}, {"keepdim", int64_t{0}}}); }, sp},
      {"ReduceSum", false, [](Gen&) { return make("reduce_sum", {{2, 5, 30}}, {{"axes", Ints{1}}, {"keepdim", int64_t{1}}}); }, sp},
      {"ReduceMax", false, [](Gen&) { return make("reduce_max", {{2, 5, 30}}, {{"axes", Ints{2}}, {"keepdim", int64_t{0}}}); }, sp},
      {"Concat", false, [](Gen&) { return make("concat", {{2, 3, 5}, {2, 4, 5}}, {{"axis", int64_t{1}}}); }, sp},
      {"Slice", false, [](Gen&) {
         return make("slice", {{2, 10, 7}}, {{"axis", int64_t{1}}, {"start", int64_t{1}}, {"end", int64_t{9}}, {"step", int64_t{1}}});
       }, sp},
      {"Expand", false, [](Gen&) { return make("expand", {{2, 1, 9}}, {{"shape", Ints{4, -1}}}); }, sp},
  };
}

const std::vector<OpCase>& cases() {
  static const std::vector<OpCase> all = make_cases(0);
  return all;
}

// One case's layer and inputs, seeded by its name (the same for every mode).
struct Prepared {
  Built b;
  std::vector<Tensor> in;
};
Prepared prepare(const OpCase& c) {
  Gen g{Regime::real, std::mt19937_64(seed_of(std::string("nan/") + c.name))};
  Prepared p{c.build(g), {}};
  p.in = c.inputs(g, p.b);
  return p;
}

TensorF strict_cpu(const Built& b, const std::vector<Tensor>& in64) {
  std::vector<TensorF> in;
  for (const Tensor& t : in64) in.push_back(in_mode<float>(Mode::strict, t));
  std::vector<const TensorF*> ptrs;
  for (const TensorF& t : in) ptrs.push_back(&t);
  TensorF out;
  mode_forward(Mode::strict, b.layer, ptrs, out);
  return out;
}

std::string bits_hex(float v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", f32_bits(v));
  return buf;
}

// Every NaN of a strict output is kStrictNanBits; returns how many there are.
int64_t expect_canonical(const TensorF& out) {
  int64_t nans = 0;
  for (size_t i = 0; i < out.data.size(); ++i) {
    if (!std::isnan(out.data[i])) continue;
    ++nans;
    EXPECT_EQ(f32_bits(out.data[i]), kStrictNanBits) << "NaN at " << i << " is " << bits_hex(out.data[i]);
  }
  return nans;
}

std::string case_title(const ::testing::TestParamInfo<int>& info) { return cases()[info.param].name; }

class StrictNanCpu : public ::testing::TestWithParam<int> {};

// Each op's strict output has NaNs (the inputs make them), every one of them canonical.
TEST_P(StrictNanCpu, OutputNansCanonical) {
  const OpCase& c = cases()[GetParam()];
  const Prepared p = prepare(c);
  const TensorF out = strict_cpu(p.b, p.in);
  EXPECT_GT(expect_canonical(out), 0) << "the case makes no NaN: it tests nothing";
  int64_t finite = 0;
  for (float v : out.data) finite += std::isfinite(v);
  EXPECT_GT(finite, 0) << "the case leaves no finite output";
}

// The payload (and sign) of an input NaN never reaches an output bit: the same inputs with every
// NaN canonical give the same strict output, bit for bit.
TEST_P(StrictNanCpu, InputPayloadDoesNotMatter) {
  const int i = GetParam();
  const Prepared any = prepare(cases()[i]);
  const Prepared canonical = prepare(make_cases(kStrictNanBits)[i]);
  const TensorF a = strict_cpu(any.b, any.in), b = strict_cpu(canonical.b, canonical.in);
  ASSERT_EQ(a.shape, b.shape);
  const int64_t at = first_bit_difference(a.data, b.data);
  EXPECT_EQ(at, -1) << "differs at " << at << ": " << (at >= 0 ? bits_hex(a.data[at]) : "")
                    << " vs " << (at >= 0 ? bits_hex(b.data[at]) : "");
}

INSTANTIATE_TEST_SUITE_P(StrictNan, StrictNanCpu, ::testing::Range(0, static_cast<int>(cases().size())),
                         case_title);

// Every op of the op table has a case above.
TEST(StrictNan, EveryOpHasACase) {
  std::set<std::string> covered;
  for (const OpCase& c : cases()) covered.insert(prepare(c).b.layer.op);
  for (const OpSpec& s : all_ops()) EXPECT_TRUE(covered.count(s.name)) << "no NaN case for op " << s.name;
}

// The cases of the issue that found it: silu(-inf), inf - inf, 0 * inf, softmax over [1, inf,
// inf]; x86 makes 0xffc00000 for an invalid operation, the GPU 0x7fffffff.
TEST(StrictNan, InvalidOperationsGiveTheOneNan) {
  const double nan = std::nan("");
  struct Case {
    Built b;
    std::vector<Tensor> in;
    std::vector<bool> want_nan;
  };
  auto t = [](Shape s, std::vector<double> v) {
    Tensor x(s);
    x.data = std::move(v);
    return x;
  };
  const std::vector<Case> all = {
      {make("silu", {{1, 4}}), {t({1, 4}, {-kInf, kInf, 1.0, nan})}, {true, false, false, true}},
      {make("sub", {{1, 3}, {1, 3}}), {t({1, 3}, {kInf, -kInf, 2.0}), t({1, 3}, {kInf, -kInf, kInf})},
       {true, true, false}},
      {make("add", {{1, 2}, {1, 2}}), {t({1, 2}, {kInf, 1.0}), t({1, 2}, {-kInf, 1.0})}, {true, false}},
      {make("mul", {{1, 2}, {1, 2}}), {t({1, 2}, {0.0, 3.0}), t({1, 2}, {kInf, 2.0})}, {true, false}},
      {make("softmax", {{1, 3}}, {{"axis", int64_t{-1}}}), {t({1, 3}, {1.0, kInf, kInf})}, {true, true, true}},
      {make("log_softmax", {{1, 3}}, {{"axis", int64_t{-1}}}), {t({1, 3}, {1.0, kInf, kInf})}, {true, true, true}},
      {make("log", {{1, 2}}), {t({1, 2}, {-1.0, 1.0})}, {true, false}},
      {make("linear", {{1, 2}}, {}, {{"weight", t({1, 2}, {1.0, 1.0})}}), {t({1, 2}, {kInf, -kInf})}, {true}},
  };
  for (const Case& c : all) {
    SCOPED_TRACE(c.b.layer.op);
    const TensorF out = strict_cpu(c.b, c.in);
    ASSERT_EQ(out.data.size(), c.want_nan.size());
    for (size_t i = 0; i < out.data.size(); ++i) {
      EXPECT_EQ(std::isnan(out.data[i]), c.want_nan[i]) << "element " << i;
      if (c.want_nan[i]) {
        EXPECT_EQ(f32_bits(out.data[i]), kStrictNanBits) << bits_hex(out.data[i]);
      }
    }
  }
}

// Canonicalising touches NaNs only: zeros of both signs, infinities, subnormals and the largest
// float keep their bits.
TEST(StrictNan, CanonicalizeKeepsEveryOtherValue) {
  const uint32_t keep[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x00000001u,
                           0x807fffffu, 0x7f7fffffu, 0x3fc00000u};
  TensorF t({12});
  for (size_t i = 0; i < 8; ++i) t.data[i] = bits_f32(keep[i]);
  for (size_t i = 0; i < 4; ++i) t.data[8 + i] = bits_f32(kNanInputs[i]);
  strict_canonicalize(t);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(f32_bits(t.data[i]), keep[i]);
  for (size_t i = 8; i < 12; ++i) EXPECT_EQ(f32_bits(t.data[i]), kStrictNanBits);
}

// ---- on a GPU ------------------------------------------------------------------------------

class StrictNanGpu : public ::testing::TestWithParam<int> {};

// The kernel's strict output against the CPU strict path: every bit, NaNs included.
TEST_P(StrictNanGpu, BitwiseWithCpuNansIncluded) {
  DIVSCOPE_REQUIRE_GPU();
  const Prepared p = prepare(cases()[GetParam()]);
  const TensorF cpu = strict_cpu(p.b, p.in);
  std::vector<std::vector<float>> raw;
  for (const Tensor& t : p.in) raw.push_back(in_mode<float>(Mode::strict, t).data);
  const std::vector<float> gpu = gpu_run<float>(Mode::strict, p.b, raw, cpu.data.size());
  const int64_t at = first_bit_difference(cpu.data, gpu);
  EXPECT_EQ(at, -1) << "strict GPU != CPU at " << at << ": cpu "
                    << (at >= 0 ? bits_hex(cpu.data[at]) : "") << " gpu " << (at >= 0 ? bits_hex(gpu[at]) : "");
}

INSTANTIATE_TEST_SUITE_P(StrictNan, StrictNanGpu, ::testing::Range(0, static_cast<int>(cases().size())),
                         case_title);

// The same NaN/Inf inputs in every mode, through the kernel-test harness (kernel_test_util.h):
// strict bitwise, fp64 by the reference cross-check's rule, the others within their tolerance
// with NaN and the infinities where the CPU has them.
class NanInfEveryMode : public ::testing::TestWithParam<std::tuple<int, Mode>> {};

TEST_P(NanInfEveryMode, GpuMatchesCpu) {
  DIVSCOPE_REQUIRE_GPU();
  const OpCase& c = cases()[std::get<0>(GetParam())];
  const Mode m = std::get<1>(GetParam());
  const Prepared p = prepare(c);
  SCOPED_TRACE(std::string("case ") + c.name + ", seed " + std::to_string(seed_of(std::string("nan/") + c.name)));
  if (m == Mode::fp64)
    check_fp64(p.b, p.in, run_both<double>(m, p.b, p.in));
  else
    check(m, c, Regime::real, run_both<float>(m, p.b, p.in));
}

INSTANTIATE_TEST_SUITE_P(
    NanInf, NanInfEveryMode,
    ::testing::Combine(::testing::Range(0, static_cast<int>(cases().size())), ::testing::ValuesIn(kModes)),
    [](const ::testing::TestParamInfo<std::tuple<int, Mode>>& info) {
      return std::string(cases()[std::get<0>(info.param)].name) + "_" + mode_title(std::get<1>(info.param));
    });

}  // namespace
}  // namespace divscope
