#include "io/h5watch.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "errors.h"

namespace divscope::h5 {
namespace {

using Clock = std::chrono::steady_clock;

// A healthy call returns in milliseconds: h5py opens and reads the largest dataset of data/ in
// 0.2-3 ms, and `divscope run` on the largest file passes with a 0.02 s limit even in the ASan
// build (docs/testing.md, The HDF5 watchdog). 20 s leaves room for a gigabyte batch from a slow
// disk and costs a CI job little when libhdf5 loops.
constexpr double kDefaultLimitSeconds = 20;

thread_local int depth = 0;
// "file: path" of the outermost watch of this thread, for the monitor's and the signal
// handler's line (the handler may only read memory and call write/_exit). Empty outside HDF5.
// Room for a PATH_MAX file name and an HDF5 path.
thread_local char where[8192];
// How many leading characters of `where` are the file (for note_damage). Plain data: a watch can
// run in an exit handler, after the thread's C++ thread_locals are destroyed.
thread_local size_t file_len = 0;

// Damaged files (h5watch.h). `damaged_name` is written once, before `damaged_any` is set, and
// then only read (by the signal handler).
bool containment = false;
std::atomic<bool> damaged_any{false};
char damaged_name[4096];
std::mutex damage_mu;
std::set<std::string>& damaged_files() {
  static auto* s = new std::set<std::string>();   // never destroyed: read by destructors at exit
  return *s;
}
std::string& last_file() {   // under damage_mu
  static auto* s = new std::string();
  return *s;
}

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

// The handlers installed before ours (AddressSanitizer's in a sanitizer build), by signal.
struct sigaction previous[NSIG];

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
  if (damaged_any.load()) {
    write_str("divscope: ");
    write_str(damaged_name);
    write_str(": damaged HDF5 file: the HDF5 library corrupted memory reading it (signal ");
    write_str(num + i);
    write_str(")\n");
    _exit(kExitBadInput);
  }
  // Outside HDF5 a crash is divscope's own bug: a sanitizer that handled the signal before us
  // gets it back (the faulting instruction runs again) and reports it with its stack.
  // (abort() would not call it again: SIGABRT stays ours.)
  const struct sigaction& prev = previous[sig];
  const bool handled = (prev.sa_flags & SA_SIGINFO) || (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN);
  if (handled && sig != SIGABRT) {
    sigaction(sig, &prev, nullptr);
    return;
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
  file_len = std::min(file.size(), sizeof where - 1);
  {
    std::lock_guard<std::mutex> lock(damage_mu);
    if (last_file() != file) last_file() = file;
  }
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
  file_len = 0;
}

void note_damage() {
  if (file_len == 0) return;
  const std::string file(where, file_len);
  std::lock_guard<std::mutex> lock(damage_mu);
  if (!damaged_files().insert(file).second || damaged_any.load()) return;
  std::snprintf(damaged_name, sizeof damaged_name, "%s", file.c_str());
  damaged_any.store(true);
}

bool keep_damaged_open(const std::string& file) {
  if (!containment || !damaged_any.load()) return false;
  std::lock_guard<std::mutex> lock(damage_mu);
  return damaged_files().count(file) != 0;
}

bool skip_library_shutdown() { return containment && damaged_any.load(); }

std::string last_watched_file() {
  std::lock_guard<std::mutex> lock(damage_mu);
  return last_file();
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
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(sig, &sa, &previous[sig]);
  containment = true;
}

}  // namespace divscope::h5
