// The CPU comparison pass (host/compare.cpp, README, What divscope run computes) beside a plain read of both tensors in
// the same run (STYLE 11): the comparison is most of the CPU analysis' time on small models.
//
//   build/bench/bench_compare_cpu --benchmark_counters_tabular=true
//
// Args: {storage mode, per-sample errors (0/1), AVX2 tail (0: the scalar tail, 1: where the CPU
// has AVX2)}: a float candidate (the reference rounded to
// fp16, so every element carries an error) against a double reference of 64 samples x 16384
// elements. Counters: ns per element and GB/s of the bytes read (4 + 8 per element).
// Results: bench/results/cpu-analysis-*.md.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "analysis/compare.h"

namespace {

using namespace divscope;

constexpr int64_t kSamples = 64, kPer = 16384, kN = kSamples * kPer;

struct Data {
  std::vector<double> ref;
  std::vector<float> cand;
  Data() : ref(kN), cand(kN) {
    std::mt19937_64 rng(1);
    std::normal_distribution<double> d;
    for (int64_t i = 0; i < kN; ++i) {
      ref[i] = d(rng);
      cand[i] = round_storage(Mode::fp16, static_cast<float>(ref[i]));
    }
  }
};

const Data& data() {
  static const Data d;
  return d;
}

void set_counters(benchmark::State& state) {
  state.counters["ns/elem"] = benchmark::Counter(
      static_cast<double>(kN), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.counters["GB/s"] = benchmark::Counter(kN * 12.0 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Compare(benchmark::State& state) {
  const Data& d = data();
  const CompareOptions co{static_cast<Mode>(state.range(0)), 1e-2, 1e-2, 1e-6, false};
  SampleErrors se;
  compare_force_scalar(state.range(2) == 0);
  for (auto _ : state) {
    LayerStats s = compare_tensors(d.cand.data(), d.ref.data(), Shape{kSamples, kPer}, co,
                                   state.range(1) ? &se : nullptr);
    benchmark::DoNotOptimize(s);
  }
  compare_force_scalar(false);
  set_counters(state);
}

// The anchor: one pass that reads both tensors and does the least arithmetic (a sum of |c - r|).
void BM_ReadBoth(benchmark::State& state) {
  const Data& d = data();
  for (auto _ : state) {
    double acc = 0;
    for (int64_t i = 0; i < kN; ++i) acc += std::abs(d.cand[i] - d.ref[i]);
    benchmark::DoNotOptimize(acc);
  }
  set_counters(state);
}

}  // namespace

BENCHMARK(BM_Compare)
    ->ArgsProduct({{static_cast<int>(Mode::fp32), static_cast<int>(Mode::fp16)}, {0, 1}, {0, 1}})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ReadBoth)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
