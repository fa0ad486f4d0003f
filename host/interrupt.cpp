#include "interrupt.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>

namespace divscope {
namespace {

std::atomic<int> received{0};

extern "C" void on_interrupt(int sig) {
  int expected = 0;
  if (received.compare_exchange_strong(expected, sig)) return;   // first: stop cooperatively
  // Second: the user insists. Only async-signal-safe calls here.
  static const char line[] = "divscope: interrupted again: exiting now (the journal keeps its last checkpoint)\n";
  ssize_t ignored = write(STDERR_FILENO, line, sizeof line - 1);
  (void)ignored;
  _exit(128 + sig);
}

}  // namespace

void install_interrupt_handlers() {
  struct sigaction sa = {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;   // a blocking read or write is resumed, not failed with EINTR
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int interrupt_signal() { return received.load(std::memory_order_relaxed); }

void set_interrupt_for_testing(int sig) { received.store(sig); }

Interrupted::Interrupted(int sig)
    : std::runtime_error("interrupted by " + signal_name(sig)), sig_(sig) {}

std::string signal_name(int sig) {
  if (sig == SIGINT) return "SIGINT";
  if (sig == SIGTERM) return "SIGTERM";
  return "signal " + std::to_string(sig);
}

}  // namespace divscope
