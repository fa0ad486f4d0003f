"""Outputs are replaced atomically (issue "Hostile files, killed runs and careless paths", part 3).

usage: test_atomic_outputs.py DIVSCOPE WORKDIR

1. A run killed half-way (SIGKILL, no chance to clean up) leaves the previous report, JUnit,
   HTML and dump exactly as they were — not truncated, not replaced by a partial one.
2. An output that cannot be written (/dev/full) is exit 2 and one line naming it; the other
   outputs of the run are complete files.
3. A finished run replaces every output and leaves no temporary file behind.
Exit 0 when every check passes.
"""
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "data")
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
from recording_repeat import repeat_first_batch  # noqa: E402


def main():
    binary, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    model = os.path.join(DATA, "cnn.model.h5")
    rec = os.path.join(work, "long.recording.h5")
    repeat_first_batch(os.path.join(DATA, "cnn.recording.h5"), rec, 400)   # a run of a few seconds
    outs = {k: os.path.join(work, "out." + k) for k in ("json", "xml", "html", "h5")}
    args = [binary, "run", "--backend", "cpu", "-q", "--model", model, "--recording", rec,
            "--report", outs["json"], "--junit", outs["xml"], "--html", outs["html"], "--dump", outs["h5"]]
    failures = []

    # 3 (first, to have previous outputs): a full run writes all four, no temporary left.
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode not in (0, 1):
        failures.append(f"full run: exit {r.returncode}: {r.stderr.strip()}")
    before = {k: open(p, "rb").read() for k, p in outs.items() if os.path.exists(p)}
    if len(before) != 4:
        failures.append(f"full run wrote {sorted(before)} only")
    leftovers = glob.glob(os.path.join(work, ".*divscope-tmp*"))
    if leftovers:
        failures.append(f"temporary files left after a finished run: {leftovers}")

    # 1: kill a run half-way; the previous files are untouched.
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    if p.poll() is not None:
        failures.append("the run finished before it could be killed (make the recording longer)")
    p.send_signal(signal.SIGKILL)
    p.wait()
    for k, path in outs.items():
        now = open(path, "rb").read() if os.path.exists(path) else None
        if now != before.get(k):
            failures.append(f"killed run changed {os.path.basename(path)} "
                            f"({len(before.get(k, b''))} -> {None if now is None else len(now)} bytes)")
    with h5py.File(outs["h5"], "r") as f:
        if f.attrs["divscope_format"] != "dump":
            failures.append("the previous dump is not readable after the kill")
    for t in glob.glob(os.path.join(work, ".*divscope-tmp*")):
        os.remove(t)   # SIGKILL gives no chance to remove them: expected, and harmless

    # 2: an output that cannot be written.
    r = subprocess.run(args[:args.index("--junit") + 1] + ["/dev/full"] + args[args.index("--junit") + 2:],
                       capture_output=True, text=True)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    if r.returncode != 2 or not lines or "/dev/full" not in lines[-1] or "cannot write" not in lines[-1]:
        failures.append(f"--junit /dev/full: exit {r.returncode}, stderr {r.stderr.strip()!r}")

    print("test_atomic_outputs:", "ok" if not failures else "FAILED")
    for f in failures:
        print("  " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
