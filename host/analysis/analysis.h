// The analysis (README, What divscope run computes): replays a recording through a model — reference, then for every
// mode a chained and an isolated run — compares every layer and applies the verdict.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "analysis/compare.h"
#include "analysis/data_check.h"
#include "graph/model.h"
#include "analysis/verdict.h"

namespace divscope {

// The worst samples of one layer under the budget criterion: the largest per-sample rel_l2
// (collapse) and the largest rel_l2 in units of the sample's budget, u_mode * kappa.
struct SampleWorst {
  double rel_l2 = 0;             // largest per-sample rel_l2 (+inf: NaN/Inf the reference lacks)
  int64_t rel_batch = -1, rel_sample = -1;
  double budget_use = 0;         // largest rel_l2 / (u_mode * kappa) over samples
  double kappa = 1;              // that sample's sensitivity
  int64_t use_batch = -1, use_sample = -1;
  void add(double rel, double use, double kappa, int64_t batch, int64_t sample);
  void merge(const SampleWorst& o);   // o covers later batches
};

struct LayerResult {
  LayerStats chained, isolated;
  Tolerance tolerance;
  bool diverged = false;          // chained stats break the policy
  bool isolated_failed = false;   // isolated stats break the policy (own error)
  double amplification = -1;      // chained rel_l2 over that of its inputs; < 0: undefined
  int64_t strict_bitwise_mismatch = 0;   // strict on a device: elements != the CPU strict path
  // --repeat N: elements of the chained output that differ bitwise between the first run and a
  // rerun on the same inputs (the most of any rerun, summed over batches). Any is a divergence:
  // a layer that does not reproduce itself cannot be compared with anything.
  int64_t nondeterministic = 0;
  // Baseline criterion: the rel_l2 each run was allowed (< 0: not judged by the baseline).
  double baseline_limit = -1, isolated_baseline_limit = -1;

  // Per-sample facts of the budget criterion (docs/verdict.md), gathered over every sample of
  // every batch; judge() turns them into the verdict, so a merge of partial runs can too.
  SampleWorst chained_worst, isolated_worst;
  // The rounding unit each run's budget counts in (effective_roundoff: u_mode, or float
  // accumulation over the longest sum, upstream included for the chained run).
  double unit = 0, isolated_unit = 0;
  Rule rule = Rule::none, isolated_rule = Rule::none;   // what fired (judge())
  std::string reason;            // why the layer diverged, in words and numbers (judge())
};

// One step of the chain from the culprit to the first divergent layer: the layer's own
// (isolated) error and how much it amplifies what it reads (sensitivity probe).
struct ChainLink {
  int layer = -1;
  double own_rel_l2 = 0;        // isolated run
  double amplification = 1;     // kappa(layer) / kappa(its worst input)
  double chained_rel_l2 = 0;
};

struct SampleDivergence {
  int64_t batch = 0, sample = 0;
  int layer = -1;                 // first divergent layer of this sample; its chained stats there:
  double rel_l2 = 0;
  double max_abs = 0;
  int64_t mismatch = 0, count = 0;
  bool nonfinite = false;         // NaN/Inf the reference lacks
};

struct ModeResult {
  Mode mode = Mode::fp32;
  std::vector<LayerResult> layers;
  std::vector<LayerStats> inputs;   // graph inputs rounded to the mode's storage vs recorded
  int first_divergent = -1;       // layer index, -1: none
  int culprit = -1;
  // From the culprit (first) to the first divergent layer (last), along the path of largest
  // amplification; empty when the mode passed.
  std::vector<ChainLink> culprit_chain;
  // Divergent samples: how many (every one counted), and the worst (earliest layer, then largest
  // rel_l2; ties in batch order) AnalysisResult::max_samples of them, in that order after
  // judge(). Kept bounded while the batches go, so memory and report do not grow with the
  // recording's length.
  int64_t divergent_samples = 0;
  std::vector<SampleDivergence> samples;
  bool passed() const { return first_divergent < 0; }
};

// The model as the user ran it (/batches/*/run_activations, recorded by capture with
// record_run): judged layer by layer against FP64 with the budget criterion, in units of the
// mode its dtype and flags say it ran in, beside divscope's own emulation of that mode.
struct UserRun {
  std::string dtype;          // of the recorded activations: float16, bfloat16, float32, float64
  ModeResult result;          // layers without recorded activations have count 0
  // Per layer: the user's chained rel_l2 over divscope's emulation of the same mode (-1: not
  // comparable); a run much worse than the arithmetic points at the stack, not the format.
  std::vector<double> vs_emulation;
  int worst_vs_emulation = -1;
};

struct AnalysisResult;

// What the journal keeps (docs/journal.md): the statistics of every finished batch, before
// judge(), handed to AnalysisOptions::checkpoint after each batch and when a signal stops the run.
struct Checkpoint {
  const AnalysisResult& done;   // batches [batch_begin, next_batch); findings: the input checks
  // The FP64 reference's health findings of those batches (the unfinished batch's left out).
  const std::vector<DataFinding>& reference_findings;
  int64_t next_batch = 0;
  int signal = 0;               // > 0: the run stops (SIGINT/SIGTERM); the journal must be written
  std::string dump_partial;     // with a signal and --dump: the partial dump kept for --resume
};

// Divergent sample records kept per mode by default (run --max-samples).
constexpr int64_t kDefaultMaxSamples = 1000;

// Sorts divergent samples worst first (earliest first divergent layer, then largest rel_l2; ties
// keep their order, which is batch order) and keeps the first `k`. Applied to a run's samples
// in any number of steps, each on the survivors of the last plus later batches, it keeps what
// one sort of all of them would.
void keep_worst_samples(std::vector<SampleDivergence>& samples, int64_t k);

struct AnalysisOptions {
  std::vector<Mode> modes;
  TolerancePolicy policy;
  Criterion criterion = Criterion::budget;     // baseline needs fp32 among the modes
  int repeat = 1;                              // runs of each chained layer (bitwise checked)
  bool isolated = true;                        // false: chained runs only (no culprit)
  // Mixed precision (divscope bisect), as under autocast: in the tf32, fp16 and bf16 chained
  // runs, layers whose flag is set run in fp32; float graph inputs arrive in fp32; a layer of the
  // mode rounds what it reads from either to the mode's storage. Empty: none.
  std::vector<bool> fp32_layers;
  int64_t batch_begin = 0, batch_end = -1;   // [begin, end), end < 0: all
  unsigned threads = 0;                        // CPU backend: 0 = every core, 1 = serial
  std::string dump_path;                       // optional HDF5 dump of chained outputs
  std::string dump_environment;                // JSON text for the dump's root attribute
  // What the dump keeps (run --dump-layers, --dump-batches): fnmatch-style globs on layer names
  // (empty: every layer; a glob that matches no layer is an InputError before any work) and
  // the batches [begin, end) (end < 0: to the last), intersected with the replayed range (an
  // empty intersection is an InputError). The dump records both (docs/format.md, Dump).
  std::vector<std::string> dump_layers;
  int64_t dump_batch_begin = 0, dump_batch_end = -1;
  int64_t dump_version = 0;                    // 0: the current format; 1: the old float64 one
  int64_t max_samples = kDefaultMaxSamples;    // divergent sample records kept per mode
  // Called after each batch (for progress): batches done, batches total.
  std::function<void(int64_t, int64_t)> progress;
  // Called with the input findings of the pre-pass, before any layer runs (data first).
  std::function<void(const std::vector<DataFinding>&)> on_input_findings;
  // After each finished batch, and once more (Checkpoint::signal > 0) when SIGINT/SIGTERM stops
  // the run at a layer boundary (analyze() then throws Interrupted).
  std::function<void(const Checkpoint&)> checkpoint;
  // Resume (run --resume): `resume` holds the statistics of the batches [batch_begin,
  // resume_from) of an interrupted run with the same options (read back from its journal); the
  // replay goes on at resume_from and the result is the uninterrupted run's, bit for bit.
  const AnalysisResult* resume = nullptr;
  int64_t resume_from = -1;
  std::string resume_dump;   // the interrupted run's partial dump, continued (with dump_path)
};

// Where a run's time goes (run --profile, bench/bench_cpu_networks.py): seconds in each pass,
// summed over batches and layers. The modes' tasks run at the same time on several threads, so
// the passes add up to more than the wall time. Not part of any report (they differ run to run).
struct PassTimes {
  double read = 0;        // reading batches and recorded activations
  double reference = 0;   // the FP64 reference chain
  double probe = 0;       // the sensitivity probe (its FP64 chain and comparison)
  double checks = 0;      // input checks, reference health, recorded activations, user run
  std::vector<double> chained, isolated, compare;   // per mode (compare: both runs)
  double wall = 0;        // the whole analyze()
  // Bytes: the backend's values at their peak over the analysis (Backend::memory(): the
  // activations, not the parameters or the allocator's slack), and the liveness plan's bound
  // for the largest batch (plan_batch, docs/memory.md).
  int64_t values_peak = 0, values_plan = 0;
};

struct AnalysisResult {
  std::vector<ModeResult> modes;
  // The FP64 reference against the activations the capturing framework recorded
  // (/batches/*/activations/<layer>), per layer; count 0 where none were recorded.
  std::vector<LayerStats> recorded;
  // The sensitivity probe (docs/verdict.md): the FP64 reference replayed with every layer's
  // output (and every float graph input) perturbed by a random relative kProbeDelta, against
  // the reference. kappa = rel_l2 / kProbeDelta, at least 1: how many roundings' worth of error
  // one rounding of every value grows into by this layer.
  std::vector<LayerStats> sensitivity, input_sensitivity;
  std::optional<UserRun> user_run;
  double kappa(int layer) const;
  double input_kappa(int input) const;
  // Data and reference checked first (docs/data-checks.md): the recorded inputs (a pre-pass over
  // every batch before any layer runs) and the FP64 reference's health.
  std::vector<DataFinding> findings;
  // The replay did not run: the inputs cannot go through the model (embedding indices out of
  // range); only `findings` is meaningful.
  bool stopped_on_data = false;
  bool data_healthy() const { return findings.empty(); }
  int64_t batches = 0, samples = 0;
  int64_t batch_begin = 0;   // the batches analysed: [batch_begin, batch_begin + batches)
  int64_t max_samples = kDefaultMaxSamples;   // divergent sample records kept per mode
  Criterion criterion = Criterion::budget;
  int repeat = 1;
  PassTimes times;
  bool passed() const;   // every mode, and the user's recorded run
};

AnalysisResult analyze(const Model& model, const std::string& recording_path, Backend& backend,
                       const AnalysisOptions& opt);

// `to` += `from`, whose batches follow `to`'s: the statistics every layer would have gathered had
// it seen `from`'s batches itself. `run`: one finished batch of this run, or a journal's finished
// batches (--resume); `report`: a report read back (merge), whose empty statistics add nothing,
// whose probe keeps only its sums and whose findings are merged by kind and place.
enum class BatchesFrom { run, report };
void add_batches(AnalysisResult& to, const AnalysisResult& from, BatchesFrom source);

// The verdict over the statistics gathered (README, What divscope run computes): each layer's diverged / isolated_failed,
// every mode's first divergent layer and culprit, amplification, samples sorted worst first.
// analyze() calls it after the last batch; a merge of partial results calls it again.
// `backend` is the backend's name ("cpu": strict is the CPU strict path itself, nothing to judge).
void judge(const Model& model, const std::string& backend, AnalysisResult& res);

}  // namespace divscope
