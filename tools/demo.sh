#!/usr/bin/env bash
# Quick start 1: install what is missing, build, and analyse the shipped examples (data/) in
# every precision mode. Without a GPU every mode is emulated on the CPU (a notice says so).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
bash tools/build.sh
echo
echo "\$ build/divscope run --model data/cnn.model.h5 --recording data/cnn.recording.h5"
build/divscope run --model data/cnn.model.h5 --recording data/cnn.recording.h5
echo
echo "\$ build/divscope run --model data/planted_fp16_overflow.model.h5 --recording data/planted_fp16_overflow.recording.h5"
status=0
build/divscope run --model data/planted_fp16_overflow.model.h5 \
  --recording data/planted_fp16_overflow.recording.h5 || status=$?
if [ "$status" -eq 1 ]; then
  echo "(exit code 1: divergence found — expected here, this example plants an fp16 overflow in 'amplify')"
else
  exit "$status"
fi
