"""The verdict as a user meets it (issue "Verdicts a user can trust"): the user's own recorded
run judged beside divscope's emulation, data checked first, -q in a CI log.

usage: test_verdict_cli.py DIVSCOPE OUT_DIR     (exit 0 when every check holds)

1. A float32 network captured with record_run: `divscope run` judges "your run" and passes it.
2. The same recording with one layer of the run made 1e-3 wrong (what a TF32 override does to
   a float32 run): the run fails at exactly that layer by the budget rule, far worse than
   divscope's fp32 arithmetic, while every emulated mode still passes.
3. A NaN in one recorded input sample: exit 4, a console line naming the input, batch and
   sample, also with -q; the JSON report lists the finding.
4. -q with stdout piped prints each mode's verdict and the result line.
"""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import capture_torch  # noqa: E402


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(64, 8)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def fail(msg):
    print(f"test_verdict_cli: {msg}", file=sys.stderr)
    sys.exit(1)


def run(binary, model, rec, report, *extra):
    p = subprocess.run([binary, "run", "--backend", "cpu", "--modes", "fp32,tf32,fp16,bf16", "--model", model,
                        "--recording", rec, "--report", report, *extra], capture_output=True, text=True)
    return p, json.load(open(report)) if os.path.exists(report) else None


def main():
    binary, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    net = Net().eval()
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 32, generator=g),) for _ in range(3)]
    model, rec = f"{out}/net.model.h5", f"{out}/net.recording.h5"
    capture_torch.capture(net, batches, model, rec, input_names=["x"], record_run=True)

    # 1. The user's float32 run passes.
    p, rep = run(binary, model, rec, f"{out}/clean.json")
    if p.returncode != 0 or "your run (fp32): PASS" not in p.stdout:
        fail(f"clean run: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    if not rep["user_run"]["passed"] or rep["user_run"]["dtype"] != "float32":
        fail(f"clean run: user_run {rep['user_run']['passed']} {rep['user_run']['dtype']}")

    # 2. fc1 of the run made 1e-3 wrong (relative, alternating sign): the stack, not the format.
    bad = f"{out}/bad.recording.h5"
    shutil.copy(rec, bad)
    with h5py.File(bad, "r+") as f:
        for b in f["batches"]:
            d = f["batches"][b]["run_activations"]["fc1"]
            a = d[()]
            d[()] = a * (1 + 1e-3 * np.where(np.arange(a.size).reshape(a.shape) % 2 == 0, 1, -1))
    p, rep = run(binary, model, bad, f"{out}/bad.json")
    u = rep["user_run"]
    if p.returncode != 1 or u["passed"] or u["first_divergent_layer"] != "fc1":
        fail(f"perturbed run: exit {p.returncode}, user_run {u['passed']} at {u['first_divergent_layer']}\n{p.stdout}")
    fc1 = next(l for l in u["layers"] if l["name"] == "fc1")
    if fc1["verdict"]["rule"] != "budget" or not fc1["vs_emulation"] or fc1["vs_emulation"] < 100:
        fail(f"perturbed run: fc1 {fc1['verdict']} vs_emulation {fc1['vs_emulation']}")
    if not rep["precision_passed"] is False or not all(m["passed"] for m in rep["modes"]):
        fail("perturbed run: the emulated modes must still pass (only the user's run is off)")
    if "look at the stack" not in p.stdout:
        fail(f"perturbed run: the console does not point at the stack\n{p.stdout}")

    # 3. A NaN in batch 1, sample 2 of the input: data first, exit 4, named.
    nan = f"{out}/nan.recording.h5"
    shutil.copy(rec, nan)
    with h5py.File(nan, "r+") as f:
        d = f["batches"]["000001"]["x"]
        a = d[()]
        a[2, 5] = np.nan
        d[()] = a
    for extra in ([], ["-q"]):
        p, rep = run(binary, model, nan, f"{out}/nan.json", *extra)
        line = next((l for l in p.stdout.splitlines() if "input 'x'" in l), "")
        if p.returncode != 4 or "batch 1" not in line or "sample 2" not in line or "NaN" not in line:
            fail(f"NaN input {extra}: exit {p.returncode}, line '{line}'\n{p.stdout}\n{p.stderr}")
        if "DATA UNHEALTHY" not in p.stdout or "divscope: data:" not in p.stderr:
            fail(f"NaN input {extra}: no DATA UNHEALTHY result or early stderr line\n{p.stdout}\n{p.stderr}")
    kinds = [f["kind"] for f in rep["data_findings"]]
    if "input_nonfinite" not in kinds or rep["passed"] or rep["data_healthy"]:
        fail(f"NaN input: report findings {kinds}, passed {rep['passed']}")

    # 4. -q, piped: the verdict lines and the result line, nothing else.
    p, _ = run(binary, model, rec, f"{out}/q.json", "-q")
    lines = p.stdout.splitlines()
    want = ["fp32: PASS", "tf32: PASS", "fp16: PASS", "bf16: PASS", "your run (fp32): PASS"]
    for w in want:
        if not any(l.startswith(w) for l in lines):
            fail(f"-q: no line '{w}'\n{p.stdout}")
    if lines[-1] != "result: PASS" or len(lines) > 8:
        fail(f"-q: expected a few verdict lines and 'result: PASS' last\n{p.stdout}")
    print("test_verdict_cli: ok")


if __name__ == "__main__":
    main()
