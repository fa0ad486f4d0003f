#!/usr/bin/env bash
# Creates the Python test venv (.venv-test at the repo root) for the Hugging Face capture tests
# and the ONNX side (tools/capture_onnx.py, tests/python/test_onnx_ops.py).
# The venv is made from Debian's /usr/bin/python3 with --system-site-packages so that Debian's
# python3-torch 1.13 (and its numpy 1.24) is used; only the pure-PyPI packages below go into it.
# Idempotent: does nothing when the venv exists and already holds every pin.
# Usage: deps_python.sh            (venv path: $DIVSCOPE_VENV, default <repo>/.venv-test)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DIVSCOPE_VENV:-$root/.venv-test}"
# transformers 4.40.2: its transformers.utils.fx works with torch 1.13 on Python 3.11 (with
# tools/fx_compat.py's patched_fx()). The rest are its dependencies, pinned to the versions
# resolved and tested together; numpy stays Debian's (torch 1.13 is built against numpy 1.x).
# onnx 1.23.2 and onnxruntime 1.32.0 (CPU): wheels for Python 3.11 that install and import with
# Debian's numpy 1.24; protobuf, ml_dtypes, flatbuffers and typing_extensions are their
# dependencies, pinned to the versions resolved with them.
# nvidia-cuda-cuobjdump: the ctest Cuda.Architectures lists the executable's SASS/PTX with it
# (the toolkit here has no cuobjdump; 13.2.51 is the oldest wheel, and it reads 13.0 binaries).
pins=(transformers==4.40.2 tokenizers==0.19.1 huggingface_hub==0.36.2 safetensors==0.8.0
      hf-xet==1.8.0 filelock==4.3.1 fsspec==2026.9.0 packaging==26.4 regex==2026.11.19
      tqdm==4.70.1
      onnx==1.23.2 onnxruntime==1.32.0 protobuf==7.36.2 ml_dtypes==0.5.4 flatbuffers==25.12.19
      typing_extensions==4.16.0
      nvidia-cuda-cuobjdump==13.2.51)

# Debian's side (python3-venv, python3-torch, ...): the test dependencies of tools/deps.sh.
bash "$root/tools/deps.sh" --test

created=""
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  created="created $venv and "
fi

# Which pins are not yet installed in the venv (exact version match)?
need=$("$venv/bin/python" - "${pins[@]}" <<'EOF'
import sys
from importlib import metadata
out = []
for pin in sys.argv[1:]:
    name, ver = pin.split("==")
    try:
        if metadata.version(name) == ver:
            continue
    except metadata.PackageNotFoundError:
        pass
    out.append(pin)
print(" ".join(out))
EOF
)
if [ -n "$need" ]; then
  # "numpy<2" keeps pip on Debian's numpy 1.x instead of pulling numpy 2 into the venv.
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}" "numpy<2" >&2
  echo "divscope: ${created}installed ${pins[*]} into $venv"
else
  echo "divscope: ${created:-}$venv already has ${pins[*]}"
fi
