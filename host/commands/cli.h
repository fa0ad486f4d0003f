// Subcommand implementations behind the CLI (tools/divscope.cpp only parses and dispatches).
#pragma once
#include <cstdint>
#include <ostream>
#include <optional>
#include <string>
#include <vector>

namespace divscope {

struct InspectArgs {
  std::string file;
  std::string model;       // optional: validate a recording against this model
  std::string recording;   // optional: fixes an ONNX model's dynamic dims (docs/onnx.md)
};

// What every replay of a recording (run, bisect) is given: the files, where to run, which
// batches, and the tolerance policy's flags and file.
struct ReplayArgs {
  std::string model, recording;
  std::string backend = "auto";      // auto | cpu | cuda
  std::string batches;               // "A:B", "A:", ":B" or "A" (half-open, 0-based)
  std::optional<double> atol, rtol, max_mismatch, budget_factor, collapse;
  std::string tolerances;            // JSON file of per-layer, per-mode tolerances
};

struct RunArgs : ReplayArgs {
  std::string modes = "fp32,tf32,fp16,bf16,strict";
  std::string criterion = "budget";   // budget | allclose | baseline (docs/verdict.md)
  std::optional<double> baseline_factor;
  int repeat = 1;                    // runs of every chained layer, checked bitwise equal
  std::string report, junit, html, dump;
  // --dump-layers GLOBS (comma-separated fnmatch-style globs on layer names), --dump-batches A:B
  // (half-open, 0-based, intersected with the replayed range): what the dump keeps.
  std::optional<std::string> dump_layers, dump_batches;
  // The journal (docs/journal.md): --journal FILE (default: beside the first output file), and
  // --resume JOURNAL, which continues an interrupted run from its command line (`args`, after
  // "run", which the journal keeps).
  std::string journal, resume;
  bool no_journal = false;
  int64_t max_samples = 1000;        // divergent sample records kept per mode (kDefaultMaxSamples)
  int threads = 0;                   // CPU backend: the task pool and each GEMM (0: every core)
  std::string profile;               // --profile FILE: seconds per pass as JSON (PassTimes)
  std::vector<std::string> args;
  bool quiet = false;                // per-mode verdicts and the result line only
  std::string table = "auto";        // console rows: auto (excerpt past 30 layers) | all | none
};

// `divscope bisect`: the smallest set of layers that must run in fp32 for a reduced-precision
// mode (tf32, fp16, bf16) to pass every layer, found greedily (promote the first divergent
// layer, run again) and then pruned (drop each promoted layer that is not needed).
struct BisectArgs : ReplayArgs {
  std::string mode = "fp16";
  std::string report;
};

int run_inspect(const InspectArgs& a, std::ostream& out);
int run_bisect(const BisectArgs& a, std::ostream& out, std::ostream& err);
int run_run(const RunArgs& a, std::ostream& out, std::ostream& err);
int run_env(std::ostream& out, std::ostream& err);

}  // namespace divscope
