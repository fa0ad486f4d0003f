#include "io/h5watch.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

#include "errors.h"

namespace divscope::h5 {
namespace {

using Clock = std::chrono::steady_clock;

constexpr double kDefaultLimitSeconds = 120;

thread_local int depth = 0;
// "file: path" of the outermost watch of this thread, for the monitor's and the signal
// handler's line (the handler may only read memory and call write/_exit). Empty outside HDF5.
// Room for a PATH_MAX file name and an HDF5 path.
thread_local char where[8192];

struct Entry {
  Clock::time_point start;
  const char* where;   // the watched thread's `where`, stable while its entry exists
};

struct Monitor {
  std::mutex mu;
  std::map<std::thread::id, Entry> active;   // threads inside HDF5 now
  double limit = watch_limit_seconds();

  Monitor() { std::thread([this] { loop(); }).detach(); }

  [[noreturn]] void expire(const Entry& e) {
    char secs[32];
    std::snprintf(secs, sizeof secs, "%g", limit);
    const std::string line = std::string("divscope: ") + e.where +
                             ": the HDF5 library has not returned after " + secs +
                             " s reading it (a damaged file can make it loop; "
                             "DIVSCOPE_HDF5_TIMEOUT sets the limit)\n";
    // The main thread is stuck inside HDF5: no destructors, no flushing through it.
    ssize_t ignored = write(STDERR_FILENO, line.data(), line.size());
    (void)ignored;
    _exit(kExitBadInput);
  }

  void loop() {
    const auto tick = std::chrono::milliseconds(limit < 5 ? 50 : 500);
    for (;;) {
      std::this_thread::sleep_for(tick);
      std::lock_guard<std::mutex> lock(mu);
      const Clock::time_point now = Clock::now();
      for (const auto& [id, e] : active)
        if (std::chrono::duration<double>(now - e.start).count() > limit) expire(e);
    }
  }
};

Monitor& monitor() {
  static Monitor* m = new Monitor();   // never destroyed: its thread outlives main's statics
  return *m;
}

void write_str(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  ssize_t ignored = write(STDERR_FILENO, s, n);
  (void)ignored;
}

extern "C" void on_fatal_signal(int sig) {
  char num[16];
  int i = sizeof num - 1;
  num[i] = 0;
  int v = sig;
  do {
    num[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v && i > 0);
  if (where[0]) {
    write_str("divscope: ");
    write_str(where);
    write_str(": the HDF5 library crashed reading it (a damaged file; signal ");
    write_str(num + i);
    write_str(")\n");
    _exit(kExitBadInput);
  }
  write_str("divscope: internal error: fatal signal ");
  write_str(num + i);
  write_str(" (please report it with the command line)\n");
  _exit(kExitRuntime);
}

}  // namespace

double watch_limit_seconds() {
  const char* v = std::getenv("DIVSCOPE_HDF5_TIMEOUT");
  if (!v || !*v) return kDefaultLimitSeconds;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  return end && *end == 0 && s > 0 ? s : kDefaultLimitSeconds;
}

Watch::Watch(const std::string& file, const std::string& path) : outer_(depth++ == 0) {
  if (!outer_) return;
  std::snprintf(where, sizeof where, "%s: %s", file.c_str(), path.c_str());
  Monitor& m = monitor();
  std::lock_guard<std::mutex> lock(m.mu);
  m.active[std::this_thread::get_id()] = Entry{Clock::now(), where};
}

Watch::~Watch() {
  --depth;
  if (!outer_) return;
  {
    Monitor& m = monitor();
    std::lock_guard<std::mutex> lock(m.mu);
    m.active.erase(std::this_thread::get_id());
  }
  where[0] = 0;
}

void install_fatal_signal_handlers() {
  static char alt_stack[1 << 16];   // a stack overflow still gets its line
  stack_t ss{};
  ss.ss_sp = alt_stack;
  ss.ss_size = sizeof alt_stack;
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(sig, &sa, nullptr);
}

}  // namespace divscope::h5
