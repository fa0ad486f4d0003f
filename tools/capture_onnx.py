"""capture_onnx -- ONNX model + input batches -> divscope recording (recording.h5).

docs/format.md (the recording) is the contract this file implements. Run it with the test venv
(.venv-test/bin/python, made by tools/deps_python.sh: onnx and onnxruntime); torch is not needed.

    .venv-test/bin/python tools/capture_onnx.py MODEL.onnx --out REC.h5
        [--inputs FILE.npz|FILE.npy ...] [--batch-size B]
        [--random BATCHES [--batch-size B] [--seed S] [--int-range NAME=V ...] [--dim PARAM=SIZE ...]]
        [--batch-axis NAME=K ...] [--activations] [--source TEXT]

Inputs. The graph inputs are those of graph.input that are not initializers (old exporters list
the weights as inputs too). Each input's batch axis is --batch-axis NAME=K, else the first dim
whose dim_param contains "batch" (any case), else 0. The data come from

  --inputs FILE.npz   keys = graph input names, every input present; each array holds all the
                      samples in the model's own layout, split into batches of --batch-size
                      along the input's batch axis (without --batch-size: one batch per file);
  --inputs FILE.npy   the same for a model with one input;
  --random BATCHES    seeded data (--seed, default 0): float inputs N(0, 1), integer inputs
                      uniform in [0, V), V from --int-range NAME=V (default 2); dims the graph
                      leaves dynamic, other than the batch, from --dim PARAM=SIZE (a dim_param
                      name, or INPUT:K for an unnamed dim K of INPUT). --batch-size defaults to
                      the model's fixed batch size, else 1.

The recording always stores each input batch-first (/batches/NNNNNN/<input>, [N, rest...]):
float inputs as float32 (what ONNX Runtime was given, in the input's own type, converted
exactly), integer and bool inputs as int64. Dynamic non-batch dims take the size of the data; a
model with a fixed batch dim (exported with batch 1, say) is run by ONNX Runtime in chunks of
that size, so any recording batch that is a multiple of it works (others are an error).

--activations: every float value ONNX Runtime computes -- every output of a top-level node whose
type (from the graph, or onnx.shape_inference where the graph does not say) is tensor(float),
graph outputs included -- is made a graph output of an in-memory copy of the model, which runs
with graph optimizations disabled (ORT_DISABLE_ALL: the graph's own values, not fused ones).
Each is stored as /batches/NNNNNN/activations/<value name without its leading '/'>, so
'/layer1/layer1.0/conv1/Conv_output_0' becomes the nested groups
activations/layer1/layer1.0/conv1/ and the dataset Conv_output_0: float32, in the value's own
ONNX shape (the batch is not moved), gzip'ed, with the string attribute `name` = the exact ONNX
value name. Groups keep creation order (the graph's node order). Values whose paths would
collide ('/a' and 'a', or 'a' and 'a/b') or that HDF5 cannot name (an empty, '.' or '..' part)
are skipped with a note on stderr. In a chunked run a value whose dim 0 is not the chunk size
(its batch axis unknown) is skipped with a note; values that do not depend on the inputs are
taken from the first chunk.

Root attributes: divscope_format "recording", divscope_version 2, source, created and
capture_environment: the environment record of tools/env_record.py (docs/format.md: host, CPU,
GPUs as the CUDA driver reports them, OS, installed ML libraries, environment variables), with
ONNX Runtime's settings as its flags and, under `capture`, the model file's name, sha256, IR
version, opsets and producer.

Errors: one line "capture_onnx: <file>: <what>" on stderr, exit 2; no partial recording is left.

From Python (tests):
    capture_onnx.run_ort(model_path, feeds)            # feeds in the model's layout
        -> {value name: float array} (graph outputs and every recorded float value)
    capture_onnx.capture(model_path, batches, out, activations=True)
        batches: a list of dicts input name -> array, batch-first per input
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import sys
import tempfile

import h5py
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import env_record  # noqa: E402

FORMAT_VERSION = 2
_LIBVER = ("v108", "latest")   # as capture_torch.py: compact groups
# A model above this size is handed to ONNX Runtime as a file with external data (protobuf's
# limit is 2 GiB).
_PROTO_LIMIT = 1_800_000_000

_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)
_INT_TYPES = (TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64,
              TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64,
              TensorProto.BOOL)
_RESERVED = ("activations", "run_activations")


class CaptureError(Exception):
    """One line: 'capture_onnx: <file>: <what>'."""


def _err(file, what):
    return CaptureError(f"capture_onnx: {file}: {what}")


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


def _note(msg):
    print(f"capture_onnx: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# The model

def load_model(path):
    if not os.path.isfile(path):
        raise _err(path, "no such file")
    try:
        return onnx.load(path)
    except Exception as e:
        raise _err(path, f"not a readable ONNX model: {_first_line(e)}") from e


class InputSpec:
    """A graph input: name, ONNX element type, dims (int, dim_param string, or None when
    unknown) in the model's layout, batch axis, and the kind divscope records ("float" or
    "int")."""

    def __init__(self, name, elem, dims, axis):
        self.name, self.elem, self.dims, self.axis = name, elem, dims, axis
        self.kind = "float" if elem in _FLOAT_TYPES else "int"
        self.np_dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)

    @property
    def fixed_batch(self):
        d = self.dims[self.axis]
        return d if isinstance(d, int) else None

    def per_sample(self):
        """Dims batch-first with the batch removed."""
        return self.dims[:self.axis] + self.dims[self.axis + 1:]


def graph_inputs(model, path, batch_axes=None):
    g = model.graph
    inits = {t.name for t in g.initializer} | {t.values.name for t in g.sparse_initializer}
    specs = []
    for vi in g.input:
        if vi.name in inits:
            continue
        t = vi.type
        if t.WhichOneof("value") != "tensor_type":
            raise _err(path, f"input '{vi.name}' is not a tensor")
        elem = t.tensor_type.elem_type
        if elem not in _FLOAT_TYPES + _INT_TYPES:
            raise _err(path, f"input '{vi.name}' has element type "
                             f"{TensorProto.DataType.Name(elem)} (float, double, float16, "
                             "integer or bool inputs only)")
        if not t.tensor_type.HasField("shape"):
            raise _err(path, f"input '{vi.name}' has no shape (unknown rank)")
        dims = []
        for d in t.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param if d.HasField("dim_param") and d.dim_param else None)
        if not dims:
            raise _err(path, f"input '{vi.name}' is a scalar (it has no batch axis)")
        if "/" in vi.name or vi.name in (".", "..") or vi.name in _RESERVED:
            raise _err(path, f"input name '{vi.name}' cannot be a dataset of a recording's batch "
                             "group")
        axis = None
        if batch_axes and vi.name in batch_axes:
            axis = batch_axes[vi.name]
            if not -len(dims) <= axis < len(dims):
                raise _err(path, f"--batch-axis {vi.name}={axis}: the input has rank {len(dims)}")
            axis %= len(dims)
        else:
            axis = next((k for k, d in enumerate(dims)
                         if isinstance(d, str) and "batch" in d.lower()), 0)
        specs.append(InputSpec(vi.name, elem, dims, axis))
    if not specs:
        raise _err(path, "the graph has no inputs (every input is an initializer)")
    for n in batch_axes or {}:
        if n not in [s.name for s in specs]:
            raise _err(path, f"--batch-axis {n}: no graph input '{n}' "
                             f"(inputs: {', '.join(s.name for s in specs)})")
    return specs


def _value_types(model, path):
    """Element type of every value the graph or shape inference knows."""
    types = {}
    try:
        if model.ByteSize() > _PROTO_LIMIT:
            with tempfile.TemporaryDirectory() as d:
                src, dst = os.path.join(d, "m.onnx"), os.path.join(d, "i.onnx")
                onnx.save(model, src, save_as_external_data=True)
                onnx.shape_inference.infer_shapes_path(src, dst)
                inferred = onnx.load(dst, load_external_data=False)
        else:
            inferred = onnx.shape_inference.infer_shapes(model, check_type=False,
                                                         strict_mode=False, data_prop=True)
    except Exception as e:
        _note(f"{path}: shape inference failed ({_first_line(e)}); only the graph's own "
              "value_info gives types")
        inferred = model
    for src in (inferred, model):
        for vi in list(src.graph.value_info) + list(src.graph.output) + list(src.graph.input):
            if vi.type.WhichOneof("value") == "tensor_type" and vi.type.tensor_type.elem_type:
                types.setdefault(vi.name, vi.type.tensor_type.elem_type)
    for t in model.graph.initializer:
        types.setdefault(t.name, t.data_type)
    return types


def _input_dependent(model, input_names):
    """Values computed from a graph input (through data or shapes)."""
    dep = set(input_names)
    for node in model.graph.node:
        if any(i in dep for i in node.input if i):
            dep.update(o for o in node.output if o)
    return dep


# --------------------------------------------------------------------------------------------
# Running ONNX Runtime

EXECUTION_PROVIDER = "CPUExecutionProvider"


def session_options():
    """ONNX Runtime's session options for every run (and what capture_environment records):
    graph optimizations disabled, ONNX Runtime's own thread count."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    return opts


class OrtRunner:
    """An ONNX Runtime CPU session over a copy of the model whose float node outputs are graph
    outputs (with activations), graph optimizations disabled."""

    def __init__(self, model_path, activations=True, batch_axes=None, model=None):
        self.path = model_path
        model = load_model(model_path) if model is None else model
        self.inputs = graph_inputs(model, model_path, batch_axes)
        fixed = {s.fixed_batch for s in self.inputs} - {None}
        if len(fixed) > 1:
            raise _err(model_path, "the inputs have different fixed batch sizes "
                                   f"{sorted(fixed)} (--batch-axis names the batch axis)")
        self.chunk = fixed.pop() if fixed else None
        self.dependent = _input_dependent(model, [s.name for s in self.inputs])
        g = model.graph
        graph_outputs = [o.name for o in g.output]
        produced = {o for node in g.node for o in node.output if o}
        if activations:
            types = _value_types(model, model_path)
            names, unknown, seen = [], [], set()
            for node in g.node:
                for o in node.output:
                    if not o or o in seen:
                        continue
                    seen.add(o)
                    t = types.get(o)
                    if t is None:
                        unknown.append(o)
                    elif t == TensorProto.FLOAT:
                        names.append(o)
            if unknown:
                _note(f"{model_path}: {len(unknown)} value(s) of unknown type not recorded: "
                      + ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else ""))
        else:
            types = {o.name: o.type.tensor_type.elem_type for o in g.output}
            names = [o for o in graph_outputs if o in produced and types.get(o) == TensorProto.FLOAT]
        self.names = names   # recorded values, in node order
        run_model = onnx.ModelProto()
        run_model.CopyFrom(model)
        extra = [n for n in names if n not in graph_outputs]
        run_model.graph.output.extend(
            onnx.helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in extra)
        self.fetch = names
        opts = session_options()
        self._tmp = None
        try:
            if run_model.ByteSize() > _PROTO_LIMIT:
                self._tmp = tempfile.TemporaryDirectory()
                p = os.path.join(self._tmp.name, "model.onnx")
                onnx.save(run_model, p, save_as_external_data=True)
                self.session = ort.InferenceSession(p, opts, providers=[EXECUTION_PROVIDER])
            else:
                self.session = ort.InferenceSession(run_model.SerializeToString(), opts,
                                                    providers=[EXECUTION_PROVIDER])
        except Exception as e:
            raise _err(model_path, f"ONNX Runtime cannot load the model: {_first_line(e)}") from e
        self._notes = set()

    def check_feeds(self, feeds, where=None):
        """feeds: input name -> array in the model's layout. Returns (arrays in the inputs'
        own dtypes, batch size N). Raises CaptureError naming `where` (default the model)."""
        return check_feeds(self.inputs, self.chunk, feeds, where or self.path)

    def _run1(self, feeds):
        try:
            vals = self.session.run(self.fetch, feeds)
        except Exception as e:
            raise _err(self.path, f"ONNX Runtime failed: {_first_line(e)}") from e
        return dict(zip(self.fetch, vals))

    def run(self, feeds, where=None):
        """Value name -> float32 array for the recorded values (in node order)."""
        feeds, n = self.check_feeds(feeds, where)
        c = self.chunk
        if c is None or n == c:
            return self._run1(feeds)
        parts = []
        for i in range(0, n, c):
            parts.append(self._run1({s.name: np.take(feeds[s.name], range(i, i + c), axis=s.axis)
                                     for s in self.inputs}))
        out = {}
        for name in self.fetch:
            first = parts[0][name]
            if name not in self.dependent:
                out[name] = first
            elif first.ndim and first.shape[0] == c:
                out[name] = np.concatenate([p[name] for p in parts], axis=0)
            elif name not in self._notes:
                self._notes.add(name)
                _note(f"{self.path}: '{name}' not recorded: the model runs in chunks of its fixed "
                      f"batch {c} and the value's shape {list(first.shape)} does not start with it")
        return out


def check_feeds(specs, chunk, feeds, where):
    """feeds: input name -> array in the model's layout. Returns (arrays in the inputs'
    own dtypes, batch size N). Raises CaptureError naming `where`."""
    names = [s.name for s in specs]
    for k in feeds:
        if k not in names:
            raise _err(where, f"'{k}' is not an input of the graph (inputs: {', '.join(names)})")
    out, n = {}, None
    for s in specs:
        if s.name not in feeds:
            raise _err(where, f"no data for input '{s.name}'")
        a = np.asarray(feeds[s.name])
        if a.ndim != len(s.dims):
            raise _err(where, f"input '{s.name}' has shape {list(a.shape)}, the graph's is "
                              f"{_dims_text(s.dims)} (rank {len(s.dims)})")
        for k, d in enumerate(s.dims):
            if k != s.axis and isinstance(d, int) and a.shape[k] != d:
                raise _err(where, f"input '{s.name}' has shape {list(a.shape)}, the graph's "
                                  f"is {_dims_text(s.dims)}")
        nb = a.shape[s.axis]
        if n is None:
            n = nb
        elif nb != n:
            raise _err(where, f"input '{s.name}' has {nb} samples along its batch axis "
                              f"{s.axis}, another input has {n}")
        if s.kind == "int":
            if a.dtype.kind not in "iub":
                raise _err(where, f"input '{s.name}' is {TensorProto.DataType.Name(s.elem)} "
                                  f"but the data are {a.dtype}")
        elif a.dtype.kind not in "iubf":
            raise _err(where, f"input '{s.name}' has data of type {a.dtype}")
        out[s.name] = a.astype(s.np_dtype, copy=False)
    if n == 0:
        raise _err(where, "a batch has no samples")
    if chunk is not None and n % chunk:
        raise _err(where, f"a batch of {n} samples is not a multiple of the model's fixed "
                          f"batch size {chunk}")
    return out, n


def _dims_text(dims):
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def run_ort(model_path, feeds, activations=True, batch_axes=None):
    """Runs the model on `feeds` (input name -> array, in the model's own layout) with ONNX
    Runtime on the CPU, graph optimizations disabled. Returns value name -> array: the float
    graph outputs and, with activations, every float node output."""
    return OrtRunner(model_path, activations, batch_axes).run(feeds)


# --------------------------------------------------------------------------------------------
# The recording

def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def environment(model_path=None, model=None, activations=None):
    """The capturing machine's environment record (tools/env_record.py; docs/format.md,
    capture_environment), with ONNX Runtime's settings and, under `capture`, the model."""
    opts = session_options()
    flags = {"onnxruntime.graph_optimization_level": str(opts.graph_optimization_level).split(".")[-1],
             "onnxruntime.execution_provider": EXECUTION_PROVIDER,
             "onnxruntime.intra_op_num_threads": opts.intra_op_num_threads or None}
    info = {"framework": "onnxruntime", "platform": platform.platform()}
    if activations is not None:
        info["activations"] = bool(activations)
    if model_path is not None:
        m = {"file": os.path.basename(model_path)}
        try:
            m["sha256"] = _sha256(model_path)
        except OSError:
            pass
        if model is not None:
            m["ir_version"] = int(model.ir_version)
            m["opset_import"] = {o.domain or "ai.onnx": int(o.version) for o in model.opset_import}
            if model.producer_name:
                m["producer"] = (model.producer_name + " " + model.producer_version).strip()
        info["model"] = m
    return env_record.build("capture_onnx.py", flags, None, info)


def activation_paths(names, where="model"):
    """Value name -> HDF5 path under activations/ (the name without its leading '/'); values
    HDF5 cannot name or whose paths collide are left out with a note on stderr."""
    paths, bad = {}, []
    for n in names:
        p = n[1:] if n.startswith("/") else n
        parts = p.split("/")
        if not p or "\0" in p or any(c in ("", ".", "..") for c in parts):
            bad.append(n)
        else:
            paths[n] = p
    if bad:
        _note(f"{where}: not recorded, HDF5 cannot name: " + ", ".join(repr(b) for b in bad))
    by_path = {}
    for n, p in paths.items():
        by_path.setdefault(p, []).append(n)
    groups = {"/".join(p.split("/")[:k]) for p in by_path for k in range(1, p.count("/") + 1)}
    clash = set()
    for p, ns in by_path.items():
        if len(ns) > 1 or p in groups:
            clash.update(ns)
    for p in groups & set(by_path):   # 'a' and 'a/b': the deeper ones too
        clash.update(n for q, ns in by_path.items() if q.startswith(p + "/") for n in ns)
    if clash:
        _note(f"{where}: not recorded, the names collide after stripping '/': "
              + ", ".join(sorted(clash)))
    return {n: p for n, p in paths.items() if n not in clash}


def _group(root, path, cache):
    g = cache.get(path)
    if g is None:
        parent, _, leaf = path.rpartition("/")
        base = _group(root, parent, cache) if parent else root
        g = base.create_group(leaf, track_order=True)
        cache[path] = g
    return g


def _write_activations(g, values, paths):
    cache = {}
    for name, p in paths.items():
        if name not in values:
            continue
        a = np.asarray(values[name], dtype=np.float32)
        parent, _, leaf = p.rpartition("/")
        base = _group(g, parent, cache) if parent else g
        z = a.ndim > 0 and a.size > 0
        d = base.create_dataset(leaf, data=a, compression="gzip" if z else None,
                                compression_opts=1 if z else None, shuffle=z)
        d.attrs["name"] = name


def capture(model_path, batches, out, activations=True, batch_axes=None, source=None):
    """Writes the recording `out` for `batches` (a list of dicts input name -> array, each
    batch-first: [N, rest...] with the batch moved to the front) with, when `activations`,
    every float value ONNX Runtime computes. Returns the list of recorded value names (those
    stored in the first batch). Raises CaptureError."""
    model = load_model(model_path)
    runner = OrtRunner(model_path, activations, batch_axes, model) if activations else None
    specs = runner.inputs if runner else graph_inputs(model, model_path, batch_axes)
    batches = list(batches)
    if not batches:
        raise _err(model_path, "no batches to record")
    paths = activation_paths(runner.names, model_path) if runner else {}
    fixed = {s.fixed_batch for s in specs} - {None}
    if len(fixed) > 1:
        raise _err(model_path, f"the inputs have different fixed batch sizes {sorted(fixed)}")
    chunk = fixed.pop() if fixed else None
    if source is None:
        source = (f"onnxruntime {ort.__version__}, cpu, graph optimizations disabled, "
                  f"{os.path.basename(model_path)}")
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise _err(out, "the directory does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".capture_onnx.", suffix=".h5", dir=out_dir)
    os.close(fd)
    stored = None
    try:
        with h5py.File(tmp, "w", libver=_LIBVER) as f:
            f.attrs["divscope_format"] = "recording"
            f.attrs["divscope_version"] = np.int64(FORMAT_VERSION)
            f.attrs["source"] = str(source)
            f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).replace(
                microsecond=0).isoformat()
            f.attrs["capture_environment"] = json.dumps(
                environment(model_path, model, activations=activations))
            gb = f.create_group("batches")
            progress = sys.stderr.isatty() and len(batches) > 1
            for bi, b in enumerate(batches):
                if progress:
                    print(f"\rcapture_onnx: recording batch {bi + 1}/{len(batches)}", end="",
                          file=sys.stderr, flush=True)
                where = f"{model_path}: batch {bi}"
                first = _batch_first_to_model(specs, b, where)
                if runner:
                    feeds, n = runner.check_feeds(first, where)
                else:
                    feeds, n = check_feeds(specs, chunk, first, where)
                g = gb.create_group(f"{bi:06d}")
                for s in specs:
                    a = np.moveaxis(feeds[s.name], s.axis, 0)
                    g.create_dataset(s.name, data=a.astype(np.float32 if s.kind == "float"
                                                           else np.int64))
                if runner:
                    values = runner.run(feeds, where)
                    ga = g.create_group("activations", track_order=True)
                    _write_activations(ga, values, paths)
                    if stored is None:
                        stored = [n for n in paths if n in values]
            if progress:
                print(file=sys.stderr)
        os.replace(tmp, out)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return stored or []


def _batch_first_to_model(specs, batch, where):
    """A batch-first dict -> the model's layout (the batch axis moved back)."""
    if not isinstance(batch, dict):
        raise _err(where, "a batch must be a dict input name -> array")
    names = [s.name for s in specs]
    for k in batch:
        if k not in names:
            raise _err(where, f"'{k}' is not an input of the graph (inputs: {', '.join(names)})")
    out = {}
    for s in specs:
        if s.name not in batch:
            raise _err(where, f"no data for input '{s.name}'")
        a = np.asarray(batch[s.name])
        if a.ndim != len(s.dims):
            raise _err(where, f"input '{s.name}' has shape {list(a.shape)} (batch first), the "
                              f"graph's is {_dims_text(s.dims)} with batch axis {s.axis}")
        out[s.name] = np.moveaxis(a, 0, s.axis)
    return out


# --------------------------------------------------------------------------------------------
# Command line

def _kv(items, flag, where):
    out = {}
    for it in items or []:
        k, sep, v = it.rpartition("=")
        if not sep or not k:
            raise _err(where, f"{flag} {it}: expected NAME=VALUE")
        try:
            out[k] = int(v)
        except ValueError:
            raise _err(where, f"{flag} {it}: '{v}' is not an integer") from None
    return out


def _split(arrays, specs, batch_size, where):
    """Arrays in the model's layout holding all samples -> batch-first batches."""
    n = {a.shape[s.axis] if a.ndim > s.axis else None for s, a in zip(specs, arrays)}
    if None in n:
        raise _err(where, "an array has fewer dims than its input's batch axis")
    if len(n) != 1:
        raise _err(where, f"the inputs hold different numbers of samples {sorted(n)}")
    n = n.pop()
    if n == 0:
        raise _err(where, "no samples")
    bs = batch_size or n
    out = []
    for i in range(0, n, bs):
        out.append({s.name: np.moveaxis(np.take(a, range(i, min(i + bs, n)), axis=s.axis),
                                        s.axis, 0) for s, a in zip(specs, arrays)})
    return out


def _load_inputs(files, specs, batch_size):
    batches = []
    for path in files:
        if not os.path.isfile(path):
            raise _err(path, "no such file")
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as e:
            raise _err(path, f"not a NumPy .npy/.npz file: {_first_line(e)}") from e
        names = [s.name for s in specs]
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                keys = list(data.keys())
                for k in keys:
                    if k not in names:
                        raise _err(path, f"'{k}' is not an input of the graph "
                                         f"(inputs: {', '.join(names)})")
                for s in specs:
                    if s.name not in keys:
                        raise _err(path, f"no array for input '{s.name}'")
                arrays = [data[s.name] for s in specs]
        else:
            if len(specs) != 1:
                raise _err(path, f"a .npy file holds one array; the model has {len(specs)} inputs "
                                 f"({', '.join(names)}): use a .npz")
            arrays = [data]
        for s, a in zip(specs, arrays):
            if a.ndim != len(s.dims) or any(
                    k != s.axis and isinstance(d, int) and a.shape[k] != d
                    for k, d in enumerate(s.dims)):
                raise _err(path, f"input '{s.name}' has shape {list(a.shape)}, the graph's is "
                                 f"{_dims_text(s.dims)}")
            if a.dtype.kind not in "iubf":
                raise _err(path, f"input '{s.name}' has data of type {a.dtype}")
        batches += _split(arrays, specs, batch_size, path)
    return batches


def _random_batches(specs, count, batch_size, seed, int_range, dims, where):
    rng = np.random.default_rng(seed)
    for k in int_range:
        if k not in [s.name for s in specs]:
            raise _err(where, f"--int-range {k}: no graph input '{k}'")
    shapes = []
    for s in specs:
        shape = []
        for k, d in enumerate(s.dims):
            if k == s.axis:
                shape.append(None)
            elif isinstance(d, int):
                shape.append(d)
            else:
                key = d if d is not None else f"{s.name}:{k}"
                if key not in dims:
                    raise _err(where, f"input '{s.name}' dim {k} ({key}) is dynamic: give "
                                      f"--dim {key}=SIZE")
                shape.append(dims[key])
        shapes.append(shape)
    out = []
    for _ in range(count):
        b = {}
        for s, shape in zip(specs, shapes):
            full = [batch_size if d is None else d for d in shape]
            if s.kind == "float":
                a = rng.standard_normal(full).astype(np.float32)
            else:
                v = int_range.get(s.name, 2)
                if v < 1:
                    raise _err(where, f"--int-range {s.name}={v}: must be at least 1")
                a = rng.integers(0, v, size=full, dtype=np.int64)
            b[s.name] = np.moveaxis(a, s.axis, 0)
        out.append(b)
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # usage errors: one line too, exit 2
        print(f"capture_onnx: usage: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def main(argv=None):
    ap = _Parser(
        prog="capture_onnx.py", description="ONNX model + inputs -> divscope recording "
        "(docs/format.md), optionally with every float value ONNX Runtime computes.")
    ap.add_argument("model", help="the .onnx file")
    ap.add_argument("--out", required=True, help="the recording to write (.h5)")
    ap.add_argument("--inputs", nargs="+", metavar="FILE",
                    help=".npz (keys = graph input names) or .npy (one-input models), the model's "
                         "layout; each file's samples split into batches of --batch-size")
    ap.add_argument("--random", type=int, metavar="BATCHES", help="this many batches of seeded "
                    "random data (float N(0,1), integers uniform in [0, V))")
    ap.add_argument("--batch-size", type=int, metavar="B")
    ap.add_argument("--seed", type=int, default=0, metavar="S")
    ap.add_argument("--int-range", action="append", metavar="NAME=V",
                    help="integer input NAME uniform in [0, V) with --random (default V = 2)")
    ap.add_argument("--dim", action="append", metavar="PARAM=SIZE",
                    help="size of a dynamic non-batch dim (dim_param, or INPUT:K) with --random")
    ap.add_argument("--batch-axis", action="append", metavar="NAME=K",
                    help="input NAME's batch axis (default: the first dim whose dim_param "
                         "contains 'batch', else 0)")
    ap.add_argument("--activations", action="store_true",
                    help="record every float value ONNX Runtime computes (and the outputs)")
    ap.add_argument("--source", help="free text for the recording's source attribute")
    args = ap.parse_args(argv)
    try:
        batch_axes = _kv(args.batch_axis, "--batch-axis", args.model)
        model = load_model(args.model)
        specs = graph_inputs(model, args.model, batch_axes)
        if (args.inputs is None) == (args.random is None):
            raise _err(args.model, "give either --inputs FILE... or --random BATCHES")
        if args.batch_size is not None and args.batch_size < 1:
            raise _err(args.model, f"--batch-size {args.batch_size}: must be at least 1")
        if args.inputs is not None:
            batches = _load_inputs(args.inputs, specs, args.batch_size)
        else:
            if args.random < 1:
                raise _err(args.model, f"--random {args.random}: must be at least 1")
            fixed = [s.fixed_batch for s in specs if s.fixed_batch]
            bs = args.batch_size or (fixed[0] if fixed else 1)
            batches = _random_batches(specs, args.random, bs, args.seed,
                                      _kv(args.int_range, "--int-range", args.model),
                                      _kv(args.dim, "--dim", args.model), args.model)
        names = capture(args.model, batches, args.out, args.activations, batch_axes, args.source)
    except CaptureError as e:
        print(_first_line(e), file=sys.stderr)
        return 2
    except OSError as e:   # writing the recording
        print(f"capture_onnx: {args.out}: {_first_line(e)}", file=sys.stderr)
        return 2
    n = sum(b[specs[0].name].shape[0] for b in batches)
    print(f"capture_onnx: {args.out}: {len(batches)} batch(es), {n} sample(s)"
          + (f", {len(names)} value(s) per batch" if args.activations else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
