"""The same model through capture_torch.py and through ONNX gives the same analysis.

usage: test_onnx_same_analysis.py DIVSCOPE WORK_DIR [EXAMPLE ...]
Run with .venv-test/bin/python (torch, onnx, onnxruntime, h5py; tools/deps_python.sh).

The requirement: "a model captured through capture_torch.py and the same model exported to ONNX
give the same first divergent layer per mode on the same batches, up to naming".

For every planted example of data/EXPECTED.md and the ordinary examples mlp, cnn, resnet and
transformer (default: all of EXAMPLES below; or the ones named on the command line):

1. the torch module and its batches exactly as data/make_examples.py builds them
   (make_examples.EXAMPLES[name](), module in eval mode, as build_one does);
2. torch side: capture_torch.capture(module, batches, ...) into WORK_DIR (not data/), without
   recorded activations (neither side records any: both runs compute their own FP64 reference);
3. ONNX side: torch.onnx.export of the same module object, opset 17, every input's axis 0 and
   the output's dynamic and named "batch", training=TrainingMode.PRESERVE with the module in
   eval mode (so BatchNorm stays a BatchNormalization node and is not folded into the Conv: the
   test checks that the graph holds one BatchNormalization per nn.BatchNorm* of the module), and
   a recording of the same batches by capture_onnx.capture (no activations); ONNX Runtime's
   output must equal the module's on every batch (rel_l2 <= 1e-3 in float32: a wrong export,
   not rounding), and both divscope runs must compute the same FP64 reference for the model's
   output (check_reference: count, min, max, mean and sum of squares within 1e-6);
   torch 1.13's exporter cannot export two things the examples use; the test supplies, only for
   the duration of its export, the symbolic that newer torch has (export_patches):
     - cnn: Conv2d(padding="same") is aten::_convolution_mode, which torch 1.13 has no symbolic
       for (UnsupportedOperatorError): exported as a Conv with the explicit pads that "same"
       means (total d·(k−1) per axis, the odd one at the end, as torch pads);
     - transformer: LayerNorm(elementwise_affine=False) (ln_f) is exported by torch 1.13's opset
       17 symbolic as LayerNormalization with an empty Scale input, which the ONNX checker
       rejects (Scale is required): exported with a constant Scale of ones, as newer torch's
       opset-17 symbolic does (which also adds a B of zeros; B is optional, so none here);
       x·1 is exact, so the graph computes the same function;
4. `DIVSCOPE run --model X --recording R --backend cpu --report r.json --table none -q` on both
   (default options: modes fp32,tf32,fp16,bf16,strict, criterion budget), then per mode the
   report's modes[*].first_divergent_layer compared under the naming rule below, and the exit
   codes compared (equal, and each 0 or 1).

Naming rule (match_rule). Both names are mapped to the module path of the nn.Module they belong
to (its qualified name in module.named_modules(), "" for the root):
  - torch-captured layer: from the layer's `source` attribute in the model file: a whole leaf
    module ("call_module <class> at 'layer1.0.conv1'") -> that path; a function/method call
    inside a module ("... in module 'shrink'", layer `shrink.mul`) -> that module's path; a call
    in the root's forward (`add_1`, `flatten`) -> "".
  - ONNX layer: divscope names it after its node, which torch.onnx names
    "/<scope>/.../<scope>/<OpType>[_k]"; the scopes are the chain of modules from the root, each
    written as torch.onnx writes it (its qualified name from the last non-numeric atom on:
    `layer1.0`, then `conv1`; `downsample.0`). The test builds that scope string for every
    module of named_modules() and maps the node name without its last component back to the
    module path, e.g. /layer1/layer1.0/conv1/Conv -> layer1.0.conv1, /amplify/Gemm -> amplify,
    /Flatten -> "".
  A pair matches when both are null (no layer diverges), or when
  - the module paths are equal, and
  - where the torch layer is a function call rather than a whole module (`shrink.mul`,
    `logits.matmul`, `layer1.0.add`, `add_1`; a module can hold several of them), the two
    layers also compute the same value: their FP64 reference outputs in the two reports have
    the same statistics (same_values: count, min, max, mean, sum of squares, within 1e-6).
    Not an ordinal of the op within the module: an exported module may hold more nodes of an
    op than the torch capture has calls (transformer's root: divscope_sdpa is one torch layer,
    in ONNX Transpose/MatMul/Mul/Where/Softmax/MatMul, so the torch call `transpose` is ONNX's
    5th Transpose, /Transpose_4, not its 4th); and not the op: a composite function
    (divscope_sdpa) is matched by the ONNX node that produces its value (/MatMul_1), while a
    node inside its decomposition (/MatMul, the logits) is a different point of the graph.
    Layers that only rearrange the same values (torch `view` and ONNX /Transpose, its
    permutation) count as one point; they are exact in every mode and never diverge first.
  The rule must be total on both models (check_naming): every ONNX layer maps to a module, and
  every torch layer's module holds an ONNX layer.
  A whole torch module may be several ONNX nodes (GELU as Mul/Tanh/Add, Linear as MatMul+Add,
  LayerNorm decomposed); any node of that module's scope matches it: which node inside the
  module diverges first is up to the graph. The rule compares where, not when: a mismatch is a
  different module (or, inside one module, a different call) diverging first.

Prints a table (example, mode, torch-captured first divergent, ONNX first divergent, match) and,
for each mismatch, the layers of the two models around the two answers. Exit 0 only when every
example exports, runs, and matches in every mode with equal exit codes.
"""
import contextlib
import json
import os
import re
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "data"))

import h5py  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import capture_onnx  # noqa: E402
import capture_torch  # noqa: E402
import make_examples  # noqa: E402

MODES = ["fp32", "tf32", "fp16", "bf16", "strict"]
EXAMPLES = ["planted_fp16_overflow", "planted_tf32_cancellation", "planted_layernorm_offset",
            "planted_fp16_underflow", "planted_attention_overflow", "planted_bf16_offset",
            "planted_conv_cancellation", "cnn", "mlp", "resnet", "transformer"]
OPSET = 17


# --- export ---------------------------------------------------------------------------------

def _layer_norm17(g, input, normalized_shape, weight, bias, eps, cudnn_enable):
    """aten::layer_norm at opset 17 as newer torch exports it: a missing weight becomes a
    constant Scale of ones (LayerNormalization's Scale is required); a missing bias stays
    absent (B is optional)."""
    from torch.onnx import symbolic_helper as sh
    if sh._is_none(weight):
        weight = g.op("Constant", value_t=torch.ones(normalized_shape, dtype=torch.float32))
    args = [input, weight] + ([] if sh._is_none(bias) else [bias])
    return g.op("LayerNormalization", *args, epsilon_f=eps, axis_i=-len(normalized_shape))


def _convolution_mode(g, input, weight, bias, stride, padding, dilation, groups):
    """aten::_convolution_mode (Conv*d with padding='same'/'valid') as an ONNX Conv with the
    explicit pads torch applies: 'same' pads d·(k−1) per spatial axis, half (rounded down) at
    the start, the rest at the end."""
    from torch.onnx import symbolic_helper as sh
    kernel = sh._get_tensor_sizes(weight)[2:]
    if any(k is None for k in kernel):
        raise RuntimeError("_convolution_mode: the weight's kernel size is not static")
    if padding == "valid":
        begin = end = [0] * len(kernel)
    elif padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        begin = [t // 2 for t in total]
        end = [t - b for t, b in zip(total, begin)]
    else:
        raise RuntimeError(f"_convolution_mode: padding '{padding}'")
    args = [input, weight] + ([] if sh._is_none(bias) else [bias])
    return g.op("Conv", *args, kernel_shape_i=kernel, strides_i=stride, dilations_i=dilation,
                pads_i=begin + end, group_i=groups)


@contextlib.contextmanager
def export_patches():
    """The two symbolics torch 1.13 lacks (module docstring, step 3), registered for one export."""
    from torch.onnx import symbolic_helper as sh
    patches = [
        ("aten::layer_norm", sh.parse_args("v", "is", "v", "v", "f", "none")(_layer_norm17)),
        ("aten::_convolution_mode",
         sh.parse_args("v", "v", "v", "is", "s", "is", "i")(_convolution_mode)),
    ]
    for name, fn in patches:
        torch.onnx.register_custom_op_symbolic(name, fn, OPSET)
    try:
        yield
    finally:
        for name, _ in patches:
            torch.onnx.unregister_custom_op_symbolic(name, OPSET)


def export_onnx(module, batch, input_names, path):
    axes = {n: {0: "batch"} for n in input_names}
    axes["output"] = {0: "batch"}
    with export_patches(), warnings.catch_warnings():
        warnings.simplefilter("ignore")   # constant folding with PRESERVE, tracer warnings
        torch.onnx.export(module, tuple(batch), path, input_names=list(input_names),
                          output_names=["output"], dynamic_axes=axes, opset_version=OPSET,
                          training=torch.onnx.TrainingMode.PRESERVE)


def check_graph(module, path, batches, input_names):
    """Problems with the exported graph: every BatchNorm of the module must be its own
    BatchNormalization node (not folded into a Conv), and ONNX Runtime's output must be the
    module's on every batch (float32, rel_l2 <= 1e-3: catches a wrong export, not rounding;
    planted_layernorm_offset's float32 output is only good to ~6e-5 in either runtime)."""
    import onnx
    g = onnx.load(path).graph
    problems = []
    want = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
    got = sum(n.op_type == "BatchNormalization" for n in g.node)
    if got != want:
        problems.append(f"the ONNX graph has {got} BatchNormalization nodes for {want} "
                        f"BatchNorm modules")
    runner = capture_onnx.OrtRunner(path, activations=False)
    for bi, b in enumerate(batches):
        with torch.no_grad():
            ref = module(*b).double()
        out = torch.from_numpy(runner.run({n: t.numpy() for n, t in zip(input_names, b)})
                               ["output"]).double()
        rel = ((out - ref).norm() / ref.norm()).item() if ref.norm() > 0 else \
            out.abs().max().item()
        if list(out.shape) != list(ref.shape) or not rel <= 1e-3:
            problems.append(f"batch {bi}: ONNX Runtime's output differs from the module's "
                            f"(shape {list(out.shape)} vs {list(ref.shape)}, rel_l2 {rel:.3g})")
    return problems


def check_reference(t_rep, o_rep):
    """Both runs must replay the same function: the FP64 reference of the model's output (the
    last layer of each report) has the same statistics (same_values: count, min, max, mean
    within 1e-6 of its RMS, sum of squares within 1e-6 relative). Not tighter: an exported graph
    may hold float32 literals where the torch op has exact ones (mlp's
    GELU(approximate='tanh') becomes Mul/Tanh/Add nodes with the constants 0.044715 and
    sqrt(2/pi) in float32, so its FP64 reference differs from capture_torch's by ~8e-10 of the
    output); a wrong export (pads, a dropped scale) differs by far more."""
    t, o = t_rep["modes"][0]["layers"][-1], o_rep["modes"][0]["layers"][-1]
    same, why = same_values(t, o)
    return [] if same else [f"FP64 reference of the output ({t['name']} vs {o['name']}): {why}"]


def check_naming(t_paths, o_layers, scopes):
    """The naming rule must cover both models: every ONNX layer lies in a module scope of the
    module, and every torch layer's module holds at least one ONNX layer."""
    problems = []
    o_paths = {}
    for L in o_layers:
        p = onnx_module_path(L["name"], scopes)
        if p is None:
            problems.append(f"naming: ONNX layer {L['name']!r} maps to no module")
        o_paths.setdefault(p, []).append(L["name"])
    for name, (path, _) in t_paths.items():
        if path not in o_paths:
            problems.append(f"naming: torch layer {name!r} (module {path or '<root>'}) has no "
                            f"ONNX layer in its module")
    return problems


# --- naming ---------------------------------------------------------------------------------

def _onnx_scope_atom(qualified):
    """torch.onnx's name for a module in a node's scope: its qualified name from the last
    non-numeric atom on ('layer1.0' -> 'layer1.0', 'layer1.0.conv1' -> 'conv1')."""
    atoms = qualified.split(".")
    for i in range(len(atoms) - 1, -1, -1):
        if not atoms[i].isnumeric():
            return ".".join(atoms[i:])
    return qualified


def onnx_scopes(module):
    """{'/layer1/layer1.0/conv1': 'layer1.0.conv1', ...; '': ''} over module.named_modules()."""
    names = {q for q, _ in module.named_modules()}
    scopes = {"": ""}
    for q in names - {""}:
        atoms = q.split(".")
        chain = [".".join(atoms[:i]) for i in range(1, len(atoms) + 1)]
        scopes["/" + "/".join(_onnx_scope_atom(c) for c in chain if c in names)] = q
    return scopes


def onnx_module_path(layer, scopes):
    """The module path of an ONNX layer (node name without its last component), or None."""
    if layer is None or "/" not in layer:
        return None
    return scopes.get(layer.rsplit("/", 1)[0])


_AT = re.compile(r"^call_module \S+ at '([^']*)'")
_IN = re.compile(r" in module '([^']*)'")


def torch_layer_paths(model_path, module):
    """{layer name: (module path, whole module?)} from the torch model file's `source`
    attributes; a layer without one falls back to its name: a module of named_modules() is a
    whole module, else the longest module prefix of the dotted name holds the call."""
    names = {q for q, _ in module.named_modules()}
    out = {}
    with h5py.File(model_path, "r") as f:
        for k in f["layers"]:
            a = f["layers"][k].attrs
            name = str(a["name"])
            src = str(a.get("source", ""))
            m = _AT.match(src)
            if m:
                out[name] = (m.group(1), True)
                continue
            m = _IN.search(src)
            if m:
                out[name] = (m.group(1), False)
            elif src:
                out[name] = ("", False)
            elif name in names:
                out[name] = (name, True)
            else:
                atoms = name.split(".")
                prefix = max((".".join(atoms[:i]) for i in range(len(atoms))
                              if ".".join(atoms[:i]) in names), key=len)
                out[name] = (prefix, False)
    return out


def same_values(a, b, rel=1e-6):
    """Whether two report layers carry the same FP64 reference output, by its statistics:
    count, min, max and mean within `rel` of its RMS, sum of squares within `rel` relative.
    (Not tighter: an exported graph may hold float32 literals where the torch op has exact ones;
    see check_reference.) Returns (bool, why not)."""
    ca, cb = a["chained"], b["chained"]
    if ca["count"] != cb["count"]:
        return False, f"{ca['count']} vs {cb['count']} elements"
    ra, rb = ca["sums"]["ref2"], cb["sums"]["ref2"]
    tol = rel * max((ra / max(ca["count"], 1)) ** 0.5, 1e-300)
    for k in ("min", "max", "mean"):
        x, y = ca["reference"][k], cb["reference"][k]
        if x is None or y is None or not abs(x - y) <= tol:
            return False, f"{k} {x!r} vs {y!r}"
    if not abs(ra - rb) <= rel * max(ra, 1e-300):
        return False, f"sum of squares {ra!r} vs {rb!r}"
    return True, ""


def match_rule(t_name, o_name, t_layers, o_layers, t_paths, scopes):
    """(match, why) under the naming rule of the module docstring."""
    if t_name is None or o_name is None:
        return t_name is None and o_name is None, "" if t_name == o_name else "one side passes"
    if t_name not in t_paths:
        return False, f"torch layer {t_name!r} not in the model file"
    t_path, whole = t_paths[t_name]
    o_path = onnx_module_path(o_name, scopes)
    if o_path is None:
        return False, f"ONNX layer {o_name!r} is in no module scope of the module"
    if o_path != t_path:
        return False, f"modules differ: {t_path or '<root>'} vs {o_path or '<root>'}"
    if whole:
        return True, ""
    t = next((L for L in t_layers if L["name"] == t_name), None)
    o = next((L for L in o_layers if L["name"] == o_name), None)
    if t is None or o is None:
        return False, "a layer is missing from its report's layer list"
    same, why = same_values(t, o)
    if not same:
        return False, (f"in module {t_path or '<root>'}: torch {t['op']} and ONNX {o['op']} "
                       f"compute different values ({why})")
    return True, ""


# --- runs -----------------------------------------------------------------------------------

def run(binary, model, recording, report):
    if os.path.exists(report):
        os.remove(report)
    p = subprocess.run([binary, "run", "--model", model, "--recording", recording,
                        "--backend", "cpu", "--report", report, "--table", "none", "-q"],
                       capture_output=True, text=True)
    rep = json.load(open(report)) if os.path.exists(report) else None
    return p, rep


def first_name(v):
    return v.get("name") if isinstance(v, dict) else v


def modes_of(rep):
    return {m["mode"]: m for m in rep["modes"]}


def context(layers, name, paths, width=2):
    """The layers around `name` in a report (index, name, op, diverged), for a mismatch."""
    idx = next((i for i, L in enumerate(layers) if L["name"] == name), None)
    if idx is None:
        return []
    lo, hi = max(0, idx - width), min(len(layers), idx + width + 1)
    return [f"#{L.get('index', i)} {L['name']} ({L['op']}, module {paths(L['name'])!r})"
            f"{' DIVERGED' if L.get('diverged') else ''}"
            for i, L in zip(range(lo, hi), layers[lo:hi])]


def check(binary, work, name):
    """Returns (rows, problems): rows (mode, torch answer, ONNX answer, match, why)."""
    module, batches, input_names = make_examples.EXAMPLES[name]()
    module.eval()
    base = os.path.join(work, name)
    t_model, t_rec = base + ".model.h5", base + ".recording.h5"
    o_model, o_rec = base + ".onnx", base + ".onnx.recording.h5"
    capture_torch.capture(module, batches, t_model, t_rec, input_names=input_names,
                          record_activations=False, name=name,
                          source=f"pytorch {torch.__version__}, cpu "
                                 f"(tests/python/test_onnx_same_analysis.py)")
    try:
        export_onnx(module, batches[0], input_names, o_model)
    except Exception as e:  # noqa: BLE001 - reported as the example's failure
        return [], [f"torch.onnx.export failed: {type(e).__name__}: "
                    f"{str(e).strip().splitlines()[0]}"]
    problems = check_graph(module, o_model, batches, input_names)
    capture_onnx.capture(o_model, [{n: t.numpy() for n, t in zip(input_names, b)}
                                   for b in batches], o_rec, activations=False)
    pt, rt = run(binary, t_model, t_rec, base + ".torch.report.json")
    po, ro = run(binary, o_model, o_rec, base + ".onnx.report.json")
    for side, p, r in (("torch", pt, rt), ("ONNX", po, ro)):
        if p.returncode not in (0, 1) or r is None:
            problems.append(f"{side} run exit {p.returncode}: {p.stderr.strip()[-400:]}")
    if problems and (rt is None or ro is None):
        return [], problems
    if pt.returncode != po.returncode:
        problems.append(f"exit codes differ: torch {pt.returncode}, ONNX {po.returncode}")
    t_paths = torch_layer_paths(t_model, module)
    scopes = onnx_scopes(module)
    tm, om = modes_of(rt), modes_of(ro)
    problems += check_reference(rt, ro)
    if "fp32" in om:
        problems += check_naming(t_paths, om["fp32"]["layers"], scopes)
    rows = []
    for mode in MODES:
        if mode not in tm or mode not in om:
            problems.append(f"{mode}: missing from a report")
            continue
        t = first_name(tm[mode].get("first_divergent_layer"))
        o = first_name(om[mode].get("first_divergent_layer"))
        ok, why = match_rule(t, o, tm[mode]["layers"], om[mode]["layers"], t_paths, scopes)
        rows.append((mode, t, o, ok, why))
        if not ok:
            problems.append(f"{mode}: torch {t!r} vs ONNX {o!r}: {why}")
            tctx = context(tm[mode]["layers"], t, lambda n: t_paths.get(n, ("?",))[0])
            octx = context(om[mode]["layers"], o, lambda n: onnx_module_path(n, scopes))
            for side, lines in (("torch", tctx), ("ONNX", octx)):
                for line in lines:
                    problems.append(f"    {side}: {line}")
    return rows, problems


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    binary, work = argv[1], argv[2]
    names = argv[3:] or EXAMPLES
    unknown = [n for n in names if n not in make_examples.EXAMPLES]
    if unknown:
        print(f"unknown example(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    os.makedirs(work, exist_ok=True)
    torch.set_num_threads(1)
    failed = 0
    print(f"{'example':28s} {'mode':6s} {'torch-captured':22s} {'ONNX':34s} match", flush=True)
    for name in names:
        rows, problems = check(binary, work, name)
        for mode, t, o, ok, why in rows:
            print(f"{name:28s} {mode:6s} {t or 'none':22s} {o or 'none':34s} "
                  f"{'yes' if ok else 'NO (' + why + ')'}", flush=True)
        if problems:
            failed += 1
            print(f"FAIL {name}:", flush=True)
            for p in problems:
                print(f"  {p}", flush=True)
    print(f"{len(names) - failed}/{len(names)} examples give the same analysis", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
