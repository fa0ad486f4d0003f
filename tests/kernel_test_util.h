// Shared helpers of the kernel tests (tests/test_kernels*.cpp): the skip without a device, device
// memory that the test owns, bitwise comparison.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace divscope {

// Every GPU test starts with this: without a device it skips, visibly, with the reason.
#define DIVSCOPE_REQUIRE_GPU()                                              \
  do {                                                                      \
    const ::divscope::DeviceInfo divscope_dev_ = ::divscope::query_device(); \
    if (!divscope_dev_.available)                                           \
      GTEST_SKIP() << "no CUDA device: " << divscope_dev_.reason;           \
  } while (0)

class TestDevMem {
 public:
  explicit TestDevMem(size_t bytes) : p_(device_alloc(bytes, "test buffer")) {}
  ~TestDevMem() { device_free(p_); }
  TestDevMem(const TestDevMem&) = delete;
  TestDevMem& operator=(const TestDevMem&) = delete;
  TestDevMem(TestDevMem&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  void* get() const { return p_; }

 private:
  void* p_;
};

template <class T>
TestDevMem to_device(const std::vector<T>& v) {
  TestDevMem d(v.size() * sizeof(T));
  copy_to_device(d.get(), v.data(), v.size() * sizeof(T), "test input");
  return d;
}

template <class T>
std::vector<T> from_device(const TestDevMem& d, size_t n) {
  std::vector<T> v(n);
  copy_to_host(v.data(), d.get(), n * sizeof(T), "test output");
  return v;
}

// Index of the first element whose bits differ, or -1.
template <class T>
int64_t first_bit_difference(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return static_cast<int64_t>(i);
  return -1;
}

}  // namespace divscope
