#!/usr/bin/env python3
"""The journal's cost (docs/journal.md; target: at most 2% of the run).

usage: /usr/bin/python3 bench/bench_journal.py [--divscope build/divscope] [--batches 300]
                                               [--repeats 3] [--out bench/results]

For each example (cnn: many short batches, the journal's worst case; transformer: longer
batches) the recording's first batch is repeated with seeded noise, and the same `divscope run
--report` is timed with its journal (the default) and with --no-journal, alternately, `repeats`
times each. Writes bench/results/journal-<date>.md with the medians and their ratio.
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
from recording_repeat import repeat_first_batch  # noqa: E402


def timed(cmd):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 1, 4):
        sys.exit(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--divscope", default=os.path.join(ROOT, "build", "divscope"))
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for ex, batches in (("cnn", a.batches), ("transformer", max(a.batches // 5, 20))):
            rec = os.path.join(work, ex + ".recording.h5")
            repeat_first_batch(os.path.join(ROOT, "data", ex + ".recording.h5"), rec, batches, noise=0.05)
            base = [a.divscope, "run", "--backend", "cpu", "-q", "--model",
                    os.path.join(ROOT, "data", ex + ".model.h5"), "--recording", rec,
                    "--report", os.path.join(work, "out.json")]
            with_j, without = [], []
            for _ in range(a.repeats):
                with_j.append(timed(base))
                without.append(timed(base + ["--no-journal"]))
            mw, mo = statistics.median(with_j), statistics.median(without)
            rows.append((ex, batches, mo, mw, mw / mo))
            print(f"{ex}: {batches} batches, without {mo:.2f} s, with {mw:.2f} s, ratio {mw / mo:.4f}")
    date = datetime.date.today().isoformat()
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"journal-{date}.md")
    with open(path, "w") as f:
        f.write(f"# Journal cost — {date}\n\n")
        f.write(f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
                "CPU backend, every core.\n\n")
        f.write(f"Command: `/usr/bin/python3 bench/bench_journal.py --batches {a.batches} --repeats {a.repeats}`\n\n")
        f.write("Each example's first batch repeated with seeded noise; `run --report` with its journal "
                "(default) and with `--no-journal`, alternately; medians. Target: ratio <= 1.02.\n\n")
        f.write("| example | batches | without journal s | with journal s | ratio |\n|---|---|---|---|---|\n")
        for ex, b, mo, mw, r in rows:
            f.write(f"| {ex} | {b} | {mo:.2f} | {mw:.2f} | {r:.4f} |\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
