#include "graph/ops.h"

#include <algorithm>

#include "errors.h"
#include "graph/shape_rules.h"

#include <stdexcept>

namespace divscope {
namespace {

using namespace shape_rules;

const AttrSpec kStride{"stride", AttrKind::Ints, true}, kPadding{"padding", AttrKind::Ints, true},
    kDilation{"dilation", AttrKind::Ints, true}, kEps{"eps", AttrKind::Float, true},
    kAxes{"axes", AttrKind::Ints, true}, kKeepdim{"keepdim", AttrKind::Int, false};

}  // namespace

const std::vector<OpSpec>& all_ops() {
  static const std::vector<OpSpec> ops = {
      {"linear", 1, 1, {}, {{"weight", true}, {"bias", false}}, infer_linear},
      {"matmul", 2, 2, {}, {}, infer_matmul},
      {"conv2d", 1, 1, {kStride, kPadding, kDilation, {"groups", AttrKind::Int, true}},
       {{"weight", true}, {"bias", false}}, infer_conv2d},
      {"conv_transpose2d", 1, 1,
       {kStride, kPadding, {"output_padding", AttrKind::Ints, true}, kDilation,
        {"groups", AttrKind::Int, true}},
       {{"weight", true}, {"bias", false}}, infer_conv_transpose2d},
      {"batchnorm2d", 1, 1, {kEps},
       {{"weight", true}, {"bias", true}, {"running_mean", true}, {"running_var", true}},
       infer_batchnorm2d},
      {"layernorm", 1, 1, {{"normalized_shape", AttrKind::Ints, true}, kEps},
       {{"weight", false}, {"bias", false}}, infer_layernorm},
      {"rmsnorm", 1, 1, {{"normalized_shape", AttrKind::Ints, true}, kEps},
       {{"weight", false}}, infer_rmsnorm},
      {"groupnorm", 1, 1, {{"num_groups", AttrKind::Int, true}, kEps},
       {{"weight", false}, {"bias", false}}, infer_groupnorm},
      {"relu", 1, 1, {}, {}, infer_same},
      {"silu", 1, 1, {}, {}, infer_same},
      {"sigmoid", 1, 1, {}, {}, infer_same},
      {"tanh", 1, 1, {}, {}, infer_same},
      {"leaky_relu", 1, 1, {{"negative_slope", AttrKind::Float, true}}, {}, infer_same},
      {"gelu", 1, 1, {{"approximate", AttrKind::Str, true}}, {}, infer_gelu},
      {"softmax", 1, 1, {{"axis", AttrKind::Int, true}}, {}, infer_softmax},
      {"log_softmax", 1, 1, {{"axis", AttrKind::Int, true}}, {}, infer_softmax},
      {"add", 2, 2, {}, {}, infer_binary},
      {"mul", 2, 2, {}, {}, infer_binary},
      {"maxpool2d", 1, 1,
       {{"kernel_size", AttrKind::Ints, true}, kStride, kPadding,
        {"dilation", AttrKind::Ints, false}, {"ceil_mode", AttrKind::Int, false}},
       {}, infer_maxpool},
      {"avgpool2d", 1, 1,
       {{"kernel_size", AttrKind::Ints, true}, kStride, kPadding,
        {"ceil_mode", AttrKind::Int, false}, {"count_include_pad", AttrKind::Int, false}},
       {}, infer_avgpool},
      {"global_avgpool2d", 1, 1, {}, {}, infer_global_avgpool},
      {"upsample_nearest2d", 1, 1, {{"scale_factor", AttrKind::Ints, true}}, {}, infer_upsample},
      {"flatten", 1, 1, {{"start_dim", AttrKind::Int, false}, {"end_dim", AttrKind::Int, false}}, {},
       infer_flatten},
      {"reshape", 1, 1, {{"shape", AttrKind::Ints, true}}, {}, infer_reshape},
      {"permute", 1, 1, {{"dims", AttrKind::Ints, true}}, {}, infer_permute},
      {"embedding", 1, 1, {}, {{"weight", true}}, infer_embedding},
      {"scaled_dot_product_attention", 3, 3,
       {{"is_causal", AttrKind::Int, false}, {"scale", AttrKind::Float, false}}, {}, infer_sdpa},
      {"hardtanh", 1, 1,
       {{"min_val", AttrKind::Float, true}, {"max_val", AttrKind::Float, true}}, {},
       infer_hardtanh},
      {"hardswish", 1, 1, {}, {}, infer_same},
      {"hardsigmoid", 1, 1, {}, {}, infer_same},
      {"sqrt", 1, 1, {}, {}, infer_same},
      {"rsqrt", 1, 1, {}, {}, infer_same},
      {"exp", 1, 1, {}, {}, infer_same},
      {"log", 1, 1, {}, {}, infer_same},
      {"abs", 1, 1, {}, {}, infer_same},
      {"neg", 1, 1, {}, {}, infer_same},
      {"erf", 1, 1, {}, {}, infer_same},
      {"sub", 2, 2, {}, {}, infer_binary},
      {"div", 2, 2, {}, {}, infer_binary},
      {"pow", 2, 2, {}, {}, infer_binary},
      {"maximum", 2, 2, {}, {}, infer_binary},
      {"minimum", 2, 2, {}, {}, infer_binary},
      {"where", 3, 3, {}, {}, infer_where},
      {"reduce_mean", 1, 1, {kAxes, kKeepdim}, {}, infer_reduce},
      {"reduce_sum", 1, 1, {kAxes, kKeepdim}, {}, infer_reduce},
      {"reduce_max", 1, 1, {kAxes, kKeepdim}, {}, infer_reduce},
      {"concat", 1, -1, {{"axis", AttrKind::Int, true}}, {}, infer_concat},
      {"slice", 1, 1,
       {{"axis", AttrKind::Int, true}, {"start", AttrKind::Int, true},
        {"end", AttrKind::Int, true}, {"step", AttrKind::Int, false}},
       {}, infer_slice},
      {"expand", 1, 2, {{"shape", AttrKind::Ints, true}}, {}, infer_expand},
      {"adaptive_avgpool2d", 1, 1, {{"output_size", AttrKind::Ints, true}}, {},
       infer_adaptive_avgpool},
  };
  return ops;
}

bool accepts_input_count(const OpSpec& op, size_t n) {
  const int k = static_cast<int>(n);
  return k >= op.min_inputs && (op.max_inputs < 0 || k <= op.max_inputs);
}

std::string input_count_str(const OpSpec& op) {
  if (op.max_inputs < 0) return std::to_string(op.min_inputs) + " or more inputs";
  if (op.min_inputs == op.max_inputs)
    return std::to_string(op.min_inputs) + (op.min_inputs == 1 ? " input" : " inputs");
  return std::to_string(op.min_inputs) + " to " + std::to_string(op.max_inputs) + " inputs";
}

const OpSpec* find_op(const std::string& name) {
  for (const OpSpec& op : all_ops())
    if (name == op.name) return &op;
  return nullptr;
}

Shape checked_out_shape(const Layer& L, const std::vector<Shape>& shapes) {
  const OpSpec* spec = find_op(L.op);
  if (!spec) throw InputError(L.where() + ": unknown op '" + L.op + "'");
  if (!accepts_input_count(*spec, shapes.size()))
    throw InputError(L.where() + ": expects " + input_count_str(*spec) + ", got " +
                     std::to_string(shapes.size()));
  // The batch N is the largest dim 0; an input with batch 1 (a constant) is broadcast by the
  // ops that take one (the op's shape rule rejects it elsewhere).
  int64_t n = 0;
  for (const Shape& s : shapes) {
    if (s.empty()) throw InputError(L.where() + ": input of rank 0");
    n = std::max(n, s[0]);
  }
  for (const Shape& s : shapes)
    if (s[0] != n && s[0] != 1) throw InputError(L.where() + ": inputs have different batch sizes");
  Shape want{n};
  want.insert(want.end(), L.out_shape.begin(), L.out_shape.end());
  Shape got;
  try {
    got = spec->infer(L, shapes);
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw InputError(L.where() + ": " + e.what());
  }
  if (got != want)
    throw InputError(L.where() + ": inputs give output shape " + shape_str(got) +
                     ", the model says " + shape_str(want));
  return want;
}

}  // namespace divscope
