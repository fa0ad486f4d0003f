// Guards against the HDF5 C library on damaged files: hangs and crashes. A damaged file can send libhdf5 into an endless loop
// (found by fuzzing the readers: H5HG_read on a corrupt global heap, while reading a
// variable-length string attribute, never returns — h5py hangs on the same file). Bad input must
// end in one line and exit code 2, never a hang, so every call into HDF5 is made under a Watch;
// a monitor thread ends the process with that line when one call has not returned in time.
// Fuzzing also found crashes inside libhdf5 1.10 (heap corruption in H5G__dense_iterate and
// H5HG_read): install_fatal_signal_handlers() turns a fatal signal inside a Watch into the same
// one line and exit code 2, and one anywhere else into "internal error" and exit code 3.
#pragma once
#include <string>

namespace divscope::h5 {

// Seconds one HDF5 call may take: $DIVSCOPE_HDF5_TIMEOUT, default 120 (a batch read from a slow
// disk takes seconds; the loops take forever).
double watch_limit_seconds();

// Marks the calling thread as inside HDF5 on `file`/`path` for its lifetime. Nested watches
// count from the outermost. Cheap: a clock read and a lock per watch.
class Watch {
 public:
  Watch(const std::string& file, const std::string& path);
  ~Watch();
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;

 private:
  bool outer_;
};

// SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT: one line naming the file being read (exit 2) or an
// internal error (exit 3), on an alternate stack. Called once by main().
void install_fatal_signal_handlers();

}  // namespace divscope::h5
