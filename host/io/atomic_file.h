// Outputs replaced atomically (issue "Hostile files, killed runs and careless paths", part 3):
// a report or dump is written to a temporary file in the destination's directory, flushed,
// checked, fsync'ed and renamed into place. A failed or interrupted write leaves the previous
// file (or none) — never a truncated one that a CI job would read as the latest verdict.
#pragma once
#include <functional>
#include <ostream>
#include <string>

namespace divscope {

class AtomicPath {
 public:
  // A destination that exists and is not a regular file (/dev/stdout, a pipe) is written in
  // place: it cannot be replaced, and its reader expects the stream.
  explicit AtomicPath(std::string dest);
  // Continues an earlier temporary `temp` (run --resume: the interrupted run's dump). It is kept
  // if this run fails too, for the next --resume.
  AtomicPath(std::string dest, std::string temp);
  ~AtomicPath();   // removes the temporary file unless committed
  AtomicPath(const AtomicPath&) = delete;
  AtomicPath& operator=(const AtomicPath&) = delete;

  const std::string& dest() const { return dest_; }
  const std::string& temp() const { return temp_; }   // where to write (dest() when in place)
  // fsync the written temporary and rename it over the destination; InputError naming the
  // destination when that fails.
  void commit();
  // Keeps the temporary where it is, renamed to `to` when that is not empty (a dump interrupted by
  // a signal, kept for run --resume); returns where it is.
  std::string keep(const std::string& to = "");

 private:
  std::string dest_, temp_;
  bool in_place_ = false, committed_ = false, kept_ = false;
};

// Writes a text file atomically: `write` fills the stream; every stream error (a full disk,
// /dev/full) is an InputError "<path>: cannot write <what>: <reason>".
void write_text_atomically(const std::string& path, const std::string& what,
                           const std::function<void(std::ostream&)>& write);

}  // namespace divscope
