#include "graph/tensor.h"

#include <unistd.h>

#include <cstdio>
#include <limits>

namespace divscope {

int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    throw SizeOverflow(what + " overflows int64 (" + std::to_string(a) + " * " + std::to_string(b) + ")");
  return r;
}

int64_t checked_add(int64_t a, int64_t b, const std::string& what) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r))
    throw SizeOverflow(what + " overflows int64 (" + std::to_string(a) + " + " + std::to_string(b) + ")");
  return r;
}

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s)
    if (__builtin_mul_overflow(n, d, &n))
      throw SizeOverflow("shape " + shape_str(s) + " has more elements than int64 holds");
  return n;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

Shape strides_of(const Shape& s) {
  Shape st(s.size(), 1);
  for (int i = static_cast<int>(s.size()) - 2; i >= 0; --i)
    // Called for every op: the message is built only when the product overflows.
    if (__builtin_mul_overflow(st[i + 1], s[i + 1], &st[i]))
      checked_mul(st[i + 1], s[i + 1], "stride of dim " + std::to_string(i) + " of " + shape_str(s));
  return st;
}

int64_t host_memory_bytes() {
  static const int64_t bytes = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    int64_t b = 0;
    if (pages <= 0 || page <= 0 || __builtin_mul_overflow(int64_t{pages}, int64_t{page}, &b))
      return std::numeric_limits<int64_t>::max();   // unknown: only int64 limits apply
    return b;
  }();
  return bytes;
}

int64_t saturating_bytes(int64_t elements, int64_t elem_bytes) {
  int64_t b = 0;
  return __builtin_mul_overflow(elements, elem_bytes, &b) ? std::numeric_limits<int64_t>::max() : b;
}

std::string bytes_str(int64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = -1;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  return buf;
}

}  // namespace divscope
