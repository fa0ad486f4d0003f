#include "commands/journal.h"

#include <sys/stat.h>

#include <fstream>

#include "errors.h"
#include "io/atomic_file.h"

namespace divscope {
namespace {

using nlohmann::json;

json identity(const JournalInput& in) {
  struct stat st {};
  if (::stat(in.path.c_str(), &st) != 0) return {{"flag", in.flag}, {"path", in.path}, {"exists", false}};
  const int64_t mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return {{"flag", in.flag}, {"path", in.path}, {"size", static_cast<int64_t>(st.st_size)}, {"mtime_ns", mtime_ns}};
}

json parse_journal(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot open the journal");
  json j;
  try {
    j = json::parse(f);
  } catch (const json::exception&) {
    throw InputError(path + ": not a divscope journal (truncated or damaged JSON)");
  }
  if (!j.is_object() || !j.contains("divscope_journal"))
    throw InputError(path + ": not a divscope journal (no key 'divscope_journal')");
  if (j["divscope_journal"] != kJournalVersion)
    throw InputError(path + ": /divscope_journal: journal version " + j["divscope_journal"].dump() +
                     "; this divscope reads version " + std::to_string(kJournalVersion));
  const std::string version = j.value("divscope_version", std::string());
  if (version != DIVSCOPE_VERSION)
    throw InputError(path + ": /divscope_version: written by divscope " + version + ", this is " +
                     DIVSCOPE_VERSION + ": resume with that divscope, or run again");
  return j;
}

template <class T>
T field(const json& j, const char* key, const std::string& file) {
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    throw InputError(file + ": /" + key + ": missing or of the wrong type (a damaged journal)");
  }
}

}  // namespace

JournalWriter::JournalWriter(std::string path, std::vector<std::string> args, std::string cwd,
                             const std::vector<JournalInput>& inputs, const Model& model,
                             const ReportContext& ctx, int64_t batch_end)
    : path_(std::move(path)), model_(model), ctx_(ctx), last_end_(std::chrono::steady_clock::now()) {
  json ids = json::array();
  for (const JournalInput& in : inputs)
    if (!in.path.empty()) ids.push_back(identity(in));
  head_ = {{"divscope_journal", kJournalVersion}, {"divscope_version", DIVSCOPE_VERSION},
           {"args", args}, {"cwd", cwd}, {"inputs", ids}, {"batch_end", batch_end}};
}

void JournalWriter::on_checkpoint(const Checkpoint& c) {
  if (c.signal == 0) {
    const double since = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_end_).count();
    if (writes_ > 0 && since < kJournalSpacing * last_cost_) return;
  }
  if (c.done.batches == 0) return;   // nothing finished: nothing to keep
  write(c);
}

void JournalWriter::write(const Checkpoint& c) {
  const auto t0 = std::chrono::steady_clock::now();
  AnalysisResult done = c.done;
  for (const DataFinding& f : c.reference_findings) done.findings.push_back(f);
  judge(*ctx_.model, ctx_.backend, done);
  json j = head_;
  j["next_batch"] = c.next_batch;
  j["signal"] = c.signal;
  j["dump_partial"] = c.dump_partial;
  j["report"] = report_json(done, ctx_);
  const std::string text = j.dump();
  write_text_atomically(path_, "the journal", [&](std::ostream& o) { o << text << "\n"; });
  written_next_ = c.next_batch;
  ++writes_;
  last_end_ = std::chrono::steady_clock::now();
  last_cost_ = std::chrono::duration<double>(last_end_ - t0).count();
}

void JournalWriter::remove() {
  if (writes_ > 0) std::remove(path_.c_str());
}

std::pair<std::vector<std::string>, std::string> read_journal_command(const std::string& path) {
  const json j = parse_journal(path);
  return {field<std::vector<std::string>>(j, "args", path), field<std::string>(j, "cwd", path)};
}

Journal read_journal(const std::string& path) {
  const json j = parse_journal(path);
  Journal r;
  r.file = path;
  r.args = field<std::vector<std::string>>(j, "args", path);
  r.cwd = field<std::string>(j, "cwd", path);
  r.next_batch = field<int64_t>(j, "next_batch", path);
  r.batch_end = field<int64_t>(j, "batch_end", path);
  r.dump_partial = field<std::string>(j, "dump_partial", path);
  r.inputs = j.at("inputs");
  if (!j.contains("report")) throw InputError(path + ": /report: missing (a damaged journal)");
  r.done = report_from_json(j["report"], path, "/report");
  if (r.done.batch_end() != r.next_batch)
    throw InputError(path + ": /next_batch: " + std::to_string(r.next_batch) + " but the report covers batches " +
                     std::to_string(r.done.result.batch_begin) + ":" + std::to_string(r.done.batch_end()));
  return r;
}

void check_journal_inputs(const Journal& j) {
  if (!j.inputs.is_array()) throw InputError(j.file + ": /inputs: expected an array (a damaged journal)");
  for (const json& want : j.inputs) {
    const JournalInput in{want.value("flag", std::string()), want.value("path", std::string())};
    const json now = identity(in);
    if (now != want)
      throw InputError(j.file + ": " + in.flag + " " + in.path +
                       " changed since the interrupted run (size or modification time): its finished "
                       "batches cannot be reused; run again without --resume");
  }
}

std::string default_journal_path(const std::vector<std::string>& outputs) {
  for (const std::string& o : outputs) {
    if (o.empty() || o == "-") continue;
    struct stat st {};
    if (::stat(o.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) continue;   // /dev/stdout, a pipe
    return o + ".journal";
  }
  return "";
}

}  // namespace divscope
