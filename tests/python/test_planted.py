"""Planted examples: `divscope run` with default options names the layer data/EXPECTED.md promises.

usage: test_planted.py DIVSCOPE_BINARY WORK_DIR

For every data/planted_*.model.h5: `divscope run --backend cpu --model M --recording R
--report WORK_DIR/NAME.report.json` (default modes fp32,tf32,fp16,bf16,strict, default criterion
`budget`), then per mode the chained run's first divergent layer must equal EXPECTED below (the
table of data/EXPECTED.md; None = no layer diverges) and the exit code must be 1 when any mode
fails, 0 otherwise. A planted file without an entry here (or an entry without its file) fails too.
Prints one line per example; exit 0 when every example matches.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "data"))

# Mirrors data/EXPECTED.md (and bench/calibrate_verdict.py's EXPECTED).
EXPECTED = {
    "planted_fp16_overflow":
        {"fp32": None, "tf32": None, "fp16": "amplify", "bf16": None, "strict": None},
    "planted_tf32_cancellation":
        {"fp32": None, "tf32": "diff", "fp16": "diff", "bf16": "diff", "strict": None},
    "planted_layernorm_offset":
        {"fp32": None, "tf32": None, "fp16": "head", "bf16": "ln", "strict": None},
    "planted_fp16_underflow":
        {"fp32": None, "tf32": None, "fp16": "shrink.mul", "bf16": None, "strict": None},
    "planted_attention_overflow":
        {"fp32": None, "tf32": None, "fp16": "logits.matmul", "bf16": None, "strict": None},
    "planted_bf16_offset":
        {"fp32": None, "tf32": None, "fp16": None, "bf16": "unshift.sub", "strict": None},
    "planted_conv_cancellation":
        {"fp32": None, "tf32": "edges", "fp16": "edges", "bf16": "edges", "strict": None},
}


def first_name(v):
    if isinstance(v, dict):  # tolerate {"name": ..., "index": ...}
        return v.get("name")
    return v


def check(binary, work, name):
    """Returns a list of problems (empty when the example gives what EXPECTED promises)."""
    model = os.path.join(DATA, f"{name}.model.h5")
    rec = os.path.join(DATA, f"{name}.recording.h5")
    report = os.path.join(work, f"{name}.report.json")
    if os.path.exists(report):
        os.remove(report)
    p = subprocess.run([binary, "run", "--backend", "cpu", "--quiet", "--model", model,
                        "--recording", rec, "--report", report], capture_output=True, text=True)
    if p.returncode not in (0, 1) or not os.path.exists(report):
        return [f"divscope run exit {p.returncode}: {p.stderr.strip()[-500:]}"]
    rep = json.load(open(report))
    want = EXPECTED[name]
    got = {m["mode"]: first_name(m.get("first_divergent_layer")) for m in rep["modes"]}
    passed = {m["mode"]: m.get("passed") for m in rep["modes"]}
    problems = []
    if sorted(got) != sorted(want):
        problems.append(f"modes in the report {sorted(got)}, expected {sorted(want)}")
    for mode, layer in want.items():
        if mode not in got:
            continue
        if got[mode] != layer:
            problems.append(f"{mode}: first divergent layer {got[mode]!r}, expected {layer!r}")
        if passed[mode] is not (layer is None):
            problems.append(f"{mode}: passed = {passed[mode]}, expected {layer is None}")
    want_rc = 1 if any(v is not None for v in want.values()) else 0
    if p.returncode != want_rc:
        problems.append(f"exit code {p.returncode}, expected {want_rc}")
    return problems


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    binary, work = argv[1], argv[2]
    os.makedirs(work, exist_ok=True)
    files = sorted(f[:-len(".model.h5")] for f in os.listdir(DATA)
                   if f.startswith("planted_") and f.endswith(".model.h5"))
    failed = 0
    for name in sorted(set(files) | set(EXPECTED)):
        if name not in EXPECTED:
            problems = ["no expected answer in tests/python/test_planted.py (add it, and to "
                        "data/EXPECTED.md)"]
        elif name not in files:
            problems = [f"data/{name}.model.h5 is missing"]
        else:
            problems = check(binary, work, name)
        if problems:
            failed += 1
            print(f"FAIL {name}: " + "; ".join(problems), flush=True)
        else:
            shown = ", ".join(f"{m} {v or 'none'}" for m, v in EXPECTED[name].items())
            print(f"ok   {name}: {shown}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
