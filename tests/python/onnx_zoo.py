"""ONNX model zoo check: the zoo's networks exported by torch.onnx.export load and run in divscope,
its FP64 reference agrees with ONNX Runtime (float32) on every recorded value and with PyTorch's
float64 on the graph output.

usage: onnx_zoo.py DIVSCOPE_BINARY OUT_DIR MODEL[@OPSET]...   (default opsets 13 and 17;
       models: tests/python/zoo_models.py)

Run with .venv-test/bin/python (onnxruntime, onnx, and Debian's torch through
--system-site-packages). For each model and opset: export with a dynamic batch axis, time
`divscope inspect` (the load), capture the first two batches with every intermediate value
computed by ONNX Runtime (tools/capture_onnx.py), `divscope run --backend cpu --modes fp32
--dump`, then
  - every recorded ONNX value: rel_l2(FP64 reference, ONNX Runtime float32) <= ORT_LIMIT,
  - the first graph output: rel_l2(FP64 reference, PyTorch float64 of the same module) <= TORCH_LIMIT.
Prints one table row per model and opset: model, opset, nodes, layers, load s, run s, worst
FP64-vs-ORT rel_l2 (and the value), FP64-vs-PyTorch rel_l2. Exit 0 when every one passed.
"""
import json
import os
import re
import subprocess
import sys
import time

import h5py
import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "tools"))
sys.path.insert(0, here)

import capture_onnx  # noqa: E402
import zoo_models  # noqa: E402

# float32 against FP64 through up to ~50 layers of random-initialised networks: the error of the
# float32 run, not of the importer (a wrong op is O(1)).
ORT_LIMIT = 1e-4
# FP64 against FP64: the same model exported in float64 (module.double(): weights, folded
# batchnorms and scale constants all in float64), so only the order of the sums differs — and
# the epsilon of opset 17's LayerNormalization, an attribute ONNX stores as float32 (GPT-2:
# 4e-11).
TORCH_LIMIT = 1e-10


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    d = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / (d if d > 0 else 1.0))


def export(module, batch, input_names, axes, path, opset):
    """torch.onnx.export with a dynamic batch axis (the module and batch decide the precision)."""
    if os.path.exists(path):
        return
    dyn = {n: {axes.get(n, 0): "batch"} for n in input_names}
    kwargs = {}
    if isinstance(module, torch.nn.Module) and hasattr(module, "config"):
        kwargs["output_names"] = ["last_hidden_state"]
    torch.onnx.export(module, tuple(batch), path + ".tmp", opset_version=opset,
                      input_names=input_names, dynamic_axes=dyn, **kwargs)
    os.replace(path + ".tmp", path)


def as_double(batch):
    return [t.double() if t.is_floating_point() else t for t in batch]


def torch_output(m64, batch):
    with torch.no_grad():
        out = m64(*batch)
    if isinstance(out, dict) or hasattr(out, "to_tuple"):
        out = out.to_tuple() if hasattr(out, "to_tuple") else tuple(out.values())
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out.numpy()


def check(binary, out, name, opset):
    build, _ = zoo_models.MODELS[name]
    module, batches, input_names, kw = build()
    axes = kw.get("batch_axes", {})
    # A zero-initialised parameter (torchvision ViT's head) would make the output all zeros and
    # the FP64-vs-PyTorch check vacuous: give it values (both sides see the same module).
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in module.parameters():
            if p.numel() > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    path = os.path.join(out, f"{name}_op{opset}.onnx")
    export(module, batches[0], input_names, axes, path, opset)
    import onnx
    nodes = len(onnx.load(path, load_external_data=False).graph.node)

    t0 = time.time()
    ins = subprocess.run([binary, "inspect", path], capture_output=True, text=True)
    t_load = time.time() - t0
    if ins.returncode != 0:
        return None, f"inspect failed: {ins.stderr.strip()}"
    layers = int(re.search(r"(\d+) layers", ins.stdout).group(1))
    outputs = re.search(r"^outputs: (.*)$", ins.stdout, re.M).group(1).split(", ")

    rec = os.path.join(out, f"{name}_op{opset}.recording.h5")
    feeds = []
    for b in batches[:2]:
        d = {}
        for n, t in zip(input_names, b):
            a = t.numpy()
            d[n] = np.moveaxis(a, axes.get(n, 0), 0)
        feeds.append(d)
    capture_onnx.capture(path, feeds, rec, activations=True, batch_axes=axes)

    report = os.path.join(out, f"{name}_op{opset}.json")
    dump = os.path.join(out, f"{name}_op{opset}.dump.h5")
    t0 = time.time()
    r = subprocess.run([binary, "run", "--model", path, "--recording", rec, "--backend", "cpu",
                        "--modes", "fp32", "--report", report, "--dump", dump, "--table", "none", "-q"],
                       capture_output=True, text=True)
    t_run = time.time() - t0
    row = dict(nodes=nodes, layers=layers, load=t_load, run=t_run)
    if r.returncode not in (0, 1, 4):
        return row, f"run exit {r.returncode}: {r.stderr.strip()[-400:]}"
    rep = json.load(open(report))
    recs = [e for e in rep["recorded"] if e.get("count")]
    if not recs:
        return row, "no recorded value was compared"
    worst = max(recs, key=lambda e: float("inf") if e["rel_l2"] is None else e["rel_l2"])
    row["ort"] = worst["rel_l2"]
    row["ort_at"] = worst.get("value", worst["name"])
    row["values"] = len(recs)

    # FP64 reference of the first graph output vs PyTorch float64 on batch 0, both from the model
    # in float64 (the recording's float32 inputs are exact in float64).
    m64 = module.double()
    path64 = os.path.join(out, f"{name}_op{opset}.f64.onnx")
    export(m64, as_double(batches[0]), input_names, axes, path64, opset)
    r = subprocess.run([binary, "run", "--model", path64, "--recording", rec, "--backend", "cpu",
                        "--modes", "fp32", "--batches", "0:1", "--dump", dump, "--table", "none", "-q"],
                       capture_output=True, text=True)
    if r.returncode not in (0, 1, 4):
        return row, f"run of the float64 export: exit {r.returncode}: {r.stderr.strip()[-400:]}"
    want = torch_output(m64, as_double(batches[0]))
    out_axis = axes.get(input_names[0], 0)
    want = np.moveaxis(want, out_axis, 0) if want.ndim > out_axis else want
    with h5py.File(dump, "r") as f:
        got = f["batches"]["000000"]["fp64"][outputs[0].replace("/", "|")][()]
    if got.size != want.size:
        return row, f"output sizes differ: divscope {got.shape}, PyTorch {want.shape}"
    row["torch"] = rel_l2(got.reshape(want.shape), want)
    os.remove(dump)
    os.remove(path64)
    problems = []
    if worst["rel_l2"] is None or worst["rel_l2"] > ORT_LIMIT:
        problems.append(f"FP64 vs ONNX Runtime rel_l2 {worst['rel_l2']} at '{row['ort_at']}' > {ORT_LIMIT}")
    if not row["torch"] <= TORCH_LIMIT:
        problems.append(f"FP64 vs PyTorch float64 rel_l2 {row['torch']:.3e} > {TORCH_LIMIT}")
    return row, "; ".join(problems)


def remove_artifacts(out, name, opset):
    """Exports, recordings with every intermediate value and dumps of real networks reach
    gigabytes (vit_b_16: 330 MB per export): forty of them filled CI's disk. Kept only with
    DIVSCOPE_KEEP_ZOO=1, to look into a failure; the report stays."""
    if os.environ.get("DIVSCOPE_KEEP_ZOO") == "1":
        return
    stem = os.path.join(out, f"{name}_op{opset}")
    for suffix in (".onnx", ".onnx.tmp", ".f64.onnx", ".f64.onnx.tmp", ".recording.h5", ".dump.h5"):
        try:
            os.remove(stem + suffix)
        except FileNotFoundError:
            pass


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    binary, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    jobs = []
    for arg in sys.argv[3:]:
        name, _, op = arg.partition("@")
        jobs += [(name, int(op))] if op else [(name, 13), (name, 17)]
    failed = 0
    print(f"{'model':22} {'opset':>5} {'nodes':>6} {'layers':>6} {'load s':>7} {'run s':>7} "
          f"{'FP64 vs ORT':>12} {'FP64 vs torch':>13}  worst value")
    for name, opset in jobs:
        try:
            row, problem = check(binary, out, name, opset)
        except Exception as e:  # noqa: BLE001 - a failing model is a row, not a traceback
            row, problem = None, f"{type(e).__name__}: {e}"
        finally:
            remove_artifacts(out, name, opset)
        if row:
            print(f"{name:22} {opset:>5} {row['nodes']:>6} {row['layers']:>6} {row['load']:>7.2f} "
                  f"{row['run']:>7.2f} {row.get('ort', float('nan')):>12.3e} "
                  f"{row.get('torch', float('nan')):>13.3e}  {row.get('ort_at', '')}", flush=True)
        if problem:
            failed += 1
            print(f"  FAIL {name} opset {opset}: {problem}", flush=True)
    print(f"{len(jobs) - failed} of {len(jobs)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
