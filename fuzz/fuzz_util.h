// Shared by the libFuzzer targets of fuzz/ (docs/testing.md, Fuzzing).
//
// The contract a target checks is the CLI's: a reader either succeeds or throws InputError (exit
// 2, one line). Anything else — another exception, a sanitizer report, a crash, a hang — is a
// finding, reported by libFuzzer with the input that caused it.
//
// Two choices differ from the divscope binary, on purpose:
// - h5::install_fatal_signal_handlers() is not called: in the binary it turns a crash inside
//   libhdf5 into exit 2, but here it could also swallow ASan's and libFuzzer's reports of a crash
//   in divscope's own code (and a crash after libhdf5 reported a damaged file would be blamed on
//   the file). Every crash is reported with its stack; fuzz/run_fuzz.py then sorts out the known
//   faults of libhdf5 itself by their stack, and the CLI tests check that the binary turns those
//   into exit 2.
// - The HDF5 watchdog (h5watch.h) would _exit(2) without libFuzzer knowing, losing the input; it
//   is set far beyond libFuzzer's -timeout, which then reports the hang and saves the input.
// - The ASan suppressions of the binary (tools/asan.supp) are not used: libhdf5 overrunning its
//   buffers stays visible (and is sorted as known).
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "errors.h"
#include "graph/model.h"

namespace divscope::fuzz {

// Before any HDF5 call (LLVMFuzzerInitialize): the watchdog out of libFuzzer's way.
inline void init() { setenv("DIVSCOPE_HDF5_TIMEOUT", "1000000", 1); }

// Runs `f`; an InputError is the documented answer to a bad file, anything else is a finding.
template <class F>
void expect_input_error_only(F&& f) {
  try {
    f();
  } catch (const InputError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "divscope fuzz: exception that is not an InputError (exit 3 in the CLI): %s\n", e.what());
    std::abort();
  }
}

// A file holding `data` that only this process sees (a memfd): for readers that take a path and
// read it with the C++ or POSIX file API (JSON reports, tolerance files). Closed by the destructor.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) : fd_(memfd_create("divscope-fuzz", MFD_CLOEXEC)) {
    if (fd_ < 0) std::abort();
    for (size_t done = 0; done < size;) {
      const ssize_t n = write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

// The example model files of data/ (the recording and JSON targets pick one with their first
// byte); an absolute path, baked in at build time.
inline const std::vector<std::string>& example_models() {
  static const std::vector<std::string> v = {
      "mlp", "cnn", "resnet", "transformer", "dcgan", "ops", "planted_fp16_overflow",
      "planted_attention_overflow", "planted_bf16_offset", "planted_conv_cancellation",
      "planted_fp16_underflow", "planted_layernorm_offset", "planted_tf32_cancellation"};
  return v;
}
inline std::string data_path(const std::string& name) { return std::string(DIVSCOPE_SOURCE_DIR) + "/data/" + name; }

// Runs the FP64 reference over one sample of deterministic inputs when the model is small
// (every value at most 2^16 elements, at most 256 layers): shapes that pass validation but
// make an op index outside its buffers are found by ASan here.
void run_reference_if_small(const Model& m);

}  // namespace divscope::fuzz
