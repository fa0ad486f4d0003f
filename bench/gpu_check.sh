#!/usr/bin/env bash
# The GPU check (shared/GPU.md, issue 13): three steps in order of value, sized so that all of
# them fit one 10-minute command and, with the machine's start (~2 min), a 15-minute device
# allowance with room to rerun one step. Each step appends its section to the results file as
# each of its parts ends, so a run cut off anywhere still leaves every number measured so far.
#
#   step 1  correctness   GPU kernel tests vs the CPU (strict bitwise among them), then every
#                         shipped example end to end on both backends     expected ~2 min, cap 185 s
#   step 2  sanitizers    compute-sanitizer memcheck, then racecheck, on a subset of the kernel
#                         tests (every op in fp32, bf16 and strict)       expected ~3 min, cap 185 s
#   step 3  benchmarks    bench_gemm (ours vs cuBLAS), bench_compare      expected ~1 min, cap 135 s
#   (plus ~15 s first: nvidia-smi, `divscope env`, the device check)
# The expectations are estimates until a run has measured them: every part's wall time goes into
# the results file. Each part runs under `timeout`, so the caps hold whatever happens.
#
# Usage:
#   bench/gpu_check.sh BUILD [1] [2] [3]    run the steps given (default: 1 2 3) with BUILD's binaries
#   bench/gpu_check.sh                      configure and build build-gpu/ here first (needs nvcc,
#                                           CMake and the HDF5 development files)
#   bench/gpu_check.sh --pack BUILD DEST    on the build machine: copy what the check runs into DEST
#                                           (tens of MB where BUILD is hundreds), to carry to the GPU
# Environment:
#   GPU_CHECK_OUT          where results go (default bench/results): on a lent machine, $OUT
#   GTEST_KERNEL_FILTER    step 1's tests (default: the suites that need a GPU)
#   GTEST_SANITIZER_FILTER step 2's memcheck tests; GTEST_RACECHECK_FILTER racecheck's
#
# A build to carry (the GPU machine has the driver and compute-sanitizer but no HDF5 headers):
#   cmake -S . -B build-gpu -DDIVSCOPE_STATIC_HDF5=ON -DDIVSCOPE_CUDA_ARCHS=90-real
#   cmake --build build-gpu -j2
#   bench/gpu_check.sh --pack build-gpu build-carry     # + libsz, libaec, libonnx_proto, libprotobuf
# then on the GPU machine, from the repository root:  GPU_CHECK_OUT=$OUT bench/gpu_check.sh build-carry
# (The CUDA runtime is linked statically: the machine needs only the driver. One architecture keeps
# the carried binaries small; the release list, docs/cuda.md, makes each binary several times larger.)
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ---- --pack: the executables with the $ORIGIN/lib layout their rpaths expect --------------------
if [[ "${1:-}" == "--pack" ]]; then
  [[ $# -eq 3 ]] || { echo "usage: bench/gpu_check.sh --pack BUILD DEST" >&2; exit 2; }
  src="$2" dest="$3"
  [[ -x "$src/divscope" && -x "$src/tests/divscope_tests" ]] ||
    { echo "gpu_check: $src has no divscope and tests/divscope_tests: build it first" >&2; exit 2; }
  readelf -d "$src/divscope" | grep -q 'ORIGIN/lib' && ! ldd "$src/divscope" | grep -q libhdf5 ||
    { echo "gpu_check: $src links HDF5 as a shared library: configure it with -DDIVSCOPE_STATIC_HDF5=ON" >&2; exit 2; }
  mkdir -p "$dest/tests" "$dest/bench" "$dest/lib" || exit 2
  cp "$src/divscope" "$dest/" && cp "$src/tests/divscope_tests" "$dest/tests/" || exit 2
  for b in bench_gemm bench_compare; do
    [[ -x "$src/bench/$b" ]] && cp "$src/bench/$b" "$dest/bench/"
  done
  # The shared libraries a static-HDF5 build still needs that a bare GPU machine may lack.
  for l in libsz.so.2 libaec.so.0 libonnx_proto.so.1 libprotobuf.so.32; do
    p="$(ldd "$src/divscope" | awk -v l="$l" '$1 == l { print $3 }')"
    [[ -n "$p" ]] && cp -L "$p" "$dest/lib/"
  done
  echo "gpu_check: packed $(du -sh "$dest" | cut -f1) into $dest ($(ls "$dest/lib" | tr '\n' ' '))"
  exit 0
fi

cd "$repo"
build="${1:-}"
[[ $# -gt 0 ]] && shift
steps="${*:-1 2 3}"
want() { [[ " $steps " == *" $1 "* ]]; }
for s in $steps; do
  [[ "$s" == 1 || "$s" == 2 || "$s" == 3 ]] || { echo "gpu_check: unknown step '$s' (1, 2 or 3)" >&2; exit 2; }
done

# ---- is there a GPU at all? (before anything is built or written) --------------------------------
if ! command -v nvidia-smi >/dev/null; then
  echo "gpu_check: no NVIDIA driver here (nvidia-smi not found): nothing to check; run it on a GPU machine" >&2
  exit 3
fi
device="$(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>/dev/null | head -1)"
if [[ -z "$device" ]]; then
  echo "gpu_check: nvidia-smi finds no GPU: nothing to check" >&2
  exit 3
fi

if [[ -z "$build" ]]; then
  build="$repo/build-gpu"
  nvcc_path="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
  echo "gpu_check: building $build for this GPU (DIVSCOPE_CUDA_ARCHS=native)" >&2
  { cmake -S "$repo" -B "$build" -DDIVSCOPE_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_path" \
          -DDIVSCOPE_CUDA_ARCHS=native && cmake --build "$build" -j"$(nproc)"; } >"$build.log" 2>&1 ||
    { echo "gpu_check: build failed; see $build.log" >&2; tail -30 "$build.log" >&2; exit 3; }
fi
build="$(cd "$build" && pwd)"
tests="$build/tests/divscope_tests"
[[ -x "$tests" && -x "$build/divscope" ]] || { echo "gpu_check: no divscope or tests/divscope_tests in $build" >&2; exit 3; }

stamp="$(date -u +%Y-%m-%dT%H%M%SZ)"
out_dir="${GPU_CHECK_OUT:-$repo/bench/results}"
mkdir -p "$out_dir" || exit 3
out="$out_dir/gpu_check-$stamp.md"
log_dir="$out_dir/gpu_check-$stamp.logs"   # the tail of every part's output
mkdir -p "$log_dir"

# The GPU machine's environment record (docs/environment.md) first: what env-diff compares. It
# also says whether this build runs on this device (docs/cuda.md): if not, no step can.
"$build/divscope" env >"$out_dir/gpu-env-$stamp.json" 2>"$log_dir/env.err"
cuda_ok="$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["runtime"]; print("yes" if r.get("cuda_available") else r.get("cuda_unavailable_reason") or "no")' \
           "$out_dir/gpu-env-$stamp.json" 2>/dev/null || echo "divscope env failed: $(tail -1 "$log_dir/env.err")")"
archs="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["libraries"]["cuda_architectures"])' \
         "$out_dir/gpu-env-$stamp.json" 2>/dev/null || echo unknown)"
{
  echo "# divscope GPU check, $stamp"
  echo
  echo "- date (UTC): $(date -u '+%Y-%m-%d %H:%M:%S')"
  echo "- device, compute capability, driver: $device"
  echo "- build: \`$build\` (CUDA architectures: $archs); commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- command: \`bench/gpu_check.sh $build $steps\`"
  echo "- environment record: gpu-env-$stamp.json"
} >"$out"
if [[ "$cuda_ok" != yes ]]; then
  echo "- **divscope cannot use this GPU**: $cuda_ok" >>"$out"
  echo "gpu_check: divscope cannot use this GPU: $cuda_ok (wrote $out)" >&2
  exit 3
fi

status=0
# part NAME CAP_S CMD...: runs one part under a time cap and appends its row: PASS/FAIL/TIMEOUT,
# wall time, and the counts from its log (gtest [ OK ]/FAILED, sanitizer error summary).
part() {
  local name="$1" cap="$2"; shift 2
  local t0 rc secs result summary ok failed
  t0=$(date +%s%N)
  timeout --kill-after=10 "$cap" "$@" >"$log_dir/$name.log" 2>&1
  rc=$?
  secs=$(( ($(date +%s%N) - t0) / 1000000 ))
  summary=""
  if grep -q '^\[ RUN      \]' "$log_dir/$name.log"; then   # gtest: counts so far, even if cut off
    ok=$(grep -c '^\[       OK \]' "$log_dir/$name.log")
    failed=$(grep -c '^\[  FAILED  \] [A-Za-z]' "$log_dir/$name.log")
    skipped=$(grep -c '^\[  SKIPPED \] [A-Za-z]' "$log_dir/$name.log")
    summary="$ok tests OK, $failed failed, $skipped skipped"
  fi
  summary+="$(grep -m1 'ERROR SUMMARY' "$log_dir/$name.log" | sed 's/^========= /; /')"
  case $rc in
    0) result=PASS ;;
    124|137) result="TIMEOUT (cap ${cap} s)"; status=1 ;;
    *) result="FAIL (rc $rc)"; status=1 ;;
  esac
  printf '| %s | `%s` | %s | %d.%01d s | %s |\n' "$name" "$*" "$result" $((secs / 1000)) $((secs % 1000 / 100)) \
         "$(echo "$summary" | sed 's/|/\\|/g')" >>"$out"
  tail -c 200000 "$log_dir/$name.log" >"$log_dir/$name.tmp" && mv "$log_dir/$name.tmp" "$log_dir/$name.log"
  return $rc
}
table() { printf '\n%s\n\n| part | command | result | time | summary |\n|---|---|---|---:|---|\n' "$1" >>"$out"; }

# Step 1. The suites that need a GPU (their names say Kernel or Gpu, and CudaValues: the device
# values, pool and parameter cache of docs/memory.md); a skip there means a test
# never touched the GPU, which on a GPU machine is a failure.
if want 1; then
  table "## Step 1: correctness (expected ~2 min, cap 185 s)"
  filter="${GTEST_KERNEL_FILTER:-Kernel*:Kernels/*:*Gpu*:*NanInf*:CudaValues.*}"
  part kernel-tests 140 "$tests" --gtest_filter="$filter"
  skipped=$(grep -c '^\[  SKIPPED \] [A-Za-z]' "$log_dir/kernel-tests.log")
  if [[ $skipped -gt 0 ]]; then
    status=1
    echo "| no-skips | \`grep SKIPPED\` | FAIL | | $skipped GPU tests skipped on a GPU machine |" >>"$out"
  fi
  part e2e 45 python3 "$repo/bench/gpu_e2e.py" "$build/divscope"
  { echo; echo "End to end (bench/gpu_e2e.py): verdicts on both backends, cuda strict bitwise:"; echo
    grep '^|' "$log_dir/e2e.log"; } >>"$out"
fi

# Step 2. memcheck: out-of-bounds and misaligned accesses, leaks; racecheck: shared-memory
# hazards (the GEMM/conv tiles, the reductions). A subset: every op once in a SIMT float mode, a
# tensor-core mode and strict, integer inputs (the tests' fast regime), and the Turing paths.
if want 2; then
  table "## Step 2: compute-sanitizer (expected ~3 min, cap 185 s)"
  san="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
  mem_filter="${GTEST_SANITIZER_FILTER:-Kernels/*IntegersExact/*_Fp32:Kernels/*IntegersExact/*_Bf16:Kernels/*IntegersExact/*_Strict:Kernels/KernelCompare.*shape0*:Turing/*IntegersExact*}"
  race_filter="${GTEST_RACECHECK_FILTER:-Kernels/*IntegersExact/*_Bf16:Kernels/*IntegersExact/*_Strict:Turing/*IntegersExact*}"
  part memcheck 110 "$san" --tool memcheck --error-exitcode 1 "$tests" --gtest_filter="$mem_filter"
  part racecheck 75 "$san" --tool racecheck --error-exitcode 1 "$tests" --gtest_filter="$race_filter"
fi

# Step 3. Ours against the anchor measured in the same run (STYLE 11).
if want 3; then
  table "## Step 3: benchmarks (expected ~1 min, cap 135 s)"
  for b in bench_gemm:100 bench_compare:35; do
    name="${b%%:*}" cap="${b##*:}"
    if [[ -x "$build/bench/$name" ]]; then
      part "$name" "$cap" "$build/bench/$name"
      { echo; echo "### $name"; echo; cat "$log_dir/$name.log"; echo; } >>"$out"
    else
      echo "| $name | | not built | | |" >>"$out"
    fi
  done
fi

echo >>"$out"
echo "Logs (last 200 kB of each part): gpu_check-$stamp.logs/" >>"$out"
echo "gpu_check: wrote $out ($([[ $status -eq 0 ]] && echo all passed || echo FAILURES))"
exit $status
