// Shape rules of the op table (host/graph/ops.cpp): for each op, full input shapes (batch dim
// first) -> full output shape, with the op's attribute and parameter checks. Each throws
// std::runtime_error with a message; the caller adds the file and layer.
#pragma once
#include <vector>

#include "graph/model.h"

namespace divscope::shape_rules {

Shape infer_linear(const Layer& L, const std::vector<Shape>& in);
Shape infer_matmul(const Layer& L, const std::vector<Shape>& in);
Shape infer_conv2d(const Layer& L, const std::vector<Shape>& in);
Shape infer_conv_transpose2d(const Layer& L, const std::vector<Shape>& in);
Shape infer_batchnorm2d(const Layer& L, const std::vector<Shape>& in);
Shape infer_layernorm(const Layer& L, const std::vector<Shape>& in);
Shape infer_rmsnorm(const Layer& L, const std::vector<Shape>& in);
Shape infer_groupnorm(const Layer& L, const std::vector<Shape>& in);
Shape infer_same(const Layer& L, const std::vector<Shape>& in);
Shape infer_gelu(const Layer& L, const std::vector<Shape>& in);
Shape infer_softmax(const Layer& L, const std::vector<Shape>& in);
Shape infer_binary(const Layer& L, const std::vector<Shape>& in);
Shape infer_maxpool(const Layer& L, const std::vector<Shape>& in);
Shape infer_avgpool(const Layer& L, const std::vector<Shape>& in);
Shape infer_global_avgpool(const Layer& L, const std::vector<Shape>& in);
Shape infer_upsample(const Layer& L, const std::vector<Shape>& in);
Shape infer_flatten(const Layer& L, const std::vector<Shape>& in);
Shape infer_reshape(const Layer& L, const std::vector<Shape>& in);
Shape infer_permute(const Layer& L, const std::vector<Shape>& in);
Shape infer_embedding(const Layer& L, const std::vector<Shape>& in);
Shape infer_sdpa(const Layer& L, const std::vector<Shape>& in);
Shape infer_hardtanh(const Layer& L, const std::vector<Shape>& in);
Shape infer_where(const Layer& L, const std::vector<Shape>& in);
Shape infer_reduce(const Layer& L, const std::vector<Shape>& in);
Shape infer_concat(const Layer& L, const std::vector<Shape>& in);
Shape infer_slice(const Layer& L, const std::vector<Shape>& in);
Shape infer_expand(const Layer& L, const std::vector<Shape>& in);
Shape infer_adaptive_avgpool(const Layer& L, const std::vector<Shape>& in);

}  // namespace divscope::shape_rules
