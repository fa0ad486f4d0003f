"""Nothing lost on a kill (issue "Hostile files, killed runs and careless paths", part 4).

usage: test_journal.py DIVSCOPE WORKDIR

Real runs of `divscope run` are stopped half-way and resumed (docs/journal.md):
1. SIGINT: one line on stderr naming the journal, exit 130, no report yet, the journal and the
   partial dump kept; `run --resume` (from another directory) gives the uninterrupted run's
   report byte for byte, the same dump, the same exit code, and removes the journal.
2. SIGTERM, resume, SIGINT again, resume: still the same report (exit 143, then 130).
3. SIGKILL (no chance to clean up): the journal's last checkpoint resumes to the same report;
   with --dump the partial dump cannot be trusted: exit 2, one line.
4. A resume refuses, with exit 2 and one line: a recording changed since, a damaged journal,
   another option given with --resume.
Exit 0 when every check passes.
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "data")
BATCHES = 300
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
from recording_repeat import repeat_first_batch  # noqa: E402


def stderr_lines(text):
    """The lines that are not data findings (said before the replay) or progress."""
    return [l for l in text.strip().splitlines() if l and not l.startswith("divscope: data:")
            and not l.startswith("divscope: batch ")]


def dump_content(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()].tobytes()
        f.visititems(visit)
    return out


def stop(args, sig, after, cwd=None, journal=None):
    """Signals the run `after` seconds after its journal appears (the input checks read every
    batch before the first one runs: on a loaded machine that alone can take seconds)."""
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=cwd)
    deadline = time.time() + 300
    while journal and not os.path.exists(journal) and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(min(after, 0.3) if journal else after)
    finished = p.poll() is not None
    p.send_signal(sig)
    _, err = p.communicate()
    return p.returncode, err, finished


def stop_after_progress(args, sig, journal, first, cwd=None, limit=300):
    """stop(), once `journal` holds more batches than `first`: a fixed delay is too short for a
    slow build (the ASan build of tools/test_sanitizers.sh takes seconds to resume)."""
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=cwd)
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < limit:
        try:
            if json.load(open(journal))["next_batch"] > first:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    p.send_signal(sig)
    _, err = p.communicate()
    return p.returncode, err


def main():
    binary, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    elsewhere = os.path.join(work, "elsewhere")
    os.makedirs(elsewhere)
    model = os.path.join(DATA, "cnn.model.h5")
    rec = "varied.recording.h5"   # relative: the resume must go back to the run's directory
    # data/cnn's batch 0 with seeded noise per batch, and NaN in one sample of batches 3 and 250
    # (data findings and reference-health findings before and after the stop).
    repeat_first_batch(os.path.join(DATA, "cnn.recording.h5"), os.path.join(work, rec), BATCHES,
                       noise=0.05, nan_batches=(3, 250))
    failures = []

    def run(extra, cwd=work):
        return subprocess.run([binary, "run", "--backend", "cpu", "-q", "--model", model, "--recording", rec] + extra,
                              capture_output=True, text=True, cwd=cwd)

    def base(name, dump=True):
        extra = ["--report", name + ".json"]
        return extra + (["--dump", name + ".h5"] if dump else [])

    def resume(journal, cwd=elsewhere):
        return subprocess.run([binary, "run", "--resume", journal], capture_output=True, text=True, cwd=cwd)

    def same_report(name, code, r, what):
        if r.returncode != code:
            failures.append(f"{what}: exit {r.returncode}, the uninterrupted run's was {code}: {r.stderr.strip()[-400:]}")
            return
        got = open(os.path.join(work, name + ".json"), "rb").read()
        if got != full_report:
            a, b = json.loads(got), json.loads(full_report)
            diff = [k for k in b if a.get(k) != b.get(k)]
            failures.append(f"{what}: the report differs from the uninterrupted run's in {diff}")
        if os.path.exists(os.path.join(work, name + ".json.journal")):
            failures.append(f"{what}: the journal is left after the run finished")

    t0 = time.time()
    r = run(base("full"))
    full_seconds = time.time() - t0
    full_code = r.returncode
    if full_code not in (0, 1, 4):
        failures.append(f"uninterrupted run: exit {full_code}: {r.stderr.strip()}")
    full_report = open(os.path.join(work, "full.json"), "rb").read()
    full_dump = dump_content(os.path.join(work, "full.h5"))
    if glob.glob(os.path.join(work, "*.journal")):
        failures.append("a finished run left its journal")
    after = min(2.0, full_seconds / 3)

    # 1. SIGINT, resume from another directory.
    code, err, finished = stop([binary, "run", "--backend", "cpu", "-q", "--model", model, "--recording", rec] + base("a"),
                               signal.SIGINT, after, cwd=work, journal=os.path.join(work, "a.json.journal"))
    lines = stderr_lines(err)
    journal = os.path.join(work, "a.json.journal")
    if finished:
        failures.append(f"the run finished in {after:.1f} s before SIGINT (make the recording longer)")
    if code != 130:
        failures.append(f"SIGINT: exit {code}, expected 130: {err.strip()}")
    if len(lines) != 1 or "a.json.journal" not in lines[0] or "--resume" not in lines[0]:
        failures.append(f"SIGINT: expected one line naming the journal and --resume, got {lines}")
    if not os.path.exists(journal):
        failures.append("SIGINT: no journal")
    if os.path.exists(os.path.join(work, "a.json")) or os.path.exists(os.path.join(work, "a.h5")):
        failures.append("SIGINT: a report or dump was written for an unfinished run")
    if not os.path.exists(os.path.join(work, ".a.h5.divscope-partial")):
        failures.append("SIGINT: the partial dump was not kept")
    if glob.glob(os.path.join(work, ".*divscope-tmp*")):
        failures.append("SIGINT: temporary files left behind")
    done = json.load(open(journal))["next_batch"] if os.path.exists(journal) else -1
    if not 0 < done < BATCHES:
        failures.append(f"SIGINT: the journal holds batches 0:{done}")
    r = resume(journal)
    same_report("a", full_code, r, "resume after SIGINT")
    if os.path.exists(os.path.join(work, "a.h5")) and dump_content(os.path.join(work, "a.h5")) != full_dump:
        failures.append("resume after SIGINT: the dump differs from the uninterrupted run's")
    if glob.glob(os.path.join(work, ".a.h5.divscope-*")):
        failures.append("resume: the partial dump was left behind")

    # 2. SIGTERM, resume, SIGINT during the resumed run, resume again.
    code, err, _ = stop([binary, "run", "--backend", "cpu", "-q", "--model", model, "--recording", rec] + base("b"),
                        signal.SIGTERM, after / 2, cwd=work, journal=os.path.join(work, "b.json.journal"))
    if code != 143:
        failures.append(f"SIGTERM: exit {code}, expected 143: {err.strip()}")
    journal = os.path.join(work, "b.json.journal")
    first = json.load(open(journal))["next_batch"] if os.path.exists(journal) else -1
    code, err = stop_after_progress([binary, "run", "--resume", journal], signal.SIGINT, journal, first, cwd=elsewhere)
    second = json.load(open(journal))["next_batch"] if os.path.exists(journal) else -1
    if code != 130 or not first < second:
        failures.append(f"SIGINT of a resumed run: exit {code}, journal batches {first} -> {second}: {err.strip()}")
    r = resume(journal)
    same_report("b", full_code, r, "resume twice")
    if os.path.exists(os.path.join(work, "b.h5")) and dump_content(os.path.join(work, "b.h5")) != full_dump:
        failures.append("resume twice: the dump differs from the uninterrupted run's")

    # 3. SIGKILL: the last checkpoint. Without a dump it resumes; with one it cannot.
    code, err, _ = stop([binary, "run", "--backend", "cpu", "-q", "--model", model, "--recording", rec] + base("c", dump=False),
                        signal.SIGKILL, after, cwd=work, journal=os.path.join(work, "c.json.journal"))
    journal = os.path.join(work, "c.json.journal")
    if not os.path.exists(journal):
        failures.append("SIGKILL: no journal checkpoint was written")
    else:
        r = resume(journal)
        same_report("c", full_code, r, "resume after SIGKILL")
    code, err, _ = stop([binary, "run", "--backend", "cpu", "-q", "--model", model, "--recording", rec] + base("d"),
                        signal.SIGKILL, after, cwd=work, journal=os.path.join(work, "d.json.journal"))
    journal = os.path.join(work, "d.json.journal")
    r = resume(journal)
    if r.returncode != 2 or len(stderr_lines(r.stderr)) != 1 or "dump" not in r.stderr:
        failures.append(f"resume of a killed run with --dump: exit {r.returncode}, {r.stderr.strip()}")
    for t in glob.glob(os.path.join(work, ".*divscope-tmp*")):
        os.remove(t)   # SIGKILL gives no chance to remove them: expected

    # 4. Refusals.
    code, err, _ = stop([binary, "run", "--backend", "cpu", "-q", "--model", model, "--recording", rec] + base("e", dump=False),
                        signal.SIGINT, after, cwd=work, journal=os.path.join(work, "e.json.journal"))
    journal = os.path.join(work, "e.json.journal")
    r = subprocess.run([binary, "run", "--resume", journal, "--modes", "fp32"], capture_output=True, text=True)
    if r.returncode != 2 or len(stderr_lines(r.stderr)) != 1:
        failures.append(f"--resume with another option: exit {r.returncode}, {r.stderr.strip()}")
    damaged = os.path.join(work, "damaged.journal")
    with open(journal, "rb") as f, open(damaged, "wb") as g:
        g.write(f.read()[:-200])
    r = resume(damaged)
    if r.returncode != 2 or len(stderr_lines(r.stderr)) != 1 or "damaged.journal" not in r.stderr:
        failures.append(f"damaged journal: exit {r.returncode}, {r.stderr.strip()}")
    os.utime(os.path.join(work, rec))   # the recording "changed"
    r = resume(journal)
    if r.returncode != 2 or len(stderr_lines(r.stderr)) != 1 or rec not in r.stderr:
        failures.append(f"changed recording: exit {r.returncode}, {r.stderr.strip()}")

    for f in failures:
        print("FAIL:", f)
    print(f"{len(failures)} failure(s); uninterrupted run {full_seconds:.1f} s, stopped after {after:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
