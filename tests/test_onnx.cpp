// host/io/onnx_model: graphs built here with the ONNX protobuf API (as an exporter writes them),
// loaded, and checked layer by layer: the batch followed through merged reshapes and
// transposes, shape subgraphs folded, MatMul + Add fused, ONNX tensors moved batch-first, and
// the files divscope must refuse. The end-to-end checks against ONNX Runtime and PyTorch are
// the Python tests (Onnx.Ops, OnnxZoo.*, Onnx.SameAnalysis, Onnx.Malformed).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include <onnx/onnx_pb.h>

#include "errors.h"
#include "graph/model.h"
#include "io/onnx_model.h"

using namespace divscope;

namespace {

std::string temp_file(const std::string& name) {
  return ::testing::TempDir() + "divscope_onnx_" + std::to_string(getpid()) + "_" + name;
}

// A graph under construction; save() writes the ModelProto.
struct GraphBuilder {
  onnx::ModelProto m;
  onnx::GraphProto* g;

  explicit GraphBuilder(int opset = 17) {
    m.set_ir_version(8);
    m.set_producer_name("divscope-test");
    onnx::OperatorSetIdProto* o = m.add_opset_import();
    o->set_domain("");
    o->set_version(opset);
    g = m.mutable_graph();
    g->set_name("test_graph");
  }
  // dims: > 0 fixed, 0 the symbolic "batch", < 0 another symbolic dim
  void input(const std::string& name, std::vector<int64_t> dims, int type = onnx::TensorProto::FLOAT) {
    onnx::ValueInfoProto* v = g->add_input();
    v->set_name(name);
    onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(type);
    for (int64_t d : dims) {
      onnx::TensorShapeProto_Dimension* dim = t->mutable_shape()->add_dim();
      if (d > 0) dim->set_dim_value(d);
      else dim->set_dim_param(d == 0 ? "batch" : "seq");
    }
  }
  void output(const std::string& name) { g->add_output()->set_name(name); }
  void init(const std::string& name, std::vector<int64_t> dims, std::vector<float> v) {
    onnx::TensorProto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    for (float x : v) t->add_float_data(x);
  }
  void init_i64(const std::string& name, std::vector<int64_t> v) {
    onnx::TensorProto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(v.size()));
    for (int64_t x : v) t->add_int64_data(x);
  }
  onnx::NodeProto* node(const std::string& op, const std::string& name, std::vector<std::string> in,
                        std::vector<std::string> out) {
    onnx::NodeProto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& s : in) n->add_input(s);
    for (const auto& s : out) n->add_output(s);
    return n;
  }
  static void ints(onnx::NodeProto* n, const std::string& a, std::vector<int64_t> v) {
    onnx::AttributeProto* at = n->add_attribute();
    at->set_name(a);
    at->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) at->add_ints(x);
  }
  std::string save(const std::string& name) {
    const std::string p = temp_file(name);
    std::ofstream f(p, std::ios::binary);
    m.SerializeToOstream(&f);
    return p;
  }
};

const Layer& layer(const Model& m, const std::string& name) {
  const int i = m.find_layer(name);
  EXPECT_GE(i, 0) << name;
  return m.layers.at(static_cast<size_t>(std::max(i, 0)));
}

// x [T, N, E] (batch on axis 1), as nn.MultiheadAttention lays it out, reshaped to
// [T, N·H, d] and transposed to [N·H, T, d]: the batch is merged with the heads.
TEST(Onnx, FollowsAMergedBatchThroughReshapeAndTranspose) {
  GraphBuilder b;
  b.input("x", {3, 0, 4});
  b.init_i64("shape", {3, -1, 2});
  b.node("Reshape", "/attn/Reshape", {"x", "shape"}, {"/attn/Reshape_output_0"});
  GraphBuilder::ints(b.node("Transpose", "/attn/Transpose", {"/attn/Reshape_output_0"}, {"y"}), "perm", {1, 0, 2});
  b.output("y");
  const std::string path = b.save("merged.onnx");
  ASSERT_TRUE(looks_like_onnx(path));
  const Model m = load_model(path);
  EXPECT_EQ(m.format, "onnx");
  EXPECT_EQ(m.name, "test_graph");
  ASSERT_EQ(m.inputs.size(), 1u);
  EXPECT_EQ(m.inputs[0].shape, (Shape{3, 4}));   // per sample: [T, E]
  EXPECT_EQ(m.inputs[0].batch_axis, 1);
  const Layer& r = layer(m, "/attn/Reshape");
  EXPECT_EQ(r.op, "reshape");
  EXPECT_EQ(r.out_shape, (Shape{3, 2, 2}));      // [T, heads, d]
  EXPECT_EQ(r.value.name, "/attn/Reshape_output_0");
  EXPECT_EQ(r.value.axis, 1);
  EXPECT_EQ(r.value.inner, 2);
  const Layer& t = layer(m, "/attn/Transpose");
  EXPECT_EQ(t.op, "permute");
  EXPECT_EQ(t.attr_ints("dims"), (std::vector<int64_t>{0, 2, 1, 3}));
  EXPECT_EQ(t.out_shape, (Shape{2, 3, 2}));      // [heads, T, d]
  EXPECT_EQ(t.value.axis, 0);
  EXPECT_EQ(t.value.inner, 2);
  EXPECT_EQ(t.value.shape_at(5), (Shape{10, 3, 2}));

  // An ONNX tensor [N·H, T, d] for N = 2 as the layer's batch-first [N, H, T, d].
  Tensor onnx(Shape{4, 3, 2});
  for (int64_t k = 0; k < onnx.size(); ++k) onnx.data[k] = static_cast<double>(k);
  const Tensor bf = onnx_to_batch_first(t.value, onnx, t.out_shape);
  ASSERT_EQ(bf.shape, (Shape{2, 2, 3, 2}));
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t i = 0; i < 6; ++i)
        EXPECT_EQ(bf.data[((n * 2 + h) * 6) + i], onnx.data[(n * 2 + h) * 6 + i]);
  // Batch on axis 1 of [T, N, E]: sample n is every T-th block.
  const Layer& rr = layer(m, "/attn/Reshape");
  Tensor o2(Shape{3, 4, 2});   // [T, N·H, d] with N = 2
  for (int64_t k = 0; k < o2.size(); ++k) o2.data[k] = static_cast<double>(k);
  const Tensor b2 = onnx_to_batch_first(rr.value, o2, rr.out_shape);
  ASSERT_EQ(b2.shape, (Shape{2, 3, 2, 2}));
  // sample 1, t = 2, head 1, d = 0: ONNX index [2, 1·2 + 1, 0]
  EXPECT_EQ(b2.data[((1 * 3 + 2) * 2 + 1) * 2 + 0], o2.data[(2 * 4 + 3) * 2 + 0]);
}

// Shape → Gather → Unsqueeze → Concat → Reshape, as PyTorch exports x.view(x.size(0), -1):
// folded for the batch it is evaluated at; the layer is per sample.
TEST(Onnx, FoldsAShapeSubgraphAndFusesTheBias) {
  GraphBuilder b;
  b.input("x", {0, 2, 3});
  b.init_i64("zero", {0});
  b.init_i64("minus1", {-1});
  b.node("Shape", "/Shape", {"x"}, {"s"});
  onnx::NodeProto* gather = b.node("Gather", "/Gather", {"s", "zero"}, {"n"});
  (void)gather;
  b.node("Concat", "/Concat", {"n", "minus1"}, {"shape"})->add_attribute()->CopyFrom([] {
    onnx::AttributeProto a;
    a.set_name("axis");
    a.set_type(onnx::AttributeProto::INT);
    a.set_i(0);
    return a;
  }());
  b.node("Reshape", "/Reshape", {"x", "shape"}, {"flat"});
  b.init("W", {6, 2}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  b.init("B", {2}, {0.5f, -0.5f});
  b.node("MatMul", "/fc/MatMul", {"flat", "W"}, {"mm"});
  b.node("Add", "/fc/Add", {"mm", "B"}, {"y"});
  b.output("y");
  const Model m = load_model(b.save("fold.onnx"));
  ASSERT_EQ(m.layers.size(), 2u);
  EXPECT_EQ(m.layers[0].op, "reshape");
  EXPECT_EQ(m.layers[0].attr_ints("shape"), (std::vector<int64_t>{6}));
  const Layer& fc = m.layers[1];
  EXPECT_EQ(fc.name, "/fc/MatMul");
  EXPECT_EQ(fc.op, "linear");
  ASSERT_NE(fc.param("bias"), nullptr);
  EXPECT_EQ(fc.param("weight")->shape, (Shape{2, 6}));
  EXPECT_EQ(fc.param("weight")->data[1], 3.0);   // Wᵀ[0][1] = W[1][0]
  EXPECT_EQ(fc.value.name, "y");                 // the fused Add's value
  EXPECT_EQ(m.outputs, (std::vector<std::string>{"/fc/MatMul"}));
}

// Hugging Face's gelu_new, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), node by node as exported:
// one gelu(tanh) layer that computes the last node's value; with DIVSCOPE_ONNX_FUSE=0, eight.
TEST(Onnx, FusesTheTanhGelu) {
  GraphBuilder b;
  b.input("x", {0, 4});
  b.init("half", {}, {0.5f});
  b.init("three", {}, {3.0f});
  b.init("kappa", {}, {0.044715f});
  b.init("beta", {}, {0.7978845608f});
  b.init("one", {}, {1.0f});
  b.node("Mul", "/act/Mul", {"half", "x"}, {"a"});
  b.node("Pow", "/act/Pow", {"x", "three"}, {"p"});
  b.node("Mul", "/act/Mul_1", {"kappa", "p"}, {"c"});
  b.node("Add", "/act/Add", {"x", "c"}, {"d"});
  b.node("Mul", "/act/Mul_2", {"beta", "d"}, {"e"});
  b.node("Tanh", "/act/Tanh", {"e"}, {"t"});
  b.node("Add", "/act/Add_1", {"one", "t"}, {"g"});
  b.node("Mul", "/act/Mul_3", {"a", "g"}, {"y"});
  b.output("y");
  const std::string path = b.save("gelu_tanh.onnx");
  const Model m = load_model(path);
  ASSERT_EQ(m.layers.size(), 1u);
  EXPECT_EQ(m.layers[0].op, "gelu");
  EXPECT_EQ(m.layers[0].attr_str("approximate", ""), "tanh");
  EXPECT_EQ(m.layers[0].value.name, "y");
  setenv("DIVSCOPE_ONNX_FUSE", "0", 1);
  const Model unfused = load_model(path);
  unsetenv("DIVSCOPE_ONNX_FUSE");
  EXPECT_EQ(unfused.layers.size(), 8u);
}

TEST(Onnx, RefusesWhatItCannotRunNamingTheNode) {
  auto message = [](GraphBuilder& b, const std::string& name) {
    try {
      load_model(b.save(name));
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  {
    GraphBuilder b;
    b.input("x", {0, 4});
    b.node("Foo", "/block/Foo", {"x"}, {"y"});
    b.output("y");
    EXPECT_NE(message(b, "foo.onnx").find("node '/block/Foo' (Foo): op Foo is not supported"), std::string::npos);
  }
  {
    GraphBuilder b;
    b.input("x", {0, 4});
    b.node("Softmax", "/sm", {"x"}, {"y"})->add_attribute()->CopyFrom([] {
      onnx::AttributeProto a;
      a.set_name("axis");
      a.set_type(onnx::AttributeProto::INT);
      a.set_i(0);
      return a;
    }());
    b.output("y");
    EXPECT_NE(message(b, "batchaxis.onnx").find("holds the batch"), std::string::npos);
  }
  {
    GraphBuilder b;
    b.input("x", {0, -1});   // a dynamic non-batch dim and no recording
    b.node("Relu", "/r", {"x"}, {"y"});
    b.output("y");
    EXPECT_NE(message(b, "dyn.onnx").find("--recording"), std::string::npos);
  }
  {
    GraphBuilder b;
    b.input("x", {0, 4});
    onnx::TensorProto* t = b.g->add_initializer();
    t->set_name("W");
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_dims(4);
    t->add_dims(4);
    t->set_data_location(onnx::TensorProto::EXTERNAL);
    onnx::StringStringEntryProto* e = t->add_external_data();
    e->set_key("location");
    e->set_value("/etc/passwd");
    b.node("MatMul", "/mm", {"x", "W"}, {"y"});
    b.output("y");
    EXPECT_NE(message(b, "external.onnx").find("external data file"), std::string::npos);
  }
  {
    GraphBuilder b;
    b.input("x", {0, 4});
    b.node("Relu", "/r", {"x", }, {"y"});
    b.node("Relu", "/r2", {"z"}, {"w"});   // z: nobody computes it
    b.output("w");
    EXPECT_NE(message(b, "missing.onnx").find("node '/r2' (Relu): input 'z' is not"), std::string::npos);
  }
  // Not a protobuf at all.
  const std::string junk = temp_file("junk.onnx");
  std::ofstream(junk) << "\x08\x07garbage that is not a model";
  EXPECT_THROW(load_model(junk), InputError);
}

}  // namespace
