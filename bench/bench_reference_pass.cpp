// The whole analysis beside one FP64 reference pass on the same recording (STYLE 11: the
// anchor in the same run). The analysis is, per batch, the reference plus a chained and an
// isolated run of each of the 5 modes, plus the statistics; this prints how many reference
// passes it costs (target <= 15).
//
//   bench_reference_pass MODEL RECORDING [REPEATS]      (bench/bench_analysis.sh runs it)
//
// Times are the best of REPEATS (default 3) wall-clock runs; reading the recording is inside
// both (the reference pass reads every batch, as the analysis does).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "analysis/analysis.h"
#include "backends/backend.h"
#include "io/h5io.h"
#include "analysis/runner.h"

using namespace divscope;

namespace {

template <class F>
double best_seconds(int repeats, F&& f) {
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL RECORDING [REPEATS]\n", argv[0]);
    return 2;
  }
  const std::string model_path = argv[1], recording_path = argv[2];
  const int repeats = argc > 3 ? std::max(1, std::atoi(argv[3])) : 3;
  try {
    Model model = read_model(model_path);
    size_t batches = 0;
    int64_t samples = 0;
    double checksum = 0;   // keeps the reference pass observable
    double ref_s = best_seconds(repeats, [&] {
      RecordingReader rec(recording_path, model);
      batches = rec.num_batches();
      samples = 0;
      for (size_t i = 0; i < batches; ++i) {
        samples += rec.batch_size(i);
        run_reference_batch(model, rec.read_batch(i), [&](const Layer&, const Tensor& t) {
          if (!t.data.empty()) checksum += t.data[0];
        });
      }
    });
    std::unique_ptr<Backend> backend = make_cpu_backend();
    AnalysisOptions opt;
    opt.modes = {Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict};
    double analysis_s =
        best_seconds(repeats, [&] { analyze(model, recording_path, *backend, opt); });
    std::printf("model %s\nrecording %s (%zu batches, %lld samples)\n", model_path.c_str(),
                recording_path.c_str(), batches, static_cast<long long>(samples));
    std::printf("reference pass  %10.4f s\nfull analysis   %10.4f s   (5 modes, chained + "
                "isolated + stats)\nratio           %10.2f x   (target <= 15)\n",
                ref_s, analysis_s, analysis_s / ref_s);
    std::fprintf(stderr, "checksum %g\n", checksum);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_reference_pass: %s\n", e.what());
    return 3;
  }
  return 0;
}
