#!/usr/bin/env python3
"""Seed corpora of the libFuzzer targets (docs/testing.md, Fuzzing), one directory per target.

usage: /usr/bin/python3 fuzz/make_corpus.py OUT_DIR DIVSCOPE_BINARY

model/      data/*.model.h5 and the valid and malformed files of tests/make_malformed.py;
recording/  data/*.recording.h5, each behind the byte that picks its model (fuzz_util.h);
onnx/       the small models of tests/python/make_onnx_ops.py (with .venv-test's python, which
            has onnx; skipped with a note when it is missing);
json/       reports of `divscope run --report` on the examples, tolerance files and
            environment records, each behind the byte that picks the reader (fuzz_json.cpp).
The two files of tests/data/ are left out on purpose: they hang and crash libhdf5 itself
(docs/testing.md), which would stop every smoke run at its first input.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import h5py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "data")
# The order of fuzz_util.h, example_models().
MODELS = ["mlp", "cnn", "resnet", "transformer", "dcgan", "ops", "planted_fp16_overflow",
          "planted_attention_overflow", "planted_bf16_offset", "planted_conv_cancellation",
          "planted_fp16_underflow", "planted_layernorm_offset", "planted_tf32_cancellation"]
TOLERANCES = [
    b'{"all": {"*": {"atol": 1e-3, "rtol": 1e-2}}}',
    b'{"all": {"encoder.*": {"budget_factor": 64}}, "fp16": {"fc?": {"criterion": "allclose", '
    b'"max_mismatch": 0.01}}, "bf16": {"[a-c]*": {"collapse": 0.9, "baseline_factor": 4}}}',
    b'{"tf32": {"conv*": {"criterion": "budget", "budget_factor": 16}}}',
]


def put(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    out, divscope = sys.argv[1], sys.argv[2]
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        for p in sorted(glob.glob(os.path.join(DATA, "*.model.h5"))):
            put(os.path.join(out, "model"), os.path.basename(p), open(p, "rb").read())
        mal = os.path.join(tmp, "malformed")
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "make_malformed.py"), mal], check=True)
        for p in sorted(glob.glob(os.path.join(mal, "*.h5"))):
            put(os.path.join(out, "model"), "malformed_" + os.path.basename(p), open(p, "rb").read())
        for i, m in enumerate(MODELS):
            rec = open(os.path.join(DATA, m + ".recording.h5"), "rb").read()
            put(os.path.join(out, "recording"), m + ".recording.h5", bytes([i]) + rec)

        venv = os.path.join(ROOT, ".venv-test", "bin", "python")
        if os.path.exists(venv):
            onnx_dir = os.path.join(tmp, "onnx")
            subprocess.run([venv, os.path.join(ROOT, "tests", "python", "make_onnx_ops.py"), onnx_dir],
                           check=True, stdout=subprocess.DEVNULL)
            for p in sorted(glob.glob(os.path.join(onnx_dir, "*.onnx"))):
                put(os.path.join(out, "onnx"), os.path.basename(p), open(p, "rb").read())
        else:
            print("make_corpus: no .venv-test (tools/deps_python.sh): the ONNX target starts from "
                  "an empty corpus", file=sys.stderr)

        json_dir = os.path.join(out, "json")
        for i, m in enumerate(MODELS[:7]):
            report = os.path.join(tmp, m + ".json")
            subprocess.run([divscope, "run", "--backend", "cpu", "--quiet", "--batches", "0:1",
                            "--modes", "fp32,fp16", "--model", os.path.join(DATA, m + ".model.h5"),
                            "--recording", os.path.join(DATA, m + ".recording.h5"), "--report", report],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            text = open(report, "rb").read()
            put(json_dir, "report_" + m, bytes([0 | (i << 2)]) + text)
            put(json_dir, "env_report_" + m, bytes([2]) + text)
        for i, t in enumerate(TOLERANCES):
            put(json_dir, "tolerance_%d" % i, bytes([1]) + t)
        env = subprocess.run([divscope, "env"], capture_output=True, check=True).stdout
        put(json_dir, "env_this_machine", bytes([2]) + env)
        for m in MODELS:
            with h5py.File(os.path.join(DATA, m + ".recording.h5"), "r") as f:
                e = f.attrs.get("capture_environment")
            if e is not None:
                put(json_dir, "env_capture_" + m, bytes([2]) + (e.encode() if isinstance(e, str) else bytes(e)))
    for t in sorted(os.listdir(out)):
        print("make_corpus: %-10s %d files" % (t, len(os.listdir(os.path.join(out, t)))))


if __name__ == "__main__":
    main()
