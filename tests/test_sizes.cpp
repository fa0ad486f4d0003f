// Sizes read from files (issue "Hostile files, killed runs and careless paths", parts 5 and 7):
// every shape product and sum is overflow-checked; a dataset that declares more than its file can
// hold or memory can take is refused before allocation; a layer whose output cannot fit in memory
// is refused naming it; and the libhdf5 heap-corruption file ends in one line and exit 2. Each
// issue case runs through the binary as its user would.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "cli_util.h"
#include "errors.h"
#include "graph/model.h"
#include "graph/shape_rules.h"
#include "io/h5io.h"

using namespace divscope;
using namespace divscope::testing;

namespace {

constexpr int64_t k2p61 = int64_t{1} << 61, k2p62 = int64_t{1} << 62;
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

// x [3, 16, 16] (data/cnn.recording.h5's input 'image') through one layer, then relu.
Model one_layer(const std::string& op, std::map<std::string, AttrValue> attrs,
                std::map<std::string, Tensor> params = {}) {
  Model m;
  m.file = "sizes.model.h5";
  m.name = "sizes";
  GraphInput x;
  x.name = "image";
  x.shape = {3, 16, 16};
  x.dtype = "float32";
  m.inputs.push_back(x);
  Layer l;
  l.name = "big";
  l.op = op;
  l.path = "/layers/0000";
  l.inputs = {"image"};
  l.attrs = std::move(attrs);
  l.params = std::move(params);
  m.layers.push_back(l);
  Layer r;
  r.name = "after";
  r.op = "relu";
  r.path = "/layers/0001";
  r.inputs = {"big"};
  m.layers.push_back(r);
  return m;
}

Model upsample(int64_t fh, int64_t fw) {
  return one_layer("upsample_nearest2d", {{"scale_factor", std::vector<int64_t>{fh, fw}}});
}

Model conv(int64_t padding) {
  return one_layer("conv2d",
                   {{"stride", std::vector<int64_t>{1, 1}}, {"padding", std::vector<int64_t>{padding, padding}},
                    {"dilation", std::vector<int64_t>{1, 1}}, {"groups", int64_t{1}}},
                   {{"weight", Tensor(Shape{2, 3, 3, 3}, 0.5)}});
}

std::string refusal(Model m) {
  try {
    validate_and_infer(m);
  } catch (const InputError& e) {
    return e.what();
  }
  return "accepted, out_shape " + shape_str(m.layers[0].out_shape);
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// One line on stderr, exit 2, naming `file` and `what`.
void expect_one_line(const CliResult& r, const std::string& file, const std::string& what) {
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(has(r.err, file)) << r.err;
  EXPECT_TRUE(has(r.err, what)) << r.err;
}

// Replaces dataset `path` of an HDF5 file by one that declares `dims` float32 elements and stores
// none (chunked + deflate, or contiguous): a few KiB on disk.
void declare_dataset(const std::string& file, const std::string& path, const std::vector<hsize_t>& dims,
                     bool deflate) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0) << file;
  if (H5Lexists(f, path.c_str(), H5P_DEFAULT) > 0) {
    ASSERT_GE(H5Ldelete(f, path.c_str(), H5P_DEFAULT), 0);
  }
  hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (deflate) {
    std::vector<hsize_t> chunk(dims.size(), 1);
    chunk.back() = std::min<hsize_t>(dims.back(), 1024);
    H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
    H5Pset_deflate(dcpl, 4);
  }
  hid_t d = H5Dcreate2(f, path.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  ASSERT_GE(d, 0) << path;
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Fclose(f);
}

std::string run_cnn(const std::string& model) {
  return "run --backend cpu -q --modes fp32 --model " + model + " --recording " + data_file("cnn.recording.h5");
}

}  // namespace

// ---- the arithmetic --------------------------------------------------------------------------

TEST(Sizes, CheckedArithmetic) {
  EXPECT_EQ(checked_mul(k2p61, 2, "x"), k2p62);
  EXPECT_EQ(checked_add(kMax - 1, 1, "x"), kMax);
  EXPECT_THROW(checked_mul(k2p62, 2, "x"), SizeOverflow);
  EXPECT_THROW(checked_mul(-k2p62, 3, "x"), SizeOverflow);
  EXPECT_THROW(checked_add(kMax, 1, "x"), SizeOverflow);
  try {
    checked_mul(16, k2p61, "output height");
    ADD_FAILURE();
  } catch (const SizeOverflow& e) {
    EXPECT_STREQ(e.what(), "output height overflows int64 (16 * 2305843009213693952)");
  }
  EXPECT_EQ(numel({}), 1);
  EXPECT_EQ(numel({3, 0, k2p62}), 0);
  EXPECT_EQ(numel({k2p61, 3}), 3 * k2p61);
  EXPECT_THROW(numel({k2p61, 4}), SizeOverflow);   // 2^63
}

TEST(Sizes, NumelAndStridesOverflow) {
  EXPECT_THROW(numel({k2p62, 2}), SizeOverflow);
  EXPECT_THROW(numel({1 << 30, 1 << 30, 1 << 30}), SizeOverflow);
  EXPECT_EQ(numel({1 << 30, 1 << 30, 4}), k2p62);
  EXPECT_EQ(strides_of({2, 3, 4}), (Shape{12, 4, 1}));
  EXPECT_THROW(strides_of({2, k2p62, 4}), SizeOverflow);
  EXPECT_THROW(Tensor(Shape{k2p62, 4}), SizeOverflow);   // never a wrapped (zero) allocation
}

TEST(Sizes, BytesAndMemory) {
  EXPECT_EQ(bytes_str(512), "512 B");
  EXPECT_EQ(bytes_str(int64_t{19} * 1024 + 400), "19.4 KiB");
  EXPECT_EQ(bytes_str(int64_t{8} << 40), "8.0 TiB");
  EXPECT_EQ(saturating_bytes(k2p62, 8), kMax);
  EXPECT_EQ(saturating_bytes(1000, 8), 8000);
  EXPECT_GT(host_memory_bytes(), int64_t{1} << 26);
  EXPECT_LT(host_memory_bytes(), int64_t{1} << 50);   // a real machine: 1 PiB is not one
}

// ---- shape rules -----------------------------------------------------------------------------

TEST(Sizes, UpsampleScaleOverflowIsRefusedNamingTheLayer) {
  // Issue: [2^62, 2^62] made a zero dim and SIGFPE (exit 3); [2^61, 1] a dim of -2^63 and PASS.
  for (int64_t f : {k2p62, k2p61}) {
    const std::string e = refusal(upsample(f, f == k2p62 ? f : 1));
    EXPECT_TRUE(has(e, "sizes.model.h5: /layers/0000: layer 'big' (upsample_nearest2d): output height "
                       "(height * scale_factor) overflows int64 (16 * " + std::to_string(f) + ")")) << e;
  }
  // No overflow, but one sample is 3 * 2^36 * 8 bytes = 1.5 TiB.
  const std::string e = refusal(upsample(1 << 14, 1 << 14));
  EXPECT_TRUE(has(e, "layer 'big' (upsample_nearest2d): output [3, 262144, 262144] needs 1.5 TiB per sample as "
                     "float64, more than this machine's memory")) << e;
  EXPECT_EQ(refusal(upsample(2, 3)), "accepted, out_shape [3, 32, 48]");
}

TEST(Sizes, ConvPaddingOverflowGivesTheOverflowNotTheKernel) {
  // Issue: padding 2^62 wrapped 2 * padding to -2^63 and said "kernel larger than the padded input".
  const std::string e = refusal(conv(k2p62));
  EXPECT_TRUE(has(e, "layer 'big' (conv2d): output height (input 16, kernel 3, padding 4611686018427387904, "
                     "dilation 1) overflows int64 (2 * 4611686018427387904)")) << e;
  EXPECT_FALSE(has(e, "kernel larger")) << e;
  // 2^40: no overflow in a dim, but [2, 2^41 + 15, 2^41 + 15] has more elements than int64.
  const std::string big = refusal(conv(int64_t{1} << 40));
  EXPECT_TRUE(has(big, "layer 'big' (conv2d): output [2, 2199023255566, 2199023255566] has more elements per "
                       "sample than int64 holds")) << big;
  EXPECT_EQ(refusal(conv(1)), "accepted, out_shape [2, 16, 16]");
}

TEST(Sizes, PoolingAndTransposedConvolution) {
  // A pooling padding of 2^62 passed "at most half the kernel" when 2 * padding wrapped to -2^63.
  EXPECT_TRUE(has(refusal(one_layer("maxpool2d", {{"kernel_size", std::vector<int64_t>{3, 3}},
                                                  {"stride", std::vector<int64_t>{1, 1}},
                                                  {"padding", std::vector<int64_t>{k2p62, k2p62}}})),
                  "padding must be at most half the kernel size"));
  // Half of a kernel of 2^63 - 1: the padded extent overflows.
  const std::string pool = refusal(one_layer(
      "maxpool2d", {{"kernel_size", std::vector<int64_t>{kMax, kMax}}, {"stride", std::vector<int64_t>{1, 1}},
                    {"padding", std::vector<int64_t>{k2p62 - 1, k2p62 - 1}}}));
  EXPECT_TRUE(has(pool, "layer 'big' (maxpool2d): output height")) << pool;
  EXPECT_TRUE(has(pool, "overflows int64")) << pool;
  // ceil_mode with a stride near 2^63: ceil(num / s) must not compute num + s - 1.
  EXPECT_EQ(refusal(one_layer("maxpool2d", {{"kernel_size", std::vector<int64_t>{2, 2}},
                                            {"stride", std::vector<int64_t>{kMax, kMax}},
                                            {"padding", std::vector<int64_t>{0, 0}},
                                            {"ceil_mode", int64_t{1}}})),
            "accepted, out_shape [3, 1, 1]");
  const std::string tconv = refusal(one_layer(
      "conv_transpose2d",
      {{"stride", std::vector<int64_t>{k2p62, 1}}, {"padding", std::vector<int64_t>{0, 0}},
       {"output_padding", std::vector<int64_t>{0, 0}}, {"dilation", std::vector<int64_t>{1, 1}},
       {"groups", int64_t{1}}},
      {{"weight", Tensor(Shape{3, 2, 3, 3}, 0.5)}}));
  EXPECT_TRUE(has(tconv, "layer 'big' (conv_transpose2d): output height overflows int64 (15 * 4611686018427387904)"))
      << tconv;
}

TEST(Sizes, ConcatFlattenReshapeSliceExpand) {
  using namespace shape_rules;
  Layer L;
  L.attrs["axis"] = int64_t{1};
  EXPECT_THROW(infer_concat(L, {{1, k2p62}, {1, k2p62}}), SizeOverflow);
  EXPECT_EQ(infer_concat(L, {{1, k2p62}, {1, k2p62 - 1}}), (Shape{1, kMax}));
  Layer F;
  EXPECT_THROW(infer_flatten(F, {{1, k2p62, 4}}), SizeOverflow);
  Layer R;
  R.attrs["shape"] = std::vector<int64_t>{k2p62, 4, -1};
  EXPECT_THROW(infer_reshape(R, {{1, 16}}), SizeOverflow);
  Layer S;
  S.attrs["axis"] = int64_t{1};
  S.attrs["start"] = int64_t{0};
  S.attrs["end"] = int64_t{5};
  S.attrs["step"] = kMax;   // (end - start + step - 1) / step wrapped to a negative dim
  EXPECT_EQ(infer_slice(S, {{1, 8}}), (Shape{1, 1}));
  S.attrs["step"] = int64_t{2};
  EXPECT_EQ(infer_slice(S, {{1, 8}}), (Shape{1, 3}));
  // expand to 2^62 per sample: no arithmetic in the rule, the sample size check refuses it.
  Model m = one_layer("expand", {{"shape", std::vector<int64_t>{3, 16, k2p62}}});
  m.inputs[0].shape = {3, 16, 1};
  const std::string e = refusal(m);
  EXPECT_TRUE(has(e, "layer 'big' (expand): output [3, 16, 4611686018427387904] has more elements per sample "
                     "than int64 holds")) << e;
}

TEST(Sizes, InputShapeLargerThanMemoryIsRefused) {
  Model m = upsample(1, 1);
  m.inputs[0].shape = {1 << 21, 1 << 21, 1 << 21};   // 2^63
  std::string e = refusal(m);
  EXPECT_TRUE(has(e, "/inputs/image: input 'image' [2097152, 2097152, 2097152] has more elements per sample")) << e;
  m.inputs[0].shape = {1 << 20, 1 << 20, 3};
  e = refusal(m);
  EXPECT_TRUE(has(e, "/inputs/image: input 'image' [1048576, 1048576, 3] needs 24.0 TiB per sample")) << e;
}

// ---- the issue's cases through the binary ----------------------------------------------------

TEST(Sizes, IssueCasesThroughTheBinary) {
  struct Case {
    const char* name;
    Model model;
    const char* what;
  };
  const std::vector<Case> cases = {
      {"up62", upsample(k2p62, k2p62), "layer 'big' (upsample_nearest2d): output height (height * scale_factor) overflows int64"},
      {"up61", upsample(k2p61, 1), "layer 'big' (upsample_nearest2d): output height (height * scale_factor) overflows int64"},
      {"pad62", conv(k2p62), "layer 'big' (conv2d): output height (input 16, kernel 3, padding 4611686018427387904"},
  };
  for (const Case& c : cases) {
    const std::string model = temp_path(std::string(c.name) + ".model.h5");
    write_model(c.model, model);
    CliResult r = run_cli(run_cnn(model));
    SCOPED_TRACE(c.name);
    expect_one_line(r, model + ": /layers/0000: ", c.what);
    EXPECT_EQ(r.out, "");
    std::remove(model.c_str());
  }
}

TEST(Sizes, DeclaredParameterLargerThanTheFileIsRefusedNamingIt) {
  // Issue: a tiny file declaring a 2^40-element dataset gave exit 3 "out of host memory" without
  // naming the file. Compressed (deflate's ratio bound) and contiguous (the file's size bound).
  for (bool deflate : {true, false}) {
    Model m = conv(1);
    const std::string model = temp_path(deflate ? "declared_deflate.model.h5" : "declared_plain.model.h5");
    write_model(m, model);
    declare_dataset(model, "/layers/0000/weight", {1 << 20, 1 << 20}, deflate);
    EXPECT_LT(std::filesystem::file_size(model), 64u << 10);
    CliResult r = run_cli(run_cnn(model));
    SCOPED_TRACE(deflate ? "deflate" : "contiguous");
    expect_one_line(r, model + ": /layers/0000/weight: ",
                    std::string("dataset declares [1048576, 1048576] float32 elements (4.0 TiB), more than the file (") );
    EXPECT_EQ(has(r.err, "even compressed (deflate: at most 1032:1)"), deflate) << r.err;
    EXPECT_FALSE(has(r.err, "out of host memory")) << r.err;
    std::remove(model.c_str());
  }
}

TEST(Sizes, DeclaredBatchLargerThanTheFileIsRefusedWhenTheRecordingOpens) {
  const std::string rec = temp_path("declared.recording.h5");
  std::filesystem::copy_file(data_file("cnn.recording.h5"), rec, std::filesystem::copy_options::overwrite_existing);
  declare_dataset(rec, "/batches/000001/image", {hsize_t{1} << 36, 3, 16, 16}, true);
  CliResult r = run_cli("run --backend cpu -q --modes fp32 --model " + data_file("cnn.model.h5") + " --recording " + rec);
  expect_one_line(r, rec + ": /batches/000001/image: ",
                  "dataset declares [68719476736, 3, 16, 16] float32 elements (192.0 TiB), more than the file");
  EXPECT_EQ(r.out, "");
  std::remove(rec.c_str());
}

TEST(Sizes, LayerOutputOfTheRecordedBatchLargerThanMemoryIsRefusedNamingIt) {
  // One sample fits in memory, so the model is read; the recorded batch of 8 does not, and the
  // replay refuses it before the batch runs (analysis.cpp, check_memory: exit 3, the layer and
  // the bytes), instead of failing to allocate or swapping.
  const double mem = static_cast<double>(host_memory_bytes());
  const int64_t f = static_cast<int64_t>(std::sqrt(mem / (3 * 16 * 16 * 8)));   // 6144 f^2 <= memory
  ASSERT_GT(f, 4);
  const std::string model = temp_path("batch_memory.model.h5");
  write_model(upsample(f, f), model);
  EXPECT_EQ(run_cli("inspect " + model).code, 0);
  CliResult r = run_cli(run_cnn(model));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(has(r.err, "layer 'big' (/layers/0000): output [8, 3, " + std::to_string(16 * f))) << r.err;
  EXPECT_TRUE(has(r.err, "GB as float64 for a batch of 8")) << r.err;
  std::remove(model.c_str());
}

// ---- the libhdf5 heap-corruption file (issue part 7) -----------------------------------------

// tests/data/corrupt_heap_overflow.h5: data/transformer.model.h5 with ten bits flipped (the reader
// fuzzer, --kind bytes --seed 102, round 393). Reading a layer's `inputs` string, libhdf5 1.10
// copies a global heap object larger than its buffer without failing; the next layer's weight has
// a bad checksum. glibc used to abort later, in H5Fclose while the error unwound or in the
// library's shutdown at exit: "double free or corruption", exit 3.
TEST(Sizes, HeapCorruptingFileIsOneLineAndExitTwo) {
  const std::string file = std::string(DIVSCOPE_SOURCE_DIR) + "/tests/data/corrupt_heap_overflow.h5";
  for (const std::string& args :
       {"inspect " + file, "run --backend cpu --quiet --modes fp16,strict --model " + file + " --recording " +
                               data_file("transformer.recording.h5")}) {
    for (int i = 0; i < 3; ++i) {   // the heap's layout varies with the environment: not by luck
      CliResult r = run_cli(args);
      SCOPED_TRACE(args);
      expect_one_line(r, "corrupt_heap_overflow.h5", "corrupt_heap_overflow.h5");
      EXPECT_FALSE(has(r.err, "internal error")) << r.err;
      EXPECT_FALSE(has(r.err, "double free")) << r.err;
    }
  }
}
