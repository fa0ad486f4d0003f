// The FP64 CPU reference (host/reference/) against PyTorch float64 (tests/torch_oracle.py),
// plus the order guarantees of the GEMM core and the reference's runtime input checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "errors.h"
#include "graph/model.h"
#include "reference/gemm.h"
#include "reference/reference.h"

namespace divscope {
namespace {

constexpr double kMaxRelL2 = 1e-12;

// ---- the oracle: tests/torch_oracle.py, run once per test binary run ----------------------

struct OracleCase {
  std::string name, op;
  unsigned long seed = 0;
  std::vector<GraphInput> inputs;        // per-sample shapes
  std::vector<Tensor> input_data;        // full tensors
  std::map<std::string, AttrValue> attrs;
  std::map<std::string, Tensor> params;
  Tensor output;
};

// Raw little-endian float64 (this host is little-endian, as is every machine we build for).
bool read_bin(const std::filesystem::path& p, Tensor& t, std::string& err) {
  t.data.assign(static_cast<size_t>(numel(t.shape)), 0.0);
  std::ifstream f(p, std::ios::binary);
  f.read(reinterpret_cast<char*>(t.data.data()), static_cast<std::streamsize>(t.data.size() * 8));
  if (!f || f.peek() != EOF) {
    err = p.string() + ": missing, short or too long for shape " + shape_str(t.shape);
    return false;
  }
  return true;
}

Shape read_shape(std::istringstream& in) {
  Shape s;
  for (int64_t d; in >> d;) s.push_back(d);
  return s;
}

// The oracle's output is cached next to the test binary under a hash of the script (and the
// interpreter), so that ctest, which runs every test in its own process, pays for torch once
// per version of the script. A missing cache is written to a private directory and renamed
// into place whole, so concurrent test processes never read a half-written one.
std::filesystem::path oracle_cache_root() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::temp_directory_path() / "divscope_torch_oracle"
            : exe.parent_path() / "torch_oracle";
}

class Oracle {
 public:
  static const Oracle& get() {
    static Oracle o;
    return o;
  }
  bool ok = false;
  std::string error;
  std::vector<std::string> names;
  std::map<std::string, OracleCase> cases;

 private:
  Oracle() {
    namespace fs = std::filesystem;
    const std::string script = DIVSCOPE_SOURCE_DIR "/tests/torch_oracle.py";
    std::ifstream sf(script, std::ios::binary);
    if (!sf.is_open()) {
      error = "cannot read " + script;
      return;
    }
    std::stringstream text;
    text << sf.rdbuf() << DIVSCOPE_PYTHON;
    uint64_t h = 1469598103934665603ull;   // FNV-1a of script + interpreter
    for (unsigned char ch : text.str()) h = (h ^ ch) * 1099511628211ull;
    char key[17];
    std::snprintf(key, sizeof key, "%016llx", static_cast<unsigned long long>(h));
    fs::path root = oracle_cache_root();
    dir_ = root / key;
    if (!fs::exists(dir_ / "cases.txt") && !generate(root, key, script)) return;
    std::ifstream list(dir_ / "cases.txt");
    for (std::string n; list >> n;) names.push_back(n);
    if (names.empty()) error = "the PyTorch oracle wrote no cases to " + dir_.string();
    for (const std::string& n : names)
      if (!load(n)) return;
    ok = !names.empty();
  }

  bool generate(const std::filesystem::path& root, const std::string& key,
                const std::string& script) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path tmp = root / (key + ".tmp." + std::to_string(::getpid()));
    fs::path log = root / (key + ".log." + std::to_string(::getpid()));
    fs::create_directories(root, ec);
    std::string cmd = DIVSCOPE_PYTHON " " + script + " " + tmp.string() + " > " +
                      log.string() + " 2>&1";
    int rc = std::system(cmd.c_str());
    std::ifstream lf(log);
    std::stringstream out;
    out << lf.rdbuf();
    fs::remove(log, ec);
    if (rc != 0) {
      fs::remove_all(tmp, ec);
      error = "the PyTorch oracle failed (exit status " + std::to_string(rc) + "): " + cmd +
              "\n(it needs Debian's python3-torch for " DIVSCOPE_PYTHON ")\n" + out.str();
      return false;
    }
    fs::rename(tmp, dir_, ec);
    if (ec) fs::remove_all(tmp, ec);   // another test process got there first: use its copy
    for (const auto& e : fs::directory_iterator(root, ec))   // caches of older scripts
      if (e.path().filename().string().size() == 16 && e.path() != dir_)
        fs::remove_all(e.path(), ec);
    return true;
  }

  bool load(const std::string& name) {
    OracleCase c;
    c.name = name;
    auto d = dir_ / name;
    std::ifstream mf(d / "manifest.txt");
    if (!mf) {
      error = "missing " + (d / "manifest.txt").string();
      return false;
    }
    for (std::string line; std::getline(mf, line);) {
      std::istringstream in(line);
      std::string key, a, b;
      in >> key;
      if (key == "op") {
        in >> c.op;
      } else if (key == "seed") {
        in >> c.seed;
      } else if (key == "input") {
        in >> a >> b;
        Tensor t(read_shape(in));
        if (!read_bin(d / ("input_" + a + ".bin"), t, error)) return false;
        c.inputs.push_back({a, Shape(t.shape.begin() + 1, t.shape.end()), b});
        c.input_data.push_back(std::move(t));
      } else if (key == "attr") {
        in >> a >> b;
        if (b == "int") {
          int64_t v;
          in >> v;
          c.attrs[a] = v;
        } else if (b == "float") {
          double v;
          in >> v;
          c.attrs[a] = v;
        } else if (b == "str") {
          std::string v;
          in >> v;
          c.attrs[a] = v;
        } else {
          c.attrs[a] = read_shape(in);
        }
      } else if (key == "param") {
        in >> a;
        Tensor t(read_shape(in));
        if (!read_bin(d / ("param_" + a + ".bin"), t, error)) return false;
        c.params[a] = std::move(t);
      } else if (key == "output") {
        c.output = Tensor(read_shape(in));
        if (!read_bin(d / "output.bin", c.output, error)) return false;
      }
    }
    cases[name] = std::move(c);
    return true;
  }

  std::filesystem::path dir_;
};

// A one-layer model over the given graph inputs.
Model one_layer_model(const std::string& op, const std::vector<GraphInput>& inputs,
                      std::map<std::string, AttrValue> attrs,
                      std::map<std::string, Tensor> params) {
  Model m;
  m.file = "<test>";
  m.inputs = inputs;
  Layer L;
  L.index = 0;
  L.name = op + "_under_test";
  L.op = op;
  L.path = "/layers/0000";
  for (const GraphInput& gi : inputs) L.inputs.push_back(gi.name);
  L.attrs = std::move(attrs);
  L.params = std::move(params);
  m.layers.push_back(std::move(L));
  return m;
}

// Relative L2 error over the elements where the reference is finite; a non-finite reference
// element must be matched by the same class (NaN, +inf, -inf), counted in *class_mismatches.
double rel_l2(const Tensor& c, const Tensor& r, double* ref_norm, int64_t* class_mismatches) {
  double num = 0, den = 0;
  *class_mismatches = 0;
  for (int64_t i = 0; i < r.size(); ++i) {
    if (!std::isfinite(r.data[i])) {
      const bool same = std::isnan(r.data[i]) ? std::isnan(c.data[i]) : c.data[i] == r.data[i];
      *class_mismatches += !same;
      continue;
    }
    double d = c.data[i] - r.data[i];
    num += d * d;
    den += r.data[i] * r.data[i];
  }
  *ref_norm = std::sqrt(den);
  return std::sqrt(num) / std::sqrt(den);
}

void check_case(const std::string& name) {
  const Oracle& o = Oracle::get();
  ASSERT_TRUE(o.ok) << o.error;
  auto it = o.cases.find(name);
  ASSERT_NE(it, o.cases.end()) << "tests/torch_oracle.py has no case " << name;
  const OracleCase& c = it->second;
  SCOPED_TRACE("oracle case " + name + " (op " + c.op + ", seed " + std::to_string(c.seed) +
               ", tests/torch_oracle.py)");
  Model m = one_layer_model(c.op, c.inputs, c.attrs, c.params);
  ASSERT_NO_THROW(validate_and_infer(m));
  const Layer& L = m.layers[0];
  int64_t batch = 0;
  for (const Tensor& t : c.input_data) batch = std::max(batch, t.shape[0]);
  Shape inferred{batch};
  inferred.insert(inferred.end(), L.out_shape.begin(), L.out_shape.end());
  ASSERT_EQ(shape_str(inferred), shape_str(c.output.shape)) << "op table shape inference";
  std::vector<const Tensor*> in;
  for (const Tensor& t : c.input_data) in.push_back(&t);
  Tensor out;
  ASSERT_NO_THROW(reference_forward(L, in, out));
  ASSERT_EQ(shape_str(out.shape), shape_str(c.output.shape));
  double ref_norm = 0;
  int64_t class_mismatches = 0;
  const double err = rel_l2(out, c.output, &ref_norm, &class_mismatches);
  ASSERT_GT(ref_norm, 0.0) << "all-zero reference output proves nothing";
  EXPECT_EQ(class_mismatches, 0) << "NaN/Inf outputs that differ from torch's";
  EXPECT_LE(err, kMaxRelL2) << "relative L2 error against torch float64";
}

std::set<std::string>& tested_cases() {
  static std::set<std::string> s;
  return s;
}

#define ORACLE_TEST(Name)                                                     \
  [[maybe_unused]] const bool registered_##Name = tested_cases().insert(#Name).second; \
  TEST(Reference, Name) { check_case(#Name); }

// Issue-2 ops first.
ORACLE_TEST(LinearLeadingDims)
ORACLE_TEST(LinearNoBiasBatch1)
ORACLE_TEST(LinearBlocked)
ORACLE_TEST(MatmulBatched)
ORACLE_TEST(MatmulBroadcastA)
ORACLE_TEST(MatmulBroadcastB)
ORACLE_TEST(MatmulRank3)
ORACLE_TEST(Conv2dPadded)
ORACLE_TEST(Conv2dStride2Dilation)
ORACLE_TEST(Conv2dGroupsNoBias)
ORACLE_TEST(Conv2dDepthwiseBatch1)
ORACLE_TEST(Conv2dNonSquareKernel)
ORACLE_TEST(Conv2dLargeChannels)
ORACLE_TEST(BatchNorm2d)
ORACLE_TEST(LayerNorm)
ORACLE_TEST(LayerNorm2dNoAffine)
ORACLE_TEST(Relu)
ORACLE_TEST(GeluErf)
ORACLE_TEST(GeluTanh)
ORACLE_TEST(AddSameShape)
ORACLE_TEST(AddBroadcast)
ORACLE_TEST(SoftmaxLastAxis)
ORACLE_TEST(SoftmaxMiddleAxis)
ORACLE_TEST(SoftmaxNegativeAxis)
ORACLE_TEST(MaxPool2d)
ORACLE_TEST(MaxPool2dPaddingDilationCeil)
ORACLE_TEST(MaxPool2dCeilBatch1)
ORACLE_TEST(FlattenDefault)
ORACLE_TEST(FlattenMiddleDims)
// The rest of docs/ops.md
ORACLE_TEST(ConvTranspose2dStride2)
ORACLE_TEST(ConvTranspose2dGroupsDilation)
ORACLE_TEST(RmsNorm)
ORACLE_TEST(RmsNorm2dNoWeight)
ORACLE_TEST(GroupNorm)
ORACLE_TEST(GroupNormRank3NoAffine)
ORACLE_TEST(Silu)
ORACLE_TEST(Sigmoid)
ORACLE_TEST(Tanh)
ORACLE_TEST(LeakyRelu)
ORACLE_TEST(MulBroadcast)
ORACLE_TEST(LogSoftmax)
ORACLE_TEST(AvgPool2d)
ORACLE_TEST(AvgPool2dCeilIncludePad)
ORACLE_TEST(AvgPool2dCeilExcludePad)
ORACLE_TEST(AvgPool2dNonSquare)
ORACLE_TEST(GlobalAvgPool2d)
ORACLE_TEST(UpsampleNearest2d)
ORACLE_TEST(Reshape)
ORACLE_TEST(Permute)
ORACLE_TEST(Embedding)
ORACLE_TEST(Sdpa)
ORACLE_TEST(SdpaCausal)
ORACLE_TEST(SdpaCausalRectangular)
ORACLE_TEST(SdpaRank3Scale)
// Model format v2 ops (notes/new_ops_contract.md).
ORACLE_TEST(Hardtanh)
ORACLE_TEST(Relu6)
ORACLE_TEST(Hardswish)
ORACLE_TEST(Hardsigmoid)
ORACLE_TEST(Sqrt)
ORACLE_TEST(Rsqrt)
ORACLE_TEST(Exp)
ORACLE_TEST(Log)
ORACLE_TEST(Abs)
ORACLE_TEST(Neg)
ORACLE_TEST(Erf)
ORACLE_TEST(SubBatch1Operand)
ORACLE_TEST(DivSpecials)
ORACLE_TEST(DivBatch1Numerator)
ORACLE_TEST(PowPositiveBase)
ORACLE_TEST(PowIntegerExponents)
ORACLE_TEST(PowSpecials)
ORACLE_TEST(MaximumNaN)
ORACLE_TEST(MinimumNaN)
ORACLE_TEST(WhereBroadcast)
ORACLE_TEST(ReduceSumTwoAxes)
ORACLE_TEST(ReduceSumLongRow)
ORACLE_TEST(ReduceMeanKeepdim)
ORACLE_TEST(ReduceMeanUnorderedAxes)
ORACLE_TEST(ReduceMaxSpecials)
ORACLE_TEST(ReduceMaxKeepdim)
ORACLE_TEST(ConcatMiddle)
ORACLE_TEST(ConcatLastNegative)
ORACLE_TEST(ConcatSingle)
ORACLE_TEST(SliceStep)
ORACLE_TEST(SliceLastAxis)
ORACLE_TEST(SliceWhole)
ORACLE_TEST(ExpandBatch1Like)
ORACLE_TEST(ExpandPerSample)
ORACLE_TEST(AdaptiveAvgPool2dRagged)
ORACLE_TEST(AdaptiveAvgPool2dUpsampling)
ORACLE_TEST(AdaptiveAvgPool2dBatch1)

// A case the oracle writes but no test checks would silently go unchecked.
TEST(Reference, EveryOracleCaseHasATest) {
  const Oracle& o = Oracle::get();
  ASSERT_TRUE(o.ok) << o.error;
  for (const std::string& n : o.names)
    EXPECT_TRUE(tested_cases().count(n)) << "oracle case " << n << " has no ORACLE_TEST";
  EXPECT_EQ(o.names.size(), tested_cases().size());
}

// ---- order guarantees (bitwise, no oracle) ------------------------------------------------

std::vector<double> randn(size_t n, unsigned seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d;
  std::vector<double> v(n);
  for (double& x : v) x = d(g);
  return v;
}

// The blocked GEMM core must give, bit for bit, acc = 0; acc = a*b + acc for k ascending;
// then + bias: sizes straddle every block size (KC 256, MC 128, NC 1024) and A is a
// transposed (strided) view.
TEST(Reference, GemmBlockedKeepsNaiveOrderBitwise) {
  const int64_t M = 133, N = 1031, K = 517;
  const unsigned seed = 7;
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto at = randn(K * M, seed), b = randn(K * N, seed + 1), bias = randn(N, seed + 2);
  std::vector<double> c(M * N, std::nan(""));
  gemm<Fp64Policy>(M, N, K, {at.data(), 1, M}, {b.data(), N, 1}, {bias.data(), 0, 1}, c.data(),
                   N);
  int64_t mismatches = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc = at[k * M + m] * b[k * N + n] + acc;
      acc = acc + bias[n];
      mismatches += acc != c[m * N + n];
    }
  EXPECT_EQ(mismatches, 0);
}

// conv2d's reduction index is (input channel, kernel row, kernel column), last fastest
// (docs/ops.md, Precision modes: strict formulas): the reference must equal that direct loop bit for bit.
TEST(Reference, Conv2dKeepsChannelRowColumnOrderBitwise) {
  const int64_t N = 2, C = 4, H = 7, W = 6, Co = 6, G = 2, kh = 3, kw = 2;
  const int64_t sh = 2, sw = 1, ph = 1, pw = 1, dh = 1, dw = 2, cg = C / G;
  const unsigned seed = 11;
  SCOPED_TRACE("seed " + std::to_string(seed));
  Tensor w({Co, cg, kh, kw}), b({Co}), x({N, C, H, W});
  w.data = randn(w.data.size(), seed);
  b.data = randn(b.data.size(), seed + 1);
  x.data = randn(x.data.size(), seed + 2);
  Model m = one_layer_model("conv2d", {{"x", {C, H, W}, "float32"}},
                            {{"stride", std::vector<int64_t>{sh, sw}},
                             {"padding", std::vector<int64_t>{ph, pw}},
                             {"dilation", std::vector<int64_t>{dh, dw}},
                             {"groups", int64_t(G)}},
                            {{"weight", w}, {"bias", b}});
  validate_and_infer(m);
  Tensor out;
  reference_forward(m.layers[0], {&x}, out);
  int64_t OH = out.dim(2), OW = out.dim(3), mismatches = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < Co; ++o)
      for (int64_t oy = 0; oy < OH; ++oy)
        for (int64_t ox = 0; ox < OW; ++ox) {
          double acc = 0;
          int64_t g = o / (Co / G);
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t ky = 0; ky < kh; ++ky)
              for (int64_t kx = 0; kx < kw; ++kx) {
                int64_t iy = oy * sh - ph + ky * dh, ix = ox * sw - pw + kx * dw;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;   // zero term
                acc = w.data[((o * cg + c) * kh + ky) * kw + kx] *
                          x.data[((n * C + g * cg + c) * H + iy) * W + ix] +
                      acc;
              }
          acc = acc + b.data[o];
          mismatches += acc != out.data[((n * Co + o) * OH + oy) * OW + ox];
        }
  EXPECT_EQ(mismatches, 0);
}

// ---- runtime input checks ----------------------------------------------------------------

void expect_embedding_rejects(double bad_index, const std::string& expect_in_message) {
  Tensor w({5, 3});
  w.data = randn(w.data.size(), 3);
  Model m = one_layer_model("embedding", {{"tokens", {4}, "int64"}}, {}, {{"weight", w}});
  validate_and_infer(m);
  Tensor idx({2, 4});
  for (int64_t i = 0; i < idx.size(); ++i) idx.data[i] = static_cast<double>(i % 5);
  idx.data[6] = bad_index;
  Tensor out;
  try {
    reference_forward(m.layers[0], {&idx}, out);
    FAIL() << "index " << bad_index << " was accepted";
  } catch (const InputError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("embedding_under_test"), std::string::npos) << msg;
    EXPECT_NE(msg.find(expect_in_message), std::string::npos) << msg;
  }
}

TEST(Reference, EmbeddingIndexOutOfRangeNamesLayer) {
  expect_embedding_rejects(5, "index 5 ");
  expect_embedding_rejects(-1, "index -1 ");
}

TEST(Reference, EmbeddingNonIntegerIndexNamesLayer) {
  expect_embedding_rejects(2.5, "index 2.5 ");
  expect_embedding_rejects(std::nan(""), "index nan");
}

TEST(Reference, InputShapeDisagreeingWithModelIsInputError) {
  Model m = one_layer_model("relu", {{"x", {3, 4}, "float32"}}, {}, {});
  validate_and_infer(m);
  Tensor x({2, 3, 5}, 1.0), out;
  EXPECT_THROW(reference_forward(m.layers[0], {&x}, out), InputError);
}

}  // namespace
}  // namespace divscope
