"""Model-zoo check: real networks go in with one call and divscope's FP64 reference agrees
with PyTorch's float64 on every layer that has a PyTorch counterpart.

usage: zoo.py DIVSCOPE_BINARY OUT_DIR MODEL...      (models: tests/python/zoo_models.py)

For each model: capture_torch.capture(..., record_activations=True) (the float64 oracle's
activations), `divscope inspect` (named layers), `divscope run --backend cpu --modes fp32
--report`, then every recorded layer's rel_l2 must be <= 1e-12 and at least one layer recorded.
Prints one table row per model: model, layers, capture s, run s, worst rel_l2 (and where).
Exit 0 when every model passed.
"""
import json
import os
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "tools"))
sys.path.insert(0, here)

import capture_torch  # noqa: E402
import zoo_models  # noqa: E402

LIMIT = 1e-12


def check(binary, out, name):
    build, _ = zoo_models.MODELS[name]
    module, batches, input_names, kw = build()
    model, rec = os.path.join(out, f"{name}.model.h5"), os.path.join(out, f"{name}.recording.h5")
    t0 = time.time()
    layers = capture_torch.capture(module, batches, model, rec, input_names=input_names,
                                   record_activations=True, name=name, **kw)
    t_cap = time.time() - t0
    ins = subprocess.run([binary, "inspect", model], capture_output=True, text=True)
    if ins.returncode != 0:
        return f"inspect failed: {ins.stderr.strip()}"
    missing = [n for n, _ in layers[:5] if n not in ins.stdout]
    if missing:
        return f"inspect does not name layers {missing}"
    report = os.path.join(out, f"{name}.report.json")
    t0 = time.time()
    run = subprocess.run([binary, "run", "--backend", "cpu", "--modes", "fp32", "--quiet",
                          "--model", model, "--recording", rec, "--report", report],
                         capture_output=True, text=True)
    t_run = time.time() - t0
    if run.returncode not in (0, 1, 4):   # 4: a data or reference finding (vit_b_16: a zero-initialised head)
        return f"divscope run exit {run.returncode}: {run.stderr.strip()}"
    rep = json.load(open(report))
    rows = [(r["name"], r["rel_l2"]) for r in rep["recorded"] if r["count"] > 0]
    if not rows:
        return "no layer has recorded activations"
    bad = [(n, v) for n, v in rows if v is None or not v <= LIMIT]
    worst = max(rows, key=lambda r: float("inf") if r[1] is None else r[1])
    print(f"| {name} | {len(rep['modes'][0]['layers'])} ({len(rows)} with a PyTorch counterpart) "
          f"| {t_cap:.1f} | {t_run:.1f} | {worst[1]:.2e} ({worst[0]}) |", flush=True)
    if bad:
        return f"{len(bad)} layer(s) above rel_l2 {LIMIT}: {bad[:3]}"
    return None


def remove_artifacts(out, name):
    """The model and recording of a real network are up to 2 GB (vgg11 with its activations):
    twenty of them filled CI's disk. Kept only with DIVSCOPE_KEEP_ZOO=1, to look into a failure;
    the report stays."""
    if os.environ.get("DIVSCOPE_KEEP_ZOO") == "1":
        return
    for suffix in (".model.h5", ".recording.h5"):
        try:
            os.remove(os.path.join(out, name + suffix))
        except FileNotFoundError:
            pass


def main(argv):
    if len(argv) < 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    binary, out, names = argv[1], argv[2], argv[3:]
    os.makedirs(out, exist_ok=True)
    print("| model | layers | capture s | run s | worst FP64-vs-PyTorch rel_l2 |\n|---|---|---|---|---|")
    failed = 0
    for name in names:
        try:
            err = check(binary, out, name)
        except Exception as e:  # CaptureError and anything else: say which model
            err = f"{type(e).__name__}: {e}"
        finally:
            remove_artifacts(out, name)
        if err:
            failed += 1
            print(f"zoo: {name}: FAILED: {err}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
