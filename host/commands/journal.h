// The journal of `divscope run` (docs/journal.md): every finished batch's statistics, kept on disk
// while the run goes, so that SIGINT/SIGTERM (or a kill) loses nothing that finished and
// `divscope run --resume JOURNAL` continues from the next batch to the uninterrupted run's report.
#pragma once
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "analysis/analysis.h"
#include "report/json_read.h"
#include "report/report.h"

namespace divscope {

constexpr int kJournalVersion = 1;

// A file the run reads, as the journal identifies it: path as given, size and modification time
// (a resume refuses inputs that changed since).
struct JournalInput {
  std::string flag, path;
};

// Writes the journal at checkpoints: always when a signal stops the run; otherwise after a
// batch when the time since the last write is at least kJournalSpacing times what that write
// cost, so journalling costs at most 1/kJournalSpacing of the run (2%).
class JournalWriter {
 public:
  static constexpr double kJournalSpacing = 50;
  // `args`: the run's command line after "run"; `cwd`: where it ran (relative paths).
  JournalWriter(std::string path, std::vector<std::string> args, std::string cwd,
                const std::vector<JournalInput>& inputs, const Model& model, const ReportContext& ctx,
                int64_t batch_end);
  void on_checkpoint(const Checkpoint& c);
  const std::string& path() const { return path_; }
  int64_t written_next_batch() const { return written_next_; }   // -1: nothing written yet
  int writes() const { return writes_; }
  void remove();   // the run finished: its report holds everything

 private:
  void write(const Checkpoint& c);
  std::string path_;
  nlohmann::json head_;
  const Model& model_;
  const ReportContext& ctx_;
  int64_t written_next_ = -1;
  int writes_ = 0;
  double last_cost_ = 0;
  std::chrono::steady_clock::time_point last_end_;
};

struct Journal {
  std::string file;
  std::vector<std::string> args;
  std::string cwd;
  int64_t next_batch = 0, batch_end = -1;
  std::string dump_partial;
  nlohmann::json inputs;
  ReportData done;   // the finished batches, as a report of them would hold
};

// The command line and directory of the interrupted run (read first, to parse the run's flags).
std::pair<std::vector<std::string>, std::string> read_journal_command(const std::string& path);
// Everything; InputError naming the journal and the JSON pointer when it is damaged or of
// another version of divscope.
Journal read_journal(const std::string& path);
// InputError naming the input whose size or modification time differs from the journal's.
void check_journal_inputs(const Journal& j);

// Where the journal goes without --journal: beside the first of --report, --junit, --html,
// --dump that is a regular file path, with ".journal" appended; "" when there is none.
std::string default_journal_path(const std::vector<std::string>& outputs);

}  // namespace divscope
