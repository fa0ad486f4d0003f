// Outputs written over a given-up input (reference.h layer_forward_in_place, modes.h
// mode_forward_in_place, Backend::forward_donating; docs/memory.md): bit for bit the out-of-place
// result, for every layer of the shipped examples whose op allows it, in the FP64 reference and
// every mode, on random inputs with NaN, Inf, zeros and subnormals; and the analysis' peak of
// values drops while its results stay the same.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "analysis/analysis.h"
#include "analysis/runner.h"
#include "backends/backend.h"
#include "io/h5io.h"
#include "io/h5wrap.h"
#include "reference/modes.h"
#include "reference/reference.h"
#include "scratch_dir.h"

using namespace divscope;

namespace {

const std::string kData = std::string(DIVSCOPE_SOURCE_DIR) + "/data/";

Tensor random_input(const Shape& s, std::mt19937& g) {
  Tensor t(s);
  std::normal_distribution<double> d(0, 2);
  for (int64_t i = 0; i < t.size(); ++i) {
    const int kind = static_cast<int>(g() % 40);
    t.data[i] = kind == 0 ? std::numeric_limits<double>::quiet_NaN()
              : kind == 1 ? std::numeric_limits<double>::infinity()
              : kind == 2 ? -std::numeric_limits<double>::infinity()
              : kind == 3 ? 0.0
              : kind == 4 ? 1e-41
                          : d(g);
  }
  return t;
}

bool same_bits(const float* a, const float* b, int64_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }
bool same_bits(const double* a, const double* b, int64_t n) { return std::memcmp(a, b, n * sizeof(double)) == 0; }

}  // namespace

TEST(InPlace, EveryCapableLayerOfTheExamplesGivesTheOutOfPlaceBits) {
  std::mt19937 g(7);
  int checked = 0, refused = 0;
  for (const char* name : {"mlp", "cnn", "resnet", "transformer", "ops", "dcgan"}) {
    const Model m = read_model(kData + std::string(name) + ".model.h5");
    for (const Layer& l : m.layers) {
      std::vector<Tensor> ins;
      bool integer = false;
      for (const ValueRef& r : l.refs) {
        if (r.is_input && m.inputs[r.index].dtype == "int64") integer = true;
        if (r.is_input && m.inputs[r.index].constant) {
          ins.push_back(m.inputs[r.index].value);
          continue;
        }
        Shape s = r.is_input ? m.inputs[r.index].shape : m.layers[r.index].out_shape;
        s.insert(s.begin(), 3);
        ins.push_back(random_input(s, g));
      }
      if (integer) continue;
      Shape out_shape = l.out_shape;
      out_shape.insert(out_shape.begin(), 3);
      for (size_t k = 0; k < ins.size(); ++k) {
        SCOPED_TRACE(std::string(name) + " layer " + l.name + " (" + l.op + ") input " + std::to_string(k));
        const bool applies = op_in_place_capable(l.op) && ins[k].shape == out_shape;
        // FP64 reference.
        std::vector<const Tensor*> in;
        for (const Tensor& t : ins) in.push_back(&t);
        Tensor want;
        reference_forward(l, in, want);
        Tensor io = ins[k];
        in[k] = &io;
        const Tensor before = io;
        ASSERT_EQ(layer_forward_in_place<Fp64Policy>(l, in, k, io), applies);
        if (applies) {
          ASSERT_EQ(io.shape, want.shape);
          EXPECT_TRUE(same_bits(io.ptr(), want.ptr(), want.size())) << "fp64";
        } else {
          EXPECT_TRUE(same_bits(io.ptr(), before.ptr(), before.size())) << "untouched when it does not apply";
          ++refused;
        }
        // Every mode, from the inputs in its storage.
        for (Mode mode : {Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict}) {
          std::vector<TensorF> fins;
          for (const Tensor& t : ins) fins.push_back(to_storage(t, mode, true));
          std::vector<const TensorF*> fin;
          for (const TensorF& t : fins) fin.push_back(&t);
          TensorF fwant;
          mode_forward(mode, l, fin, fwant);
          TensorF fio = fins[k];
          fin[k] = &fio;
          ASSERT_EQ(mode_forward_in_place(mode, l, fin, k, fio), applies) << mode_name(mode);
          if (applies) EXPECT_TRUE(same_bits(fio.ptr(), fwant.ptr(), fwant.size())) << mode_name(mode);
        }
        checked += applies;
      }
    }
  }
  EXPECT_GT(checked, 20) << "the examples hold element-wise layers";
  EXPECT_GT(refused, 20) << "and layers that must not run in place";
}

namespace {

// The CPU backend without the in-place variants: every output in a fresh value.
class CpuWithoutInPlace : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  void reference(const Layer& l, const std::vector<const Tensor*>& in, Tensor& out) override {
    reference_forward(l, in, out);
  }
  void forward(Mode m, const Layer& l, const std::vector<const TensorF*>& in, TensorF& out) override {
    mode_forward(m, l, in, out);
  }
};


// x -> fc -> relu -> add(relu, x) -> relu: at the add, x, the relu and the sum are live unless
// the sum takes the relu's place (both inputs die there): the peak is at the add.
Model residual(int64_t width) {
  Model m;
  m.file = "<test>";
  m.name = "residual";
  m.inputs = {{"x", {width}, "float32"}};
  std::mt19937 g(3);
  std::normal_distribution<double> d(0, 1 / std::sqrt(static_cast<double>(width)));
  Layer fc;
  fc.name = "fc";
  fc.op = "linear";
  fc.inputs = {"x"};
  fc.params["weight"] = Tensor({width, width});
  for (double& v : fc.params["weight"].data) v = d(g);
  Layer act, add, out;
  act.name = "act";
  act.op = "relu";
  act.inputs = {"fc"};
  add.name = "add";
  add.op = "add";
  add.inputs = {"act", "x"};
  out.name = "out";
  out.op = "relu";
  out.inputs = {"add"};
  m.layers = {fc, act, add, out};
  for (size_t i = 0; i < m.layers.size(); ++i) {
    m.layers[i].index = static_cast<int>(i);
    m.layers[i].path = "/layers/" + h5::padded(i, 4);
  }
  validate_and_infer(m);
  return m;
}

std::string residual_recording(int64_t width) {
  static const ScratchDir dir("divscope_in_place_");
  const std::string path = dir.path + "/residual.recording.h5";
  h5::File f = h5::File::create(path);
  h5::Object root = f.root();
  root.write_attr("divscope_format", std::string("recording"));
  root.write_attr("divscope_version", int64_t{2});
  h5::Object bs = root.create_group("batches");
  std::mt19937 g(5);
  for (int b = 0; b < 2; ++b) {
    bs.create_group(h5::padded(b, 6)).write_dataset("x", random_input({16, width}, g));
  }
  return path;
}

}  // namespace

TEST(InPlace, TheAnalysisHoldsLessAndFindsTheSame) {
  // The examples' peaks are at layers that never run in place (convolutions, linear, attention):
  // never higher there; the residual model's peak is at its add: lower.
  const std::string residual_rec = residual_recording(64);
  for (const char* name : {"residual", "resnet", "transformer", "cnn"}) {
    SCOPED_TRACE(name);
    const bool lower = std::string(name) == "residual";
    const Model m = lower ? residual(64) : read_model(kData + std::string(name) + ".model.h5");
    const std::string rec = lower ? residual_rec : kData + std::string(name) + ".recording.h5";
    AnalysisOptions opt;
    opt.modes = {Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict};
    opt.threads = 1;
    auto cpu = make_cpu_backend();
    CpuWithoutInPlace plain;
    const AnalysisResult a = analyze(m, rec, *cpu, opt);
    const AnalysisResult b = analyze(m, rec, plain, opt);
    ASSERT_EQ(a.modes.size(), b.modes.size());
    for (size_t mi = 0; mi < a.modes.size(); ++mi)
      for (size_t i = 0; i < a.modes[mi].layers.size(); ++i) {
        const LayerResult &x = a.modes[mi].layers[i], &y = b.modes[mi].layers[i];
        EXPECT_EQ(std::memcmp(&x.chained.sum_err2, &y.chained.sum_err2, sizeof(double)), 0) << mi << " " << i;
        EXPECT_EQ(std::memcmp(&x.isolated.sum_err2, &y.isolated.sum_err2, sizeof(double)), 0) << mi << " " << i;
        EXPECT_EQ(x.chained.err_hist, y.chained.err_hist);
        EXPECT_EQ(x.chained.max_abs, y.chained.max_abs);
        EXPECT_EQ(x.diverged, y.diverged);
      }
    for (size_t i = 0; i < a.sensitivity.size(); ++i)
      EXPECT_EQ(std::memcmp(&a.sensitivity[i].sum_err2, &b.sensitivity[i].sum_err2, sizeof(double)), 0);
    EXPECT_EQ(cpu->memory().live, 0) << "every value freed, in place or not";
    EXPECT_EQ(plain.memory().live, 0);
    if (lower) EXPECT_LT(cpu->memory().peak, plain.memory().peak) << "outputs written over dying inputs";
    else EXPECT_LE(cpu->memory().peak, plain.memory().peak);
  }
}
