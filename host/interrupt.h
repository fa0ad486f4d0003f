// SIGINT and SIGTERM during `divscope run` (docs/journal.md): the first signal asks the analysis to
// stop at the next layer boundary, keep every finished batch in the journal and exit with 128 +
// the signal's number (130 for SIGINT, 143 for SIGTERM); a second signal exits at once with the
// same code (the journal then holds the last checkpoint).
#pragma once
#include <stdexcept>
#include <string>

namespace divscope {

// Installs the handlers (run only: other commands keep the default action).
void install_interrupt_handlers();
// The signal received, 0 when none.
int interrupt_signal();
// Test hook: behave as if `sig` had been received (0 clears).
void set_interrupt_for_testing(int sig);

// Thrown at a layer or batch boundary once a signal has been received.
class Interrupted : public std::runtime_error {
 public:
  explicit Interrupted(int sig);
  int signal() const { return sig_; }
  int exit_code() const { return 128 + sig_; }

 private:
  int sig_;
};

// Throws Interrupted when a signal has been received.
inline void throw_if_interrupted() {
  if (const int s = interrupt_signal()) throw Interrupted(s);
}

// "SIGINT", "SIGTERM" or "signal N".
std::string signal_name(int sig);

}  // namespace divscope
