"""Planted examples: `divscope run` with default options names the layer data/EXPECTED.md promises.

usage: test_planted.py DIVSCOPE_BINARY WORK_DIR

For every data/planted_*.model.h5: `divscope run --backend cpu --model M --recording R
--report WORK_DIR/NAME.report.json` (default modes fp32,tf32,fp16,bf16,strict, default criterion
`budget`), then per mode the chained run's first divergent layer must equal the table of
data/EXPECTED.md (read by read_expected; None = no layer diverges) and the exit code must be 1 when any mode
fails, 0 otherwise. A planted file without an entry here (or an entry without its file) fails too.
Prints one line per example; exit 0 when every example matches.
"""
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "data"))

MODES = ["fp32", "tf32", "fp16", "bf16", "strict"]


def read_expected(path=os.path.join(DATA, "EXPECTED.md")):
    """The table of data/EXPECTED.md, the one statement of the expected answers: {example: {mode:
    first divergent layer or None}}. A cell is `none …` or holds the layer name in backticks
    (bold or with a note around it). A table that does not read that way is an error, not an
    empty expectation."""
    expected = {}
    header = "| example | " + " | ".join(MODES) + " |"
    rows = open(path).read().split(header, 1)
    if len(rows) != 2:
        raise ValueError(f"{path}: no table headed '{header}'")
    for line in rows[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = re.fullmatch(r"`(planted_\w+)`", cells[0])
        if not name or len(cells) != 1 + len(MODES):
            raise ValueError(f"{path}: unreadable row: {line}")
        want = {}
        for mode, cell in zip(MODES, cells[1:]):
            layer = re.search(r"`([^`]+)`", cell)
            if cell.startswith("none"):
                want[mode] = None
            elif layer:
                want[mode] = layer.group(1)
            else:
                raise ValueError(f"{path}: {cells[0]} {mode}: unreadable cell '{cell}'")
        expected[name.group(1)] = want
    if not expected:
        raise ValueError(f"{path}: the table has no rows")
    return expected


EXPECTED = read_expected()


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
