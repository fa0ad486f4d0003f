// `divscope merge REPORTS… --model M.h5` (README, Commands): JSON reports of `divscope run --report`
// over disjoint batch ranges of one recording (CI shards: --batches 0:10, 10:20, …) combined
// into the report one run over all those batches would have given, then judged again (judge()).
//
// Counts, maxima with their coordinates and batch, histograms and per-sample lists are exactly
// the single run's. The sums behind rel_l2, cosine, mean_abs and the reference's mean/std are
// exact too when every report after the first covers one batch (the run adds batch by batch,
// ((b0 + b1) + b2)…); a report of several batches adds its own sum first, b0 + (b1 + b2), which
// may differ from the single run in the last bits.
#pragma once
#include <ostream>
#include <string>
#include <vector>

namespace divscope {

struct MergeArgs {
  std::vector<std::string> reports;   // JSON reports of `divscope run --report`, any order
  std::string model;                  // the model the reports were made with (judge needs it)
  std::string recording;              // optional: fixes an ONNX model's dynamic dims
  std::string report, junit, html;    // outputs, as `divscope run` writes them
  bool quiet = false;                 // each mode's verdict and the result line only
  std::string table = "auto";         // console rows: auto | all | none
};

// The reports must be divscope_report version 1 of the same model (matching --model), recording
// (file name), backend, modes in the same order, criterion, per-layer tolerances and repeat,
// and their batch ranges must cover one range without overlap or gap; otherwise InputError
// (exit 2) naming the report. Exit code: 0 every mode passes, 1 divergence.
int run_merge(const MergeArgs& a, std::ostream& out, std::ostream& err);

}  // namespace divscope
