// Tolerance policy and verdict (README, What divscope run computes).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "analysis/compare.h"
#include "precision.h"

namespace divscope {

// How a layer's chained (and isolated) stats are judged (docs/verdict.md).
//   budget (default): per sample, norm-wise. A sample diverges at a layer on the first rule that
//             fires: `nonfinite` (NaN/Inf the reference lacks), `collapse` (rel_l2 >= collapse,
//             0.5 by default: the output has lost its content — flushed to zero, saturated,
//             cancelled), `budget` (rel_l2 > budget_factor * u_mode * kappa, kappa the layer's
//             measured sensitivity: how much one rounding of every layer's output grows by this
//             layer, from the FP64 sensitivity probe). The same rel_l2 gets the same verdict in
//             tf32 and fp16 (same u). strict stays bitwise.
//   allclose: mismatch / count > max_mismatch, with mismatch = #{|c-r| > atol + rtol*|r|}.
//   baseline: after PyTorch's accuracy minifier — tf32/fp16/bf16 pass a layer when their error
//             is at most baseline_factor times the fp32 mode's error on the same layer, both
//             measured in units of their own rounding (see baseline_limit). fp32 is the anchor
//             and keeps allclose; strict stays bitwise.
// Under both, NaN/Inf the reference lacks always diverges.
enum class Criterion { budget, allclose, baseline };
const char* criterion_name(Criterion c);
bool parse_criterion(const std::string& s, Criterion* c);

// Which rule made a layer (or a sample) diverge.
enum class Rule { none, nonfinite, collapse, budget, allclose, baseline, bitwise, nondeterministic };
const char* rule_name(Rule r);

// Defaults of the budget criterion, calibrated on the real-network zoo and the planted defects
// (bench/results/verdict-calibration-2026-11-29.md).
constexpr double kDefaultBudgetFactor = 32;
constexpr double kDefaultCollapse = 0.5;
// Relative size of the sensitivity probe's perturbation of every layer output (docs/verdict.md):
// far above FP64's own rounding, far below anything nonlinear.
constexpr double kProbeDelta = 0x1p-30;

struct Tolerance {
  double atol = 0, rtol = 0;
  double max_mismatch = 0;   // fraction of elements allowed outside atol + rtol*|r|
  double baseline_factor = 0;   // m of the baseline criterion (2 tf32, 3 fp16/bf16)
  double budget_factor = kDefaultBudgetFactor;   // F of the budget criterion
  double collapse = kDefaultCollapse;            // rel_l2 at which a sample has collapsed
  // The criterion of this layer: the run's, unless a tolerance-file entry names one.
  std::optional<Criterion> criterion;
};

// A partial override: only the fields present in a flag or a tolerance-file entry.
struct ToleranceOverride {
  std::optional<double> atol, rtol, max_mismatch, baseline_factor, budget_factor, collapse;
  std::optional<Criterion> criterion;
  void apply(Tolerance& t) const;
};

Tolerance default_tolerance(Mode m);

// The unit roundoff that bounds one rounding of the mode's numbers: 2^-24 fp32 and strict,
// 2^-11 tf32 (its GEMM operands) and fp16, 2^-8 bf16.
double unit_roundoff(Mode m);
// The rounding unit the budget criterion counts in at a layer whose longest sum, there or
// upstream, has `reduction` terms: u_m, or float accumulation's sqrt(reduction) * 2^-24 where that
// is larger (every mode accumulates in float; the probabilistic error bound of a K-term sum is
// about sqrt(K) u — Higham & Mary 2019). Only fp32 and strict ever reach the second term.
double effective_roundoff(Mode m, int64_t reduction);
// Does the baseline criterion judge this mode? (tf32, fp16, bf16.)
bool judged_by_baseline(Mode m);
// Largest rel_l2 the baseline criterion allows mode m on a layer where fp32's rel_l2 is
// `fp32_rel_l2`: factor · max(fp32_rel_l2 / u_fp32, 1) · u_m. The fp32 error in units of its own
// rounding estimates how ill-conditioned the layer (and its upstream chain) is; a mode may lose
// as much, in its own units, times the factor. The max(·, 1) is the floor: one rounding to the
// mode's format is never a divergence.
double baseline_limit(Mode m, double factor, double fp32_rel_l2);

// Resolution order, later wins: per-mode defaults · command-line flags · tolerance file
// section "all" (patterns in file order) · the file's section for the mode (in file order).
class TolerancePolicy {
 public:
  TolerancePolicy() = default;
  void set_global(const ToleranceOverride& o) { global_ = o; }
  // File format: {"all": {"<glob>": {"atol": x, "rtol": y, "max_mismatch": f}, ...},
  //               "fp16": {"<glob>": {...}}, ...}; an entry may also set "baseline_factor",
  //               "budget_factor", "collapse" and "criterion" ("budget" | "allclose").
  // Unknown keys are an error (exit 2).
  void load_file(const std::string& path);
  Tolerance for_layer(Mode m, const std::string& layer) const;

 private:
  struct Rule {
    std::string section;   // "all" or a mode name
    std::string pattern;
    ToleranceOverride value;
  };
  ToleranceOverride global_;
  std::vector<Rule> rules_;
};

// fnmatch-style glob: '*' any run, '?' one character, '[...]' a class.
bool glob_match(const std::string& pattern, const std::string& text);

// What is wrong with one tolerance value ("" when nothing), checked the same for flags and
// files: finite and non-negative; max_mismatch and collapse at most 1; factors positive.
std::string tolerance_value_error(const std::string& key, double v);

// The budget criterion's sample rule: which rule a sample with this rel_l2 (inf when it has
// NaN/Inf the reference lacks) breaks, given its sensitivity kappa (>= 1).
Rule budget_rule(double rel_l2, bool nonfinite_new, double kappa, double u, const Tolerance& t);

// Does one comparison break the policy? (mismatch fraction or new NaN/Inf.)
bool breaks(const LayerStats& s, const Tolerance& t);
bool breaks(int64_t mismatch, int64_t nonfinite_new, int64_t count, const Tolerance& t);
// The baseline criterion: rel_l2 above the limit (NaN rel_l2 included) or new NaN/Inf.
bool breaks_baseline(double rel_l2, int64_t nonfinite_new, double limit);

}  // namespace divscope
