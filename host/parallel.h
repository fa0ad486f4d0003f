// A small pool of persistent threads for the analysis' independent per-layer tasks (every
// mode's chained and isolated run). Results never depend on the thread count: each task owns
// what it writes.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace divscope {

class TaskPool {
 public:
  // `threads` in all, the calling thread included; 0: one per hardware thread.
  explicit TaskPool(unsigned threads = 0);
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  // Runs fn(i) for i = 0..n-1, each once, on the pool and the calling thread; returns when all
  // are done and rethrows the first exception a task threw.
  void run(size_t n, const std::function<void(size_t)>& fn);
  unsigned threads() const { return static_cast<unsigned>(workers_.size()) + 1; }

 private:
  void work();      // worker loop
  void drain();     // take indices until none is left

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(size_t)>* fn_ = nullptr;
  size_t n_ = 0;
  std::atomic<size_t> next_{0};
  size_t finished_ = 0;        // workers done with the current generation (all take part in each)
  unsigned generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace divscope
