// strict keeps its order (issue 15: speed work may reorder the other modes' sums, never strict's):
// a digest of every strict layer output of the shipped examples, bit for bit, against the digests
// of divscope before that work. The expected values were computed from `run --modes strict --dump`
// of the build made before it (commit 7291f56's tree, 2026-11-29) by this file's own definition:
// FNV-1a 64 over, batch by batch, each layer's chained strict output (float32, little-endian) in
// the model's layer order. A change that moves one bit of one strict output fails here.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "analysis/runner.h"
#include "backends/backend.h"
#include "io/h5io.h"

using namespace divscope;

namespace {

const std::string kData = std::string(DIVSCOPE_SOURCE_DIR) + "/data/";

uint64_t fnv1a(uint64_t h, const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

// The analysis' strict chain (recorded inputs rounded to strict's storage, every layer on the
// previous layers' strict outputs) through the CPU backend, digested as described above.
uint64_t strict_digest(const std::string& name) {
  const Model m = read_model(kData + name + ".model.h5");
  const Liveness live = compute_liveness(m);
  RecordingReader rec(kData + name + ".recording.h5", m);
  auto cpu = make_cpu_backend();
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t b = 0; b < rec.num_batches(); ++b) {
    std::vector<Tensor> t = rec.read_batch(b);
    std::vector<Value> in;
    for (size_t i = 0; i < t.size(); ++i)
      in.push_back(cpu->to_storage(cpu->upload(t[i]), Mode::strict, m.inputs[i].dtype != "int64"));
    ValueSlots chain(m, live);
    chain.set_inputs(std::move(in));
    for (const Layer& l : m.layers) {
      Value out = cpu->forward(Mode::strict, l, chain.inputs_of(l));
      const TensorF* f = Backend::host_float(out);
      h = fnv1a(h, f->ptr(), static_cast<size_t>(f->size()) * sizeof(float));
      chain.put(l.index, std::move(out));
      chain.release_after(l.index);
    }
  }
  return h;
}

}  // namespace

TEST(StrictDigest, EveryStrictLayerOutputOfTheExamplesIsTheOneBeforeTheSpeedWork) {
  const struct {
    const char* name;
    uint64_t digest;
  } kBefore[] = {
      {"mlp", 0x7502cc4c9e54c1b3ull},    {"cnn", 0x6f723253c6e8e7b8ull},
      {"resnet", 0x61142876e56fdd8eull}, {"transformer", 0xb2f5c7ba0922bbcbull},
      {"ops", 0x1977a74e94bc1ad2ull},    {"dcgan", 0x1d32c0f601a6f8e5ull},
  };
  for (const auto& e : kBefore) {
    char got[32], want[32];
    std::snprintf(got, sizeof got, "%016llx", static_cast<unsigned long long>(strict_digest(e.name)));
    std::snprintf(want, sizeof want, "%016llx", static_cast<unsigned long long>(e.digest));
    EXPECT_STREQ(got, want) << e.name << ": a strict layer output changed";
  }
}
