// `divscope run`: recording to verdict, reports and exit code (README, Commands).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>

#include "analysis/analysis.h"
#include "commands/cli.h"
#include "commands/journal.h"
#include "env.h"
#include "errors.h"
#include "interrupt.h"
#include "io/h5io.h"
#include "io/onnx_model.h"
#include "commands/paths.h"
#include "kernels/kernels.h"
#include "report/report.h"
#include "report/text.h"
#include "reference/gemm_kernels.h"

namespace divscope {
namespace {

std::vector<Mode> parse_modes(const std::string& list) {
  std::vector<Mode> modes;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    Mode m;
    if (!parse_mode(item, &m) || m == Mode::fp64)
      throw InputError("run: --modes: unknown mode '" + item + "' (fp32, tf32, fp16, bf16, strict)");
    for (Mode x : modes)
      if (x == m) throw InputError("run: --modes: mode '" + item + "' given twice");
    modes.push_back(m);
  }
  if (modes.empty()) throw InputError("run: --modes is empty");
  return modes;
}

// A batch range "A:B", "A:", ":B" or "A" (half-open, 0-based) given to `flag`; every number
// whole, non-negative and in range, and B > A.
void parse_range(const std::string& flag, const std::string& spec, int64_t* begin, int64_t* end) {
  *begin = 0;
  *end = -1;
  auto num = [&](const std::string& s) -> int64_t {
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
      throw InputError("run: " + flag + " '" + spec + "': expected A:B with non-negative integers");
    return std::stoll(s);
  };
  const size_t colon = spec.find(':');
  if (colon == std::string::npos) {
    *begin = num(spec);
    *end = *begin + 1;
    return;
  }
  const std::string a = spec.substr(0, colon), b = spec.substr(colon + 1);
  if (a.empty() && b.empty())
    throw InputError("run: " + flag + " '" + spec + "': expected A:B with non-negative integers");
  if (!a.empty()) *begin = num(a);
  if (!b.empty()) *end = num(b);
  if (*end >= 0 && *end <= *begin)
    throw InputError("run: " + flag + " '" + spec + "': empty range (B must be greater than A)");
}

void parse_batches(const std::string& spec, int64_t* begin, int64_t* end) {
  *begin = 0;
  *end = -1;
  if (!spec.empty()) parse_range("--batches", spec, begin, end);
}

// --dump-layers: comma-separated globs, none empty (each is checked against the model's layer
// names before the replay, in analyze()).
std::vector<std::string> parse_globs(const std::string& list) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    const size_t comma = list.find(',', pos);
    const std::string g = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (g.empty()) throw InputError("run: --dump-layers '" + list + "': empty glob (expected GLOB,GLOB,...)");
    out.push_back(g);
    if (comma == std::string::npos) return out;
    pos = comma + 1;
  }
}

std::unique_ptr<Backend> choose_backend(const std::string& want, std::ostream& err) {
  if (want == "cpu") return make_cpu_backend();
  if (want != "auto" && want != "cuda")
    throw InputError("run: --backend must be auto, cuda or cpu, got '" + want + "'");
  DeviceInfo d = query_device();
  if (d.available) return make_cuda_backend();
  if (want == "cuda") throw RuntimeFault("--backend cuda: no CUDA device: " + d.reason);
  err << "divscope: no CUDA device (" << d.reason << "); emulating every mode on the CPU\n";
  return make_cpu_backend();
}

// The tolerance flags given, each checked as a tolerance file's value is.
ToleranceOverride tolerance_flags(const ReplayArgs& a, std::optional<double> baseline_factor) {
  const ToleranceOverride o{a.atol, a.rtol, a.max_mismatch, baseline_factor, a.budget_factor, a.collapse, {}};
  const std::pair<const char*, const std::optional<double>*> given[] = {
      {"atol", &o.atol}, {"rtol", &o.rtol}, {"max_mismatch", &o.max_mismatch},
      {"baseline_factor", &o.baseline_factor}, {"budget_factor", &o.budget_factor}, {"collapse", &o.collapse}};
  for (const auto& [key, v] : given) {
    if (!*v) continue;
    const std::string bad = tolerance_value_error(key, **v);
    if (!bad.empty()) {
      std::string flag = key;
      std::replace(flag.begin(), flag.end(), '_', '-');
      throw InputError("--" + flag + " " + fmt("%g", **v) + ": " + bad);
    }
  }
  return o;
}

// The batch range and the tolerance policy of a replay (flags, then the file over them).
void set_replay_options(const ReplayArgs& a, const ToleranceOverride& flags, AnalysisOptions& opt) {
  parse_batches(a.batches, &opt.batch_begin, &opt.batch_end);
  opt.policy.set_global(flags);
  if (!a.tolerances.empty()) opt.policy.load_file(a.tolerances);
}

// What the reports say about a replay: files, backend, environment, and the tolerance asked
// for (per-mode defaults with the flags over them, the file, the criterion, --repeat).
ReportContext replay_context(const Model& model, const ReplayArgs& a, const Backend& backend,
                             const AnalysisOptions& opt, const ToleranceOverride& flags) {
  ReportContext ctx;
  ctx.model = &model;
  ctx.model_path = a.model;
  ctx.recording_path = a.recording;
  ctx.backend = backend.name();
  ctx.environment = environment_json();
  // The capturing machine's record, when the recording has one (a bad recording is reported
  // when the replay opens it).
  try {
    ctx.capture_environment = load_environment(a.recording);
  } catch (const std::exception&) {
    ctx.capture_environment = nullptr;
  }
  nlohmann::json tol;
  for (Mode m : opt.modes) {
    Tolerance t = default_tolerance(m);
    flags.apply(t);
    tol["modes"][mode_name(m)] = {{"atol", t.atol}, {"rtol", t.rtol}, {"max_mismatch", t.max_mismatch},
                                  {"budget_factor", t.budget_factor}, {"collapse", t.collapse},
                                  {"unit_roundoff", unit_roundoff(m)}};
    if (opt.criterion == Criterion::baseline && judged_by_baseline(m))
      tol["modes"][mode_name(m)]["baseline_factor"] = t.baseline_factor;
  }
  tol["file"] = a.tolerances.empty() ? nlohmann::json() : nlohmann::json(a.tolerances);
  tol["criterion"] = criterion_name(opt.criterion);
  tol["criterion_description"] =
      opt.criterion == Criterion::budget
          ? "budget: per sample and layer, a mode diverges on NaN/Inf the reference lacks, on "
            "rel_l2 >= collapse, or on rel_l2 > budget_factor * u_mode * kappa (kappa: the layer's "
            "sensitivity from the FP64 probe); strict bitwise (docs/verdict.md)"
      : opt.criterion == Criterion::baseline
          ? "baseline: tf32/fp16/bf16 diverge where rel_l2 > baseline_factor * max(fp32 rel_l2 / "
            "2^-24, 1) * u_mode (u = 2^-11 tf32 and fp16, 2^-8 bf16); fp32 by allclose; strict "
            "bitwise; NaN/Inf the reference lacks always diverges"
          : "allclose: |c - r| <= atol + rtol*|r|; a layer diverges when the mismatch fraction "
            "exceeds max_mismatch or it has NaN/Inf the reference lacks";
  tol["repeat"] = opt.repeat;
  ctx.tolerance = tol;
  return ctx;
}

// Progress on stderr: on a terminal one line rewritten per batch; elsewhere (a CI log) a line
// every 10 s and at the end, only for runs that take more than a few seconds.
std::function<void(int64_t, int64_t)> progress_printer(std::ostream& err) {
  const bool tty = isatty(STDERR_FILENO);
  const auto start = std::chrono::steady_clock::now();
  auto last = std::make_shared<double>(0.0);
  return [&err, tty, start, last](int64_t done, int64_t total) {
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (tty) {
      err << "\rdivscope: batch " << done << "/" << total << (done == total ? "\n" : "") << std::flush;
    } else if ((t - *last >= 10 && done < total) || (done == total && t >= 5)) {
      *last = t;
      err << "divscope: batch " << done << "/" << total << ", " << fmt("%.0f", t) << " s\n" << std::flush;
    }
  };
}

// run --profile: PassTimes as JSON, per mode by name.
nlohmann::json profile_json(const AnalysisResult& r, const AnalysisOptions& opt) {
  const PassTimes& t = r.times;
  nlohmann::json modes = nlohmann::json::object();
  for (size_t i = 0; i < opt.modes.size() && i < t.chained.size(); ++i)
    modes[mode_name(opt.modes[i])] = {{"chained_s", t.chained[i]}, {"isolated_s", t.isolated[i]},
                                      {"compare_s", t.compare[i]}};
  return {{"divscope_profile", 1}, {"batches", r.batches}, {"samples", r.samples},
          {"threads", opt.threads}, {"wall_s", t.wall}, {"read_s", t.read},
          {"reference_s", t.reference}, {"probe_s", t.probe}, {"checks_s", t.checks},
          {"modes", modes}, {"values_peak_bytes", t.values_peak}, {"values_plan_bytes", t.values_plan},
          {"note", "seconds in each pass summed over batches and layers; the modes' tasks run at the "
                   "same time on several threads, so the passes add up to more than wall_s"}};
}

}  // namespace

int run_run(const RunArgs& a, std::ostream& out, std::ostream& err) {
  AnalysisOptions opt;
  opt.modes = parse_modes(a.modes);
  if (!parse_criterion(a.criterion, &opt.criterion))
    throw InputError("run: --criterion must be budget, allclose or baseline, got '" + a.criterion + "'");
  if (a.table != "auto" && a.table != "all" && a.table != "none")
    throw InputError("run: --table must be auto, all or none, got '" + a.table + "'");
  if (a.baseline_factor && !(*a.baseline_factor > 0))
    throw InputError("run: --baseline-factor must be positive");
  if (a.repeat < 1) throw InputError("run: --repeat must be at least 1, got " + std::to_string(a.repeat));
  opt.repeat = a.repeat;
  opt.max_samples = a.max_samples;
  if (a.threads < 0 || a.threads > 4096) throw InputError("run: --threads must be between 0 (every core) and 4096");
  opt.threads = static_cast<unsigned>(a.threads);
  gemm_set_max_threads(a.threads);
  if (opt.criterion == Criterion::baseline &&
      std::find(opt.modes.begin(), opt.modes.end(), Mode::fp32) == opt.modes.end()) {
    opt.modes.insert(opt.modes.begin(), Mode::fp32);
    err << "divscope: --criterion baseline: also running fp32, whose error is the baseline\n";
  }
  const ToleranceOverride flags = tolerance_flags(a, a.baseline_factor);
  set_replay_options(a, flags, opt);
  if ((a.dump_layers || a.dump_batches) && a.dump.empty())
    throw InputError("run: --dump-layers and --dump-batches select what --dump writes: give --dump FILE");
  if (a.dump_layers) opt.dump_layers = parse_globs(*a.dump_layers);
  if (a.dump_batches) parse_range("--dump-batches", *a.dump_batches, &opt.dump_batch_begin, &opt.dump_batch_end);

  if (a.no_journal && !a.journal.empty()) throw InputError("run: --journal and --no-journal contradict each other");
  const std::string journal_path =
      !a.resume.empty() ? a.resume : !a.journal.empty() ? a.journal : a.no_journal ? ""
                                   : default_journal_path({a.report, a.junit, a.html, a.dump});
  check_output_paths("run", {{"--model", a.model}, {"--recording", a.recording}, {"--tolerances", a.tolerances}},
                     {{"--report", a.report}, {"--junit", a.junit}, {"--html", a.html}, {"--dump", a.dump},
                      {"--journal", journal_path}, {"--profile", a.profile}});
  // Resume: the interrupted run's finished batches, from files that have not changed since.
  std::optional<Journal> journal;
  if (!a.resume.empty()) {
    journal = read_journal(a.resume);
    check_journal_inputs(*journal);
    if (!a.dump.empty() && journal->dump_partial.empty())
      throw InputError(a.resume + ": the interrupted run's partial dump was not kept (killed before a "
                       "signal could close it?): run again without --resume");
    if (!a.dump.empty()) {
      struct stat st {};
      if (::stat(journal->dump_partial.c_str(), &st) != 0)
        throw InputError(a.resume + ": the interrupted run's partial dump " + journal->dump_partial +
                         " is gone: run again without --resume");
    }
    opt.resume = &journal->done.result;
    opt.resume_from = journal->next_batch;
    opt.resume_dump = a.dump.empty() ? "" : journal->dump_partial;
  }
  Model model = load_model(a.model, a.recording);
  std::unique_ptr<Backend> backend = choose_backend(a.backend, err);
  const ReportContext ctx = replay_context(model, a, *backend, opt, flags);
  opt.dump_path = a.dump;
  opt.dump_environment = ctx.environment.dump();
  opt.progress = progress_printer(err);
  // Data first: a broken input is said before the replay begins (the console repeats it).
  opt.on_input_findings = [&err](const std::vector<DataFinding>& found) {
    for (const DataFinding& f : found) err << "divscope: data: " << finding_line(f) << "\n";
  };
  std::unique_ptr<JournalWriter> journal_out;
  if (!journal_path.empty()) {
    std::error_code ec;
    const std::string cwd = std::filesystem::current_path(ec).string();
    journal_out = std::make_unique<JournalWriter>(
        journal_path, a.args, cwd,
        std::vector<JournalInput>{{"--model", a.model}, {"--recording", a.recording}, {"--tolerances", a.tolerances}},
        model, ctx, opt.batch_end);
    opt.checkpoint = [&j = *journal_out](const Checkpoint& c) { j.on_checkpoint(c); };
  }

  install_interrupt_handlers();
  AnalysisResult res;
  try {
    res = analyze(model, a.recording, *backend, opt);
  } catch (const Interrupted& e) {
    if (isatty(STDERR_FILENO)) err << "\n";
    const int64_t done = journal_out ? journal_out->written_next_batch() : -1;
    if (done >= 0)
      err << "divscope: interrupted by " << signal_name(e.signal()) << ": batches " << opt.batch_begin << ":"
          << done << " are kept in " << journal_out->path() << "; continue with: divscope run --resume "
          << journal_out->path() << "\n";
    else
      err << "divscope: interrupted by " << signal_name(e.signal()) << " before "
          << (journal_out ? "the first batch finished" : "the end (no journal: give --journal FILE or an output file)")
          << "; nothing kept\n";
    return e.exit_code();
  }

  print_console(res, ctx, out, {a.quiet, a.table});
  if (!a.report.empty()) write_json(report_json(res, ctx), a.report);
  if (!a.junit.empty()) write_junit(res, ctx, a.junit);
  if (!a.html.empty()) write_html(res, ctx, a.html);
  if (journal_out) journal_out->remove();   // the reports hold everything now
  if (!a.profile.empty()) write_json(profile_json(res, opt), a.profile);
  if (!res.data_healthy()) return kExitDataUnhealthy;
  return res.passed() ? kExitOk : kExitDiverged;
}


int run_bisect(const BisectArgs& a, std::ostream& out, std::ostream& err) {
  Mode mode;
  if (!parse_mode(a.mode, &mode) || !reduced_precision(mode))
    throw InputError("bisect: --mode must be tf32, fp16 or bf16, got '" + a.mode + "'");
  AnalysisOptions opt;
  opt.modes = {mode};
  opt.isolated = false;
  const ToleranceOverride flags = tolerance_flags(a, std::nullopt);
  set_replay_options(a, flags, opt);

  check_output_paths("bisect", {{"--model", a.model}, {"--recording", a.recording}, {"--tolerances", a.tolerances}},
                     {{"--report", a.report}});
  Model model = load_model(a.model, a.recording);
  std::unique_ptr<Backend> backend = choose_backend(a.backend, err);
  const size_t nl = model.layers.size();
  const ReportContext ctx = replay_context(model, a, *backend, opt, flags);

  auto names = [&](const std::vector<bool>& keep) {
    std::vector<std::string> v;
    for (size_t i = 0; i < nl; ++i)
      if (keep[i]) v.push_back(model.layers[i].name);
    return v;
  };
  int runs = 0;
  auto attempt = [&](const std::vector<bool>& keep) {
    opt.fp32_layers = keep;
    ++runs;
    return analyze(model, a.recording, *backend, opt);
  };
  out << "divscope bisect: model '" << model.name << "', mode " << mode_name(mode)
      << ": which layers must run in fp32 for every layer to pass?\n";
  std::vector<bool> keep(nl, false);
  nlohmann::json steps = nlohmann::json::array();
  AnalysisResult r = attempt(keep);
  int stuck = -1;   // a layer that diverges even in fp32
  while (!r.passed()) {
    const int f = r.modes[0].first_divergent;
    const LayerStats& s = r.modes[0].layers[f].chained;
    steps.push_back({{"fp32_layers", names(keep)}, {"first_divergent_layer", model.layers[f].name}});
    out << "  run " << runs << ": first divergent layer '" << model.layers[f].name << "' (#" << f
        << ", rel_l2 " << fmt("%.3e", s.rel_l2()) << ", " << s.nan + s.inf << " NaN/Inf)";
    if (!keep[f]) {
      out << " -> run it in fp32\n";
      keep[f] = true;
    } else {
      // Already in fp32: what it reads was rounded to the mode too early (a passing layer's
      // output that the mode's storage cannot hold well enough for this one). Its producers
      // follow it into fp32; with none left, fp32 itself does not meet the tolerance.
      std::string up;
      for (const ValueRef& ref : model.layers[f].refs)
        if (!ref.is_input && !keep[ref.index]) {
          keep[ref.index] = true;
          up += (up.empty() ? "'" : ", '") + model.layers[ref.index].name + "'";
        }
      if (up.empty()) {
        out << "\n";
        stuck = f;
        break;
      }
      out << " in fp32 -> also run its inputs " << up << " in fp32\n";
    }
    r = attempt(keep);
  }
  if (stuck < 0) {
    steps.push_back({{"fp32_layers", names(keep)}, {"first_divergent_layer", nullptr}});
    // Greedy promotion can keep a layer that a later promotion made unnecessary: drop each one
    // whose removal still passes.
    for (size_t i = 0; i < nl; ++i) {
      if (!keep[i]) continue;
      std::vector<bool> fewer = keep;
      fewer[i] = false;
      AnalysisResult rf = attempt(fewer);
      if (!rf.passed()) continue;
      out << "  run " << runs << ": '" << model.layers[i].name << "' passes in "
          << mode_name(mode) << " once the later layers are in fp32: back to " << mode_name(mode) << "\n";
      keep = fewer;
      r = std::move(rf);
    }
  }
  const std::vector<std::string> kept = names(keep);
  if (stuck >= 0) {
    out << mode_name(mode) << ": cannot pass — layer '" << model.layers[stuck].name << "' (#" << stuck
        << ") diverges even in fp32 (fp32's own error there exceeds the tolerance)\n";
  } else if (kept.empty()) {
    out << mode_name(mode) << ": passes with every layer in " << mode_name(mode) << "\n";
  } else {
    out << mode_name(mode) << ": passes with " << kept.size() << " of " << nl << " layers in fp32:";
    for (const std::string& k : kept) out << " " << k;
    out << "  (" << runs << " runs)\n";
  }
  if (!a.report.empty()) {
    const nlohmann::json j = {{"divscope_bisect", 1},
                        {"model", a.model},
                        {"recording", a.recording},
                        {"backend", ctx.backend},
                        {"mode", mode_name(mode)},
                        {"passed", stuck < 0},
                        {"fp32_layers", kept},
                        {"stuck_layer", stuck >= 0 ? nlohmann::json(model.layers[stuck].name) : nlohmann::json()},
                        {"runs", runs},
                        {"steps", steps},
                        {"final", report_json(r, ctx)}};
    write_json(j, a.report);
  }
  return stuck < 0 ? kExitOk : kExitDiverged;
}

}  // namespace divscope
