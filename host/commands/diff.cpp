// `divscope diff`: two dumps compared one dataset pair at a time (a dump may be larger than
// memory). The element metrics are compare_tensors' (one metrics module, STYLE 4) with A as the
// reference and fp64 storage; only the bitwise count is computed here.
#include "commands/diff.h"

#include "commands/paths.h"
#include "env.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "errors.h"
#include "io/h5io.h"
#include "report/report.h"
#include "report/text.h"

namespace divscope {
namespace {

// What a dump holds, without its data: per mode, per batch, the layer names.
struct Index {
  std::vector<std::string> modes;                                    // first-seen order
  std::map<std::string, std::map<size_t, std::vector<std::string>>> layers;   // written order
  std::set<std::tuple<std::string, size_t, std::string>> entries;              // (mode, batch, layer)

  explicit Index(const DumpReader& r) {
    for (size_t b : r.batches())
      for (const std::string& m : r.modes(b)) {
        if (!layers.count(m)) modes.push_back(m);
        layers[m][b] = r.layers(b, m);
        for (const std::string& l : layers[m][b]) entries.emplace(m, b, l);
      }
  }
  bool has(const std::string& m, size_t b, const std::string& l) const {
    return entries.count({m, b, l}) != 0;
  }
  const std::map<size_t, std::vector<std::string>>* mode(const std::string& m) const {
    auto it = layers.find(m);
    return it == layers.end() ? nullptr : &it->second;
  }
};

// Merges creation-order lists into one order: a name not seen yet goes right after its
// predecessor in the list that has it. Every list is a subsequence of the model's topological
// order, so the merge is that order restricted to the names present.
void merge_order(std::vector<std::string>& order, const std::vector<std::string>& list) {
  if (list == order) return;   // the common case: every batch wrote the same layers
  size_t at = 0;
  for (const std::string& name : list) {
    auto it = std::find(order.begin(), order.end(), name);
    if (it == order.end()) it = order.insert(order.begin() + static_cast<std::ptrdiff_t>(at), name);
    at = static_cast<size_t>(it - order.begin()) + 1;
  }
}

std::vector<std::string> split_modes(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    if (std::find(out.begin(), out.end(), item) != out.end())
      throw InputError("diff: --modes: mode '" + item + "' given twice");
    out.push_back(item);
  }
  if (out.empty()) throw InputError("diff: --modes is empty");
  return out;
}

nlohmann::json parse_environment(const std::string& text) {
  if (text.empty()) return nullptr;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  return j.is_discarded() ? nlohmann::json(text) : j;
}

int64_t bitwise_different(const Tensor& a, const Tensor& b) {
  int64_t n = 0;
  for (int64_t i = 0; i < a.size(); ++i) n += std::memcmp(&a.data[i], &b.data[i], sizeof(double)) != 0;
  return n;
}

void compare_layer(const DumpReader& ra, const DumpReader& rb, const std::string& mode,
                   const std::set<size_t>& batches, const Index& ia, const Index& ib,
                   const CompareOptions& opt, LayerDiff& d) {
  for (size_t b : batches) {
    const bool in_a = ia.has(mode, b, d.name), in_b = ib.has(mode, b, d.name);
    if (!in_a || !in_b) {   // missing from the other dump, or not asked of it
      if (in_a) (rb.selection().selects(b, d.name) ? d.only_in_a : d.not_in_b).push_back(b);
      if (in_b) (ra.selection().selects(b, d.name) ? d.only_in_b : d.not_in_a).push_back(b);
      continue;
    }
    const Tensor ta = ra.read(b, mode, d.name), tb = rb.read(b, mode, d.name);
    if (ta.shape != tb.shape) {
      if (d.shape_mismatch++ == 0) {
        d.shape_a = ta.shape;
        d.shape_b = tb.shape;
      }
      continue;
    }
    d.stats.merge(compare_tensors(tb.ptr(), ta.ptr(), ta.shape, opt), static_cast<int64_t>(b));
    d.bitwise_different += bitwise_different(ta, tb);
    ++d.batches;
  }
}

// "NVIDIA H100 80GB HBM3 on host gpu7" / "host laptop (no CUDA device)": which machine wrote it.
std::string machine(const nlohmann::json& env) { return env_machine(env); }

std::string verdict(const LayerDiff& l, bool common_only) {
  if (l.shape_mismatch)
    return "DIFFERENT shape " + shape_str(l.shape_a) + " vs " + shape_str(l.shape_b);
  if (!l.only_in_a.empty() || !l.only_in_b.empty()) {
    std::string s = l.only_in_b.empty() ? "only in A" : l.only_in_a.empty() ? "only in B" : "only in A or B";
    s += " (" + std::to_string(l.only_in_a.size() + l.only_in_b.size()) + " batch(es))";
    return common_only ? s + ", ignored" : "DIFFERENT " + s;
  }
  if (l.batches == 0 && (!l.not_in_a.empty() || !l.not_in_b.empty()))
    return l.not_in_a.empty() ? "not in B's dump" : l.not_in_b.empty() ? "not in A's dump"
                                                                       : "not in A's or B's dump";
  if (l.stats.mismatch) return "DIFFERENT";
  return l.bitwise_different ? "within tolerance" : "identical";
}

nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

}  // namespace

bool DiffResult::passed() const {
  for (const ModeDiff& m : modes)
    if (!m.identical()) return false;
  return true;
}

DiffResult diff_dumps(const DiffArgs& a) {
  if (!(a.atol >= 0) || !(a.rtol >= 0) || !std::isfinite(a.atol) || !std::isfinite(a.rtol))
    throw InputError("diff: --atol and --rtol must be finite and >= 0");
  const DumpReader ra(a.a), rb(a.b);
  const Index ia(ra), ib(rb);
  DiffResult res;
  res.a = a.a;
  res.b = a.b;
  res.environment_a = parse_environment(ra.environment());
  res.environment_b = parse_environment(rb.environment());
  res.version_a = ra.version();
  res.version_b = rb.version();
  res.selection_a = ra.selection();
  res.selection_b = rb.selection();

  std::vector<std::string> modes = ia.modes;
  for (const std::string& m : ib.modes)
    if (!ia.mode(m)) modes.push_back(m);
  if (!a.modes.empty()) {
    modes = split_modes(a.modes);
    for (const std::string& m : modes)
      if (!ia.mode(m) && !ib.mode(m))
        throw InputError("diff: --modes: mode '" + m + "' is in neither " + a.a + " nor " + a.b);
  }

  CompareOptions opt;
  opt.storage = Mode::fp64;
  opt.atol = a.atol;
  opt.rtol = a.rtol;
  opt.health = false;
  int64_t compared = 0;
  bool missing_any = false;
  for (const std::string& mode : modes) {
    ModeDiff md;
    md.mode = mode;
    std::vector<std::string> order;
    std::set<size_t> batches;
    for (const Index* ix : {&ia, &ib})
      if (const auto* m = ix->mode(mode))
        for (const auto& [b, layers] : *m) {
          batches.insert(b);
          merge_order(order, layers);
        }
    for (const std::string& name : order) {
      LayerDiff d;
      d.name = name;
      compare_layer(ra, rb, mode, batches, ia, ib, opt, d);
      const bool missing = !d.only_in_a.empty() || !d.only_in_b.empty();
      missing_any |= missing;
      d.different = d.shape_mismatch > 0 || d.stats.mismatch > 0 || (missing && !a.common_only);
      if (d.different && md.first_different < 0) md.first_different = static_cast<int>(md.layers.size());
      compared += d.batches + d.shape_mismatch;
      md.layers.push_back(std::move(d));
    }
    res.modes.push_back(std::move(md));
  }
  // Nothing compared and nothing missing (empty dumps, or entries that only the selections left
  // out): an "identical" would say nothing.
  if (compared == 0 && (a.common_only || !missing_any))
    throw InputError("diff: " + a.a + " and " + a.b + " have no (batch, mode, layer) in common");
  return res;
}

nlohmann::json diff_json(const DiffResult& r, const DiffArgs& a) {
  nlohmann::json j;
  j["divscope_diff"] = 1;
  j["a"] = r.a;
  j["b"] = r.b;
  j["environment_a"] = r.environment_a;
  j["environment_b"] = r.environment_b;
  if (r.environment_a.is_object() && r.environment_b.is_object())
    j["environment_diff"] = env_diff_json(diff_environments(r.environment_a, r.environment_b));
  auto selection = [](const DumpSelection& s) {
    nlohmann::json js = {{"layers", nullptr}, {"batches", nullptr}};
    if (s.layers) js["layers"] = *s.layers;
    if (s.batches) js["batches"] = {s.batches->first, s.batches->second};
    return js;
  };
  j["dump_a"] = {{"divscope_version", r.version_a}, {"selection", selection(r.selection_a)}};
  j["dump_b"] = {{"divscope_version", r.version_b}, {"selection", selection(r.selection_b)}};
  j["tolerance"] = {{"atol", a.atol},
                    {"rtol", a.rtol},
                    {"common_only", a.common_only},
                    {"criterion", "allclose: |b - a| <= atol + rtol*|a|; NaN equals NaN, an infinity "
                                  "equals the same infinity"}};
  j["modes"] = nlohmann::json::array();
  j["only_in_a"] = nlohmann::json::array();
  j["only_in_b"] = nlohmann::json::array();
  j["not_in_a"] = nlohmann::json::array();
  j["not_in_b"] = nlohmann::json::array();
  for (const ModeDiff& m : r.modes) {
    nlohmann::json jm = {{"mode", m.mode}, {"identical", m.identical()}};
    jm["first_different_layer"] = m.identical() ? nlohmann::json() : nlohmann::json(m.layers[m.first_different].name);
    jm["layers"] = nlohmann::json::array();
    for (size_t i = 0; i < m.layers.size(); ++i) {
      const LayerDiff& l = m.layers[i];
      nlohmann::json jl = {{"name", l.name},
                           {"index", i},
                           {"batches", l.batches},
                           {"count", l.stats.count},
                           {"max_abs", num(l.stats.max_abs)},
                           {"rel_l2", num(l.stats.rel_l2())},
                           {"bitwise_different", l.bitwise_different},
                           {"mismatch", l.stats.mismatch},
                           {"shape_mismatch", l.shape_mismatch},
                           {"different", l.different}};
      if (l.stats.max_abs > 0) {
        jl["max_abs_batch"] = l.stats.max_abs_batch;
        jl["max_abs_index"] = l.stats.max_abs_index;
      }
      if (l.shape_mismatch) {
        jl["shape_a"] = l.shape_a;
        jl["shape_b"] = l.shape_b;
      }
      jm["layers"].push_back(jl);
      if (!l.only_in_a.empty())
        j["only_in_a"].push_back({{"mode", m.mode}, {"layer", l.name}, {"batches", l.only_in_a}});
      if (!l.only_in_b.empty())
        j["only_in_b"].push_back({{"mode", m.mode}, {"layer", l.name}, {"batches", l.only_in_b}});
      if (!l.not_in_a.empty())
        j["not_in_a"].push_back({{"mode", m.mode}, {"layer", l.name}, {"batches", l.not_in_a}});
      if (!l.not_in_b.empty())
        j["not_in_b"].push_back({{"mode", m.mode}, {"layer", l.name}, {"batches", l.not_in_b}});
    }
    j["modes"].push_back(jm);
  }
  j["passed"] = r.passed();
  return j;
}

void print_diff(const DiffResult& r, const DiffArgs& a, std::ostream& out) {
  auto held = [](const DumpSelection& s) {
    return s.everything() ? std::string() : " (a dump of " + s.str() + " only)";
  };
  out << "A: " << r.a << " — " << machine(r.environment_a) << held(r.selection_a) << "\n";
  out << "B: " << r.b << " — " << machine(r.environment_b) << held(r.selection_b) << "\n";
  // The machines before the numbers (docs/environment.md): what differs between the two
  // environments explains a difference in the layers more often than the layers do.
  if (r.environment_a.is_object() && r.environment_b.is_object()) {
    const std::vector<EnvDifference> d = diff_environments(r.environment_a, r.environment_b);
    out << "environment: " << (d.empty() ? "no differences" : std::to_string(d.size()) + " difference(s)") << "\n";
    if (!d.empty()) print_env_diff(d, out, 10);
  }
  out << "tolerance: atol " << a.atol << ", rtol " << a.rtol
      << (a.atol == 0 && a.rtol == 0 ? " (exact)" : "") << "\n";
  for (const ModeDiff& m : r.modes) {
    int64_t differ = 0, batches = 0, compared = 0;
    std::vector<std::string> only_a, only_b, not_a, not_b;
    size_t wn = 5;
    for (const LayerDiff& l : m.layers) {
      differ += l.different;
      batches = std::max(batches, l.batches);
      compared += l.batches + l.shape_mismatch;
      if (!l.only_in_a.empty()) only_a.push_back(l.name);
      if (!l.only_in_b.empty()) only_b.push_back(l.name);
      if (!l.not_in_a.empty()) not_a.push_back(l.name);
      if (!l.not_in_b.empty()) not_b.push_back(l.name);
      wn = std::max(wn, l.name.size());
    }
    out << "\n== " << m.mode << " ==\n";
    if (compared == 0 && only_a.empty() && only_b.empty()) {   // left out by the selections
      out << m.mode << ": not in " << (not_a.empty() ? "B's" : not_b.empty() ? "A's" : "A's or B's")
          << " dump (" << m.layers.size() << " layers not selected), not compared\n";
      continue;
    }
    if (compared == 0) {   // the mode is in one dump only: a table of nothing says nothing
      out << m.mode << ": only in " << (only_b.empty() ? "A" : only_a.empty() ? "B" : "A and B")
          << " (" << m.layers.size() << " layers), not compared"
          << (a.common_only ? ", ignored\n" : " — DIFFERENT\n");
      continue;
    }
    out << "   " << rpad("#", 3) << "  " << pad("layer", wn) << "  " << rpad("max_abs", 10) << "  "
        << rpad("rel_l2", 10) << "  " << rpad("differing", 14) << "  " << rpad("bitwise", 10)
        << "  verdict\n";
    for (size_t i = 0; i < m.layers.size(); ++i) {
      const LayerDiff& l = m.layers[i];
      const char* mark = static_cast<int>(i) == m.first_different ? ">" : " ";
      out << mark << "  " << rpad(std::to_string(i), 3) << "  " << pad(l.name, wn) << "  "
          << rpad(fmt("%.3e", l.stats.max_abs), 10) << "  " << rpad(fmt("%.3e", l.stats.rel_l2()), 10)
          << "  " << rpad(std::to_string(l.stats.mismatch) + "/" + std::to_string(l.stats.count), 14)
          << "  " << rpad(std::to_string(l.bitwise_different), 10) << "  " << verdict(l, a.common_only)
          << "\n";
    }
    for (const auto& [which, names] : {std::pair{"only in A", &only_a}, std::pair{"only in B", &only_b},
                                       std::pair{"not in A's dump (not selected)", &not_a},
                                       std::pair{"not in B's dump (not selected)", &not_b}})
      if (!names->empty()) {
        out << "   " << names->size() << " layer(s) with batches " << which << ":";
        for (size_t i = 0; i < names->size() && i < 5; ++i) out << " '" << (*names)[i] << "'";
        out << (names->size() > 5 ? " ...\n" : "\n");
      }
    out << m.mode << ": ";
    if (m.identical()) {
      size_t held = 0;
      for (const LayerDiff& l : m.layers) held += l.batches > 0;
      if (not_a.empty() && not_b.empty())
        out << "identical (" << m.layers.size() << " layers, " << batches << " batches)\n";
      else
        out << "identical (" << held << " of " << m.layers.size() << " layers compared, " << batches
            << " batches; the rest not selected in one dump)\n";
      continue;
    }
    const LayerDiff& f = m.layers[m.first_different];
    out << "DIFFERENT — first different layer '" << f.name << "'";
    if (f.stats.max_abs > 0)
      out << " (max_abs " << fmt("%.3e", f.stats.max_abs) << " at batch " << f.stats.max_abs_batch
          << " index " << shape_str(f.stats.max_abs_index) << ")";
    out << "; " << differ << "/" << m.layers.size() << " layers differ\n";
  }
  out << (r.passed() ? "\nresult: IDENTICAL\n" : "\nresult: DIFFERENT\n");
}

int run_diff(const DiffArgs& a, std::ostream& out, std::ostream& err) {
  check_output_paths("diff", {{"dump A", a.a}, {"dump B", a.b}}, {{"--report", a.report}});
  DiffResult r = diff_dumps(a);
  print_diff(r, a, out);
  if (a.common_only) {
    int64_t ignored = 0;
    for (const ModeDiff& m : r.modes)
      for (const LayerDiff& l : m.layers) ignored += l.only_in_a.size() + l.only_in_b.size();
    if (ignored)
      err << "divscope: --common-only: " << ignored << " entries in only one dump ignored\n";
  }
  if (!a.report.empty()) write_json(diff_json(r, a), a.report);
  return r.passed() ? kExitOk : kExitDiverged;
}

}  // namespace divscope
