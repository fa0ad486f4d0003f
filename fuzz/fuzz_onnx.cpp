// libFuzzer target: the ONNX reader (protobuf parse, folding, lowering, validate_and_infer) on
// bytes in memory, then the FP64 reference over one sample when the model is small.
#include "fuzz_util.h"
#include "io/onnx_model.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  divscope::fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace divscope;
  fuzz::expect_input_error_only([&] {
    const Model m = read_onnx_model_bytes(data, size, "fuzz.onnx");
    fuzz::run_reference_if_small(m);
  });
  return 0;
}
