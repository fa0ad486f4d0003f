#!/usr/bin/python3
"""Evidence for the budget factor F of `divscope run`'s default verdict (criterion `budget`).

    /usr/bin/python3 bench/calibrate_verdict.py --binary build-cpu/divscope
    /usr/bin/python3 bench/calibrate_verdict.py --binary B --models resnet18,nanogpt --no-planted

Every model of the zoo (tests/python/zoo_models.py: the torchvision networks and the ones written
out here — nanoGPT, the nn.TransformerEncoder pair, the U-Net block, seq-first attention, the
ops-coverage module; not the Hugging Face ones, which need the venv), random-initialised and
captured on the CPU, and every planted example of data/ goes through

    divscope run --backend cpu --modes fp32,tf32,fp16,bf16 --report r.json

and the script writes one markdown page (default bench/results/verdict-calibration-2026-11-29.md):
the machine, the exact commands, per model x mode pass/fail, first divergent layer, the rule
that fired there, the final layer's chained rel_l2 and the largest budget_use over layers
(rel_l2 / (u_m * kappa), the quantity F bounds); then per mode the largest budget_use on healthy
models (zoo networks in fp32 and tf32, which must pass: F must sit above it) and, for the planted
examples, whether the first divergent layer is the one data/EXPECTED.md promises.

Keys the report may not have (a binary from before the budget criterion has no `verdict`,
`sensitivity` or `culprit_chain`) are shown as "—"; the table is still written.
Captures are cached in --work-dir (delete it, or pass --recapture, after changing the zoo).
"""
import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))

MODES = ["fp32", "tf32", "fp16", "bf16"]
UNIT = {"fp32": 2.0 ** -24, "tf32": 2.0 ** -11, "fp16": 2.0 ** -11, "bf16": 2.0 ** -8}

# First divergent layer per mode under the default criterion (`budget`), as the table of
# data/EXPECTED.md states it (read by tests/python/test_planted.py). None = no layer diverges.
from test_planted import EXPECTED  # noqa: E402


def zoo_names():
    """The zoo models this script runs by default: every entry of zoo_models.MODELS whose label
    is not `hf` (torchvision networks and the hand-written ones)."""
    import zoo_models
    return [n for n, (_, label) in zoo_models.MODELS.items() if label != "hf"]


def capture_zoo(name, work, recapture):
    import capture_torch
    import zoo_models
    model = os.path.join(work, f"{name}.model.h5")
    rec = os.path.join(work, f"{name}.recording.h5")
    if recapture or not (os.path.exists(model) and os.path.exists(rec)):
        build, _ = zoo_models.MODELS[name]
        module, batches, input_names, kw = build()
        capture_torch.capture(module, batches, model, rec, input_names=input_names,
                              record_activations=False, name=name, **kw)
    return model, rec


def run_divscope(binary, model, rec, report, modes):
    cmd = [binary, "run", "--backend", "cpu", "--modes", ",".join(modes), "--quiet",
           "--model", model, "--recording", rec, "--report", report]
    if os.path.exists(report):
        os.remove(report)
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    return cmd, p.returncode, time.time() - t0, p.stderr.strip()


def _num(v):
    """A report number: None stands for +inf in divscope's JSON."""
    if v is None:
        return math.inf
    return float(v)


def sensitivities(rep):
    """layer name -> kappa: the report's top-level `sensitivity` list, or a per-layer
    `sensitivity` key; {} when the report has neither."""
    out = {}
    for e in rep.get("sensitivity") or []:
        if isinstance(e, dict) and "name" in e:
            out[e["name"]] = e.get("kappa")
    return out


def summarize_mode(m, kappa=None):
    """One mode of a report -> dict of the table's cells (missing keys -> None)."""
    kappa = kappa or {}
    layers = m.get("layers", [])
    by_name = {l.get("name"): l for l in layers}
    first = m.get("first_divergent_layer")
    if isinstance(first, dict):  # tolerate {"name": ..., "index": ...}
        first = first.get("name")
    rule = reason = first_op = None
    if first is not None and first in by_name:
        v = by_name[first].get("verdict") or {}
        rule, reason, first_op = v.get("rule"), v.get("reason"), by_name[first].get("op")
    final = layers[-1] if layers else {}
    final_rel = (final.get("chained") or {}).get("rel_l2") if final else None
    best_use, best_layer, factor, have_use = -1.0, None, None, False
    for l in layers:
        v = l.get("verdict") or {}
        if v.get("budget_factor") is not None:
            factor = v.get("budget_factor")
        if "budget_use" in v:
            have_use = True
            u = _num(v.get("budget_use"))
            if u > best_use:
                best_use, best_layer = u, l.get("name")
    chain = m.get("culprit_chain")
    return {
        "mode": m.get("mode"),
        "passed": m.get("passed"),
        "first": first,
        "culprit": m.get("culprit_layer"),
        "rule": rule,
        "reason": reason,
        "first_op": first_op,
        "final_layer": final.get("name") if final else None,
        "final_rel_l2": final_rel,
        "budget_use": best_use if have_use else None,
        "budget_layer": best_layer if have_use else None,
        "budget_kappa": (kappa.get(best_layer, by_name.get(best_layer, {}).get("sensitivity"))
                         if have_use else None),
        "budget_factor": factor,
        "culprit_chain": chain,
        "criterion": m.get("criterion"),
    }


def fmt(v, spec=".3g"):
    if v is None:
        return "—"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        if math.isnan(v):
            return "nan"
        return format(v, spec)
    return str(v)


def code(name):
    return "—" if name is None else f"`{name}`"


def machine():
    def sh(c):
        try:
            return subprocess.run(c, capture_output=True, text=True, shell=True).stdout.strip()
        except OSError:
            return "?"
    return sh("uname -a"), sh("nproc")


def git_state(binary):
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return rev + (" (working tree modified)" if dirty else "")


def write_page(path, rows, runs, args, started, elapsed):
    uname, nproc = machine()
    lines = []
    add = lines.append
    add("# Verdict calibration: budget factor F (2026-11-29)")
    add("")
    add("Evidence for the budget factor `F` of `divscope run`'s default criterion (`budget`: a "
        "layer diverges in mode m when a sample has NaN/Inf the FP64 reference lacks, when a "
        "sample's rel_l2 ≥ 0.5, or when rel_l2 > F · u_m · κ, κ the layer's sensitivity from the "
        "FP64 probe run). `budget_use` = max over samples of rel_l2 / (u_m · κ): a healthy model "
        "must stay below F in every layer.")
    add("")
    add(f"- date: {started:%Y-%m-%d %H:%M} UTC; wall time {elapsed / 60:.1f} min")
    add(f"- machine: `{uname}`, nproc {nproc}; CPU backend only (no GPU used)")
    built = (f"built from commit {args.binary_rev}" if args.binary_rev else
             "build commit not given (--binary-rev)")
    add(f"- divscope: `{args.binary}`, {built}; repository HEAD when the script ran: "
        f"{git_state(args.binary)}")
    add(f"- script: `{' '.join(shlex.quote(a) for a in sys.argv)}`")
    add("- per model: `divscope run --backend cpu --modes " + ",".join(args.modes_list) +
        " --quiet --model M --recording R --report r.json` (zoo models captured with "
        "`capture_torch.capture`, random init, no recorded activations, cached in "
        f"`{args.work_dir}`)")
    crit = sorted({r["criterion"] for rr in rows for r in rr["modes"] if r.get("criterion")})
    facs = sorted({r["budget_factor"] for rr in rows for r in rr["modes"]
                   if r.get("budget_factor") is not None})
    add(f"- criterion reported: {', '.join(crit) if crit else '—'}; budget_factor in the reports: "
        f"{', '.join(fmt(f) for f in facs) if facs else '— (binary without the budget criterion)'}")
    add("")
    add("`first divergent` is the chained run's first divergent layer (`—`: none), `rule` the rule "
        "that fired there, `final rel_l2` the last layer's chained rel_l2 over all samples, "
        "`max budget_use` the largest over layers (and where). Planted rows: `expected` from "
        "data/EXPECTED.md, ✓ when the first divergent layer matches.")
    add("")
    add("| model | kind | layers | run s | mode | pass | first divergent | rule | final rel_l2 | "
        "max budget_use (layer) | expected |")
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for rr in rows:
        if rr.get("error"):
            add(f"| {rr['name']} | {rr['kind']} | — | — | — | error | {rr['error']} | | | | |")
            continue
        for r in rr["modes"]:
            exp = ""
            if rr["kind"] == "planted":
                e = EXPECTED.get(rr["name"], {}).get(r["mode"], "?")
                ok = (e == r["first"])
                exp = f"{code(e) if e != '?' else '?'} {'✓' if ok else '✗'}"
            use = fmt(r["budget_use"])
            if r["budget_layer"] is not None:
                use += f" ({code(r['budget_layer'])}, κ {fmt(r.get('budget_kappa'))})"
            add(f"| {rr['name']} | {rr['kind']} | {rr['layers']} | {rr['run_s']:.1f} | {r['mode']} | "
                f"{'pass' if r['passed'] else 'FAIL' if r['passed'] is not None else '—'} | "
                f"{code(r['first'])} | {fmt(r['rule'])} | {fmt(r['final_rel_l2'])} | {use} | {exp} |")
    add("")
    # Summary per mode
    add("## Summary per mode")
    add("")
    add("Healthy = the zoo networks in fp32 and tf32 (they must pass: F must exceed their largest "
        "budget_use). fp16/bf16 zoo rows are reported, not required to pass.")
    add("")
    add("| mode | zoo models | zoo failing | max budget_use on zoo (model, layer) | "
        "median of per-model max | planted: first divergent as expected |")
    add("|---|---|---|---|---|---|")
    for mode in args.modes_list:
        zoo = [(rr["name"], r) for rr in rows if rr["kind"] == "zoo" and not rr.get("error")
               for r in rr["modes"] if r["mode"] == mode]
        failing = [n for n, r in zoo if r["passed"] is False]
        uses = [(r["budget_use"], n, r["budget_layer"]) for n, r in zoo
                if r["budget_use"] is not None]
        if uses:
            top = max(uses, key=lambda t: t[0])
            vals = sorted(u for u, _, _ in uses)
            med = vals[len(vals) // 2]
            top_s = f"{fmt(top[0])} ({top[1]}, {code(top[2])})"
        else:
            top_s, med = "—", None
        pl = [(rr["name"], r) for rr in rows if rr["kind"] == "planted" and not rr.get("error")
              for r in rr["modes"] if r["mode"] == mode]
        good = [n for n, r in pl if EXPECTED.get(n, {}).get(mode, "?") == r["first"]]
        bad = [n for n, r in pl if n not in good]
        pl_s = f"{len(good)}/{len(pl)}" + (f" (not: {', '.join(bad)})" if bad else "")
        fail_s = f"{len(failing)}" + (f": {', '.join(failing)}" if failing else "")
        add(f"| {mode} | {len(zoo)} | {fail_s} | {top_s} | {fmt(med)} | {pl_s} |")
    add("")
    healthy = [(r["budget_use"], rr["name"], r["mode"], r["budget_layer"]) for rr in rows
               if rr["kind"] == "zoo" and not rr.get("error") for r in rr["modes"]
               if r["mode"] in ("fp32", "tf32") and r["budget_use"] is not None]
    if healthy:
        top = max(healthy, key=lambda t: t[0])
        add(f"**Healthy maximum**: budget_use {fmt(top[0])} ({top[1]} {top[2]}, layer "
            f"{code(top[3])}): an F below this fails a healthy model.")
    else:
        add("**Healthy maximum**: — (the reports carry no `budget_use`: re-run with a binary "
            "that has the budget criterion).")
    add("")
    flagged = [rr for rr in rows if rr.get("findings") or rr.get("rc") == 4]
    if flagged:
        add("## Data findings")
        add("")
        add("Models whose run reported data or reference findings (exit 4; the precision verdict "
            "above is still the report's):")
        add("")
        for rr in flagged:
            add(f"- {rr['name']} (exit {rr.get('rc')}): {'; '.join(rr.get('findings') or []) or '—'}")
        add("")
    add("## Zoo failures")
    add("")
    add("Every zoo model x mode that fails, with the op of its first divergent layer and the "
        "reason divscope gives there (fp32/tf32 failures are false alarms of the criterion; "
        "fp16/bf16 ones may be real).")
    add("")
    fails = [(rr["name"], r) for rr in rows if rr["kind"] == "zoo" and not rr.get("error")
             for r in rr["modes"] if r["passed"] is False]
    for n, r in fails:
        add(f"- {n} {r['mode']}: {code(r['first'])} ({r['first_op'] or '?'}), rule "
            f"{r['rule'] or '—'}: {r['reason'] or '—'}")
    if not fails:
        add("- none")
    add("")
    add("Runs:")
    add("")
    for name, cmd in runs:
        add(f"- {name}: `{' '.join(shlex.quote(c) for c in cmd)}`")
    add("")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "divscope"))
    ap.add_argument("--binary-rev", help="the commit the binary was built from (for the page)")
    ap.add_argument("--models", help="comma-separated subset: zoo model names and/or planted "
                    "example names (default: every non-hf zoo model and every planted example)")
    ap.add_argument("--no-zoo", action="store_true")
    ap.add_argument("--no-planted", action="store_true")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--work-dir", default="/tmp/divscope-calibrate")
    ap.add_argument("--recapture", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results",
                                                  "verdict-calibration-2026-11-29.md"))
    args = ap.parse_args()
    args.modes_list = args.modes.split(",")
    args.binary = os.path.abspath(args.binary)
    if not os.access(args.binary, os.X_OK):
        print(f"calibrate_verdict: no divscope binary at {args.binary}", file=sys.stderr)
        return 2
    os.makedirs(args.work_dir, exist_ok=True)
    planted_all = sorted(n for n in EXPECTED
                         if os.path.exists(os.path.join(ROOT, "data", f"{n}.model.h5")))
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        zoo = [m for m in wanted if not m.startswith("planted_")]
        planted = [m for m in wanted if m.startswith("planted_")]
    else:
        zoo = [] if args.no_zoo else zoo_names()
        planted = [] if args.no_planted else planted_all
    started = datetime.datetime.utcnow()
    t_start = time.time()
    rows, runs = [], []
    jobs = [("planted", n) for n in planted] + [("zoo", n) for n in zoo]
    for kind, name in jobs:
        row = {"name": name, "kind": kind, "modes": [], "layers": "—", "run_s": 0.0}
        try:
            if kind == "zoo":
                t0 = time.time()
                model, rec = capture_zoo(name, args.work_dir, args.recapture)
                cap_s = time.time() - t0
            else:
                model = os.path.join(ROOT, "data", f"{name}.model.h5")
                rec = os.path.join(ROOT, "data", f"{name}.recording.h5")
                cap_s = 0.0
            report = os.path.join(args.work_dir, f"{name}.report.json")
            cmd, rc, run_s, err = run_divscope(args.binary, model, rec, report, args.modes_list)
            runs.append((name, cmd))
            row["run_s"] = run_s
            # exit 4: data or reference findings (the precision verdict is in the report all the same)
            if rc not in (0, 1, 4) or not os.path.exists(report):
                raise RuntimeError(f"divscope run exit {rc}: {err.splitlines()[-1] if err else ''}")
            rep = json.load(open(report))
            kap = sensitivities(rep)
            row["modes"] = [summarize_mode(m, kap) for m in rep.get("modes", [])]
            row["layers"] = len(rep["modes"][0].get("layers", [])) if rep.get("modes") else 0
            row["rc"] = rc
            row["findings"] = [f"{f.get('kind', '?')} at {f.get('where', '?')}"
                               for f in rep.get("data_findings") or []]
            msg = "  ".join(f"{r['mode']}:{'ok' if r['passed'] else 'FAIL@' + str(r['first'])}"
                            f"/{fmt(r['budget_use'])}" for r in row["modes"])
            print(f"{kind:7s} {name:24s} capture {cap_s:6.1f}s run {run_s:6.1f}s  {msg}",
                  flush=True)
        except Exception as e:  # noqa: BLE001 (say which model, keep going)
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(f"{kind:7s} {name:24s} ERROR {row['error']}", file=sys.stderr, flush=True)
        rows.append(row)
        # the page is rewritten after every model, so an interrupted run still leaves a table
        write_page(args.out, rows, runs, args, started, time.time() - t_start)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
