"""ONNX models in: every op case of make_onnx_ops.py through capture_onnx.py and divscope.

usage: test_onnx_ops.py DIVSCOPE WORK_DIR [CASE ...]
       test_onnx_ops.py - WORK_DIR [CASE ...]      (no binary: generation and capture checks only)
Run with .venv-test/bin/python (onnx, onnxruntime; tools/deps_python.sh).

1. capture_onnx's own checks (no binary needed): the CLI on .npz/.npy/random inputs, batch-first
   inputs whatever the batch axis, activations under their ONNX names, a fixed-batch model run
   in chunks, names HDF5 cannot take, and the one-line errors (exit 2).
2. For each case: the model (make_onnx_ops.py), a recording of 2 seeded batches of 3 samples
   with every float value ONNX Runtime computes (capture_onnx.capture), checked with h5py
   (batch-first inputs, the `name` attributes, the values equal a plain run_ort); then
       DIVSCOPE run --model case.onnx --recording rec.h5 --backend cpu --modes fp32 --report r.json
   must exit 0 or 1, and every entry of the report's `recorded` (FP64 reference against ONNX
   Runtime's float32 value; the ONNX value name in `value`, else `name`) must have
   rel_l2 <= 1e-5, with at least one entry per case; where the entries carry `value`, each
   must name a value of the recording.
Prints a table (case, nodes, recorded values, worst rel_l2); exit 0 only when everything holds.
"""
import json
import os
import subprocess
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..", "..", "tools")
sys.path.insert(0, TOOLS)
sys.path.insert(0, HERE)
import capture_onnx  # noqa: E402
import make_onnx_ops  # noqa: E402

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

LIMIT = 1e-5
NOTES = {}
CAPTURE = os.path.join(TOOLS, "capture_onnx.py")


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


# --------------------------------------------------------------------------------------------
# Recordings, checked from the file

def read_recording(path):
    """(root attrs, [{input: array}], [{value name: (hdf5 path, array)}])."""
    inputs, acts = [], []
    with h5py.File(path, "r") as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        for b in sorted(f["batches"]):
            g = f["batches"][b]
            inputs.append({k: g[k][()] for k in g if k not in ("activations", "run_activations")})
            a = {}
            if "activations" in g:
                def visit(p, o, a=a):
                    if isinstance(o, h5py.Dataset):
                        name = o.attrs.get("name")
                        check(isinstance(name, str), f"{path}: activations/{p} has no string "
                                                     "attribute 'name'")
                        check(name not in a, f"{path}: value '{name}' stored twice")
                        a[name] = (p, o[()])
                g["activations"].visititems(visit)
            acts.append(a)
    return attrs, inputs, acts


def check_recording(rec, model, batches, expect_acts=True, batch_axes=None):
    """The file holds `batches` batch-first and, per batch, exactly what run_ort gives for every
    recorded value under its name. Returns the recorded value names of batch 0."""
    attrs, inputs, acts = read_recording(rec)
    check(attrs.get("divscope_format") == "recording", f"{rec}: divscope_format")
    check(int(attrs.get("divscope_version", 0)) == 2, f"{rec}: divscope_version")
    env = json.loads(attrs["capture_environment"])
    check(env.get("divscope_env") == 1 and env.get("producer") == "capture_onnx.py",
          f"{rec}: capture_environment is not an environment record")
    for k in ("numpy", "onnx", "onnxruntime"):
        check(k in env.get("libraries", {}), f"{rec}: capture_environment lacks libraries.{k}")
    check(env.get("runtime", {}).get("python") and env.get("host", {}).get("hostname"),
          f"{rec}: capture_environment lacks runtime.python or host.hostname")
    check(len(inputs) == len(batches), f"{rec}: {len(inputs)} batches, expected {len(batches)}")
    runner = capture_onnx.OrtRunner(model, True, batch_axes)
    for bi, (b, got) in enumerate(zip(batches, inputs)):
        check(sorted(got) == sorted(b), f"{rec}: batch {bi} inputs {sorted(got)}, expected {sorted(b)}")
        feeds = {}
        for s in runner.inputs:
            a, want = got[s.name], np.asarray(b[s.name])
            check(a.shape == want.shape, f"{rec}: batch {bi} '{s.name}' shape {a.shape}, "
                                         f"expected batch-first {want.shape}")
            check(a.dtype == (np.float32 if s.kind == "float" else np.int64),
                  f"{rec}: batch {bi} '{s.name}' stored as {a.dtype}")
            check(np.array_equal(a, want.astype(a.dtype)), f"{rec}: batch {bi} '{s.name}' values")
            feeds[s.name] = np.moveaxis(want, 0, s.axis)
        if not expect_acts:
            check(not acts[bi], f"{rec}: activations recorded without --activations")
            continue
        ref = runner.run(feeds)
        stored = acts[bi]
        check(stored, f"{rec}: batch {bi} has no activations")
        for name, (p, a) in stored.items():
            check(p == (name[1:] if name.startswith("/") else name),
                  f"{rec}: value '{name}' stored at activations/{p}")
            check(a.dtype == np.float32, f"{rec}: '{name}' stored as {a.dtype}")
            check(name in ref, f"{rec}: '{name}' is not a value ONNX Runtime computes")
            check(a.shape == ref[name].shape, f"{rec}: '{name}' shape {a.shape}, ONNX Runtime's "
                                              f"{ref[name].shape}")
            check(np.array_equal(a, ref[name], equal_nan=True),
                  f"{rec}: batch {bi} '{name}' differs from ONNX Runtime's value")
        missing = set(ref) - set(stored)
        check(not missing, f"{rec}: values not recorded: {sorted(missing)[:5]}")
    return list(acts[0]) if acts else []


def make_batches(entry, seed, count=2, n=3):
    """`count` batch-first batches of `n` samples for an index entry of make_onnx_ops."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        b = {}
        for name, spec in entry["inputs"].items():
            rest = [d for k, d in enumerate(spec["shape"]) if k != 0]
            if spec["dtype"] == "int64":
                b[name] = rng.integers(0, entry.get("int_range", {}).get(name, 2), [n] + rest)
            else:
                b[name] = rng.standard_normal([n] + rest).astype(np.float32)
        out.append(b)
    return out


# --------------------------------------------------------------------------------------------
# capture_onnx's own checks

def cli(*args):
    return subprocess.run([sys.executable, CAPTURE] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=300)


def expect_error(r, file, what):
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2, f"capture_onnx {what}: exit {r.returncode}, expected 2 ({r.stderr.strip()})")
    check(len(lines) == 1 and lines[0].startswith(f"capture_onnx: {file}: "),
          f"capture_onnx {what}: expected one line 'capture_onnx: {file}: ...', got {r.stderr!r}")


def seq_first_model(path):
    """Input "src" [seq, batch, 4] (seq-first, a dynamic seq dim), Gemm-free: MatMul, Relu,
    Transpose to batch-first, plus an int64 input "ids" [batch, 3] into an embedding."""
    x = helper.make_tensor_value_info("src", TensorProto.FLOAT, ["seq", "batch_size", 4])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch_size", 3])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch_size", "seq", 4])
    e = helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch_size", 3, 2])
    rng = np.random.default_rng(5)
    w = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w")
    table = numpy_helper.from_array(rng.standard_normal((7, 2)).astype(np.float32), "table")
    nodes = [helper.make_node("MatMul", ["src", "w"], ["/enc/MatMul_output_0"], name="/enc/MatMul"),
             helper.make_node("Relu", ["/enc/MatMul_output_0"], ["/enc/Relu_output_0"], name="/enc/Relu"),
             helper.make_node("Transpose", ["/enc/Relu_output_0"], ["out"], name="/Transpose",
                              perm=[1, 0, 2]),
             helper.make_node("Gather", ["table", "ids"], ["emb"], name="/emb/Gather")]
    # An old exporter: the weights are graph inputs too (they are not recorded inputs).
    winput = helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 4])
    g = helper.make_graph(nodes, "g", [x, ids, winput], [y, e], [w, table])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)


def fixed_batch_models(work):
    """The groupnorm case with its batch fixed to 1, and the dynamic original."""
    _, dyn = make_onnx_ops.build("groupnorm_decomposed", seed=3)
    fixed = onnx.ModelProto()
    fixed.CopyFrom(dyn)
    d = fixed.graph.input[0].type.tensor_type.shape.dim[0]
    d.Clear()
    d.dim_value = 1
    pd, pf = os.path.join(work, "gn_dynamic.onnx"), os.path.join(work, "gn_fixed1.onnx")
    onnx.save(dyn, pd)
    onnx.save(fixed, pf)
    return pd, pf


def odd_names_model(path):
    """Values named '/a' and 'a' (collide after stripping), 'p' and 'p/q' (a dataset and a
    group), '/./x' (HDF5 cannot name it) and a normal one."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    names = ["/a", "a", "p", "p/q", "/./x", "/ok/Relu_output_0"]
    nodes, prev = [], "x"
    for i, n in enumerate(names):
        nodes.append(helper.make_node("Relu" if i % 2 else "Neg", [prev], [n], name=f"n{i}"))
        prev = n
    nodes.append(helper.make_node("Abs", [prev], ["y"], name="last"))
    g = helper.make_graph(nodes, "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)


def check_capture(work):
    os.makedirs(work, exist_ok=True)
    done = []

    # Seq-first input, .npz in the model's layout, batch axes from dim_param "batch_size".
    m = os.path.join(work, "seqfirst.onnx")
    seq_first_model(m)
    rng = np.random.default_rng(1)
    src = rng.standard_normal((5, 7, 4)).astype(np.float32)          # [seq, 7 samples, 4]
    ids = rng.integers(0, 7, (7, 3))
    npz, rec = os.path.join(work, "seqfirst.npz"), os.path.join(work, "seqfirst.h5")
    np.savez(npz, src=src, ids=ids)
    r = cli(m, "--out", rec, "--inputs", npz, "--batch-size", 3, "--activations")
    check(r.returncode == 0, f"capture_onnx seqfirst: exit {r.returncode}: {r.stderr.strip()}")
    batches = [{"src": np.moveaxis(src[:, i:i + 3], 1, 0), "ids": ids[i:i + 3]} for i in (0, 3, 6)]
    names = check_recording(rec, m, batches)
    with h5py.File(rec, "r") as f:
        check(f["batches/000000/src"].shape == (3, 5, 4), "seqfirst: src not stored batch-first")
        check(f["batches/000002/src"].shape == (1, 5, 4), "seqfirst: the last batch has 1 sample")
        d = f["batches/000000/activations/enc/MatMul_output_0"]
        check(d.attrs["name"] == "/enc/MatMul_output_0" and d.shape == (5, 3, 4),
              "seqfirst: '/enc/MatMul_output_0' not in its own (seq-first) ONNX shape")
        check(f["batches/000000/activations/out"].shape == (3, 5, 4), "seqfirst: graph output")
        check("w" not in f["batches/000000"], "seqfirst: an initializer listed as input recorded")
    check(set(names) == {"/enc/MatMul_output_0", "/enc/Relu_output_0", "out", "emb"},
          f"seqfirst: recorded {sorted(names)}")
    # The same with --batch-axis overriding (src's batch on axis 1 explicitly) gives the same file.
    rec2 = os.path.join(work, "seqfirst2.h5")
    r = cli(m, "--out", rec2, "--inputs", npz, "--batch-size", 3, "--batch-axis", "src=1")
    check(r.returncode == 0, f"capture_onnx --batch-axis: {r.stderr.strip()}")
    check_recording(rec2, m, batches, expect_acts=False)
    done.append("npz, batch axis from dim_param and --batch-axis, seq-first activations")

    # .npy for a one-input model, random data, --dim for a dynamic non-batch dim.
    m1 = os.path.join(work, "relu.onnx")
    onnx.save(make_onnx_ops.build("relu")[1], m1)
    x = rng.standard_normal((4, 4, 6)).astype(np.float64)
    npy = os.path.join(work, "x.npy")
    np.save(npy, x)
    rec = os.path.join(work, "relu.h5")
    r = cli(m1, "--out", rec, "--inputs", npy, "--activations")
    check(r.returncode == 0, f"capture_onnx .npy: {r.stderr.strip()}")
    check_recording(rec, m1, [{"input": x.astype(np.float32)}])
    r = cli(m1, "--out", rec, "--random", 3, "--batch-size", 2, "--seed", 7, "--activations")
    check(r.returncode == 0, f"capture_onnx --random: {r.stderr.strip()}")
    with h5py.File(rec, "r") as f:
        check(sorted(f["batches"]) == ["000000", "000001", "000002"] and
              f["batches/000002/input"].shape == (2, 4, 6), "--random: batches or shapes")
        a1 = f["batches/000001/input"][()]
    r = cli(m1, "--out", rec, "--random", 3, "--batch-size", 2, "--seed", 7)
    with h5py.File(rec, "r") as f:
        check(np.array_equal(f["batches/000001/input"][()], a1), "--random: not reproducible")
        check("activations" not in f["batches/000000"], "activations without --activations")
    r = cli(m, "--out", rec, "--random", 2, "--batch-size", 2, "--dim", "seq=3",
            "--int-range", "ids=7", "--activations")
    check(r.returncode == 0, f"capture_onnx --random --dim: {r.stderr.strip()}")
    with h5py.File(rec, "r") as f:
        check(f["batches/000001/src"].shape == (2, 3, 4), "--dim seq=3: src shape")
        i = f["batches/000001/ids"][()]
        check(i.dtype == np.int64 and i.min() >= 0 and i.max() < 7, "--int-range ids=7")
        check(f["batches/000001/activations/emb"].shape == (2, 3, 2), "--random: emb")
    done.append(".npy, --random (reproducible), --dim, --int-range")

    # A model with its batch fixed to 1 runs in chunks: the same values as the dynamic model.
    pd, pf = fixed_batch_models(work)
    b = make_batches({"inputs": {"input": {"shape": ["batch", 6, 4, 4], "dtype": "float32"}}}, 9)
    rd, rf = os.path.join(work, "gn_dynamic.h5"), os.path.join(work, "gn_fixed1.h5")
    capture_onnx.capture(pd, b, rd)
    capture_onnx.capture(pf, b, rf)
    _, _, ad = read_recording(rd)
    _, _, af = read_recording(rf)
    for bi in range(2):
        for name, (p, a) in ad[bi].items():
            if a.ndim == 0 or a.shape[0] != 3:
                continue   # constants: stored once either way
            check(name in af[bi], f"fixed batch: '{name}' not recorded")
            check(np.allclose(af[bi][name][1], a, rtol=1e-6, atol=1e-6),
                  f"fixed batch: '{name}' differs from the dynamic model's")
    np.savez(os.path.join(work, "gn5.npz"), input=rng.standard_normal((5, 6, 4, 4)))
    r = cli(pf, "--out", rf, "--inputs", os.path.join(work, "gn5.npz"), "--batch-size", 5)
    check(r.returncode == 0, "fixed batch 1, batch size 5: " + r.stderr.strip())
    done.append("a fixed batch-1 model run in chunks")

    # Names HDF5 cannot take, or that collide, are skipped with a note.
    mo = os.path.join(work, "odd.onnx")
    odd_names_model(mo)
    rec = os.path.join(work, "odd.h5")
    r = cli(mo, "--out", rec, "--random", 1, "--batch-size", 2, "--activations")
    check(r.returncode == 0, f"odd names: {r.stderr.strip()}")
    _, _, acts = read_recording(rec)
    check(set(acts[0]) == {"/ok/Relu_output_0", "y"}, f"odd names: recorded {sorted(acts[0])}")
    check("collide" in r.stderr and "cannot name" in r.stderr, f"odd names: no note: {r.stderr}")
    done.append("colliding and unnameable values skipped with a note")

    # Errors: one line, exit 2.
    missing = os.path.join(work, "nope.onnx")
    expect_error(cli(missing, "--out", rec, "--random", 1), missing, "missing model")
    expect_error(cli(m1, "--out", rec, "--inputs", os.path.join(work, "nope.npz")),
                 os.path.join(work, "nope.npz"), "missing inputs")
    bad = os.path.join(work, "bad.npz")
    np.savez(bad, inputs=x)
    expect_error(cli(m1, "--out", rec, "--inputs", bad), bad, "input name not in the graph")
    np.savez(bad, input=x[:, :3])
    expect_error(cli(m1, "--out", rec, "--inputs", bad, "--activations"), bad, "wrong shape")
    np.savez(bad, src=src)
    expect_error(cli(m, "--out", rec, "--inputs", bad), bad, "an input missing")
    expect_error(cli(m, "--out", rec, "--inputs", npy), npy, ".npy for two inputs")
    expect_error(cli(m, "--out", rec, "--random", 1), m, "dynamic dim without --dim")
    expect_error(cli(m, "--out", rec, "--random", 1, "--batch-axis", "nope=0"), m, "--batch-axis")
    fixed2 = onnx.load(pf)
    fixed2.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    pf2 = os.path.join(work, "gn_fixed2.onnx")
    onnx.save(fixed2, pf2)
    np.savez(bad, input=rng.standard_normal((6, 6, 4, 4)))
    expect_error(cli(pf2, "--out", rec, "--inputs", bad, "--batch-size", 3), pf2,
                 "not a multiple of the fixed batch")
    r = cli(pf2, "--out", rec, "--inputs", bad, "--batch-size", 4, "--activations")
    check(r.returncode == 0, "fixed batch 2, batch sizes 4 and 2: " + r.stderr.strip())
    junk = os.path.join(work, "junk.onnx")
    with open(junk, "wb") as f:
        f.write(b"\x89HDF\r\n\x1a\n not onnx")
    expect_error(cli(junk, "--out", rec, "--random", 1), junk, "not an ONNX file")
    left = [p for p in os.listdir(work) if p.startswith(".capture_onnx.")]
    check(not left, f"temporary files left: {left}")
    done.append("errors: one line, exit 2, no partial file")
    return done


# --------------------------------------------------------------------------------------------
# The op cases through divscope

def run_case(binary, work, name, entry, seed):
    model = os.path.join(work, entry["file"])
    rec = os.path.join(work, f"{name}.recording.h5")
    batches = make_batches(entry, seed)
    capture_onnx.capture(model, batches, rec, activations=True)
    captured = check_recording(rec, model, batches)
    if binary is None:
        return len(captured), None, None
    report = os.path.join(work, f"{name}.report.json")
    if os.path.exists(report):
        os.remove(report)
    try:
        r = subprocess.run([binary, "run", "--model", model, "--recording", rec, "--backend", "cpu",
                            "--modes", "fp32", "--report", report], capture_output=True, text=True,
                           timeout=300)
    except subprocess.TimeoutExpired:
        raise Fail("divscope run timed out") from None
    if r.returncode not in (0, 1):
        err = (r.stderr.strip() or r.stdout.strip()).splitlines()
        raise Fail(f"divscope run exit {r.returncode}: {err[-1] if err else ''}")
    with open(report) as f:
        rep = json.load(f)
    rows, named = [], True
    for e in rep.get("recorded", []):
        if e.get("count", 1) == 0:
            continue
        named = named and "value" in e
        rows.append((e.get("value", e.get("name")), e.get("layer", e.get("name")), e.get("rel_l2")))
    check(rows, f"no recorded entry in the report ({len(captured)} values in the recording)")
    if named:
        unknown = [v for v, _, _ in rows if v not in captured]
        check(not unknown, f"report entries for values not in the recording: {unknown[:3]}")
    elif not NOTES.get("value"):
        NOTES["value"] = True
        print("test_onnx_ops: the report's recorded entries have no 'value' field: their ONNX "
              "value names are not checked against the recording", file=sys.stderr)
    bad = [(v, x) for v, _, x in rows if x is None or not x <= LIMIT]
    worst = max(rows, key=lambda t: float("inf") if t[2] is None else t[2])
    if bad:
        raise Fail(f"{len(bad)} value(s) above rel_l2 {LIMIT}: {bad[:3]}")
    return len(captured), len(rows), worst


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    binary = None if argv[1] == "-" else os.path.abspath(argv[1])
    work = os.path.abspath(argv[2])
    names = argv[3:] or list(make_onnx_ops.CASES)
    os.makedirs(work, exist_ok=True)
    failed = 0
    try:
        for what in check_capture(os.path.join(work, "capture")):
            print(f"ok capture_onnx: {what}")
    except Exception as e:
        failed += 1
        print(f"test_onnx_ops: capture_onnx: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
    models = os.path.join(work, "models")
    r = subprocess.run([sys.executable, os.path.join(HERE, "make_onnx_ops.py"), models] + names,
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"test_onnx_ops: make_onnx_ops failed: {r.stderr.strip()}", file=sys.stderr)
        return 1
    with open(os.path.join(models, "index.json")) as f:
        index = json.load(f)
    print("\n| case | nodes | recorded values (in the file / in the report) | worst rel_l2 |")
    print("|---|---|---|---|")
    for i, name in enumerate(names):
        entry = index[name]
        try:
            n_file, n_rep, worst = run_case(binary, models, name, entry, 1000 + i)
        except Exception as e:
            failed += 1
            msg = f"{type(e).__name__}: {e}" if not isinstance(e, Fail) else str(e)
            print(f"| {name} | {entry['nodes']} | | FAILED |", flush=True)
            print(f"test_onnx_ops: {name}: FAILED: {msg}", file=sys.stderr, flush=True)
            continue
        if binary is None:
            print(f"| {name} | {entry['nodes']} | {n_file} / - | (no binary) |", flush=True)
        else:
            print(f"| {name} | {entry['nodes']} | {n_file} / {n_rep} | {worst[2]:.2e} ({worst[0]}) |",
                  flush=True)
    print(f"\ntest_onnx_ops: {len(names)} case(s), {failed} failure(s)"
          + ("" if binary else "; divscope not run (no binary given)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
