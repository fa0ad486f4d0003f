#!/usr/bin/env bash
# Configures and builds divscope into build/ (CUDA kernels included when nvcc is present).
set -euo pipefail
cd "$(dirname "$0")/.."
cuda=ON
if [ -z "${DIVSCOPE_CUDA:-}" ] && ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "divscope: no nvcc found, building the CPU-only version" >&2
  cuda=OFF
fi
cmake -S . -B build -DDIVSCOPE_CUDA="${DIVSCOPE_CUDA:-$cuda}" >/dev/null
cmake --build build -j2
