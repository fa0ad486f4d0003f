#!/usr/bin/env bash
# CI's sanitizer stage (docs/testing.md): divscope built CPU-only by clang with AddressSanitizer,
# UndefinedBehaviorSanitizer and libFuzzer's coverage (-DDIVSCOPE_FUZZ=ON) into build-sanitize/,
# then the CPU tests (the gtest suite and the Python tests, without the model zoo) and the fuzz
# smoke run (ctest -L fuzz). Any sanitizer finding fails its test (exit 86).
# usage: tools/test_sanitizers.sh [BUILD_DIR]
# .ci/run runs it after tools/test.sh, which installs what it needs (tools/deps.sh --test: clang
# and its runtimes; tools/deps_python.sh: .venv-test for the ONNX tests and seeds).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-sanitize}
start=$(date +%s)
CC=clang CXX=clang++ cmake -S . -B "$dir" -DDIVSCOPE_CUDA=OFF -DDIVSCOPE_FUZZ=ON \
  -DDIVSCOPE_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$dir" -j2
built=$(date +%s)
# The zoo (label zoo) replays real networks for minutes each; under ASan they would take most of
# CI's time for no reader or op code the rest does not run.
ctest --test-dir "$dir" --output-on-failure -j2 -LE zoo
echo "divscope: sanitizer stage: build $((built - start)) s, tests $(( $(date +%s) - built )) s"
