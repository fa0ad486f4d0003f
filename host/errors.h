// Error types and the exit codes they map to (README, Commands).
#pragma once
#include <stdexcept>
#include <string>

namespace divscope {

// 4: the run finished, but the recorded data or the FP64 reference itself is unhealthy (NaN/Inf,
// empty or constant inputs, indices out of range, outlier batches, a reference that goes
// non-finite or dead): fix the data or the model before judging precision (docs/data-checks.md).
enum ExitCode { kExitOk = 0, kExitDiverged = 1, kExitBadInput = 2, kExitRuntime = 3, kExitDataUnhealthy = 4 };

// Bad input or usage: a malformed file, an unknown op, a bad flag. Exit code 2.
// The message is one line: "<file>: <hdf5 path>: <what is wrong>".
class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& msg) : std::runtime_error(msg) {}
  InputError(const std::string& file, const std::string& path, const std::string& what)
      : std::runtime_error(file + ": " + path + ": " + what) {}
};

// Failure of the tool or the machine (CUDA error, out of memory, cross-check mismatch). Exit 3.
class RuntimeFault : public std::runtime_error {
 public:
  explicit RuntimeFault(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace divscope
