// `divscope diff A.h5 B.h5` (README, Commands): two dumps of `run --dump`, typically from two machines,
// compared entry by entry — every /batches/NNNNNN/<mode>/<layer> present in both, B against A,
// as exact doubles whatever each dump stores (format version 1 or 2, any dtype). An entry in one
// dump only is "missing" from the other (a difference), unless the other was made with
// --dump-layers / --dump-batches that leave it out: then it is "not in" that dump.
// The default tolerance is zero (exact): "does my GPU give the same numbers as theirs?".
// Layers are taken in the order the dump wrote them (its groups track creation order), which
// is the model's topological order, so "first different layer" is where a difference enters.
#pragma once
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "analysis/compare.h"
#include "io/h5io.h"

namespace divscope {

struct DiffArgs {
  std::string a, b;              // dump files
  double atol = 0, rtol = 0;     // an element differs when |b - a| > atol + rtol*|a|
  std::string modes;             // comma-separated; empty: every mode in either dump
  std::string report;            // JSON report path
  bool common_only = false;      // entries in only one dump do not make the result "different"
};

struct LayerDiff {
  std::string name;              // dataset name in the dump ('/' in a layer name is '|')
  int64_t batches = 0;           // batches compared element by element
  LayerStats stats;              // B against A (compare_tensors, fp64), merged over batches
  int64_t bitwise_different = 0; // elements whose 64 bits differ (-0 vs 0 and NaN payloads count)
  int64_t shape_mismatch = 0;    // batches where A's and B's shapes differ (not compared)
  Shape shape_a, shape_b;        // the first such pair
  std::vector<size_t> only_in_a, only_in_b;   // batch numbers
  // Batch numbers of entries in one dump that the other was not asked to hold (its
  // --dump-layers / --dump-batches, recorded in it): not in that dump, not missing from it,
  // and so no difference.
  std::vector<size_t> not_in_a, not_in_b;
  bool different = false;
};

struct ModeDiff {
  std::string mode;
  std::vector<LayerDiff> layers;   // in the dump's (topological) order
  int first_different = -1;        // index into layers
  bool identical() const { return first_different < 0; }
};

struct DiffResult {
  std::string a, b;
  nlohmann::json environment_a, environment_b;   // parsed; the raw text if it is not JSON
  int64_t version_a = 0, version_b = 0;          // dump format versions
  DumpSelection selection_a, selection_b;        // what each dump was asked to hold
  std::vector<ModeDiff> modes;
  bool passed() const;
};

// Reads one dataset pair at a time. InputError (exit 2): a missing or malformed file, a bad
// option, nothing to compare (both dumps empty, or nothing in common with common_only).
DiffResult diff_dumps(const DiffArgs& a);
nlohmann::json diff_json(const DiffResult& r, const DiffArgs& a);
void print_diff(const DiffResult& r, const DiffArgs& a, std::ostream& out);

// Exit code: 0 identical within tolerance, 1 different (errors are thrown: InputError -> 2).
int run_diff(const DiffArgs& a, std::ostream& out, std::ostream& err);

}  // namespace divscope
