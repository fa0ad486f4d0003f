// Data and reference checked before precision is judged (docs/data-checks.md): broken inputs
// (NaN/Inf, all-zero or constant samples, embedding indices out of range, batches whose
// statistics differ sharply from the rest of the recording) and places where the FP64
// reference itself becomes non-finite or dead. There the model or the data is broken, not the
// precision: the caller reports these and never calls the run a silent PASS.
//
// Findings are aggregated: one DataFinding per (kind, where), with the number of occurrences and
// the first one (in batch, sample order) as the example, so memory stays bounded by the number
// of inputs and layers whatever the recording's length.
#pragma once
#include <functional>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "graph/model.h"
#include "graph/tensor.h"
#include "io/h5io.h"

namespace divscope {

struct ReferenceSummary;

struct DataFinding {
  // "input_nonfinite", "input_all_zero", "input_constant", "index_out_of_range",
  // "input_outlier_batch", "reference_nonfinite", "reference_dead"
  std::string kind;
  int64_t batch = -1, sample = -1;   // the first occurrence (batch position in the recording,
                                     // sample in the batch); -1: not specific
  std::string where;                 // input name (input_*, index_*) or layer name (reference_*)
  std::string detail;                // one sentence fragment about the first occurrence,
                                     // e.g. "3 NaN, 1 Inf among 3072 values"
  int64_t occurrences = 1;           // (batch, sample) pairs (batches for input_outlier_batch)
};

// Findings aggregated by (kind, where): add() counts a repeat as one more occurrence of the first.
class FindingList {
 public:
  void add(DataFinding f);
  const std::vector<DataFinding>& list() const { return found_; }   // first-occurrence order

 private:
  std::vector<DataFinding> found_;
  std::map<std::pair<std::string, std::string>, size_t> index_;   // (kind, where) -> found_
};

// The recorded inputs checked batch by batch (model constants are skipped). Per sample of each
// float input: NaN/Inf count (input_nonfinite); when finite and of more than one element, all
// zero (input_all_zero) or all equal (input_constant). Per sample of each int64 input that
// feeds an embedding with a weight [V, D]: indices outside [0, V) (index_out_of_range; the
// reference would stop at the first one without naming batch or sample). Over the batches,
// with at least 4 of them, per float input: a batch is an outlier (input_outlier_batch) when,
// over its finite values, its RMS is > 10x or < 0.1x the median batch RMS, or its mean is
// further from the median batch mean than both 10 MAD (median absolute deviation of the batch
// means) and 0.5x the median batch RMS. A float input whose every finite value seen is 0 or 1
// is a mask: its all-ones (constant) samples and its batch statistics are not reported (its
// all-zero samples are). Memory: the findings plus three numbers per (input, batch).
class InputChecker {
 public:
  explicit InputChecker(const Model& m);
  // `inputs` as RecordingReader::read_batch gives them (Model::inputs order, constants
  // included); `batch` is the batch's position in the recording, for the findings.
  void on_batch(int64_t batch, const std::vector<Tensor>& inputs);
  // Aggregated, in the order of the first occurrence; outlier batches (which need every batch)
  // last.
  std::vector<DataFinding> findings() const;

  struct BatchStat {
    int64_t batch;
    double rms, mean;
  };

 private:
  void check_indices(size_t input, const Tensor& t, int64_t batch);
  const Model* model_;
  std::vector<int64_t> vocab_;             // per input: smallest embedding V it feeds, or -1
  std::vector<std::string> vocab_layer_;   // ... and that embedding layer
  std::vector<std::vector<BatchStat>> stats_;
  std::vector<char> binary_;               // per input: every finite value so far 0 or 1
  FindingList found_;
};

// The pre-pass: InputChecker over batches [b0, b1) (positions; b1 clamped to the recording's
// batch count), read one at a time with read_batch (inputs only).
std::vector<DataFinding> check_inputs(const Model& m, const RecordingReader& rec, int64_t b0,
                                      int64_t b1);

// The FP64 reference's own health, fed by the analysis after each reference layer of each batch
// (batches in any order, the layers of one batch in model order). Per (batch, sample):
//  - reference_nonfinite: the first layer whose output has NaN/Inf in this sample while every
//    input of the layer was finite in this sample (a constant input counts with its one row);
//    later layers of the sample are not reported again.
//  - reference_dead: a layer whose op is in dead_checked_ops() has an output that is entirely
//    zero in this sample, with more than 8 elements per sample, while every input of the layer
//    had a non-zero value in this sample.
// Cost: one pass over each output; inputs are scanned only for a sample that is non-finite or
// entirely zero. Not thread-safe: call from one thread.
class ReferenceHealthTracker {
 public:
  explicit ReferenceHealthTracker(const Model& m);
  void on_layer(const Layer& l, const std::vector<const Tensor*>& in, const Tensor& out,
                int64_t batch);
  // The same from the output's summary (Backend::summarize); `input(k)` gives input k on the
  // host, asked for only when a sample is non-finite or entirely zero.
  void on_layer(const Layer& l, const ReferenceSummary& out, size_t inputs,
                const std::function<const Tensor*(size_t)>& input, int64_t batch);
  // Aggregated, in the order of the first occurrence.
  std::vector<DataFinding> findings() const;
  // A finding of earlier batches (run --resume: the interrupted run's, in their order).
  void restore(const DataFinding& f) { found_.add(f); }

 private:
  std::vector<char> dead_checked_;       // per layer: op in dead_checked_ops()
  int64_t batch_ = -1;
  std::vector<char> sample_nonfinite_;   // of the current batch: already reported or inherited
  FindingList found_;
};

// Ops whose entirely-zero output from non-zero inputs is suspicious: GEMM-like ops, norms and
// activations. Not ops that legitimately give zeros (masks, comparisons, where, mul, add/sub,
// shape ops, slices, pools, embedding with a padding row, reductions).
const std::vector<std::string>& dead_checked_ops();

// One line for the console: "input_nonfinite: input 'x', batch 3 sample 1: 3 NaN, 1 Inf among
// 3072 values (and 5 more samples)".
std::string finding_line(const DataFinding& f);

}  // namespace divscope
