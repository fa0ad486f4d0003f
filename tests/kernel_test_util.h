// Shared helpers of the kernel tests (tests/test_kernels*.cpp): the skip without a device, device
// memory that the test owns, bitwise comparison, and the op-case harness (kernel_test::) of
// test_kernels.cpp, test_kernels_ops2.cpp and test_kernels_v2_ops.cpp.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "analysis/reference_check.h"
#include "backends/backend.h"
#include "backends/cuda_backend.h"
#include "kernels/kernels.h"
#include "graph/ops.h"
#include "reference/modes.h"
#include "reference/reference.h"

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

// Index of the first element that differs, NaNs of any bits counting as equal (the modes other
// than strict keep the hardware's NaN bits, which differ between the CPU and the GPU), or -1.
template <class T>
int64_t first_difference_nan_equal(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0 && !(std::isnan(a[i]) && std::isnan(b[i])))
      return static_cast<int64_t>(i);
  return -1;
}

// The op-case harness of tests/test_kernels*.cpp and tests/test_strict_nan.cpp (STYLE 3, 9, 10):
// each file lists its cases and instantiates its suite; building a layer, the two input regimes,
// the launch with the output poisoned, the CPU path of the mode, the tolerances and the checks
// live here so that both op sets are judged by the same rules.
namespace kernel_test {

enum class Regime { integers, real };

struct Gen {
  Regime regime;
  std::mt19937_64 rng;
  // A non-zero value: an integer in [-3, 3] \ {0}, or uniform in [lo, hi] away from 0.
  double next(double lo = -2, double hi = 2) {
    if (regime == Regime::integers) {
      int v = static_cast<int>(std::uniform_int_distribution<int>(-3, 2)(rng));
      return v >= 0 ? v + 1 : v;
    }
    double v = std::uniform_real_distribution<double>(lo, hi)(rng);
    return std::fabs(v) < 1e-3 ? 0.5 : v;
  }
  Tensor tensor(const Shape& s, double lo = -2, double hi = 2) {
    Tensor t(s);
    for (double& v : t.data) v = next(lo, hi);
    return t;
  }
};

struct Built {
  Layer layer;
  std::vector<Shape> in_shapes;   // full shapes, batch first
};

struct OpCase {
  const char* name;
  bool exact_on_integers;
  std::function<Built(Gen&)> build;
  // Inputs; empty: g.tensor(shape) for each input.
  std::function<std::vector<Tensor>(Gen&, const Built&)> inputs = {};
};

using Ints = std::vector<int64_t>;

// Every input is a graph input (embedding's infer requires its indices to be one; no other op
// reads the refs).
inline Built make(const std::string& op, std::vector<Shape> in_shapes,
                  std::map<std::string, AttrValue> attrs = {}, std::map<std::string, Tensor> params = {}) {
  Built b;
  b.layer.name = "test_" + op;
  b.layer.op = op;
  b.layer.path = "/layers/0000";
  b.layer.attrs = std::move(attrs);
  b.layer.params = std::move(params);
  for (size_t i = 0; i < in_shapes.size(); ++i)
    b.layer.refs.push_back(ValueRef{true, static_cast<int>(i)});
  b.in_shapes = std::move(in_shapes);
  Shape out = find_op(op)->infer(b.layer, b.in_shapes);
  b.layer.out_shape.assign(out.begin() + 1, out.end());
  return b;
}

inline constexpr Mode kModes[] = {Mode::fp64, Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict};

// Mode tolerance of README, What divscope run computes for GPU vs CPU of the same mode; atol scales with the output's
// magnitude (a long dot product's rounding error grows with it). fp64 and strict are not judged
// by a tolerance: strict is bitwise, fp64 follows compare_device_reference (check_fp64).
struct Tol {
  double atol, rtol;
};
inline Tol tolerance(Mode m) {
  switch (m) {
    case Mode::fp64: return {0, 0};
    case Mode::fp32: return {1e-5, 1e-4};
    case Mode::tf32: return {1e-3, 1e-2};
    case Mode::fp16: return {1e-2, 1e-2};
    case Mode::bf16: return {1e-2, 4e-2};
    case Mode::strict: return {0, 0};
  }
  return {0, 0};
}

inline uint64_t seed_of(const std::string& s) {   // FNV-1a: a fixed seed per test, printed on failure
  uint64_t h = 1469598103934665603ull;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

template <class T>
BasicTensor<T> in_mode(Mode m, const Tensor& t) {
  BasicTensor<T> x(t.shape);
  for (size_t i = 0; i < t.data.size(); ++i)
    x.data[i] = m == Mode::fp64 ? T(t.data[i]) : T(round_storage(m, static_cast<float>(t.data[i])));
  return x;
}

// One launch through the backend's launch step, output poisoned first.
template <class T>
std::vector<T> gpu_run(Mode m, const Built& b, const std::vector<std::vector<T>>& inputs, size_t out_n) {
  std::vector<TestDevMem> din;
  std::vector<const void*> ptrs;
  for (const auto& v : inputs) {
    din.push_back(to_device(v));
    ptrs.push_back(din.back().get());
  }
  TestDevMem dout(std::max<size_t>(out_n, 1) * sizeof(T));
  device_fill_nan(dout.get(), out_n, sizeof(T) == 8);
  cuda_launch_layer(m, b.layer, b.in_shapes, ptrs, dout.get());
  device_synchronize(b.layer.name);
  return from_device<T>(dout, out_n);
}

// The CPU path of the mode and the GPU, same inputs; returns {cpu, gpu, gpu again, backend}.
template <class T>
std::vector<std::vector<T>> run_both(Mode m, const Built& b, const std::vector<Tensor>& in64) {
  std::vector<BasicTensor<T>> in;
  for (const Tensor& t : in64) in.push_back(in_mode<T>(m, t));
  std::vector<const BasicTensor<T>*> ptrs;
  std::vector<std::vector<T>> raw;
  for (const auto& t : in) {
    ptrs.push_back(&t);
    raw.push_back(t.data);
  }
  BasicTensor<T> cpu;
  if constexpr (sizeof(T) == 8)
    reference_forward(b.layer, ptrs, cpu);
  else
    mode_forward(m, b.layer, ptrs, cpu);
  const size_t n = cpu.data.size();
  std::vector<std::vector<T>> r{cpu.data, gpu_run<T>(m, b, raw, n), gpu_run<T>(m, b, raw, n)};
  BasicTensor<T> via_backend;
  auto backend = make_cuda_backend();
  if constexpr (sizeof(T) == 8)
    backend->reference(b.layer, ptrs, via_backend);
  else
    backend->forward(m, b.layer, ptrs, via_backend);
  EXPECT_EQ(via_backend.shape, cpu.shape);
  r.push_back(via_backend.data);
  return r;
}

// What every mode must hold: a reference output that is not all zero (or the comparison would
// pass anything), and the same bits run to run and through the Backend interface.
template <class T>
void check_repeatable(const std::vector<std::vector<T>>& r) {
  const auto &cpu = r[0], &gpu = r[1];
  ASSERT_EQ(cpu.size(), gpu.size());
  double norm2 = 0;
  for (T v : cpu)   // NaN/Inf outputs (inputs may hold them) do not count
    if (std::isfinite(double(v))) norm2 += double(v) * double(v);
  ASSERT_GT(norm2, 0) << "all-zero reference output: the test would pass anything";
  const int64_t again = first_bit_difference(gpu, r[2]);
  EXPECT_EQ(again, -1) << "second launch differs at " << again;
  const int64_t backend = first_bit_difference(gpu, r[3]);
  EXPECT_EQ(backend, -1) << "Backend::forward differs from the launch at " << backend;
}

// fp64 (docs/ops.md, FP64 on a device): bit for bit with the CPU reference where the op calls no
// libm function, within the conditioning bound of compare_device_reference where it does --
// the rule `run`'s cross-check applies.
inline void check_fp64(const Built& b, const std::vector<Tensor>& in,
                       const std::vector<std::vector<double>>& r) {
  check_repeatable(r);
  if (::testing::Test::HasFatalFailure()) return;
  std::vector<const Tensor*> ptrs;
  for (const Tensor& t : in) ptrs.push_back(&t);
  Tensor cpu(checked_out_shape(b.layer, b.in_shapes)), gpu(cpu.shape);
  cpu.data = r[0];
  gpu.data = r[1];
  const ReferenceAgreement a = compare_device_reference(b.layer, ptrs, cpu, gpu);
  EXPECT_TRUE(a.ok()) << "fp64 GPU vs CPU (" << (a.bitwise ? "bitwise" : "libm bound") << "): "
                      << a.describe();
}

template <class T>
void check(Mode m, const OpCase& c, Regime regime, const std::vector<std::vector<T>>& r) {
  const auto &cpu = r[0], &gpu = r[1];
  check_repeatable(r);
  if (::testing::Test::HasFatalFailure()) return;
  double scale = 1;
  for (T v : cpu)
    if (std::isfinite(double(v))) scale = std::max(scale, std::fabs(double(v)));
  if (m == Mode::strict) {   // NaNs included: both sides canonicalise them (docs/ops.md, NaN)
    const int64_t at = first_bit_difference(cpu, gpu);
    EXPECT_EQ(at, -1) << "strict GPU != CPU bitwise at " << at << ": cpu "
                      << (at >= 0 ? double(cpu[at]) : 0) << " gpu " << (at >= 0 ? double(gpu[at]) : 0);
    return;
  }
  const bool exact = regime == Regime::integers && c.exact_on_integers;
  const Tol tol = tolerance(m);
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double a = cpu[i], g = gpu[i];
    const bool ok = a == g || (std::isnan(a) && std::isnan(g)) ||
                    (!exact && std::isfinite(a) &&
                     std::fabs(a - g) <= tol.atol * scale + tol.rtol * std::fabs(a));
    if (!ok && bad++ == 0) first = static_cast<int64_t>(i);
  }
  EXPECT_EQ(bad, 0) << bad << " of " << cpu.size() << " elements differ ("
                    << (exact ? "exact" : "tolerance") << "); first at " << first << ": cpu "
                    << (first >= 0 ? double(cpu[first]) : 0) << " gpu "
                    << (first >= 0 ? double(gpu[first]) : 0);
}

// One case in one mode and regime: the seed is fixed by case, mode and regime, and printed.
inline void run_case(const OpCase& c, Mode m, Regime regime) {
  const std::string id = std::string(c.name) + "/" + mode_name(m) +
                         (regime == Regime::integers ? "/integers" : "/real");
  const uint64_t seed = seed_of(id);
  SCOPED_TRACE("case " + id + ", seed " + std::to_string(seed));
  Gen g{regime, std::mt19937_64(seed)};
  const Built b = c.build(g);
  std::vector<Tensor> in;
  if (c.inputs)
    in = c.inputs(g, b);
  else
    for (const Shape& s : b.in_shapes) in.push_back(g.tensor(s, -2, 2));
  if (m == Mode::fp64)
    check_fp64(b, in, run_both<double>(m, b, in));
  else
    check(m, c, regime, run_both<float>(m, b, in));
}

// Test names: "<case>_<Mode>", e.g. Relu_Fp32.
inline std::string mode_title(Mode m) {
  std::string s = mode_name(m);
  s[0] = static_cast<char>(std::toupper(s[0]));
  return s;
}

}  // namespace kernel_test

}  // namespace divscope
