// The whole analysis beside one FP64 reference pass on the same recording (STYLE 11: the
// anchor in the same run). The analysis is, per batch, the reference plus a chained and an
// isolated run of each of the 5 modes, plus the statistics; this prints how many reference
// passes it costs (target <= 15).
//
//   bench_reference_pass MODEL RECORDING [REPEATS]      (bench/bench_analysis.sh runs it)
//
// Times are the best of REPEATS (default 3) wall-clock runs; reading the recording is inside
// both (the reference pass reads every batch, as the analysis does).
//
//   bench_reference_pass MODEL RECORDING REPEATS --passes fp64,fp32,... [--threads T]
//
// times instead each mode's chained pass *alone* (fp64: the FP64 reference), through the CPU
// backend's Value API exactly as the analysis runs a chain, with nothing else running: the
// per-pass figure to set beside a framework's forward (bench/bench_cpu_networks.py). Inside
// `run --profile` the same pass shares the cores with the other modes' tasks. The recorded
// inputs are read, uploaded and rounded to the mode's storage before the timing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "analysis/analysis.h"
#include "backends/backend.h"
#include "io/h5io.h"
#include "analysis/runner.h"
#include "precision.h"
#include "reference/gemm_kernels.h"

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

// One chained pass of mode m over every batch of the recording, alone; best of `repeats`.
double pass_seconds(const Model& model, const std::string& recording, Backend& be, Mode m,
                    int repeats) {
  const Liveness live = compute_liveness(model);
  RecordingReader rec(recording, model);
  std::vector<std::vector<Value>> batches;
  for (size_t b = 0; b < rec.num_batches(); ++b) {
    std::vector<Value> in;
    std::vector<Tensor> t = rec.read_batch(b);
    for (size_t i = 0; i < t.size(); ++i) {
      Value v = be.upload(t[i]);
      if (m != Mode::fp64) v = be.to_storage(v, m, model.inputs[i].dtype != "int64");
      in.push_back(std::move(v));
    }
    batches.push_back(std::move(in));
  }
  return best_seconds(repeats, [&] {
    for (const std::vector<Value>& in : batches) {
      ValueSlots chain(model, live);
      chain.set_inputs(in);
      for (const Layer& l : model.layers) {
        chain.put(l.index, m == Mode::fp64 ? be.reference(l, chain.inputs_of(l))
                                           : be.forward(m, l, chain.inputs_of(l)));
        chain.release_after(l.index);
      }
    }
  });
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
    if (argc > 5 && std::string(argv[4]) == "--passes") {
      if (argc > 7 && std::string(argv[6]) == "--threads") gemm_set_max_threads(std::atoi(argv[7]));
      std::unique_ptr<Backend> backend = make_cpu_backend();
      std::string list = argv[5];
      for (size_t at = 0; at <= list.size();) {
        const size_t comma = std::min(list.find(',', at), list.size());
        Mode m;
        if (!parse_mode(list.substr(at, comma - at), &m)) {
          std::fprintf(stderr, "bench_reference_pass: unknown mode '%s'\n", list.substr(at, comma - at).c_str());
          return 2;
        }
        std::printf("pass %s %.4f s\n", mode_name(m), pass_seconds(model, recording_path, *backend, m, repeats));
        std::fflush(stdout);
        at = comma + 1;
      }
      return 0;
    }
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
