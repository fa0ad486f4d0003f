// Whole-buffer rounding (round_bulk.h): F16C for fp16 where the CPU has it, else the per-element
// functions of precision.h.
#include "reference/round_bulk.h"

#include <atomic>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace divscope {
namespace {

std::atomic<bool> g_portable{false};

#if defined(__x86_64__)
// F16C from CPUID leaf 1 (ECX bit 29; clang's __builtin_cpu_supports has no "f16c"), with AVX
// and its register state enabled by the OS (__builtin_cpu_supports("avx") checks both).
bool use_f16c() {
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0 && __builtin_cpu_supports("avx");
  }();
  return has && !g_portable.load(std::memory_order_relaxed);
}

// float -> binary16 (round to nearest even: imm 0, exceptions not raised) -> float, 8 at a time.
__attribute__((target("avx,f16c"))) void round_fp16_f16c(float* p, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(p + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_ps(p + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) p[i] = round_fp16(p[i]);
}
#else
bool use_f16c() { return false; }
void round_fp16_f16c(float* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = round_fp16(p[i]);
}
#endif

}  // namespace

void round_bulk_force_portable(bool on) { g_portable.store(on); }

void round_operands_bulk(Mode m, float* p, int64_t n) {
  switch (m) {
    case Mode::fp16:
      if (use_f16c()) return round_fp16_f16c(p, n);
      for (int64_t i = 0; i < n; ++i) p[i] = round_fp16(p[i]);
      return;
    case Mode::bf16:
      for (int64_t i = 0; i < n; ++i) p[i] = round_bf16(p[i]);
      return;
    case Mode::tf32:
      for (int64_t i = 0; i < n; ++i) p[i] = round_tf32(p[i]);
      return;
    default:
      return;
  }
}

void round_storage_bulk(Mode m, float* p, int64_t n) {
  if (m == Mode::fp16 || m == Mode::bf16) round_operands_bulk(m, p, n);
}

}  // namespace divscope
