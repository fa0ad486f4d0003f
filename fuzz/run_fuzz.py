#!/usr/bin/env python3
"""Runs one libFuzzer target of fuzz/ and sorts what it finds (docs/testing.md, Fuzzing).

usage: /usr/bin/python3 fuzz/run_fuzz.py FUZZER WORK_CORPUS SEED_DIR... [--runs N | --seconds S]
                                         [--timeout S] [--jobs J] [--artifacts DIR] [--seed K]

libFuzzer runs in fork mode (-fork=J) and goes on past crashes, hangs and out-of-memory inputs,
keeping each in --artifacts; new inputs go to WORK_CORPUS. Afterwards every input it kept is
run again alone and sorted by its stack:
- known: a fault of libhdf5 itself on a damaged file: the stack starts inside libhdf5 (below
  divscope's call into it) and, for a buffer overrun, the buffer is libhdf5's own. libhdf5 1.10
  has many (H5HG_read loops forever or copies past a global heap block, H5G__dense_iterate and
  H5A__attr_release_table free invalid pointers, H5C_protect allocates what a damaged header
  declares, ...). The divscope binary turns these into exit 2 with its watchdog and signal guard
  (h5watch.h), which the CLI tests check; the fuzz targets leave both out so that they hide
  nothing of divscope's own.
- finding: anything else — a crash, a sanitizer report or a leak, an exception that is not an
  InputError, a hang or an unbounded allocation in divscope's code, a UBSan report anywhere, or
  libhdf5 overrunning a buffer that divscope gave it. The exit status is then 1.
Prints the run's executions, corpus size and both counts.
"""
import argparse
import os
import re
import subprocess
import sys
import time

RUNTIME = ("__sanitizer", "__asan", "__ubsan", "__lsan", "__interceptor", "fuzzer::", "libc.so",
           "libstdc++", "compiler-rt", "__cxa", "___interceptor", "__memcpy", "__memmove", "__memset",
           "/string/", "sysdeps/")


def first_frame(lines, binary):
    """The first frame of a stack that is not the sanitizer runtime, libFuzzer or libc."""
    for line in lines:
        # The sanitizer runtime and libFuzzer are linked into the binary without line info.
        if binary and "/" + binary + "+0x" in line:
            continue
        if not any(r in line for r in RUNTIME):
            return line.strip()
    return None


def classify(log, binary=""):
    """'known: <why>' or 'finding: <why>' for the log of one failing input."""
    kind = "crash"
    for pat, k in (("ALARM: working on the last Unit", "timeout"), ("ERROR: LeakSanitizer", "leak"),
                   ("ERROR: AddressSanitizer", "asan"), ("runtime error:", "ubsan"),
                   ("out-of-memory", "oom"), ("not an InputError", "exception")):
        if pat in log:
            kind = k
            break
    stacks = re.split(r"\n(?=\S[^\n]*\n\s*#0 )", log)   # the fault's stack, then "allocated by"...
    frames = [re.findall(r"^\s*#\d+ 0x[0-9a-f]+ .*$", st, re.M) for st in stacks]
    frames = [f for f in frames if f]
    first = first_frame(frames[0], binary) if frames else None
    if kind in ("leak", "ubsan", "exception") or not first or "libhdf5" not in first:
        return "finding: %s, first frame %s" % (kind, first or "?")
    # Inside libhdf5: its own fault on a damaged file, unless the buffer it overran is ours.
    if "allocated by thread" in log:
        alloc = log[log.index("allocated by thread"):]
        owner = first_frame(re.findall(r"^\s*#\d+ 0x[0-9a-f]+ .*$", alloc, re.M), binary)
        if owner and "libhdf5" not in owner:
            return "finding: libhdf5 overran a buffer divscope allocated, %s" % owner
    names = [m for f in frames[0] for m in re.findall(r" in (H5\w+)", f) if not m.startswith(("H5MM_", "H5FL_"))]
    return "known: libhdf5 %s in %s" % ({"timeout": "loops", "oom": "allocates without bound"}.get(
        kind, "corrupts memory"), names[0] if names else "an unnamed function")


def replay(fuzzer, artifact, timeout):
    """The log of running `artifact` alone through `fuzzer`."""
    args = [fuzzer, "-timeout=%d" % timeout, "-rss_limit_mb=3072", "-malloc_limit_mb=2048", artifact]
    try:
        p = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        return "ALARM: working on the last Unit (the replay itself hung)"
    return "" if p.returncode == 0 else p.stdout + p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fuzzer")
    ap.add_argument("work")
    ap.add_argument("seeds", nargs="*")
    ap.add_argument("--runs", type=int, default=0, help="executions in all (0: --seconds)")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--timeout", type=int, default=10, help="libFuzzer -timeout per input (s)")
    ap.add_argument("--jobs", type=int, default=1, help="libFuzzer -fork: processes at a time")
    ap.add_argument("--artifacts", default=None)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    artifacts = os.path.abspath(a.artifacts or os.path.join(a.work, "..", "artifacts"))
    os.makedirs(a.work, exist_ok=True)
    os.makedirs(artifacts, exist_ok=True)
    name = os.path.basename(a.fuzzer)
    before = set(os.listdir(artifacts))
    start = time.time()
    args = [a.fuzzer, "-fork=%d" % a.jobs, "-ignore_crashes=1", "-ignore_timeouts=1", "-ignore_ooms=1",
            "-seed=%d" % a.seed, "-timeout=%d" % a.timeout, "-rss_limit_mb=3072", "-malloc_limit_mb=2048",
            "-artifact_prefix=%s/%s-" % (artifacts, name)]
    args.append("-runs=%d" % a.runs if a.runs else "-max_total_time=%d" % a.seconds)
    p = subprocess.run(args + [a.work] + a.seeds, capture_output=True, text=True, errors="replace")
    log = p.stdout + p.stderr
    elapsed = time.time() - start
    stats = re.findall(r"^#(\d+): cov: (\d+) ft: \d+ corp: (\d+)", log, re.M)
    execs, cov, corpus = stats[-1] if stats else ("?", "?", "?")
    if p.returncode != 0 and not stats:
        print(log[-4000:], file=sys.stderr)
        print("%s: libFuzzer failed (exit %d)" % (name, p.returncode))
        return 1
    known, findings = {}, []
    for art in sorted(set(os.listdir(artifacts)) - before):
        path = os.path.join(artifacts, art)
        rlog = replay(a.fuzzer, path, a.timeout)
        verdict = classify(rlog, name) if rlog else "ok"
        if verdict.startswith("known"):
            known[verdict] = known.get(verdict, 0) + 1
        elif verdict == "ok":   # did not fail again alone (state left by earlier inputs): keep it
            findings.append((path, "finding: does not fail alone (flaky)", ""))
        else:
            findings.append((path, verdict, rlog))
    for path, verdict, rlog in findings:
        print("%s: %s\n  input: %s" % (name, verdict, path))
        if rlog:
            print(rlog[-5000:], file=sys.stderr)
    for verdict, n in sorted(known.items()):
        print("%s: %d x %s" % (name, n, verdict))
    print("%s: %s executions in %.0f s, corpus %s inputs (coverage %s), %d known libhdf5 faults, %d findings" % (
        name, execs, elapsed, corpus, cov, sum(known.values()), len(findings)), flush=True)
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
