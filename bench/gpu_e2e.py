"""End to end on a GPU machine: every shipped example through `divscope run` on the CUDA and the
CPU backend; the verdicts (per mode: passed, first divergent layer, culprit) must agree, and the
CUDA run's strict mode must be bitwise equal to the CPU strict path (its own verdict).

usage: python3 bench/gpu_e2e.py BUILD/divscope      (prints a markdown table; exit 1 on disagreement)
Rows are printed as each example ends (a run cut off by bench/gpu_check.sh's cap keeps them), with
each backend's wall time; one run is given at most TIMEOUT_S seconds.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

TIMEOUT_S = 60


def run(binary, model, recording, backend, report):
    t0 = time.monotonic()
    try:
        p = subprocess.run([binary, "run", "--quiet", "--backend", backend, "--model", model,
                            "--recording", recording, "--report", report],
                           capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "timeout", None, f"{backend}: over {TIMEOUT_S} s", TIMEOUT_S
    secs = time.monotonic() - t0
    if p.returncode not in (0, 1):
        return p.returncode, None, (p.stderr.strip().splitlines() or [""])[-1], secs
    with open(report) as f:
        return p.returncode, json.load(f), "", secs


def verdicts(rep):
    return {m["mode"]: (m["passed"], m["first_divergent_layer"], m["culprit_layer"]) for m in rep["modes"]}


def main(binary):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ok = True
    print("| example | cpu exit | cuda exit | cpu s | cuda s | verdicts agree | cuda strict bitwise | note |")
    print("|---|---|---|---:|---:|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for model in sorted(glob.glob(os.path.join(repo, "data", "*.model.h5"))):
            name = os.path.basename(model)[: -len(".model.h5")]
            rec = os.path.join(repo, "data", name + ".recording.h5")
            c_code, c_rep, c_err, c_s = run(binary, model, rec, "cpu", os.path.join(tmp, name + ".cpu.json"))
            g_code, g_rep, g_err, g_s = run(binary, model, rec, "cuda", os.path.join(tmp, name + ".cuda.json"))
            times = f"{c_s:.1f} | {g_s:.1f}"
            if c_rep is None or g_rep is None:
                ok = False
                note = (c_err or g_err).replace("|", "\\|")
                print(f"| {name} | {c_code} | {g_code} | {times} | - | - | {note} |", flush=True)
                continue
            cv, gv = verdicts(c_rep), verdicts(g_rep)
            agree = cv == gv and c_code == g_code
            strict = [m for m in g_rep["modes"] if m["mode"] == "strict"]
            bitwise = all(l.get("strict_bitwise_mismatch", 0) == 0 for m in strict for l in m["layers"])
            diff = "" if agree else "; ".join(f"{k}: cpu {cv.get(k)} cuda {gv.get(k)}" for k in cv if cv.get(k) != gv.get(k))
            ok &= agree and bitwise
            print(f"| {name} | {c_code} | {g_code} | {times} | {'yes' if agree else 'NO'} | {'yes' if bitwise else 'NO'} | {diff} |",
                  flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
