#!/usr/bin/env bash
# Quick start 1: install, build, and analyse the shipped example (data/) in every precision mode.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
bash tools/build.sh
build/divscope inspect data/cnn.model.h5
