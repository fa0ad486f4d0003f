// libFuzzer target: the recording reader on a file image in memory. The first byte picks the
// model it is read against (fuzz_util.h, example_models); the rest is the HDF5 image. Every
// batch's inputs, recorded activations and run activations are read, as `divscope run` does.
#include <memory>

#include "fuzz_util.h"
#include "io/h5io.h"
#include "io/h5wrap.h"

namespace {
const std::vector<divscope::Model>& models() {
  static const std::vector<divscope::Model> v = [] {
    std::vector<divscope::Model> m;
    for (const std::string& n : divscope::fuzz::example_models())
      m.push_back(divscope::read_model(divscope::fuzz::data_path(n + ".model.h5")));
    return m;
  }();
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  divscope::fuzz::init();
  models();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace divscope;
  if (size < 1) return 0;
  const Model& m = models()[data[0] % models().size()];
  const std::string name = "fuzz.recording.h5";
  h5::MemoryImage image(name, data + 1, size - 1);
  fuzz::expect_input_error_only([&] {
    recording_sample_shapes(name);
  });
  fuzz::expect_input_error_only([&] {
    RecordingReader rec(name, m);
    (void)rec.capture_environment();
    for (size_t i = 0; i < rec.num_batches() && i < 4; ++i) {
      rec.read_batch(i);
      for (const Layer& l : m.layers) {
        Shape full{rec.batch_size(i)};
        full.insert(full.end(), l.out_shape.begin(), l.out_shape.end());
        if (rec.has_activation(i, l.name)) rec.read_activation(i, l.name, full);
        std::string dtype;
        if (rec.has_run_activation(i, l.name)) rec.read_run_activation(i, l.name, full, &dtype);
      }
    }
  });
  return 0;
}
