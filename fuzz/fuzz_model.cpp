// libFuzzer target: the HDF5 model reader (read_model) on a file image in memory, then the FP64
// reference over one sample when the model is small (docs/testing.md, Fuzzing).
#include "fuzz_util.h"
#include "io/h5io.h"
#include "io/h5wrap.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  divscope::fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace divscope;
  const std::string name = "fuzz.model.h5";
  h5::MemoryImage image(name, data, size);
  fuzz::expect_input_error_only([&] {
    const Model m = read_model(name);
    fuzz::run_reference_if_small(m);
  });
  return 0;
}
