#include "analysis/verdict.h"

#include <fnmatch.h>

#include <algorithm>
#include <cmath>

#include <fstream>
#include <nlohmann/json.hpp>

#include "errors.h"

namespace divscope {

void ToleranceOverride::apply(Tolerance& t) const {
  if (atol) t.atol = *atol;
  if (rtol) t.rtol = *rtol;
  if (max_mismatch) t.max_mismatch = *max_mismatch;
  if (baseline_factor) t.baseline_factor = *baseline_factor;
  if (budget_factor) t.budget_factor = *budget_factor;
  if (collapse) t.collapse = *collapse;
  if (criterion) t.criterion = *criterion;
}

const char* criterion_name(Criterion c) {
  switch (c) {
    case Criterion::baseline: return "baseline";
    case Criterion::allclose: return "allclose";
    default: return "budget";
  }
}

bool parse_criterion(const std::string& s, Criterion* c) {
  for (Criterion x : {Criterion::budget, Criterion::allclose, Criterion::baseline})
    if (s == criterion_name(x)) {
      *c = x;
      return true;
    }
  return false;
}

const char* rule_name(Rule r) {
  switch (r) {
    case Rule::nonfinite: return "nonfinite";
    case Rule::collapse: return "collapse";
    case Rule::budget: return "budget";
    case Rule::allclose: return "allclose";
    case Rule::baseline: return "baseline";
    case Rule::bitwise: return "bitwise";
    case Rule::nondeterministic: return "nondeterministic";
    default: return "none";
  }
}

std::string tolerance_value_error(const std::string& key, double v) {
  if (!std::isfinite(v) || v < 0) return "must be a finite non-negative number";
  if ((key == "max_mismatch" || key == "collapse") && v > 1) return "must be at most 1";
  if ((key == "baseline_factor" || key == "budget_factor" || key == "collapse") && v == 0)
    return "must be positive";
  return "";
}

Rule budget_rule(double rel_l2, bool nonfinite_new, double kappa, double u, const Tolerance& t) {
  if (nonfinite_new) return Rule::nonfinite;
  if (!(rel_l2 < t.collapse)) return Rule::collapse;   // NaN rel_l2 included
  if (rel_l2 > t.budget_factor * u * kappa) return Rule::budget;
  return Rule::none;
}

Tolerance default_tolerance(Mode m) {
  switch (m) {
    case Mode::fp32: return {1e-5, 1e-4, 0, 0, kDefaultBudgetFactor, kDefaultCollapse, {}};
    case Mode::tf32: return {1e-3, 1e-2, 0, 2, kDefaultBudgetFactor, kDefaultCollapse, {}};
    case Mode::fp16: return {1e-2, 1e-2, 0, 3, kDefaultBudgetFactor, kDefaultCollapse, {}};
    case Mode::bf16: return {1e-2, 4e-2, 0, 3, kDefaultBudgetFactor, kDefaultCollapse, {}};
    // strict is judged bitwise against the CPU strict path; against FP64 it is reported with
    // fp32's tolerance.
    case Mode::strict: return {1e-5, 1e-4, 0, 0, kDefaultBudgetFactor, kDefaultCollapse, {}};
    default: return {0, 0, 0, 0, kDefaultBudgetFactor, kDefaultCollapse, {}};
  }
}

double unit_roundoff(Mode m) {
  switch (m) {
    case Mode::tf32:
    case Mode::fp16: return std::ldexp(1.0, -11);
    case Mode::bf16: return std::ldexp(1.0, -8);
    case Mode::fp64: return std::ldexp(1.0, -53);
    default: return std::ldexp(1.0, -24);
  }
}

double effective_roundoff(Mode m, int64_t reduction) {
  const double acc = std::sqrt(static_cast<double>(std::max<int64_t>(reduction, 1))) * unit_roundoff(Mode::fp32);
  return std::max(unit_roundoff(m), acc);
}

bool judged_by_baseline(Mode m) { return reduced_precision(m); }

double baseline_limit(Mode m, double factor, double fp32_rel_l2) {
  const double u32 = unit_roundoff(Mode::fp32);
  const double kappa = std::isfinite(fp32_rel_l2) ? std::max(fp32_rel_l2 / u32, 1.0) : HUGE_VAL;
  return factor * kappa * unit_roundoff(m);
}

bool breaks_baseline(double rel_l2, int64_t nonfinite_new, double limit) {
  return nonfinite_new > 0 || !(rel_l2 <= limit);
}

bool glob_match(const std::string& pattern, const std::string& text) {
  return fnmatch(pattern.c_str(), text.c_str(), 0) == 0;
}

void TolerancePolicy::load_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw InputError(path, "/", "cannot open tolerance file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    throw InputError(path, "/", std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw InputError(path, "/", "must be an object of sections");
  for (auto& [section, rules] : j.items()) {
    Mode m;
    if (section != "all" && !parse_mode(section, &m))
      throw InputError(path, "/" + section, "unknown section (expected \"all\" or a mode name)");
    if (!rules.is_object())
      throw InputError(path, "/" + section, "must map layer-name patterns to tolerances");
    for (auto& [pattern, tol] : rules.items()) {
      const std::string where = "/" + section + "/" + pattern;
      if (!tol.is_object()) throw InputError(path, where, "must be an object");
      Rule r{section, pattern, {}};
      for (auto& [key, v] : tol.items()) {
        if (key == "criterion") {
          Criterion c;
          if (!v.is_string() || !parse_criterion(v.get<std::string>(), &c) || c == Criterion::baseline)
            throw InputError(path, where + "/" + key, "must be \"budget\" or \"allclose\"");
          r.value.criterion = c;
          continue;
        }
        if (!v.is_number()) throw InputError(path, where + "/" + key, "must be a number");
        const double x = v.get<double>();
        const std::string bad = tolerance_value_error(key, x);
        if (!bad.empty()) throw InputError(path, where + "/" + key, bad);
        if (key == "atol") r.value.atol = x;
        else if (key == "rtol") r.value.rtol = x;
        else if (key == "max_mismatch") r.value.max_mismatch = x;
        else if (key == "baseline_factor") r.value.baseline_factor = x;
        else if (key == "budget_factor") r.value.budget_factor = x;
        else if (key == "collapse") r.value.collapse = x;
        else throw InputError(path, where + "/" + key,
                              "unknown key (atol, rtol, max_mismatch, baseline_factor, budget_factor, "
                              "collapse, criterion)");
      }
      rules_.push_back(r);
    }
  }
}

Tolerance TolerancePolicy::for_layer(Mode m, const std::string& layer) const {
  Tolerance t = default_tolerance(m);
  global_.apply(t);
  for (const char* pass : {"all", "mode"})
    for (const Rule& r : rules_) {
      const bool in_pass = std::string(pass) == "all" ? r.section == "all"
                                                      : r.section == mode_name(m);
      if (in_pass && glob_match(r.pattern, layer)) r.value.apply(t);
    }
  return t;
}

bool breaks(int64_t mismatch, int64_t nonfinite_new, int64_t count, const Tolerance& t) {
  if (nonfinite_new > 0) return true;
  if (count == 0) return false;
  return static_cast<double>(mismatch) / static_cast<double>(count) > t.max_mismatch;
}

bool breaks(const LayerStats& s, const Tolerance& t) {
  return breaks(s.mismatch, s.nonfinite_new, s.count, t);
}

}  // namespace divscope
