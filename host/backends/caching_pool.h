// A caching allocator (docs/memory.md): blocks go back to a free list, not to the system, and are
// handed out again to a later request of the same size class, so a replay makes its system
// allocations (cudaMalloc) on the first batch and none after. Header-only and plain C++: the CUDA
// backend's device memory (kernels/device.cu) is one of these over cudaMalloc/cudaFree, and the
// CPU tests drive the same class over a counting host allocator.
//
// Stream order: every kernel and copy of divscope runs on one stream (the legacy default stream),
// so a block released right after the launch of its last reader, and handed to the next request,
// is written only by work queued after that reader: no synchronisation is needed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

namespace divscope {

class CachingPool {
 public:
  // `system_alloc(bytes)` returns nullptr when the system has no more; `system_free(p)`.
  using SystemAlloc = std::function<void*(size_t)>;
  using SystemFree = std::function<void(void*)>;

  struct Stats {
    int64_t live = 0;            // bytes of blocks handed out (rounded sizes)
    int64_t peak = 0;            // most live at once since construction or reset_peak()
    int64_t reserved = 0;        // bytes obtained from the system, live or cached
    int64_t system_allocs = 0;   // calls of system_alloc that succeeded
    int64_t requests = 0;        // allocate() calls of more than 0 bytes
    int64_t hits = 0;            // requests served from the cache
    int64_t limit = -1;          // most `reserved` may reach; < 0: none
  };

  CachingPool(SystemAlloc a, SystemFree f) : alloc_(std::move(a)), free_(std::move(f)) {}
  ~CachingPool() { release_cached(); }
  CachingPool(const CachingPool&) = delete;
  CachingPool& operator=(const CachingPool&) = delete;

  // Size classes: multiples of 512 B up to 1 MiB, multiples of 2 MiB above (a block of a large
  // class serves requests down to 3/4 of its size, so a batch's tensors of nearly equal size
  // share blocks without holding twice the memory).
  static size_t round_size(size_t bytes) {
    const size_t small = size_t(1) << 20, large = size_t(2) << 20;
    return bytes <= small ? (bytes + 511) / 512 * 512 : (bytes + large - 1) / large * large;
  }

  // A block of at least `bytes`, or nullptr when neither the cache, the limit nor the system
  // allows one (the caller names what it wanted). 0 bytes: nullptr, not an error.
  void* allocate(size_t bytes) {
    if (bytes == 0) return nullptr;
    std::lock_guard<std::mutex> lock(mu_);
    const size_t size = round_size(bytes);
    ++stats_.requests;
    auto it = cached_.lower_bound(size);
    if (it != cached_.end() && (it->first == size || (size > (size_t(1) << 20) && it->first / 4 * 3 <= size))) {
      void* p = it->second;
      const size_t have = it->first;
      cached_.erase(it);
      used_[p] = have;
      ++stats_.hits;
      add_live(static_cast<int64_t>(have));
      return p;
    }
    void* p = nullptr;
    if (stats_.limit < 0 || stats_.reserved + static_cast<int64_t>(size) <= stats_.limit) p = alloc_(size);
    if (!p && !cached_.empty()) {   // the cache holds what the system lacks: give it back, retry
      release_cached_locked();
      if (stats_.limit < 0 || stats_.reserved + static_cast<int64_t>(size) <= stats_.limit) p = alloc_(size);
    }
    if (!p) return nullptr;
    ++stats_.system_allocs;
    stats_.reserved += static_cast<int64_t>(size);
    used_[p] = size;
    add_live(static_cast<int64_t>(size));
    return p;
  }

  // Back to the cache. A pointer this pool did not hand out is ignored (and counted: a bug).
  void release(void* p) {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = used_.find(p);
    if (it == used_.end()) {
      ++foreign_releases_;
      return;
    }
    stats_.live -= static_cast<int64_t>(it->second);
    cached_.emplace(it->second, p);
    used_.erase(it);
  }

  // Every cached block back to the system (live blocks stay).
  void release_cached() {
    std::lock_guard<std::mutex> lock(mu_);
    release_cached_locked();
  }

  void set_limit(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.limit = bytes;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak = stats_.live;
  }
  Stats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  int64_t foreign_releases() const {
    std::lock_guard<std::mutex> lock(mu_);
    return foreign_releases_;
  }

 private:
  void add_live(int64_t n) {
    stats_.live += n;
    if (stats_.live > stats_.peak) stats_.peak = stats_.live;
  }
  void release_cached_locked() {
    for (auto& [size, p] : cached_) {
      free_(p);
      stats_.reserved -= static_cast<int64_t>(size);
    }
    cached_.clear();
  }

  SystemAlloc alloc_;
  SystemFree free_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> cached_;        // free blocks by size
  std::unordered_map<void*, size_t> used_;     // handed-out blocks and their sizes
  Stats stats_;
  int64_t foreign_releases_ = 0;
};

}  // namespace divscope
