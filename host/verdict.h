// Tolerance policy and verdict (DESIGN §7).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "compare.h"
#include "precision.h"

namespace divscope {

struct Tolerance {
  double atol = 0, rtol = 0;
  double max_mismatch = 0;   // fraction of elements allowed outside atol + rtol*|r|
};

// A partial override: only the fields present in a flag or a tolerance-file entry.
struct ToleranceOverride {
  std::optional<double> atol, rtol, max_mismatch;
  void apply(Tolerance& t) const;
};

Tolerance default_tolerance(Mode m);

// Resolution order, later wins: per-mode defaults · command-line flags · tolerance file
// section "all" (patterns in file order) · the file's section for the mode (in file order).
class TolerancePolicy {
 public:
  TolerancePolicy() = default;
  void set_global(const ToleranceOverride& o) { global_ = o; }
  // File format: {"all": {"<glob>": {"atol": x, "rtol": y, "max_mismatch": f}, ...},
  //               "fp16": {"<glob>": {...}}, ...}. Unknown keys are an error (exit 2).
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

// Does one comparison break the policy? (mismatch fraction or new NaN/Inf.)
bool breaks(const LayerStats& s, const Tolerance& t);
bool breaks(int64_t mismatch, int64_t nonfinite_new, int64_t count, const Tolerance& t);

}  // namespace divscope
