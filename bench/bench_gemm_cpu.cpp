// The CPU GEMM core (host/reference/gemm.cpp) beside OpenBLAS in the same run (STYLE 11).
//
//   build-perf/bench/bench_gemm_cpu --benchmark_counters_tabular=true
//
// Args: {n, threads}: C[n x n] = A[n x n] B[n x n], row-major, both libraries limited to
// `threads` threads (gemm_set_max_threads / openblas_set_num_threads). GFLOP/s = 2 n^3 / time.
// Ours: fp64 (the reference), fp32 and strict (the float kernel; the other float modes differ
// only in packing). Results: bench/results/cpu-gemm-*.md.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "reference/gemm.h"
#include "reference/gemm_kernels.h"
#include "reference/policy.h"

#ifdef DIVSCOPE_HAVE_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif

namespace {

using namespace divscope;

template <class T>
std::vector<T> random_matrix(int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<T> v(static_cast<size_t>(n * n));
  for (T& x : v) x = static_cast<T>(u(rng));
  return v;
}

void set_flops(benchmark::State& state, int64_t n) {
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * n * n * n * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = static_cast<double>(state.range(1));
}

template <class P>
void BM_Ours(benchmark::State& state) {
  using T = typename P::T;
  int64_t n = state.range(0);
  gemm_set_max_threads(static_cast<int>(state.range(1)));
  std::vector<T> a = random_matrix<T>(n, 1), b = random_matrix<T>(n, 2), c(a.size());
  for (auto _ : state) {
    gemm<P>(n, n, n, {a.data(), n, 1}, {b.data(), n, 1}, {}, c.data(), n);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  gemm_set_max_threads(0);
  set_flops(state, n);
}

#ifdef DIVSCOPE_HAVE_OPENBLAS
template <class T>
void BM_OpenBlas(benchmark::State& state) {
  int n = static_cast<int>(state.range(0));
  openblas_set_num_threads(static_cast<int>(state.range(1)));
  std::vector<T> a = random_matrix<T>(n, 1), b = random_matrix<T>(n, 2), c(a.size());
  for (auto _ : state) {
    if constexpr (std::is_same_v<T, double>)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a.data(), n,
                  b.data(), n, 0.0, c.data(), n);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n,
                  b.data(), n, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, n);
}
#endif

void Sizes(benchmark::internal::Benchmark* b) {
  for (int64_t threads : {1, 2})
    for (int64_t n : {256, 1024, 2048}) b->Args({n, threads});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_Ours<Fp64Policy>)->Apply(Sizes);
#ifdef DIVSCOPE_HAVE_OPENBLAS
BENCHMARK(BM_OpenBlas<double>)->Apply(Sizes);
#endif
BENCHMARK(BM_Ours<Fp32Policy>)->Apply(Sizes);
BENCHMARK(BM_Ours<StrictPolicy>)->Apply(Sizes);
#ifdef DIVSCOPE_HAVE_OPENBLAS
BENCHMARK(BM_OpenBlas<float>)->Apply(Sizes);
#endif

}  // namespace

BENCHMARK_MAIN();
