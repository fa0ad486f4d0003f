#!/usr/bin/env bash
# Quick start 2: install, build, and run the whole test suite (GPU tests skip without a device).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps_python.sh   # tools/deps.sh --test, then transformers for the zoo's Hugging Face models
bash tools/build.sh
ctest --test-dir build --output-on-failure -j2
# Say plainly why the GPU tests did not run, when they did not.
reason=$(build/tests/divscope_tests --gtest_filter='Kernel*' --gtest_brief=1 2>&1 | grep -m1 "no CUDA device" || true)
[ -n "$reason" ] && echo "divscope: GPU tests skipped — $reason"
exit 0
