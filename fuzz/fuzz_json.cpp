// libFuzzer target: divscope's JSON readers. The first byte picks the reader (its low two bits)
// and, for reports, the example model they are merged against (the bits above); the rest is the
// JSON text:
//   0  a report of `run --report`, through `divscope merge` (read, checked against the model,
//      judged again, printed);
//   1  a tolerance file (--tolerances);
//   2  an environment record or report, as `divscope env-diff` reads it, compared with an
//      empty record and printed.
#include <sstream>

#include "analysis/verdict.h"
#include "commands/merge.h"
#include "env.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  divscope::fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace divscope;
  if (size < 1) return 0;
  const unsigned kind = data[0] & 3u;
  const auto& models = fuzz::example_models();
  fuzz::MemFile file(data + 1, size - 1);
  std::ostringstream out, err;
  fuzz::expect_input_error_only([&] {
    if (kind == 0) {
      MergeArgs a;
      a.reports = {file.path()};
      a.model = fuzz::data_path(models[(data[0] >> 2) % models.size()] + ".model.h5");
      run_merge(a, out, err);
    } else if (kind == 1) {
      TolerancePolicy p;
      p.load_file(file.path());
      for (Mode m : {Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict})
        for (const char* layer : {"fc1", "encoder.0.attn", ""}) p.for_layer(m, layer);
    } else {
      const nlohmann::json env = load_environment(file.path());
      env_gpu_line(env);
      env_host_line(env);
      env_software_line(env);
      env_machine(env);
      const auto d = diff_environments(env, nlohmann::json::object());
      env_diff_json(d);
      print_env_diff(d, out);
    }
  });
  return 0;
}
