// host/h5io: model, recording and dump files. Files are written by h5py (tests/make_malformed.py)
// as users write them; every malformed one must give one InputError line naming the file, the
// HDF5 path and, where it applies, the layer.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "analysis/runner.h"
#include "errors.h"
#include "io/h5io.h"
#include "io/h5wrap.h"

using namespace divscope;
namespace fs = std::filesystem;

namespace {

class H5io : public ::testing::Test {
 protected:
  // The h5py files are made once per version of make_malformed.py and shared by the test
  // processes (ctest runs each test in its own); files a test writes go to a per-process dir.
  static void SetUpTestSuite() {
    const std::string script = std::string(DIVSCOPE_SOURCE_DIR) + "/tests/make_malformed.py";
    std::ifstream in(script);
    std::stringstream text;
    text << in.rdbuf();
    const std::string pid = std::to_string(getpid());
    inputs_ = ::testing::TempDir() + "divscope_h5io_inputs_" +
              std::to_string(std::hash<std::string>{}(text.str()));
    out_ = ::testing::TempDir() + "divscope_h5io_" + pid;
    fs::create_directories(out_);
    if (!fs::exists(inputs_ + "/done")) {
      const std::string tmp = inputs_ + ".tmp" + pid;
      std::string cmd = std::string(DIVSCOPE_PYTHON) + " " + script + " " + tmp;
      if (std::system(cmd.c_str()) != 0) return;
      std::ofstream(tmp + "/done") << "ok\n";
      std::error_code ec;
      fs::rename(tmp, inputs_, ec);  // another process may have won the race: use its files
      if (ec) fs::remove_all(tmp, ec);
    }
    generated_ = fs::exists(inputs_ + "/done");
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(out_, ec);
  }
  void SetUp() override { ASSERT_TRUE(generated_) << "tests/make_malformed.py failed"; }

  static std::string file(const std::string& name) { return inputs_ + "/" + name; }
  static std::string out(const std::string& name) { return out_ + "/" + name; }

  // Runs `f`, which must throw InputError; the message must be one line containing `parts`.
  template <class F>
  static std::string expect_error(F&& f, const std::vector<std::string>& parts) {
    try {
      f();
    } catch (const InputError& e) {
      std::string msg = e.what();
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      for (const std::string& p : parts)
        EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
      return msg;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "expected InputError, got: " << e.what();
      return "";
    }
    ADD_FAILURE() << "expected InputError, nothing thrown";
    return "";
  }

  // read_model on a malformed file: names the file, the path, and `parts`.
  static void expect_model_error(const std::string& name, std::vector<std::string> parts) {
    parts.push_back(file(name));
    expect_error([&] { read_model(file(name)); }, parts);
  }

  static void expect_recording_error(const std::string& name, std::vector<std::string> parts,
                                     const std::string& model = "good.model.h5") {
    Model m = read_model(file(model));
    parts.push_back(file(name));
    expect_error([&] { RecordingReader r(file(name), m); }, parts);
  }

  static std::string inputs_, out_;
  static bool generated_;
};

std::string H5io::inputs_;
std::string H5io::out_;
bool H5io::generated_ = false;

Tensor random_tensor(Shape s, unsigned seed) {
  Tensor t(std::move(s));
  unsigned x = seed;
  for (double& v : t.data) {
    x = x * 1664525u + 1013904223u;
    v = (static_cast<double>(x) / 4294967296.0 - 0.5) * 3.0 + 1e-17 * x;  // full mantissa
  }
  return t;
}

// ---- valid files -----------------------------------------------------------------------------

TEST_F(H5io, RoundTripIsExact) {
  Model m;
  m.name = "round trip";
  m.inputs = {{"tokens", {5, 6}, "float32"}, {"aux", {6}, "float32"}};
  Layer l0;
  l0.name = "enc.fc";
  l0.op = "linear";
  l0.inputs = {"tokens"};
  l0.params["weight"] = random_tensor({7, 6}, 1);
  l0.params["bias"] = random_tensor({7}, 2);
  Layer l1;
  l1.name = "enc.ln";
  l1.op = "layernorm";
  l1.inputs = {"enc.fc"};
  l1.attrs["normalized_shape"] = std::vector<int64_t>{7};
  l1.attrs["eps"] = 1e-5;
  Layer l2;
  l2.name = "act";
  l2.op = "gelu";
  l2.inputs = {"enc.ln"};
  l2.attrs["approximate"] = std::string("tanh");
  Layer l3;
  l3.name = "sm";
  l3.op = "softmax";
  l3.inputs = {"act"};
  l3.attrs["axis"] = int64_t{-1};
  m.layers = {l0, l1, l2, l3};
  m.outputs = {"sm", "enc.fc"};
  for (size_t i = 0; i < m.layers.size(); ++i) m.layers[i].index = static_cast<int>(i);

  const std::string path = out("roundtrip.model.h5");
  write_model(m, path);
  Model r = read_model(path);
  EXPECT_EQ(r.file, path);
  EXPECT_EQ(r.name, m.name);
  EXPECT_EQ(r.outputs, m.outputs);
  ASSERT_EQ(r.inputs.size(), 2u);
  EXPECT_EQ(r.inputs[0].name, "tokens");  // creation order kept, not name order
  EXPECT_EQ(r.inputs[0].shape, (Shape{5, 6}));
  EXPECT_EQ(r.inputs[1].name, "aux");
  ASSERT_EQ(r.layers.size(), 4u);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const Layer &a = m.layers[i], &b = r.layers[i];
    EXPECT_EQ(b.name, a.name);
    EXPECT_EQ(b.op, a.op);
    EXPECT_EQ(b.inputs, a.inputs);
    EXPECT_EQ(b.attrs, a.attrs) << b.name;
    EXPECT_EQ(b.path, "/layers/000" + std::to_string(i));
    ASSERT_EQ(b.params.size(), a.params.size());
    for (const auto& kv : a.params) {
      EXPECT_EQ(b.params.at(kv.first).shape, kv.second.shape);
      EXPECT_EQ(b.params.at(kv.first).data, kv.second.data) << "not bit-exact: " << kv.first;
    }
  }
  EXPECT_EQ(r.layers[3].out_shape, (Shape{5, 7}));
  EXPECT_EQ(file_format(path), "model");
}

TEST_F(H5io, AttributeKindsRoundTrip) {
  const std::string path = out("attrs.h5");
  std::vector<std::pair<std::string, AttrValue>> values = {
      {"i", int64_t{-3}},
      {"f", 0.1},
      {"s", std::string("héllo")},
      {"iv", std::vector<int64_t>{1, -2, 1LL << 40}},
      {"fv", std::vector<double>{1.5, -0.25}},
      {"sv", std::vector<std::string>{"a", "", "ccc"}},
      {"empty_iv", std::vector<int64_t>{}},
      {"empty_sv", std::vector<std::string>{}},
  };
  {
    h5::File f = h5::File::create(path);
    h5::Object root = f.root();
    for (const auto& kv : values) root.write_attr(kv.first, kv.second);
  }
  h5::File f = h5::File::open(path);
  h5::Object root = f.root();
  for (const auto& kv : values) EXPECT_EQ(root.attr(kv.first), kv.second) << kv.first;
}

TEST_F(H5io, ReadsH5pyModel) {
  Model m = read_model(file("good.model.h5"));
  EXPECT_EQ(m.name, "mlp");
  ASSERT_EQ(m.inputs.size(), 1u);
  EXPECT_EQ(m.inputs[0].shape, (Shape{4}));
  EXPECT_EQ(m.inputs[0].dtype, "float32");
  ASSERT_EQ(m.layers.size(), 3u);
  EXPECT_EQ(m.layers[0].param("weight")->shape, (Shape{8, 4}));
  EXPECT_EQ(m.layers[0].param("bias")->shape, (Shape{8}));  // float32 on disk
  EXPECT_EQ(m.layers[2].out_shape, (Shape{3}));
  EXPECT_EQ(m.outputs, (std::vector<std::string>{"fc2"}));
}

TEST_F(H5io, ReadsFixedLengthStringsAndNarrowIntegers) {
  Model m = read_model(file("variety.model.h5"));
  EXPECT_EQ(m.name, "variety \xc3\xbc");
  EXPECT_EQ(m.inputs[0].shape, (Shape{3, 6, 6}));
  EXPECT_EQ(m.inputs[0].dtype, "float32");
  ASSERT_EQ(m.layers.size(), 5u);
  const Layer& c = m.layers[0];
  EXPECT_EQ(c.name, "conv.0");
  EXPECT_EQ(c.inputs, (std::vector<std::string>{"img"}));
  EXPECT_EQ(std::get<std::vector<int64_t>>(c.attrs.at("stride")), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(std::get<int64_t>(c.attrs.at("padding")), 1);
  EXPECT_EQ(std::get<int64_t>(c.attrs.at("groups")), 1);
  EXPECT_EQ(c.out_shape, (Shape{4, 6, 3}));
  EXPECT_EQ(m.layers[1].inputs, (std::vector<std::string>{"conv.0"}));
  EXPECT_FLOAT_EQ(static_cast<float>(m.layers[1].attr_float("eps")), 1e-5f);
  EXPECT_EQ(m.layers[2].attr_str("approximate", ""), "tanh");
  EXPECT_EQ(m.layers[3].attr_int("start_dim"), 1);
  EXPECT_EQ(m.layers[4].attr_int("axis"), -1);
  EXPECT_EQ(m.layers[4].out_shape, (Shape{72}));
}

TEST_F(H5io, ReadsNumpyBoolAttribute) {
  Model m = read_model(file("attention.model.h5"));
  ASSERT_EQ(m.inputs.size(), 3u);
  EXPECT_EQ(m.layers[0].attr_int("is_causal"), 1);
  EXPECT_DOUBLE_EQ(m.layers[0].attr_float("scale"), 0.25);
}

TEST_F(H5io, FileFormat) {
  EXPECT_EQ(file_format(file("good.model.h5")), "model");
  EXPECT_EQ(file_format(file("good.rec.h5")), "recording");
  expect_error([&] { file_format(file("not_hdf5.txt")); },
               {file("not_hdf5.txt"), "not an HDF5 file"});
  const std::string plain = out("plain.h5");
  { h5::File::create(plain); }
  expect_error([&] { file_format(plain); }, {plain, ": /: missing attribute 'divscope_format'"});
}

// ---- malformed models ------------------------------------------------------------------------

TEST_F(H5io, MissingLayersGroup) {
  expect_model_error("no_layers.model.h5", {": /layers: missing group"});
}
TEST_F(H5io, MissingInputsGroup) {
  expect_model_error("no_inputs.model.h5", {": /inputs: missing group"});
}

TEST_F(H5io, MissingRequiredParameter) {
  expect_model_error("missing_weight.model.h5",
                     {"/layers/0000", "'fc1'", "missing parameter 'weight'"});
}

TEST_F(H5io, WrongRankOfWeight) {
  expect_model_error("weight_rank3.model.h5", {"/layers/0000", "'fc1'", "[8, 4, 1]"});
}

TEST_F(H5io, WeightDisagreesWithInput) {
  expect_model_error("weight_mismatch.model.h5",
                     {"/layers/0000", "'fc1'", "[8, 5]", "does not match"});
}

TEST_F(H5io, UnknownOp) {
  expect_model_error("unknown_op.model.h5", {"/layers/0001", "'act'", "unknown op 'relux'"});
}

TEST_F(H5io, UnknownAttribute) {
  expect_model_error("unknown_attr.model.h5",
                     {"/layers/0001", "'act'", "unknown attribute 'alpha'"});
}

TEST_F(H5io, MissingRequiredAttribute) {
  expect_model_error("missing_attr.model.h5",
                     {"/layers/0001", "'act'", "missing attribute 'negative_slope'"});
}

TEST_F(H5io, AttributeOfTheWrongKindOrNotFinite) {
  expect_model_error("attr_wrong_kind.model.h5",
                     {"/layers/0001", "'act'", "'negative_slope' must be a float, got a string"});
  expect_model_error("attr_not_finite.model.h5",
                     {"/layers/0001", "'act'", "'negative_slope' must be finite"});
}

TEST_F(H5io, RecordingActivationOfWrongShapeAtOpen) {
  // Found when the recording is opened, not after the layers before it have run.
  expect_recording_error("activation_wrong_shape.rec.h5",
                         {": /batches/000001/activations/fc2: ", "[3, 4]", "expected [3, 3]"});
}

// Only the files named are read: data stored in another file (external storage, an external
// link, a virtual dataset) or behind a filter HDF5 would load as a plugin is refused at open,
// naming the file and the dataset.
TEST_F(H5io, DataFromOutsideTheFileIsRefused) {
  expect_recording_error("external_storage.rec.h5",
                         {"external_storage.rec.h5: /batches/000000/x: ", "external file '/etc/passwd'"});
  expect_recording_error("external_link.rec.h5",
                         {"external_link.rec.h5: /batches/000000/x: ", "external link to another file"});
  expect_recording_error("virtual.rec.h5", {"virtual.rec.h5: /batches/000000/x: ", "virtual dataset"});
  expect_recording_error("plugin_filter.rec.h5",
                         {"plugin_filter.rec.h5: /batches/000000/x: ", "filter 32015", "no filter plugins"});
}

TEST_F(H5io, UnknownInputName) {
  expect_model_error("unknown_input.model.h5", {"/layers/0001", "'act'", "unknown input 'y'"});
}

TEST_F(H5io, ForwardReference) {
  expect_model_error("forward_ref.model.h5",
                     {"/layers/0000", "'fc1'", "input 'act' is a later layer"});
}

TEST_F(H5io, Cycle) {
  expect_model_error("cycle.model.h5", {"/layers/0001", "'act'", "input 'act'"});
}

TEST_F(H5io, NanInParameter) {
  expect_model_error("nan_param.model.h5", {": /layers/0000/bias: ", "'fc1'", "NaN"});
}

TEST_F(H5io, WrongParameterDtype) {
  expect_model_error("int32_weight.model.h5", {": /layers/0000/weight: ", "'fc1'",
                                               "dtype int32, expected float32 or float64"});
}

TEST_F(H5io, WrongFormat) {
  expect_model_error("wrong_format.model.h5",
                     {": /: ", "divscope_format is \"recording\", expected \"model\""});
}

TEST_F(H5io, WrongVersion) {
  expect_model_error("wrong_version.model.h5", {": /: ", "divscope_version 3"});
}

TEST_F(H5io, LayerNumbering) {
  expect_model_error("bad_numbering.model.h5", {": /layers/0003: ", "numbered 0000, 0001"});
}

TEST_F(H5io, MissingOpAttribute) {
  expect_model_error("missing_op.model.h5",
                     {": /layers/0001: ", "'act'", "missing attribute 'op'"});
}

TEST_F(H5io, OpNotAString) {
  expect_model_error("op_not_string.model.h5", {": /layers/0001: ", "'op' must be a string"});
}

TEST_F(H5io, AttributeOfRank2) {
  expect_model_error("attr_rank2.model.h5", {": /layers/0001: ", "'alpha' has rank 2"});
}

TEST_F(H5io, GroupInsideLayer) {
  expect_model_error("group_in_layer.model.h5",
                     {": /layers/0000/extra: ", "'fc1'", "unexpected group"});
}

TEST_F(H5io, TruncatedFile) { expect_model_error("truncated.model.h5", {"truncated"}); }
TEST_F(H5io, NotHdf5) { expect_model_error("not_hdf5.txt", {"not an HDF5 file"}); }
TEST_F(H5io, MissingFile) { expect_model_error("does_not_exist.h5", {"no such file"}); }

TEST_F(H5io, NothingPrintedOnStderr) {
  ::testing::internal::CaptureStderr();
  for (const char* name :
       {"not_hdf5.txt", "truncated.model.h5", "unknown_op.model.h5", "no_layers.model.h5",
        "int32_weight.model.h5", "op_not_string.model.h5"}) {
    EXPECT_THROW(read_model(file(name)), InputError) << name;
  }
  EXPECT_THROW(file_format(file("does_not_exist.h5")), InputError);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

// HDF5's error printing is a per-thread setting in its thread-safe build: a reader used from a
// second thread (batch prefetch) must stay silent too. "fc1/x" makes H5Lexists fail inside HDF5.
TEST_F(H5io, NothingPrintedFromAnotherThread) {
  Model m = read_model(file("good.model.h5"));
  RecordingReader r(file("good.rec.h5"), m);
  ::testing::internal::CaptureStderr();
  bool has = true;
  std::thread t([&] { has = r.has_activation(1, "fc1/x"); });
  t.join();
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  EXPECT_FALSE(has);
}

// ---- recordings ------------------------------------------------------------------------------

TEST_F(H5io, RecordingReadsBatches) {
  Model m = read_model(file("good.model.h5"));
  RecordingReader r(file("good.rec.h5"), m);
  EXPECT_EQ(r.source(), "pytorch 2.1, test");
  EXPECT_EQ(r.created(), "2024-01-02T03:04:05Z");
  ASSERT_EQ(r.num_batches(), 2u);
  EXPECT_EQ(r.batch_name(1), "000001");
  EXPECT_EQ(r.batch_size(0), 2);
  EXPECT_EQ(r.batch_size(1), 3);
  std::vector<Tensor> b0 = r.read_batch(0);
  ASSERT_EQ(b0.size(), 1u);
  EXPECT_EQ(b0[0].shape, (Shape{2, 4}));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(b0[0].data[i], i);
  std::vector<Tensor> b1 = r.read_batch(1);
  EXPECT_EQ(b1[0].shape, (Shape{3, 4}));
  EXPECT_EQ(b1[0].data[5], 5.0 / 7);  // float64 on disk: exact
  EXPECT_FALSE(r.has_activation(0, "fc1"));
  ASSERT_TRUE(r.has_activation(1, "fc1"));
  EXPECT_FALSE(r.has_activation(1, "fc2"));
  EXPECT_EQ(r.read_activation(1, "fc1", {3, 8}).data, std::vector<double>(24, 1.0));
  expect_error(
      [&] {
        r.read_activation(1, "fc1", {3, 9});
      },
      {file("good.rec.h5"), ": /batches/000001/activations/fc1: ", "[3, 8]", "[3, 9]"});
  expect_error([&] { r.read_batch(2); }, {file("good.rec.h5"), "out of range"});
}

TEST_F(H5io, RecordingIntegerIndices) {
  Model m = read_model(file("embed.model.h5"));
  RecordingReader r(file("ids.rec.h5"), m);
  std::vector<Tensor> b = r.read_batch(0);
  EXPECT_EQ(b[0].shape, (Shape{2, 5}));
  EXPECT_EQ(b[0].data, (std::vector<double>{0, 1, 2, 3, 9, 9, 8, 7, 6, 5}));
  expect_recording_error("float_ids.rec.h5",
                         {": /batches/000000/ids: ", "dtype float64", "integer"}, "embed.model.h5");
  expect_recording_error("good.rec.h5", {": /batches/000000/ids: ", "missing dataset"},
                         "embed.model.h5");
}

TEST_F(H5io, RecordingMissingInput) {
  expect_recording_error("missing_input.rec.h5",
                         {": /batches/000001/x: ", "missing dataset for model input 'x'"});
}

TEST_F(H5io, RecordingWrongShape) {
  expect_recording_error("wrong_shape.rec.h5", {": /batches/000000/x: ", "[5]", "[4]"});
}

TEST_F(H5io, RecordingWrongRank) {
  expect_recording_error("wrong_rank.rec.h5", {": /batches/000000/x: ", "rank 3, expected 2"});
}

TEST_F(H5io, RecordingMismatchedBatchSize) {
  expect_recording_error("mismatched_n.rec.h5",
                         {": /batches/000000/b: ", "batch size 3 differs from 2"}, "two.model.h5");
}

TEST_F(H5io, RecordingWrongDtype) {
  expect_recording_error("wrong_dtype.rec.h5", {": /batches/000000/x: ", "dtype int32"});
  expect_recording_error("string_dtype.rec.h5", {": /batches/000000/x: ", "dtype string"});
}

TEST_F(H5io, RecordingEmptyBatch) {
  expect_recording_error("empty_batch.rec.h5", {": /batches/000000/x: ", "N = 0"});
}
TEST_F(H5io, RecordingNoBatches) {
  expect_recording_error("no_batches.rec.h5", {": /batches: ", "no batches"});
}

TEST_F(H5io, RecordingWrongFormat) {
  expect_recording_error("wrong_format.rec.h5", {": /: ", "\"dump\", expected \"recording\""});
  expect_recording_error("good.model.h5", {": /: ", "\"model\", expected \"recording\""});
}

TEST_F(H5io, RecordingBatchName) {
  expect_recording_error("bad_batch_name.rec.h5", {": /batches/batch0: ", "six digits"});
}

// ---- dumps -----------------------------------------------------------------------------------

TEST_F(H5io, DumpRoundTrip) {
  const std::string path = out("run.dump.h5");
  Tensor a = random_tensor({2, 3}, 3), b = random_tensor({2, 1, 4}, 4);
  {
    DumpWriter w(path, "{\"host\": \"test\"}");
    w.write(0, "fp64", "z.first", a);
    w.write(0, "fp64", "a/slash", b);  // written after "z.first": order is kept, not sorted
    w.write(0, "fp16", "z.first", b);
    w.write(7, "fp64", "z.first", a);
    expect_error([&] { w.write(0, "fp64", "z.first", a); },
                 {path, "/batches/000000/fp64/z.first", "twice"});
  }
  EXPECT_EQ(file_format(path), "dump");
  DumpReader r(path);
  EXPECT_EQ(r.environment(), "{\"host\": \"test\"}");
  EXPECT_EQ(r.batches(), (std::vector<size_t>{0, 7}));
  EXPECT_EQ(r.modes(0), (std::vector<std::string>{"fp64", "fp16"}));
  EXPECT_EQ(r.layers(0, "fp64"), (std::vector<std::string>{"z.first", "a|slash"}));
  EXPECT_TRUE(r.has(0, "fp64", "a/slash"));
  EXPECT_FALSE(r.has(7, "fp16", "z.first"));
  EXPECT_EQ(r.read(0, "fp64", "a/slash").data, b.data);
  EXPECT_EQ(r.read(0, "fp64", "a/slash").shape, b.shape);
  EXPECT_EQ(r.read(7, "fp64", "z.first").data, a.data);
  expect_error([&] { r.read(7, "fp16", "z.first"); },
               {path, "/batches/000007/fp16", "missing group"});
  expect_error([&] { DumpReader bad(file("good.rec.h5")); }, {"\"recording\", expected \"dump\""});
}

// ---- the CLI turns these errors into one line and exit code 2 ----------------------------------

struct Ran {
  int code = -1;
  std::string err;
};

Ran run_cli(const std::string& args, const std::string& err_file) {
  std::string cmd = std::string(DIVSCOPE_BINARY) + " " + args + " >/dev/null 2>" + err_file;
  int st = std::system(cmd.c_str());
  Ran r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream in(err_file);
  std::stringstream ss;
  ss << in.rdbuf();
  r.err = ss.str();
  return r;
}

TEST_F(H5io, CliInspectBadFileIsOneLineExit2) {
  ASSERT_TRUE(fs::exists(DIVSCOPE_BINARY)) << DIVSCOPE_BINARY;
  for (const char* name : {"not_hdf5.txt", "unknown_op.model.h5", "truncated.model.h5"}) {
    Ran r = run_cli("inspect " + file(name), out("stderr.txt"));
    EXPECT_EQ(r.code, 2) << name << ": " << r.err;
    EXPECT_NE(r.err.find(file(name)), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("HDF5-DIAG"), std::string::npos) << r.err;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not exactly one line: " << r.err;
  }
}

}  // namespace

// ---- model format v2 ------------------------------------------------------------------------

TEST_F(H5io, V2ConstantsSplitAndSourceLoad) {
  Model m = read_model(file("good_v2.model.h5"));
  ASSERT_EQ(m.inputs.size(), 3u);
  EXPECT_FALSE(m.inputs[0].constant);
  EXPECT_EQ(m.inputs[0].batch_axis, 1);
  EXPECT_TRUE(m.inputs[1].constant);
  EXPECT_EQ(m.inputs[1].path, "/constants/scale");
  EXPECT_EQ(m.inputs[1].value.shape, (Shape{1, 6}));
  EXPECT_EQ(m.inputs[2].shape, (Shape{1}));   // a scalar constant is one element
  std::vector<std::string> names;
  for (const Layer& l : m.layers) names.push_back(l.name);
  EXPECT_EQ(names, (std::vector<std::string>{"mul1", "parts:0", "parts:1", "a", "b", "cat", "out"}));
  EXPECT_EQ(m.layers[1].op, "slice");
  EXPECT_EQ(m.layers[2].out_shape, (Shape{4}));
  EXPECT_EQ(m.layers[2].source, "hand-written split");
  EXPECT_EQ(m.layers.back().out_shape, (Shape{6}));
}

TEST_F(H5io, V2ReplaysToTheIndependentResult) {
  Model m = read_model(file("good_v2.model.h5"));
  RecordingReader r(file("good_v2.rec.h5"), m);
  std::vector<Tensor> in = r.read_batch(0);
  ASSERT_EQ(in.size(), 3u);
  EXPECT_EQ(in[1].shape, (Shape{1, 6}));   // constants arrive with batch 1
  Tensor out;
  run_reference_batch(m, in, [&](const Layer& l, const Tensor& t) {
    if (l.name == "out") out = t;
  });
  h5::File f = h5::File::open(file("good_v2.rec.h5"));
  Tensor want = f.root().group("batches").group("000000").dataset("expected").read_f64();
  ASSERT_EQ(out.shape, want.shape);
  for (int64_t i = 0; i < out.size(); ++i) EXPECT_EQ(out.data[i], want.data[i]) << i;
}

TEST_F(H5io, V2RoundTripKeepsConstantsAndVersion) {
  Model m = read_model(file("good_v2.model.h5"));
  write_model(m, out("v2_copy.model.h5"));
  Model c = read_model(out("v2_copy.model.h5"));
  ASSERT_EQ(c.inputs.size(), m.inputs.size());
  EXPECT_TRUE(c.inputs[1].constant);
  EXPECT_EQ(c.inputs[1].value.data, m.inputs[1].value.data);
  EXPECT_EQ(c.inputs[0].batch_axis, 1);
  EXPECT_EQ(c.layers.size(), m.layers.size());
}

TEST_F(H5io, V2Malformed) {
  expect_model_error("v2_split_sizes.model.h5", {"/layers/0001", "'parts' (split)", "sizes add up to 5", "has 6"});
  expect_model_error("v2_split_unindexed.model.h5", {"/layers/0002", "split with 2 outputs", "'parts:0'"});
  expect_model_error("v2_constant_nan.model.h5", {"/constants/scale", "NaN"});
  expect_model_error("v2_constant_int.model.h5", {"/constants/scale", "expected float32 or float64"});
  expect_model_error("v2_constants_only.model.h5", {"'a'", "every input is a constant"});
  expect_model_error("v2_constant_output.model.h5", {"output 'offset' is not a layer"});
  expect_model_error("v2_bad_batch_axis.model.h5", {"/inputs/x", "batch_axis 5"});
  // A version-1 file has no /constants: its layers cannot name one.
  expect_model_error("v2_as_v1.model.h5", {"unknown input 'scale'"});
}
