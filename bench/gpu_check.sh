#!/usr/bin/env bash
# One entry point for a GPU machine: build (or reuse a build), run the GPU tests, run them again
# under compute-sanitizer memcheck and racecheck, run the benchmarks, and write one markdown
# table to bench/results/gpu_check-<date>.md (date, device, driver, commands, numbers).
#
# Usage:  bench/gpu_check.sh [BUILD_DIR]
#   BUILD_DIR given: use that existing build (nothing is compiled).
#   none: configure and build build-gpu/ here with nvcc and CMake (needs the HDF5 dev files).
#
# A GPU machine with nvcc and CMake but WITHOUT the HDF5 development files:
#   1. On the development machine (which has libhdf5-dev), build with HDF5 linked statically and
#      the GPU's architecture:
#        cmake -S . -B build -DDIVSCOPE_CUDA=ON -DDIVSCOPE_STATIC_HDF5=ON -DCMAKE_CUDA_ARCHITECTURES=90
#        cmake --build build -j2
#   2. The static libhdf5.a still needs libsz and libaec at run time, and the ONNX reader
#      libonnx_proto and libprotobuf (Debian's libonnx-dev); copy them next to the build (divscope
#      has an $ORIGIN/lib rpath, the test and bench binaries $ORIGIN/../lib):
#        mkdir -p build/lib
#        cp -L /usr/lib/x86_64-linux-gnu/{libsz.so.2,libaec.so.0,libonnx_proto.so.1,libprotobuf.so.32} build/lib/
#   3. Carry the build folder with the working tree to the GPU machine and run, from the repo root:
#        bench/gpu_check.sh build
#      (The CUDA runtime is linked statically: the machine needs only the driver.)
#
# Steps: GPU_CHECK_STEPS="tests memcheck racecheck e2e bench" (the default, all of them) picks a
# subset, e.g. to stay within a per-command time limit, the sanitizers (slow: every kernel test
# under instrumentation) can run as separate calls, each writing its own table; narrow them with
# GTEST_SANITIZER_FILTER (e.g. '*Ragged*:*Strict*:Kernels/KernelCompare*').
set -uo pipefail
steps=" ${GPU_CHECK_STEPS:-tests memcheck racecheck e2e bench} "
want() { [[ "$steps" == *" $1 "* ]]; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
stamp="$(date -u +%Y-%m-%dT%H%M%SZ)"
out_dir="$repo/bench/results"
out="$out_dir/gpu_check-$stamp.md"
log_dir="${GPU_CHECK_LOGS:-$(mktemp -d)}"   # full logs of every step
mkdir -p "$log_dir"
mkdir -p "$out_dir"

build="${1:-}"
build_arg="${1:-}"
if [[ -z "$build" ]]; then
  build="$repo/build-gpu"
  nvcc_path="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
  cmake -S "$repo" -B "$build" -DDIVSCOPE_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_path" \
        -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" >"$log_dir/cmake.log" 2>&1 &&
    cmake --build "$build" -j"$(nproc)" >"$log_dir/build.log" 2>&1 ||
    { echo "gpu_check: build failed; see $log_dir" >&2; tail -30 "$log_dir"/*.log >&2; exit 3; }
fi
build="$(cd "$build" && pwd)"
tests="$build/tests/divscope_tests"
[[ -x "$tests" ]] || { echo "gpu_check: no test binary at $tests" >&2; exit 3; }

# Kernel tests: the per-op suites, the statistics pass and the backend glue (all skip without a
# device, so a PASS here with skips would be meaningless: the device check comes first).
filter="${GTEST_KERNEL_FILTER:-Kernels/*:Kernel*:Gemm*:Conv*}"
san_filter="${GTEST_SANITIZER_FILTER:-$filter}"
device="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
[[ -n "$device" ]] || { echo "gpu_check: nvidia-smi finds no GPU" >&2; exit 3; }
# The GPU machine's environment record (docs/environment.md), first: it is what env-diff compares.
"$build/divscope" env >"$out_dir/gpu-env-$stamp.json" 2>/dev/null || echo "gpu_check: divscope env failed" >&2

status=0
row() { printf '| %s | `%s` | %s | %s |\n' "$1" "$2" "$3" "$4" >>"$out.rows"; }
: >"$out.rows"

# step NAME CMD...: runs a step, records pass/fail, its wall time and the last summary line.
step() {
  local name="$1"; shift
  local t0 t1 rc summary
  t0=$(date +%s%N)
  "$@" >"$log_dir/$name.log" 2>&1
  rc=$?
  t1=$(date +%s%N)
  summary="$(grep -E '^\[  (PASSED|FAILED|SKIPPED) |ERROR SUMMARY|tests? (passed|failed)' "$log_dir/$name.log" | tr '\n' ' ' | sed 's/|/\\|/g')"
  [[ $rc -eq 0 ]] || status=1
  row "$name" "$*" "$([[ $rc -eq 0 ]] && echo PASS || echo "FAIL (rc $rc)")" \
      "$(( (t1 - t0) / 1000000 )) ms ${summary}"
}

if want tests; then
  step tests "$tests" --gtest_filter="$filter" --gtest_brief=1
  # Skips would mean the tests never touched the GPU: count them as a failure here.
  if grep -q '^\[  SKIPPED \]' "$log_dir/tests.log"; then
    status=1
    row "no-skips" "grep SKIPPED tests.log" "FAIL" "kernel tests skipped on a GPU machine"
  fi
fi
if command -v compute-sanitizer >/dev/null; then
  san=compute-sanitizer
else
  san=/usr/local/cuda/bin/compute-sanitizer
fi
want memcheck &&
  step memcheck "$san" --tool memcheck --error-exitcode 1 "$tests" --gtest_filter="$san_filter" --gtest_brief=1
want racecheck &&
  step racecheck "$san" --tool racecheck --error-exitcode 1 "$tests" --gtest_filter="$san_filter" --gtest_brief=1

# End to end: every shipped example on the CUDA and the CPU backend, verdicts compared.
e2e_table="$log_dir/e2e.log"
if want e2e; then step e2e python3 "$repo/bench/gpu_e2e.py" "$build/divscope"; else : >"$e2e_table"; fi

bench_out="$log_dir/bench.md"
: >"$bench_out"
for b in $(want bench && echo bench_gemm bench_compare); do
  if [[ -x "$build/bench/$b" ]]; then
    { echo; echo "### $b"; echo; echo "Command: \`$build/bench/$b\`"; echo; } >>"$bench_out"
    if ! "$build/bench/$b" >>"$bench_out" 2>"$log_dir/$b.err"; then
      status=1
      echo "FAILED: $(tail -3 "$log_dir/$b.err")" >>"$bench_out"
    fi
  else
    echo "gpu_check: $build/bench/$b not built; skipped" >&2
    echo -e "\n### $b\n\nnot built" >>"$bench_out"
  fi
done

{
  echo "# divscope GPU check, $stamp"
  echo
  echo "- date (UTC): $(date -u '+%Y-%m-%d %H:%M:%S')"
  echo "- device, driver: $device"
  echo "- build: \`$build\`; commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- command: \`GPU_CHECK_STEPS=\"${steps# }\" bench/gpu_check.sh ${build_arg}\`"
  echo
  echo "| step | command | result | time, summary |"
  echo "|---|---|---|---|"
  cat "$out.rows"
  echo
  echo "### end to end (bench/gpu_e2e.py)"
  echo
  cat "$e2e_table"
  cat "$bench_out"
  echo
  echo "Logs: \`$log_dir\`"
} >"$out"
rm -f "$out.rows"
echo "gpu_check: wrote $out ($([[ $status -eq 0 ]] && echo all passed || echo FAILURES))"
exit $status
