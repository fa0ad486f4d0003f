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

// Seconds one HDF5 call may take: $DIVSCOPE_HDF5_TIMEOUT, default 20 (a healthy call takes
// milliseconds, a batch read from a slow disk seconds; the loops take forever).
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
// internal error (exit 3), on an alternate stack. Outside HDF5, a handler installed before this
// one (a sanitizer's) keeps the signals it handled, so that it reports our own crashes with their
// stack. Called once by main(); not by the fuzzers (fuzz/fuzz_util.h says why).
// It also turns on the containment of damaged files below.
void install_fatal_signal_handlers();

// Damaged files. When libhdf5 reports an error reading a file (a bad checksum, an address past
// its end), it may already have written past one of its own buffers: libhdf5 1.10 copies a
// damaged global heap object of the wrong size while reading a variable-length string, without
// failing (tests/data/corrupt_heap_overflow.h5, found by fuzzing), and glibc aborts only later,
// when a block next to it is freed — in H5Fclose while the error unwinds, or in the library's
// shutdown at exit, both outside the call that did the damage. So in the divscope binary, from
// the first error libhdf5 reports on a file being read:
// - that file's handles are never closed (h5wrap: closing walks and frees its structures);
// - libhdf5 is not shut down at exit (the process ends, the system takes the memory back);
// - a fatal signal outside any Watch names that file and exits 2, since it is most likely the
//   memory that file's reading corrupted.
// Tests and fuzz targets do not install the handlers: they close everything as usual, so that a
// sanitizer sees every byte and a leak stays a finding.
void note_damage();                                // the file of this thread's outermost Watch
bool keep_damaged_open(const std::string& file);   // true: never close this file's handles
bool skip_library_shutdown();
// The file of the most recent outermost Watch on any thread ("" before the first): what a crash
// while libhdf5 shuts down at exit is attributed to.
std::string last_watched_file();

}  // namespace divscope::h5
