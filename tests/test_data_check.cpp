// Data and reference checks (host/analysis/data_check.h, docs/data-checks.md) and the reading of
// the user's own run (RecordingReader::read_run_activation). Models are built in memory;
// recordings are written here with the HDF5 C API (integer inputs, float16 and bfloat16 bits).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include "analysis/data_check.h"
#include "analysis/runner.h"
#include "errors.h"
#include "io/h5io.h"
#include "io/h5wrap.h"
#include "reference/reference.h"
#include "scratch_dir.h"

using namespace divscope;
namespace fs = std::filesystem;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

// Files of this process, removed at exit.
std::string temp_path(const std::string& name) {
  static const ScratchDir dir("divscope_data_check_");
  return dir.path + "/" + name;
}

Tensor randn(Shape s, unsigned seed, double scale = 1.0, double shift = 0.0) {
  Tensor t(std::move(s));
  std::mt19937 g(seed);
  std::normal_distribution<double> d(0.0, 1.0);
  for (double& v : t.data) v = shift + scale * d(g);
  return t;
}

Layer layer(const std::string& name, const std::string& op, std::vector<std::string> inputs,
            std::map<std::string, Tensor> params = {}, std::map<std::string, AttrValue> attrs = {}) {
  Layer l;
  l.name = name;
  l.op = op;
  l.inputs = std::move(inputs);
  l.params = std::move(params);
  l.attrs = std::move(attrs);
  return l;
}

Model model(std::vector<GraphInput> inputs, std::vector<Layer> layers) {
  Model m;
  m.file = "<test>";
  m.name = "test";
  m.inputs = std::move(inputs);
  for (size_t i = 0; i < layers.size(); ++i) {
    layers[i].index = static_cast<int>(i);
    layers[i].path = "/layers/" + h5::padded(i, 4);
  }
  m.layers = std::move(layers);
  validate_and_infer(m);
  return m;
}

// x[16] -> fc1 (linear 16) -> act (relu) -> fc2 (linear 4)
Model mlp() {
  Tensor w1 = randn({16, 16}, 1, 0.25), b1 = randn({16}, 2, 0.1);
  Tensor w2 = randn({4, 16}, 3, 0.25);
  return model({{"x", {16}, "float32"}},
               {layer("fc1", "linear", {"x"}, {{"weight", w1}, {"bias", b1}}),
                layer("act", "relu", {"fc1"}), layer("fc2", "linear", {"act"}, {{"weight", w2}})});
}

// ids[6] (int64) -> emb (embedding [10, 4]) -> out (layernorm)
Model embed() {
  return model({{"ids", {6}, "int64"}},
               {layer("emb", "embedding", {"ids"}, {{"weight", randn({10, 4}, 4)}}),
                layer("out", "layernorm", {"emb"}, {}, {{"normalized_shape", std::vector<int64_t>{4}}, {"eps", 1e-5}})});
}

// A dataset written with the C API: `mem` is the type of `data`, `file` the type on disk.
void write_raw(const h5::Object& g, const std::string& name, hid_t mem, hid_t file,
               const Shape& dims, const void* data, const std::string& dtype_attr = "") {
  std::vector<hsize_t> d(dims.begin(), dims.end());
  h5::SpaceId space(H5Screate_simple(static_cast<int>(d.size()), d.data(), nullptr));
  h5::ObjectId ds(H5Dcreate2(g.id(), name.c_str(), file, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT));
  ASSERT_GE(ds.get(), 0) << name;
  ASSERT_GE(H5Dwrite(ds.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0) << name;
  if (!dtype_attr.empty()) {
    h5::Object o(g.file(), g.child_path(name), ds.release());
    o.write_attr("dtype", dtype_attr);
  }
}

void write_ints(const h5::Object& g, const std::string& name, const Shape& dims,
                const std::vector<int64_t>& v) {
  write_raw(g, name, H5T_NATIVE_INT64, H5T_STD_I64LE, dims, v.data());
}

// A recording whose batch b holds `batches[b]` (name -> float data); int64 inputs as `ints`.
struct RecordingFile {
  std::string path;
  h5::File f;
  h5::Object batches;
  explicit RecordingFile(const std::string& name)
      : path(temp_path(name)), f(h5::File::create(path)), batches(init(f)) {}
  static h5::Object init(const h5::File& f) {
    h5::Object root = f.root();
    root.write_attr("divscope_format", std::string("recording"));
    root.write_attr("divscope_version", int64_t{2});
    return root.create_group("batches");
  }
  h5::Object batch(size_t b) {
    const std::string name = h5::padded(b, 6);
    if (batches.has(name)) return batches.group(name);
    return batches.create_group(name);
  }
};

std::string write_float_recording(const std::string& name, const std::vector<Tensor>& xs,
                                  const std::string& input = "x") {
  RecordingFile r(name);
  for (size_t b = 0; b < xs.size(); ++b) r.batch(b).write_dataset(input, xs[b]);
  return r.path;
}

// The tracker fed as the analysis feeds it: every reference layer of every batch.
std::vector<DataFinding> reference_findings(const Model& m, const RecordingReader& rec) {
  ReferenceHealthTracker tracker(m);
  const Liveness live = compute_liveness(m);
  for (size_t b = 0; b < rec.num_batches(); ++b)
    walk_batch(
        m, live, rec.read_batch(b),
        [](const Layer& l, const std::vector<const Tensor*>& in, Tensor& out) {
          reference_forward(l, in, out);
        },
        [&](const Layer& l, const std::vector<const Tensor*>& in, Tensor& out) {
          tracker.on_layer(l, in, out, static_cast<int64_t>(b));
        });
  return tracker.findings();
}

std::string describe(const std::vector<DataFinding>& fs) {
  std::string s;
  for (const DataFinding& f : fs) s += "\n  " + finding_line(f);
  return s;
}

void expect_finding(const DataFinding* f, const std::string& kind, const std::string& where,
                    int64_t batch, int64_t sample, int64_t occurrences) {
  ASSERT_NE(f, nullptr) << kind;
  EXPECT_EQ(f->kind, kind);
  EXPECT_EQ(f->where, where);
  EXPECT_EQ(f->batch, batch);
  EXPECT_EQ(f->sample, sample);
  EXPECT_EQ(f->occurrences, occurrences);
}

const DataFinding* find(const std::vector<DataFinding>& fs, const std::string& kind) {
  for (const DataFinding& f : fs)
    if (f.kind == kind) return &f;
  return nullptr;
}

}  // namespace

// ---- inputs ----------------------------------------------------------------------------------

TEST(DataCheck, CleanRecordingHasNoFinding) {
  Model m = mlp();
  std::vector<Tensor> xs;
  for (unsigned b = 0; b < 6; ++b) xs.push_back(randn({3 + b % 2, 16}, 10 + b));
  RecordingReader rec(write_float_recording("clean.rec.h5", xs), m);
  EXPECT_TRUE(check_inputs(m, rec, 0, 6).empty()) << describe(check_inputs(m, rec, 0, 6));
  EXPECT_TRUE(reference_findings(m, rec).empty()) << describe(reference_findings(m, rec));
}

TEST(DataCheck, NonFiniteZeroAndConstantSamplesAreNamed) {
  Model m = mlp();
  std::vector<Tensor> xs;
  for (unsigned b = 0; b < 4; ++b) xs.push_back(randn({3, 16}, 20 + b));
  xs[1].data[16 * 2 + 3] = kNaN;        // batch 1 sample 2: 2 NaN, 1 Inf
  xs[1].data[16 * 2 + 4] = kNaN;
  xs[1].data[16 * 2 + 9] = -kInf;
  xs[3].data[16 * 0 + 0] = kInf;        // batch 3 sample 0: one more
  for (int k = 0; k < 16; ++k) xs[2].data[16 * 1 + k] = 0;     // batch 2 sample 1
  for (int k = 0; k < 16; ++k) xs[0].data[16 * 2 + k] = 0.5;   // batch 0 sample 2
  RecordingReader rec(write_float_recording("broken.rec.h5", xs), m);
  const std::vector<DataFinding> fs = check_inputs(m, rec, 0, 4);
  ASSERT_EQ(fs.size(), 3u) << describe(fs);

  const DataFinding* nf = find(fs, "input_nonfinite");
  ASSERT_NE(nf, nullptr);
  expect_finding(nf, "input_nonfinite", "x", 1, 2, 2);
  EXPECT_EQ(nf->detail, "2 NaN, 1 Inf among 16 values");
  EXPECT_EQ(finding_line(*nf),
            "NaN/Inf in the input: input 'x', batch 1, sample 2: 2 NaN, 1 Inf among 16 values "
            "(and 1 more sample)");

  const DataFinding* z = find(fs, "input_all_zero");
  expect_finding(z, "input_all_zero", "x", 2, 1, 1);

  const DataFinding* c = find(fs, "input_constant");
  ASSERT_NE(c, nullptr);
  expect_finding(c, "input_constant", "x", 0, 2, 1);
  EXPECT_NE(c->detail.find("0.5"), std::string::npos) << c->detail;

  // Streaming, batch by batch, as the analysis may feed it: the same findings.
  InputChecker streaming(m);
  for (int64_t b = 0; b < 4; ++b) streaming.on_batch(b, rec.read_batch(b));
  EXPECT_EQ(describe(streaming.findings()), describe(fs));

  // Batch ranges: only the batches asked for.
  EXPECT_TRUE(check_inputs(m, rec, 0, 0).empty());
  const std::vector<DataFinding> two = check_inputs(m, rec, 2, 100);   // clamped
  ASSERT_EQ(two.size(), 2u) << describe(two);
  EXPECT_EQ(two[0].kind, "input_all_zero");
  EXPECT_EQ(two[1].kind, "input_nonfinite");
  EXPECT_EQ(two[1].batch, 3);
  EXPECT_EQ(two[1].sample, 0);
}

TEST(DataCheck, IndexOutOfRangeIsNamedBeforeTheReferenceStops) {
  Model m = embed();
  std::string path;
  {
    RecordingFile r("ids.rec.h5");
    write_ints(r.batch(0), "ids", {2, 6}, {0, 1, 2, 3, 4, 9, 9, 8, 7, 6, 5, 4});
    write_ints(r.batch(1), "ids", {2, 6}, {0, 1, 2, 3, 4, 5, 1, 10, 2, -1, 12, 3});
    write_ints(r.batch(2), "ids", {1, 6}, {0, 0, 0, 0, 0, 0});   // all zero indices are fine
    write_ints(r.batch(3), "ids", {1, 6}, {0, 0, 99, 0, 0, 0});
    path = r.path;
  }
  RecordingReader rec(path, m);
  const std::vector<DataFinding> fs = check_inputs(m, rec, 0, 4);
  ASSERT_EQ(fs.size(), 1u) << describe(fs);
  expect_finding(&fs[0], "index_out_of_range", "ids", 1, 1, 2);
  EXPECT_EQ(fs[0].detail,
            "index 10 at position 1 is outside [0, 10) of embedding 'emb' (3 of 6 indices)");
  // The reference itself refuses the batch (without naming the sample): hence the pre-pass.
  EXPECT_THROW(reference_findings(m, rec), InputError);
}

TEST(DataCheck, OutlierBatches) {
  Model m = mlp();
  std::vector<Tensor> xs;
  for (unsigned b = 0; b < 8; ++b) xs.push_back(randn({4, 16}, 30 + b));
  for (double& v : xs[5].data) v *= 50;     // RMS 50x
  for (double& v : xs[2].data) v += 4;      // mean shifted by 4 RMS
  for (double& v : xs[6].data) v *= 3;      // 3x: within the rule
  RecordingReader rec(write_float_recording("outliers.rec.h5", xs), m);
  std::vector<DataFinding> fs = check_inputs(m, rec, 0, 8);
  ASSERT_EQ(fs.size(), 1u) << describe(fs);
  EXPECT_EQ(fs[0].kind, "input_outlier_batch");
  EXPECT_EQ(fs[0].batch, 2);   // the first flagged batch is the example
  EXPECT_EQ(fs[0].sample, -1);
  EXPECT_EQ(fs[0].occurrences, 2);
  EXPECT_NE(fs[0].detail.find("mean"), std::string::npos) << fs[0].detail;
  // Fewer than 4 batches: no statistics to compare with.
  EXPECT_TRUE(check_inputs(m, rec, 4, 7).empty()) << describe(check_inputs(m, rec, 4, 7));
  // A batch 20x quieter.
  for (double& v : xs[5].data) v /= 1000;
  RecordingReader quiet(write_float_recording("quiet.rec.h5", {xs[0], xs[1], xs[3], xs[5], xs[4]}), m);
  fs = check_inputs(m, quiet, 0, 5);
  ASSERT_EQ(fs.size(), 1u) << describe(fs);
  EXPECT_EQ(fs[0].batch, 3);
  EXPECT_NE(fs[0].detail.find("RMS"), std::string::npos) << fs[0].detail;
}

TEST(DataCheck, ConstantsAndScalarInputsAreNotFlagged) {
  // t (one element per sample, 0 in every sample) * w (a model constant of zeros) + x
  GraphInput c{"w", {8}, "float32", true, Tensor({1, 8}, 0.0)};
  Model m = model({{"x", {8}, "float32"}, {"t", {1}, "float32"}, c},
                  {layer("tw", "mul", {"t", "w"}), layer("y", "add", {"x", "tw"})});
  std::string path;
  {
    RecordingFile r("scalar.rec.h5");
    for (size_t b = 0; b < 4; ++b) {
      r.batch(b).write_dataset("x", randn({2, 8}, 40 + b));
      r.batch(b).write_dataset("t", Tensor({2, 1}, 0.0));
    }
    path = r.path;
  }
  RecordingReader rec(path, m);
  EXPECT_TRUE(check_inputs(m, rec, 0, 4).empty()) << describe(check_inputs(m, rec, 0, 4));
  EXPECT_TRUE(reference_findings(m, rec).empty()) << describe(reference_findings(m, rec));
}

TEST(DataCheck, MaskInputs) {
  // mask (every value 0 or 1): all ones is a sample without padding, and the batches' statistics
  // follow the padding; all zero (everything masked) is still named.
  Model m = model({{"x", {8}, "float32"}, {"mask", {8}, "float32"}},
                  {layer("y", "mul", {"x", "mask"})});
  std::vector<Tensor> masks;
  for (unsigned b = 0; b < 6; ++b) {
    Tensor k({2, 8}, 1.0);
    for (int j = 0; j < 8 - static_cast<int>(b); ++j) k.data[8 + j] = b < 5 ? 1 : 0;
    for (int j = 8 - static_cast<int>(b); j < 8; ++j) k.data[8 + j] = 0;
    masks.push_back(k);
  }
  for (int j = 0; j < 8; ++j) masks[5].data[8 + j] = 0;
  std::string path;
  {
    RecordingFile r("mask.rec.h5");
    for (size_t b = 0; b < 6; ++b) {
      r.batch(b).write_dataset("x", randn({2, 8}, 90 + b));
      r.batch(b).write_dataset("mask", masks[b]);
    }
    path = r.path;
  }
  RecordingReader rec(path, m);
  const std::vector<DataFinding> fs = check_inputs(m, rec, 0, 6);
  ASSERT_EQ(fs.size(), 1u) << describe(fs);
  expect_finding(&fs[0], "input_all_zero", "mask", 5, 1, 1);
}

// ---- the reference ---------------------------------------------------------------------------

TEST(DataCheck, ReferenceNonFiniteFirstLayerOnly) {
  // x -> lg (log) -> ex (exp) -> out (linear): log of a negative input is NaN; exp of a large
  // one overflows. Only the first layer per sample is named.
  Model m = model({{"x", {12}, "float32"}},
                  {layer("lg", "log", {"x"}), layer("sq", "exp", {"x"}), layer("both", "add", {"lg", "sq"}),
                   layer("out", "linear", {"both"}, {{"weight", randn({12, 12}, 5)}})});
  std::vector<Tensor> xs;
  for (unsigned b = 0; b < 3; ++b) {
    Tensor x = randn({3, 12}, 50 + b);
    for (double& v : x.data) v = std::fabs(v) + 0.1;
    xs.push_back(x);
  }
  xs[1].data[12 * 2 + 5] = -1;     // batch 1 sample 2: log -> NaN
  xs[2].data[12 * 0 + 7] = 800;    // batch 2 sample 0: exp -> Inf
  RecordingReader rec(write_float_recording("nonfinite_ref.rec.h5", xs), m);
  EXPECT_TRUE(check_inputs(m, rec, 0, 3).empty());
  const std::vector<DataFinding> fs = reference_findings(m, rec);
  ASSERT_EQ(fs.size(), 2u) << describe(fs);
  expect_finding(&fs[0], "reference_nonfinite", "lg", 1, 2, 1);
  EXPECT_EQ(fs[0].detail, "1 NaN, 0 Inf among 12 values of the output, from finite inputs");
  expect_finding(&fs[1], "reference_nonfinite", "sq", 2, 0, 1);
  EXPECT_EQ(fs[1].detail, "0 NaN, 1 Inf among 12 values of the output, from finite inputs");
}

TEST(DataCheck, NonFiniteInputIsNotBlamedOnTheReference) {
  Model m = mlp();
  Tensor x = randn({2, 16}, 60);
  x.data[3] = kNaN;
  RecordingReader rec(write_float_recording("nan_input.rec.h5", {x}), m);
  ASSERT_EQ(check_inputs(m, rec, 0, 1).size(), 1u);
  EXPECT_TRUE(reference_findings(m, rec).empty()) << describe(reference_findings(m, rec));
}

TEST(DataCheck, ReferenceDeadLayer) {
  // x -> fc (linear, identity) -> act (relu) -> sc (mul by a constant 0) -> out (relu)
  Tensor eye({16, 16});
  for (int i = 0; i < 16; ++i) eye.data[i * 16 + i] = 1;
  GraphInput zero{"zero", {16}, "float32", true, Tensor({1, 16}, 0.0)};
  Model m = model({{"x", {16}, "float32"}, zero},
                  {layer("fc", "linear", {"x"}, {{"weight", eye}}), layer("act", "relu", {"fc"}),
                   layer("sc", "mul", {"act", "zero"}), layer("out", "relu", {"sc"})});
  Tensor x = randn({3, 16}, 70);
  for (int k = 0; k < 16; ++k) x.data[16 + k] = -1 - std::fabs(x.data[16 + k]);   // sample 1 < 0
  RecordingReader rec(write_float_recording("dead.rec.h5", {x, x}), m);
  const std::vector<DataFinding> fs = reference_findings(m, rec);
  // act is dead in sample 1 of both batches; sc (mul: not checked) and out (input all zero)
  // are not named.
  ASSERT_EQ(fs.size(), 1u) << describe(fs);
  expect_finding(&fs[0], "reference_dead", "act", 0, 1, 2);
  EXPECT_EQ(finding_line(fs[0]),
            "FP64 reference output entirely zero: layer 'act', batch 0, sample 1: all 16 output "
            "values are 0 while its inputs are not (and 1 more sample)");
}

TEST(DataCheck, ShippedExamplesAreClean) {
  const std::string dir = std::string(DIVSCOPE_SOURCE_DIR) + "/data/";
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string p = entry.path().string();
    const std::string suffix = ".recording.h5";
    if (p.size() < suffix.size() || p.compare(p.size() - suffix.size(), suffix.size(), suffix))
      continue;
    const std::string stem = p.substr(0, p.size() - suffix.size());
    SCOPED_TRACE(stem);
    Model m = read_model(stem + ".model.h5");
    RecordingReader rec(p, m);
    const std::vector<DataFinding> in = check_inputs(m, rec, 0, rec.num_batches());
    EXPECT_TRUE(in.empty()) << describe(in);
    const std::vector<DataFinding> ref = reference_findings(m, rec);
    EXPECT_TRUE(ref.empty()) << describe(ref);
  }
}

// ---- run_activations and capture_environment --------------------------------------------------

namespace {

// IEEE binary16 on disk, as h5py writes numpy float16.
h5::TypeId half_type() {
  h5::TypeId t(H5Tcopy(H5T_IEEE_F32LE));
  H5Tset_fields(t.get(), 15, 10, 5, 0, 10);
  H5Tset_size(t.get(), 2);
  H5Tset_ebias(t.get(), 15);
  return t;
}

// bits of float16: 1.0, -2.5, smallest subnormal, 65504, +inf, NaN
const std::vector<uint16_t> kHalfBits = {0x3c00, 0xc100, 0x0001, 0x7bff, 0x7c00, 0x7e00};
const std::vector<double> kHalfValues = {1.0, -2.5, std::ldexp(1.0, -24), 65504, kInf, kNaN};
// bits of bfloat16: 1.0, -3.0 (0xc040), 1.00390625 (0x3f80 | 1 -> 1 + 2^-7), smallest
// subnormal, -inf, NaN
const std::vector<int16_t> kBf16Bits = {0x3f80, static_cast<int16_t>(0xc040), 0x3f81, 0x0001,
                                        static_cast<int16_t>(0xff80), 0x7fc0};
const std::vector<double> kBf16Values = {1.0, -3.0, 1 + std::ldexp(1.0, -7),
                                         std::ldexp(1.0, -133), -kInf, kNaN};

void expect_same(const Tensor& t, const std::vector<double>& want) {
  ASSERT_EQ(t.data.size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) {
    if (std::isnan(want[k]))
      EXPECT_TRUE(std::isnan(t.data[k])) << k;
    else
      EXPECT_EQ(t.data[k], want[k]) << k;
  }
}

// Runs `f`, which must throw an InputError of one line containing every one of `parts`.
template <class F>
void expect_input_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected InputError, nothing thrown";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << p << " not in: " << msg;
  }
}

}  // namespace

TEST(RunActivations, Float16Bfloat16Float32Float64) {
  Model m = model({{"x", {4}, "float32"}},
                  {layer("a", "linear", {"x"}, {{"weight", randn({3, 4}, 7)}}),
                   layer("b", "linear", {"x"}, {{"weight", randn({3, 4}, 8)}})});
  const std::vector<float> f32 = {1.5f, -0.1f, 3e38f, 1e-45f, 0.f, -0.f};
  const std::vector<double> f64 = {0.1, -1e300, 5e-324, 2.0, kInf, -7};
  std::string path;
  {
  RecordingFile r("run_ok.rec.h5");
  r.f.root().write_attr("capture_environment", std::string("{\"torch\": \"2.3.0\"}"));
  for (size_t b = 0; b < 2; ++b) r.batch(b).write_dataset("x", randn({2, 4}, 80 + b));
  h5::Object run0 = r.batch(0).create_group("run_activations");
  const h5::TypeId half = half_type();   // the bits written as they are
  write_raw(run0, "a", half.get(), half.get(), {2, 3}, kHalfBits.data());
  write_raw(run0, "b", H5T_NATIVE_INT16, H5T_STD_I16LE, {2, 3}, kBf16Bits.data(), "bfloat16");
  h5::Object run1 = r.batch(1).create_group("run_activations");
  write_raw(run1, "a", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, {2, 3}, f32.data());
  write_raw(run1, "b", H5T_NATIVE_DOUBLE, H5T_IEEE_F64BE, {2, 3}, f64.data());   // big-endian
  run1.create_group("not_a_layer");
  path = r.path;
  }

  RecordingReader rec(path, m);
  EXPECT_EQ(rec.capture_environment(), "{\"torch\": \"2.3.0\"}");
  EXPECT_TRUE(rec.has_run_activation(0, "a"));
  EXPECT_TRUE(rec.has_run_activation(1, "b"));
  EXPECT_FALSE(rec.has_run_activation(1, "c"));
  EXPECT_FALSE(rec.has_run_activation(1, "not_a_layer"));   // a group
  EXPECT_FALSE(rec.has_activation(0, "a"));
  std::string dt;
  expect_same(rec.read_run_activation(0, "a", {2, 3}, &dt), kHalfValues);
  EXPECT_EQ(dt, "float16");
  expect_same(rec.read_run_activation(0, "b", {2, 3}, &dt), kBf16Values);
  EXPECT_EQ(dt, "bfloat16");
  std::vector<double> f32d(f32.begin(), f32.end());
  expect_same(rec.read_run_activation(1, "a", {2, 3}, &dt), f32d);
  EXPECT_EQ(dt, "float32");
  expect_same(rec.read_run_activation(1, "b", {2, 3}, &dt), f64);
  EXPECT_EQ(dt, "float64");
  expect_same(rec.read_run_activation(1, "b", {2, 3}), f64);   // dtype not asked for
  expect_input_error([&] { rec.read_run_activation(1, "b", {2, 4}); },
                     {path, ": /batches/000001/run_activations/b: ", "[2, 3]", "[2, 4]"});
  expect_input_error([&] { rec.read_run_activation(1, "c", {2, 3}); },
                     {path, "/batches/000001/run_activations/c", "missing"});
}

TEST(RunActivations, NoEnvironmentIsEmpty) {
  Model m = mlp();
  RecordingReader rec(write_float_recording("noenv.rec.h5", {randn({1, 16}, 1)}), m);
  EXPECT_EQ(rec.capture_environment(), "");
  EXPECT_FALSE(rec.has_run_activation(0, "fc1"));
}

TEST(RunActivations, MalformedAreRefusedAtOpen) {
  Model m = model({{"x", {4}, "float32"}},
                  {layer("a", "linear", {"x"}, {{"weight", randn({3, 4}, 7)}})});
  struct Case {
    const char* name;
    std::function<void(const h5::Object&)> write;
    std::vector<std::string> parts;
  };
  const std::vector<int32_t> i32(6, 1);
  const std::vector<int16_t> i16(6, 1);
  const std::vector<float> f32(6, 1);
  const std::vector<Case> cases = {
      {"int32", [&](const h5::Object& g) { write_raw(g, "a", H5T_NATIVE_INT32, H5T_STD_I32LE, {2, 3}, i32.data()); },
       {"dtype int32", "expected float16, float32, float64 or bfloat16"}},
      {"int16_no_attr", [&](const h5::Object& g) { write_raw(g, "a", H5T_NATIVE_INT16, H5T_STD_I16LE, {2, 3}, i16.data()); },
       {"dtype int16", "bfloat16"}},
      {"unknown_attr", [&](const h5::Object& g) { write_raw(g, "a", H5T_NATIVE_INT16, H5T_STD_I16LE, {2, 3}, i16.data(), "float8"); },
       {"dtype = \"float8\"", "only \"bfloat16\""}},
      {"bf16_on_float", [&](const h5::Object& g) { write_raw(g, "a", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, {2, 3}, f32.data(), "bfloat16"); },
       {"dtype float32 with attribute dtype = \"bfloat16\""}},
      {"bf16_int32", [&](const h5::Object& g) { write_raw(g, "a", H5T_NATIVE_INT32, H5T_STD_I32LE, {2, 3}, i32.data(), "bfloat16"); },
       {"dtype int32 with attribute"}},
      {"rank", [&](const h5::Object& g) { write_raw(g, "a", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, {6}, f32.data()); },
       {"has shape [6], expected [2, 3]"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string path;
    {
      RecordingFile r(std::string("bad_run_") + c.name + ".rec.h5");
      r.batch(0).write_dataset("x", randn({2, 4}, 1));
      c.write(r.batch(0).create_group("run_activations"));
      path = r.path;
    }
    std::vector<std::string> parts = c.parts;
    parts.push_back(path + ": /batches/000000/run_activations/a: ");
    expect_input_error([&] { RecordingReader rec(path, m); }, parts);
  }
}
