// The divscope CLI: finds the subcommand word, parses that subcommand's own options into a
// plain struct, and dispatches. Every error becomes one line and the documented exit code
// (README, Commands): 0 ok · 1 divergence · 2 bad input or usage · 3 runtime/CUDA failure.
#include <cerrno>
#include <cstdlib>
#include <cxxopts.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "commands/cli.h"
#include "commands/journal.h"
#include "commands/diff.h"
#include "io/h5watch.h"
#include "commands/envdiff.h"
#include "commands/merge.h"
#include "errors.h"

using namespace divscope;

namespace {

const char* kUsage =
    "usage: divscope <command> [options]\n"
    "\n"
    "commands:\n"
    "  run       replay a recording through a model in every precision mode and report\n"
    "            the first layer and the samples where outputs diverge\n"
    "  inspect   show a model's layers, ops, shapes and parameters, or a recording's batches\n"
    "  env       print this machine's environment record (hardware, drivers, libraries, flags, variables) as JSON\n"
    "  env-diff  compare two environment records (reports, dumps, recordings, or - for this machine) field by field\n"
    "  diff      compare two dumps (run --dump) from two machines, layer by layer\n"
    "  bisect    find the layers that must stay in fp32 for tf32/fp16/bf16 to pass\n"
    "  merge     combine reports of runs over disjoint batch ranges (CI shards) into one\n"
    "\n"
    "`divscope <command> --help` shows the options of a command.\n";

// Parses a subcommand's options: cxxopts wants argv[0] first, so it gets "divscope" followed by
// the words after the subcommand. Nothing after printing --help (which lists `help_groups`:
// {""} leaves the positional arguments out of the option list); an unknown word is an error.
std::optional<cxxopts::ParseResult> parse(cxxopts::Options& opts, int argc, char** argv,
                                          const std::string& cmd,
                                          const std::vector<std::string>& help_groups = {}) {
  std::vector<char*> words{argv[0]};
  for (int i = 2; i < argc; ++i) words.push_back(argv[i]);
  cxxopts::ParseResult r = opts.parse(static_cast<int>(words.size()), words.data());
  if (r.count("help")) {
    std::cout << opts.help(help_groups);
    return std::nullopt;
  }
  if (!r.unmatched().empty()) throw InputError(cmd + ": unexpected argument '" + r.unmatched()[0] + "'");
  return r;
}

// The options every replay (run, bisect) takes. The tolerance flags are optional: cxxopts fills
// `flags`, and finish_replay_options passes on only those given.
struct ToleranceFlags {
  std::string atol, rtol, max_mismatch, budget_factor, collapse;
};

// A number flag parsed completely ("1e-3x" is an error, not 1e-3); range checks come later,
// the same as a tolerance file's (tolerance_value_error).
double number_flag(const std::string& flag, const std::string& text) {
  const char* begin = text.c_str();
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(begin, &end);
  if (text.empty() || end != begin + text.size() || errno == ERANGE)
    throw InputError("--" + flag + " '" + text + "': not a number");
  return v;
}

void add_replay_options(cxxopts::Options& opts, ReplayArgs& a, ToleranceFlags& f) {
  opts.add_options()
      ("model", "model file (.h5)", cxxopts::value<std::string>(a.model))
      ("recording", "recording file (.h5)", cxxopts::value<std::string>(a.recording))
      ("backend", "auto | cpu | cuda", cxxopts::value<std::string>(a.backend)->default_value("auto"))
      ("batches", "batch range A:B (0-based, B excluded)", cxxopts::value<std::string>(a.batches))
      ("atol", "absolute tolerance for every mode", cxxopts::value<std::string>(f.atol))
      ("rtol", "relative tolerance for every mode", cxxopts::value<std::string>(f.rtol))
      ("max-mismatch", "allclose: fraction of elements allowed outside tolerance",
       cxxopts::value<std::string>(f.max_mismatch))
      ("budget-factor", "budget criterion: allowed error in units of the mode's rounding times the "
       "layer's sensitivity (default 32)", cxxopts::value<std::string>(f.budget_factor))
      ("collapse", "budget criterion: a sample whose rel_l2 reaches this has collapsed (default 0.5)",
       cxxopts::value<std::string>(f.collapse))
      ("tolerances", "JSON file: per-mode sections of layer-name globs -> {criterion, atol, rtol, "
       "max_mismatch, baseline_factor, budget_factor, collapse}", cxxopts::value<std::string>(a.tolerances));
}

void finish_replay_options(const cxxopts::ParseResult& r, const std::string& cmd, ReplayArgs& a,
                           const ToleranceFlags& f) {
  if (a.model.empty() || a.recording.empty())
    throw InputError(cmd + ": --model and --recording are required (see divscope " + cmd + " --help)");
  if (r.count("atol")) a.atol = number_flag("atol", f.atol);
  if (r.count("rtol")) a.rtol = number_flag("rtol", f.rtol);
  if (r.count("max-mismatch")) a.max_mismatch = number_flag("max-mismatch", f.max_mismatch);
  if (r.count("budget-factor")) a.budget_factor = number_flag("budget-factor", f.budget_factor);
  if (r.count("collapse")) a.collapse = number_flag("collapse", f.collapse);
}

int cmd_env(int argc, char** argv) {
  cxxopts::Options opts("divscope env", "Print the environment as JSON (host, compiler, CUDA, GPU).");
  opts.add_options()("h,help", "show this help");
  if (!parse(opts, argc, argv, "env")) return kExitOk;
  return run_env(std::cout, std::cerr);
}

int cmd_inspect(int argc, char** argv) {
  cxxopts::Options opts("divscope inspect",
                        "Show a model (layers, ops, shapes, parameter counts) or a recording "
                        "(batches, inputs, shapes).");
  InspectArgs a;
  opts.add_options()("file", "model.h5, model.onnx or recording.h5", cxxopts::value<std::string>(a.file))(
      "model", "validate a recording against this model (.h5 or .onnx)", cxxopts::value<std::string>(a.model))(
      "recording", "an ONNX model's dynamic dims are fixed by this recording's input shapes",
      cxxopts::value<std::string>(a.recording))(
      "h,help", "show this help");
  opts.parse_positional({"file"});
  opts.positional_help("FILE");
  if (!parse(opts, argc, argv, "inspect")) return kExitOk;
  if (a.file.empty()) throw InputError("inspect: missing FILE (see divscope inspect --help)");
  return run_inspect(a, std::cout);
}

int cmd_run(int argc, char** argv);
std::string resume_journal;   // set by cmd_resume for the cmd_run it calls

// `divscope run --resume JOURNAL`: the interrupted run's own command line, parsed again in the
// directory it ran in (docs/journal.md). Nothing else may be given.
int cmd_resume(int argc, char** argv) {
  std::string journal;
  for (int i = 2; i < argc; ++i) {
    const std::string w = argv[i];
    if (w == "--resume" && i + 1 < argc) journal = argv[++i];
    else if (w.rfind("--resume=", 0) == 0) journal = w.substr(9);
    else throw InputError("run --resume: '" + w + "': the interrupted run's options come from its journal; give only --resume JOURNAL");
  }
  if (journal.empty()) throw InputError("run --resume: expected a journal file");
  std::error_code ec;
  const std::string abs = std::filesystem::absolute(journal, ec).string();
  const auto [args, cwd] = read_journal_command(journal);
  if (::chdir(cwd.c_str()) != 0)
    throw InputError(journal + ": /cwd: cannot go back to the interrupted run's directory " + cwd + ": " +
                     std::strerror(errno));
  std::vector<std::string> words{argv[0], "run"};
  words.insert(words.end(), args.begin(), args.end());
  resume_journal = abs;
  std::vector<char*> ptrs;
  for (std::string& w : words) ptrs.push_back(w.data());
  return cmd_run(static_cast<int>(ptrs.size()), ptrs.data());
}

int cmd_run(int argc, char** argv) {
  if (resume_journal.empty())
    for (int i = 2; i < argc; ++i) {
      const std::string w = argv[i];
      if (w == "--resume" || w.rfind("--resume=", 0) == 0) return cmd_resume(argc, argv);
    }
  cxxopts::Options opts("divscope run",
                        "Replay a recording through a model in every precision mode, compare each "
                        "layer with the FP64 reference and name the first divergent layer.\n"
                        "Exit codes: 0 within tolerance, 1 divergence, 2 bad input, 3 runtime failure, "
                        "4 the data or the FP64 reference is unhealthy (docs/data-checks.md), "
                        "130/143 stopped by SIGINT/SIGTERM (docs/journal.md).");
  RunArgs a;
  ToleranceFlags flags;
  std::string bf, dump_layers, dump_batches, max_samples;
  add_replay_options(opts, a, flags);
  opts.add_options()
      ("modes", "comma-separated modes: fp32,tf32,fp16,bf16,strict",
       cxxopts::value<std::string>(a.modes)->default_value(a.modes))
      ("criterion", "budget (default: per sample, norm-wise, the mode's rounding times the layer's "
       "sensitivity; collapse and NaN/Inf always fail) | allclose (element-wise atol/rtol) | "
       "baseline (tf32/fp16/bf16 against fp32's error)",
       cxxopts::value<std::string>(a.criterion)->default_value("budget"))
      ("baseline-factor", "baseline criterion: allowed error over fp32's (default 2 tf32, 3 fp16/bf16)",
       cxxopts::value<std::string>(bf))
      ("repeat", "run every layer N times; any bitwise difference between runs is a divergence",
       cxxopts::value<int>(a.repeat)->default_value("1"))
      ("report", "write the JSON report here", cxxopts::value<std::string>(a.report))
      ("junit", "write a JUnit XML report here", cxxopts::value<std::string>(a.junit))
      ("html", "write a self-contained HTML report (plots and tables) here",
       cxxopts::value<std::string>(a.html))
      ("dump", "write every layer's chained output per mode to this HDF5 file (compressed, each "
       "mode in its own precision)", cxxopts::value<std::string>(a.dump))
      ("dump-layers", "--dump keeps only the layers matching these comma-separated globs (e.g. "
       "'conv*,fc')", cxxopts::value<std::string>(dump_layers))
      ("dump-batches", "--dump keeps only the batches A:B (0-based, B excluded) of those replayed",
       cxxopts::value<std::string>(dump_batches))
      ("table", "console rows: auto (every layer up to 30, else the rows around each first "
       "divergence and the worst layers) | all | none", cxxopts::value<std::string>(a.table)->default_value("auto"))
      ("q,quiet", "print only each mode's verdict and the result line", cxxopts::value<bool>(a.quiet))
      ("journal", "keep every finished batch here while the run goes (default: beside the first "
       "output file, FILE.journal; removed when the run finishes); SIGINT/SIGTERM stop the run "
       "with exit 130/143 and keep it", cxxopts::value<std::string>(a.journal))
      ("max-samples", "divergent samples listed per mode, worst first (all are counted; memory and "
       "report stay bounded however long the recording)", cxxopts::value<std::string>(max_samples))
      ("threads", "CPU backend: threads for the modes' tasks and each GEMM (default: every core; "
       "results are the same for any count)", cxxopts::value<int>(a.threads)->default_value("0"))
      ("profile", "write the seconds spent in each pass (read, FP64 reference, probe, checks, each "
       "mode's chained and isolated runs, comparisons) as JSON here", cxxopts::value<std::string>(a.profile))
      ("no-journal", "keep no journal (a signal then loses the finished batches)",
       cxxopts::value<bool>(a.no_journal))
      ("resume", "continue the interrupted run whose journal this is (no other option)",
       cxxopts::value<std::string>(a.resume))
      ("h,help", "show this help");
  const auto r = parse(opts, argc, argv, "run");
  if (!r) return kExitOk;
  finish_replay_options(*r, "run", a, flags);
  if (r->count("baseline-factor")) a.baseline_factor = number_flag("baseline-factor", bf);
  if (r->count("dump-layers")) a.dump_layers = dump_layers;
  if (r->count("dump-batches")) a.dump_batches = dump_batches;
  if (r->count("max-samples")) {
    if (max_samples.empty() || max_samples.size() > 12 || max_samples.find_first_not_of("0123456789") != std::string::npos)
      throw InputError("run: --max-samples '" + max_samples + "': expected a whole number, 0 or more");
    a.max_samples = std::stoll(max_samples);
  }
  for (int i = 2; i < argc; ++i) a.args.push_back(argv[i]);   // the command line the journal keeps
  a.resume = resume_journal;
  return run_run(a, std::cout, std::cerr);
}

int cmd_diff(int argc, char** argv) {
  cxxopts::Options opts("divscope diff",
                        "Compare two dumps of `divscope run --dump` (e.g. from two machines) entry by "
                        "entry: every batch, mode and layer in both, B against A, exact by default.\n"
                        "Exit codes: 0 identical within tolerance, 1 different, 2 bad input.");
  DiffArgs a;
  opts.add_options("positional")
      ("dump_a", "first dump, the reference", cxxopts::value<std::string>(a.a))
      ("dump_b", "second dump", cxxopts::value<std::string>(a.b));
  opts.add_options()
      ("atol", "absolute tolerance: differ when |b - a| > atol + rtol*|a| (default 0)",
       cxxopts::value<double>(a.atol))
      ("rtol", "relative tolerance (default 0)", cxxopts::value<double>(a.rtol))
      ("modes", "comma-separated modes to compare (default: every mode in either dump)",
       cxxopts::value<std::string>(a.modes))
      ("common-only", "entries in only one dump do not make the result different",
       cxxopts::value<bool>(a.common_only))
      ("report", "write the JSON diff report here", cxxopts::value<std::string>(a.report))
      ("h,help", "show this help");
  opts.parse_positional({"dump_a", "dump_b"});
  opts.positional_help("A.h5 B.h5");
  if (!parse(opts, argc, argv, "diff", {""})) return kExitOk;
  if (a.a.empty() || a.b.empty())
    throw InputError("diff: expected two dumps A.h5 B.h5 (see divscope diff --help)");
  return run_diff(a, std::cout, std::cerr);
}

int cmd_bisect(int argc, char** argv) {
  cxxopts::Options opts("divscope bisect",
                        "Find the layers that must run in fp32 for a reduced-precision mode to pass: "
                        "run the mode, keep its first divergent layer in fp32, run again, until every "
                        "layer passes; then give back to the mode each kept layer that is not needed.\n"
                        "Exit codes: 0 a passing set found, 1 a layer diverges even in fp32, 2 bad input, "
                        "3 runtime failure.");
  BisectArgs a;
  ToleranceFlags flags;
  add_replay_options(opts, a, flags);
  opts.add_options()
      ("mode", "tf32 | fp16 | bf16", cxxopts::value<std::string>(a.mode)->default_value(a.mode))
      ("report", "write the JSON result here", cxxopts::value<std::string>(a.report))
      ("h,help", "show this help");
  const auto r = parse(opts, argc, argv, "bisect");
  if (!r) return kExitOk;
  finish_replay_options(*r, "bisect", a, flags);
  return run_bisect(a, std::cout, std::cerr);
}

int cmd_merge(int argc, char** argv) {
  cxxopts::Options opts("divscope merge",
                        "Merge JSON reports of `divscope run --report` over disjoint batch ranges of one "
                        "recording (CI shards: --batches 0:10, 10:20, ...) into the report of one run over "
                        "all those batches, and judge it again.\n"
                        "Exit codes: 0 within tolerance, 1 divergence, 2 bad input.");
  MergeArgs a;
  opts.add_options("positional")
      ("reports", "JSON reports of divscope run --report", cxxopts::value<std::vector<std::string>>(a.reports));
  opts.add_options()
      ("model", "the model the reports were made with (.h5 or .onnx)", cxxopts::value<std::string>(a.model))
      ("recording", "an ONNX model's dynamic dims are fixed by this recording's input shapes",
       cxxopts::value<std::string>(a.recording))
      ("report", "write the merged JSON report here", cxxopts::value<std::string>(a.report))
      ("junit", "write a JUnit XML report here", cxxopts::value<std::string>(a.junit))
      ("html", "write a self-contained HTML report (plots and tables) here",
       cxxopts::value<std::string>(a.html))
      ("table", "console rows: auto (every layer up to 30, else the rows around each first "
       "divergence and the worst layers) | all | none", cxxopts::value<std::string>(a.table)->default_value("auto"))
      ("q,quiet", "print only each mode's verdict and the result line", cxxopts::value<bool>(a.quiet))
      ("h,help", "show this help");
  opts.parse_positional({"reports"});
  opts.positional_help("REPORTS...");
  if (!parse(opts, argc, argv, "merge", {""})) return kExitOk;
  if (a.reports.empty() || a.model.empty())
    throw InputError("merge: expected REPORTS... and --model M.h5 (see divscope merge --help)");
  return run_merge(a, std::cout, std::cerr);
}

int cmd_env_diff(int argc, char** argv) {
  cxxopts::Options opts("divscope env-diff",
                        "Compare two environment records field by field: each a JSON report, a dump, a "
                        "recording (its capturing machine), the JSON of `divscope env`, or - for this "
                        "machine. Differences known to change numerics come first, with why.\n"
                        "Exit codes: 0 the same environment (hostname aside), 1 differences, 2 bad input.");
  EnvDiffArgs a;
  opts.add_options("positional")("a", "first record", cxxopts::value<std::string>(a.a))(
      "b", "second record", cxxopts::value<std::string>(a.b));
  opts.add_options()("report", "write the differences as JSON here (- prints JSON instead of the table)",
                     cxxopts::value<std::string>(a.report))("h,help", "show this help");
  opts.parse_positional({"a", "b"});
  opts.positional_help("A B");
  if (!parse(opts, argc, argv, "env-diff", {""})) return kExitOk;
  if (a.a.empty() || a.b.empty()) throw InputError("env-diff: expected A B (files, or - for this machine)");
  return run_env_diff(a, std::cout, std::cerr);
}

}  // namespace

int main(int argc, char** argv) {
  divscope::h5::install_fatal_signal_handlers();
#if defined(__GLIBC__)
  // One malloc arena: the analysis allocates few, large blocks, and the GEMM's short-lived
  // threads would otherwise each keep an arena of freed activations (resnet50 batch 8, 2 threads:
  // peak RSS 1035-1073 -> 980-1005 MiB, wall time the same within noise; docs/memory.md).
  mallopt(M_ARENA_MAX, 1);
#endif
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return kExitBadInput;
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
      std::fputs(kUsage, stdout);
      return kExitOk;
    }
    if (cmd == "env") return cmd_env(argc, argv);
    if (cmd == "inspect") return cmd_inspect(argc, argv);
    if (cmd == "run") return cmd_run(argc, argv);
    if (cmd == "diff") return cmd_diff(argc, argv);
    if (cmd == "bisect") return cmd_bisect(argc, argv);
    if (cmd == "merge") return cmd_merge(argc, argv);
    if (cmd == "env-diff") return cmd_env_diff(argc, argv);
    std::fprintf(stderr, "divscope: unknown command '%s' (run, inspect, env, env-diff, diff, bisect, merge; see divscope --help)\n",
                 cmd.c_str());
    return kExitBadInput;
  } catch (const InputError& e) {
    std::fprintf(stderr, "divscope: %s\n", e.what());
    return kExitBadInput;
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "divscope %s: %s\n", cmd.c_str(), e.what());
    return kExitBadInput;
  } catch (const RuntimeFault& e) {
    std::fprintf(stderr, "divscope: %s\n", e.what());
    return kExitRuntime;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "divscope: out of host memory\n");
    return kExitRuntime;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "divscope: internal error: %s\n", e.what());
    return kExitRuntime;
  }
}
