#!/usr/bin/env bash
# Quick start 2: install, build, and run the whole test suite (GPU tests skip without a device).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
bash tools/build.sh
ctest --test-dir build --output-on-failure -j2
