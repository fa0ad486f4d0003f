#!/usr/bin/env bash
# Installs what divscope needs from Debian 12 (the CUDA 13 toolkit is expected at /usr/local/cuda).
set -euo pipefail
# Usage: deps.sh [--test]   (--test adds what the test suite needs: PyTorch as the FP64 oracle)
pkgs=(cmake g++ make libhdf5-dev libcxxopts-dev nlohmann-json3-dev libgtest-dev libbenchmark-dev
      libopenblas-dev libonnx-dev libprotobuf-dev)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(python3-torch python3-torchvision python3-h5py python3-numpy python3-venv hdf5-tools)
  # The sanitizer and fuzz build (tools/test_sanitizers.sh): clang with its sanitizer and
  # libFuzzer runtimes.
  pkgs+=(clang libclang-rt-14-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "divscope: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
