#!/usr/bin/python3
"""capture_torch -- PyTorch module -> divscope HDF5 (model.h5 + recording.h5).

docs/format.md (files) and docs/ops.md (ops) are the contract this file implements.

    import capture_torch
    capture_torch.capture(module, [batch0, batch1, ...], "m.model.h5", "m.recording.h5",
                          input_names=["x"], record_activations=True)

Each batch is a tuple/list of tensors (or a dict name -> tensor), one per graph input, with
the batch on axis 0 unless `batch_axes={"src": 1}` says otherwise (seq-first models). The
module is traced with torch.fx while it runs on the first batch in float64 (capture_trace.py:
Python decisions on shapes, `B, T, C = x.size()`, asserts, work), every node is mapped to
divscope layers (capture_ops.py, capture_modules.py) batch-first whatever the model's layout
(capture_values.py), values that do not depend on the inputs (parameters, buffers, aranges,
masks, scalars) are folded into constants, ops that are the identity at inference (dropout,
stochastic depth, asserts, contiguous) are dropped. A node that cannot be mapped raises
CaptureError naming the node, its target and its module path.

Options: `concrete_args` (torch.fx's), `trace_fn` (a function module -> torch.fx.GraphModule,
e.g. transformers.utils.fx.symbolic_trace; Hugging Face models use it automatically),
`record_run` (also record the activations of the model exactly as given -- its dtype, device,
autocast and TF32 flags -- beside the float64 oracle's).

torch 1.13 has neither F.scaled_dot_product_attention nor nn.RMSNorm; models can use
divscope_sdpa(), divscope_rmsnorm() and the RMSNorm module below, which the tracer keeps as
single nodes. The torch versions are mapped too when the installed torch has them.

CLI: /usr/bin/python3 tools/capture_torch.py --example NAME --out-dir DIR
     (NAME: an example from data/make_examples.py). Errors: one line on stderr, exit 2.
"""
import argparse
import contextlib
import copy
import datetime
import inspect
import json
import math
import os
import platform
import re
import sys

import h5py
import numpy as np
import torch
import torch.fx
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from capture_values import (CaptureError, Val, pair_runs, sample_slice, summarize,  # noqa: E402
                            to_divscope)
from capture_map import Mapper, tname  # noqa: E402
import capture_ops  # noqa: E402
import capture_modules  # noqa: E402
from capture_trace import ConcreteTracer, traced_through  # noqa: E402
from fx_compat import patched_fx  # noqa: E402
import env_record  # noqa: E402

FORMAT_VERSION = 2
# HDF5 1.8+ object format: compact groups, several times smaller files for many small layers.
_LIBVER = ("v108", "latest")
# --------------------------------------------------------------------------------------------
# Helpers that models can use on any torch version; the tracer keeps them as leaf nodes.

def divscope_sdpa(q, k, v, is_causal=False, scale=None):
    """Scaled dot-product attention, q/k/v [N, H, T, D] (F.scaled_dot_product_attention
    semantics without mask or dropout; causal mask is the top-left aligned lower triangle)."""
    d = q.shape[-1]
    s = (1.0 / math.sqrt(d)) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * s
    if is_causal:
        tq, tk = q.shape[-2], k.shape[-2]
        keep = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def divscope_rmsnorm(x, normalized_shape, weight=None, eps=1e-6):
    """RMS norm over the trailing len(normalized_shape) dims: x / sqrt(mean(x^2) + eps) * w."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    dims = tuple(range(-len(normalized_shape), 0))
    y = x * torch.rsqrt(torch.mean(x * x, dim=dims, keepdim=True) + eps)
    if weight is not None:
        y = y * weight
    return y


torch.fx.wrap("divscope_sdpa")
torch.fx.wrap("divscope_rmsnorm")


class RMSNorm(nn.Module):
    """RMSNorm module (nn.RMSNorm when absent). Traced as a leaf, captured as `rmsnorm`."""

    def __init__(self, normalized_shape, eps=1e-6, elementwise_affine=True):
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape))
        else:
            self.register_parameter("weight", None)

    def forward(self, x):
        return divscope_rmsnorm(x, self.normalized_shape, self.weight, self.eps)


_TORCH_RMSNORM = getattr(nn, "RMSNorm", None)
# Kept as one node while tracing: norms without a torch 1.13 version, and attention, which
# capture_modules.py writes out batch-first.
LEAVES = tuple(c for c in (RMSNorm, _TORCH_RMSNORM, nn.MultiheadAttention,
                           nn.TransformerEncoderLayer, nn.TransformerEncoder) if c is not None)
# torch.fx.wrap'ed library functions traced into (their bodies map op by op).
TRACE_INTO = ("_patch_merging_pad", "shifted_window_attention")


# --------------------------------------------------------------------------------------------
# Tracing and the two runs

def _is_hf(module):
    try:
        from transformers import PreTrainedModel
    except Exception:
        return False
    return isinstance(module, PreTrainedModel)


def _hf_trace(input_names):
    def f(module):
        from transformers.utils.fx import symbolic_trace
        return symbolic_trace(module, input_names=list(input_names))
    return f


def _as_batch(b, input_names=None):
    if isinstance(b, torch.Tensor):
        return (b,)
    if isinstance(b, dict):
        if input_names is None:
            return tuple(b.values())
        return tuple(b[n] for n in input_names)
    return tuple(b)


def _forward_params(module, concrete_args):
    params = list(inspect.signature(module.forward).parameters.values())
    return [p.name for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.name not in (concrete_args or {})]


def _to64(t):
    return t.detach().to("cpu", torch.float64) if t.is_floating_point() else t.detach().to("cpu")


def trace(module64, batch64, input_names, concrete_args=None, trace_fn=None):
    """GraphModule over the float64 copy, and the graph's placeholder names in order."""
    tracer = None
    try:
        with patched_fx():
            if trace_fn is not None:
                gm = trace_fn(module64)
            else:
                names = _forward_params(module64, concrete_args)
                tracer = ConcreteTracer(list(zip(names, batch64)) + list((concrete_args or {}).items()),
                                        LEAVES, (divscope_sdpa, divscope_rmsnorm))
                with traced_through(TRACE_INTO):
                    graph = tracer.trace(module64, concrete_args)
                gm = torch.fx.GraphModule(tracer.root, graph, module64.__class__.__name__)
    except CaptureError:
        raise
    except Exception as e:  # TraceError, data-dependent control flow, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        failed = tracer.first_error if trace_fn is None else None
        if failed is not None and not isinstance(failed[1], KeyError):
            node, err = failed
            msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CaptureError(f"capture_torch: {module64.__class__.__name__} fails on the example "
                               f"batch at node '{node.name}' ({node.op} {tname(node.target)}): "
                               f"{msg}") from e
        raise CaptureError(f"capture_torch: torch.fx cannot trace "
                           f"{module64.__class__.__name__}: {first}") from e
    concrete = set(concrete_args or {})
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder" and not (
        n.args and (n.target in concrete or re.sub(r"_\d+$", "", n.target) in concrete))]
    return gm, placeholders


class _Float64Run(torch.fx.Interpreter):
    """Runs the float64 copy of a model as the model itself: torch.finfo(float64) answers for
    the model's own dtype (Hugging Face masks with torch.finfo(dtype).min: -3.4e38 in a float32
    model, not float64's -1.8e308, which no float32 mode could hold)."""
    model_dtype = torch.float32

    def call_function(self, target, args, kwargs):
        if target is torch.finfo:
            args = tuple(self.model_dtype if a is torch.float64 else a for a in args)
            if kwargs.get("type") is torch.float64:
                kwargs = dict(kwargs, type=self.model_dtype)
        return super().call_function(target, args, kwargs)


class _Run(_Float64Run):
    """Runs the graph and summarizes every node (capture_values.NodeInfo); the values of nodes
    that do not depend on the inputs are kept (they become constants)."""

    def __init__(self, gm, batched):
        super().__init__(gm)
        self.batched, self.info = batched, {}

    def run_node(self, n):
        try:
            r = super().run_node(n)
        except CaptureError:
            raise
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CaptureError(f"capture_torch: the model fails on the example batch at node "
                               f"'{n.name}' ({n.op} {tname(n.target)}): {msg}") from e
        self.info[n.name] = summarize(r, keep=n.name not in self.batched)
        return r


def batched_nodes(gm, input_placeholders):
    """Nodes whose tensors depend on a recorded input (sizes do not count: torch.ones(x.shape)
    is the same for every sample)."""
    out = set(p.name for p in input_placeholders)
    for n in gm.graph.nodes:
        if n.op == "call_method" and n.target in _FACTORY_METHODS:
            continue   # x.new_zeros(shape): x lends only its dtype and device
        if n.op == "call_function" and n.target in _FACTORY_LIKE:
            continue   # torch.zeros_like(x): the same for every sample (batch-shaped)
        if n.op in ("call_function", "call_method", "call_module"):
            if any(a.name in out and not _is_size_node(a) for a in n.all_input_nodes):
                if not _is_size_node(n):
                    out.add(n.name)
    return out


_SIZE_METHODS = ("size", "dim", "numel", "nelement")
_FACTORY_METHODS = ("new_zeros", "new_ones", "new_full", "new_empty", "new_tensor")
_FACTORY_LIKE = tuple(getattr(torch, f) for f in ("zeros_like", "ones_like", "full_like", "empty_like"))


def _is_size_node(n):
    if n.op == "call_method" and n.target in _SIZE_METHODS:
        return True
    if n.op == "call_function" and n.target is getattr and len(n.args) > 1 and \
            n.args[1] in ("shape", "dtype", "device", "ndim", "is_cuda"):
        return True
    return bool(n.meta.get("divscope_size"))


def mark_sizes(gm):
    """Size arithmetic (x.size(0) // 2, shape[1:], ...) is not batched data."""
    for n in gm.graph.nodes:
        if _is_size_node(n):
            n.meta["divscope_size"] = True
        elif n.op in ("call_function", "call_method") and n.all_input_nodes and \
                all(a.meta.get("divscope_size") for a in n.all_input_nodes) and \
                (n.op == "call_function" and getattr(n.target, "__module__", "") in ("_operator", "builtins")):
            n.meta["divscope_size"] = True


def probe_batch(batch, axes):
    """The same inputs at another batch size: 1 sample when there are several, else 2."""
    out = []
    for t, ax in zip(batch, axes):
        n = t.shape[ax]
        out.append(t.narrow(ax, 0, 1) if n > 1 else torch.cat([t, t], dim=ax))
    return out


# --------------------------------------------------------------------------------------------
# Mapping

FUNCTIONS = capture_ops.FUNCTIONS + capture_modules.FUNCTIONS + [
    ([divscope_sdpa] + capture_ops.fns((torch.nn.functional, "scaled_dot_product_attention")),
     capture_modules.f_sdpa),
    ([divscope_rmsnorm] + capture_ops.fns((torch.nn.functional, "rms_norm")),
     capture_modules.f_norm("rmsnorm")),
    (capture_ops.fns((torch._C._nn, "gelu"),), capture_ops.gelu),
]
_DROP_FUNCTIONS = capture_ops.fns((torch, "_assert"))


def map_node(mp, node):
    mp.node = node
    if node.op == "call_module":
        return capture_modules.map_module(mp, mp.module(node.target))
    if node.op == "call_method":
        h = capture_ops.METHODS.get(node.target)
        if h is None:
            mp.fail("no divscope mapping for this method")
        return h(mp)
    t = node.target
    for targets, h in FUNCTIONS:
        if any(t is f for f in targets):
            return h(mp)
    mp.fail("no divscope mapping for this function")


def _fold(mp, node, inf):
    """A node that does not depend on the inputs: a constant (or a size, dtype, ...)."""
    if inf.kind == "tensor":
        axis, _ = inf.batch_axis() if inf.shape_small is not None and inf.shape != inf.shape_small else (None, None)
        v = inf.value
        if axis is not None:   # batch-shaped (torch.ones(x.shape)): one sample of it
            mp.node = node
            try:
                v = sample_slice(v, axis)
            except CaptureError as e:
                mp.fail(str(e))
        return Val("const", value=v, key=node.target if node.op == "get_attr" else node.name)
    if inf.kind == "seq":
        return Val("multi", items=[Val("const", value=i.value) for i in inf.items])
    return Val("other", value=inf.value)


@contextlib.contextmanager
def float64_exact():
    """The float64 oracle runs outside any autocast region the caller opened; the caller's
    settings apply to record_run only. (Autocast leaves float64 ops alone, but a model that
    casts to float32 itself, `x.float()`, would otherwise have that float32 autocast.)"""
    with torch.autocast("cpu", enabled=False):
        if torch.cuda.is_available():
            with torch.autocast("cuda", enabled=False):
                yield
        else:
            yield


def build(module, example_batches, input_names=None, batch_axes=None, concrete_args=None,
          trace_fn=None):
    with float64_exact():
        return _build(module, example_batches, input_names, batch_axes, concrete_args, trace_fn)


def _build(module, example_batches, input_names, batch_axes, concrete_args, trace_fn):
    """Trace and map: returns a Capture (layers, constants, inputs, graph modules)."""
    if not example_batches:
        raise CaptureError("capture_torch: need at least one example batch")
    module.eval()
    if trace_fn is None and _is_hf(module):
        if input_names is None:
            raise CaptureError("capture_torch: a Hugging Face model needs input_names=[...]")
        trace_fn = _hf_trace(input_names)
    batch0 = _as_batch(example_batches[0], input_names)
    module64 = copy.deepcopy(module).to("cpu").double().eval()
    batch64 = [_to64(t) for t in batch0]
    # The tracer keeps every value until it is done: it gets one sample (its values serve only
    # Python decisions on shapes; the graph itself is symbolic in the batch size).
    names0 = list(input_names) if input_names is not None else _forward_params(module64, concrete_args)
    ax0 = [int((batch_axes or {}).get(n, 0)) for n in names0] + [0] * len(batch64)
    one = [t.narrow(a, 0, 1) if t.dim() > a else t for t, a in zip(batch64, ax0)]
    gm64, placeholders = trace(module64, one, input_names, concrete_args, trace_fn)
    if input_names is None:
        input_names = [p.target for p in placeholders]
    input_names = list(input_names)
    if len(input_names) != len(placeholders):
        raise CaptureError(f"capture_torch: {len(input_names)} input names for "
                           f"{len(placeholders)} graph inputs")
    if len(set(input_names)) != len(input_names):
        raise CaptureError("capture_torch: input names must be unique")
    if len(batch0) != len(placeholders):
        raise CaptureError(f"capture_torch: a batch has {len(batch0)} tensors, the graph "
                           f"has {len(placeholders)} inputs")
    axes = [int((batch_axes or {}).get(n, 0)) for n in input_names]
    N = None
    specs = []
    for name, t, ax in zip(input_names, batch0, axes):
        if t.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64):
            raise CaptureError(f"capture_torch: input '{name}' has dtype {t.dtype} "
                               "(float or int64)")
        if t.dim() < 1 or ax >= t.dim():
            raise CaptureError(f"capture_torch: input '{name}' has no batch axis {ax}")
        if N is None:
            N = int(t.shape[ax])
        if t.shape[ax] != N:
            raise CaptureError(f"capture_torch: input '{name}' has batch size {t.shape[ax]}, "
                               f"not {N}")
        per = list(t.shape[:ax]) + list(t.shape[ax + 1:])
        specs.append((name, per, "int64" if t.dtype == torch.int64 else "float32", ax))

    floats = [p.dtype for p in module.parameters() if p.is_floating_point()]
    _Float64Run.model_dtype = floats[0] if floats else torch.float32
    mark_sizes(gm64)
    batched = batched_nodes(gm64, placeholders)
    small = probe_batch(batch64, axes)
    with torch.no_grad():
        ra, rb = _Run(gm64, batched), _Run(gm64, batched)
        try:   # a failing node is a CaptureError naming it (_Run); fx appends lines to it
            ra.run(*batch64)
            rb.run(*small)
        except CaptureError as e:
            raise CaptureError(str(e).strip().splitlines()[0]) from None
    n_small = int(small[0].shape[axes[0]])
    for name, inf in ra.info.items():
        pair_runs(inf, rb.info[name], N, n_small)

    mp = Mapper(gm64, gm64, ra.info, max(N, n_small), input_names)
    mp.input_names = set(input_names)
    for p, (name, per, dtype, ax) in zip(placeholders, specs):
        inf = ra.info[p.name]
        mp.vals[p.name] = Val("batched", ref=name, tshape=list(inf.shape), axis=ax, dtype=inf.dtype)
    for node in gm64.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        inf = ra.info[node.name]
        if node.name not in batched:
            mp.vals[node.name] = _fold(mp, node, inf)
            continue
        if inf.kind == "other":   # a Python value computed from a batched tensor
            mp.vals[node.name] = Val("other", value=inf.value)
            continue
        if node.op == "call_function" and any(node.target is f for f in _DROP_FUNCTIONS):
            mp.vals[node.name] = mp.drop(Val("other", value=None), tname(node.target))
            continue
        mp.vals[node.name] = map_node(mp, node)
    if not mp.layers:
        raise CaptureError("capture_torch: the model has no layers")
    out_node = [n for n in gm64.graph.nodes if n.op == "output"][0]
    outs = _flatten_outputs(out_node.args[0])
    out_names = []
    for o in outs:
        v = mp.vals.get(o.name) if isinstance(o, torch.fx.Node) else None
        if v is None or v.kind != "batched" or v.ref in input_names:
            continue
        out_names.append(v.ref)
    if not out_names:
        raise CaptureError("capture_torch: no model output is computed from the inputs")
    cap = Capture(module, gm64, mp, out_names, specs)
    if mp.dropped:
        cap.notes = "dropped as the identity at inference: " + ", ".join(
            f"{n} {k}" for k, n in sorted(mp.dropped.items()))
        print(f"capture_torch: {cap.notes}", file=sys.stderr)
    return cap


def _flatten_outputs(o):
    if isinstance(o, torch.fx.Node):
        return [o]
    if isinstance(o, (list, tuple)):
        return [e for x in o for e in _flatten_outputs(x)]
    if isinstance(o, dict):
        return [e for x in o.values() for e in _flatten_outputs(x)]
    return []


class Capture:
    def __init__(self, module, gm64, mp, outputs, specs):
        self.module, self.gm64, self.mapper = module, gm64, mp
        self.layers, self.constants = mp.layers, mp.constants
        self.outputs, self.specs = outputs, specs
        self.notes = ""

    def recorded(self):
        """(layer name, Val, fx node, tuple item) of every layer that is an fx node's value."""
        out = []
        for L in self.layers:
            if L.outputs:
                out += [(name, v, L.node, i) for name, v, i in L.outputs]
            elif L.node is not None:
                out.append((L.name, L.val, L.node, L.item))
        return out

    def hooked(self):
        """(layer name, Val, module path, tuple item) of layers inside a module kept whole
        (attention, transformer layers) that are one of its submodules' outputs."""
        return [(L.name, L.hook[2], L.hook[0], L.hook[1]) for L in self.layers
                if L.hook is not None and L.node is None]


# --------------------------------------------------------------------------------------------
# Files

def _str_array(names):
    return np.array([str(n) for n in names], dtype=h5py.string_dtype())


def _attr_value(v):
    if isinstance(v, bool):
        return np.int64(int(v))
    if isinstance(v, (int, np.integer)):
        return np.int64(v)
    if isinstance(v, (float, np.floating)):
        return np.float64(v)
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        return np.array([int(e) for e in v], dtype=np.int64)
    raise TypeError(f"unsupported attribute value {v!r}")


def write_model(path, name, cap):
    with h5py.File(path, "w", libver=_LIBVER, track_order=True) as f:
        f.attrs["divscope_format"] = "model"
        f.attrs["divscope_version"] = np.int64(FORMAT_VERSION)
        f.attrs["name"] = str(name)
        f.attrs["outputs"] = _str_array(cap.outputs)
        if cap.notes:
            f.attrs["capture_notes"] = cap.notes
        gi = f.create_group("inputs", track_order=True)
        for n, shape, dtype, ax in cap.specs:
            g = gi.create_group(n)
            g.attrs["shape"] = np.array(shape, dtype=np.int64)
            g.attrs["dtype"] = dtype
            if ax:
                g.attrs["batch_axis"] = np.int64(ax)
        if cap.constants:
            gc = f.create_group("constants", track_order=True)
            for n, a in cap.constants.items():
                with np.errstate(over="ignore"):
                    f32 = a.astype(np.float32)
                exact = np.array_equal(f32.astype(np.float64), a, equal_nan=True)
                gc.create_dataset(n, data=f32 if exact else a)
        gl = f.create_group("layers")
        for i, L in enumerate(cap.layers):
            g = gl.create_group(f"{i:04d}")
            g.attrs["name"] = L.name
            g.attrs["op"] = L.op
            g.attrs["inputs"] = _str_array(L.inputs)
            g.attrs["source"] = L.source
            for k, v in L.attrs.items():
                g.attrs[k] = _attr_value(v)
            for k, v in L.params.items():
                if not np.all(np.isfinite(v)):
                    raise CaptureError(f"capture_torch: layer '{L.name}' parameter '{k}' "
                                       "is not finite")
                g.create_dataset(k, data=v)


def _cudnn_version():
    """cuDNN's version as "8.9.2" (its integer: major*1000 + minor*100 + patch up to 8,
    major*10000 + minor*100 + patch from 9), or None."""
    try:
        if not torch.backends.cudnn.is_available():
            return None
        v = torch.backends.cudnn.version()
    except Exception:
        return None
    if not v:
        return None
    major, rest = (v // 10000, v % 10000) if v >= 10000 else (v // 1000, v % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _autocast_enabled(device):
    try:
        return bool(torch.is_autocast_enabled(device))   # torch >= 2.4
    except TypeError:
        return bool(torch.is_autocast_enabled() if device == "cuda"
                    else torch.is_autocast_cpu_enabled())


def torch_flags():
    """PyTorch's numerics switches as they are now (docs/format.md, capture_environment)."""
    def opt(get):
        try:
            return get()
        except (AttributeError, RuntimeError):
            return None
    try:
        gpu_dtype = torch.get_autocast_dtype("cuda")   # torch >= 2.4
    except (AttributeError, TypeError):
        gpu_dtype = opt(torch.get_autocast_gpu_dtype)
    reduced = opt(lambda: torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction)
    return {
        "torch.backends.cuda.matmul.allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "torch.backends.cudnn.allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "torch.backends.cudnn.benchmark": bool(torch.backends.cudnn.benchmark),
        "torch.backends.cudnn.deterministic": bool(torch.backends.cudnn.deterministic),
        "torch.backends.cudnn.enabled": bool(torch.backends.cudnn.enabled),
        "torch.deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "torch.float32_matmul_precision": opt(torch.get_float32_matmul_precision),
        "torch.default_dtype": str(torch.get_default_dtype()),
        "torch.autocast_gpu": _autocast_enabled("cuda"),
        "torch.autocast_cpu": _autocast_enabled("cpu"),
        "torch.autocast_gpu_dtype": None if gpu_dtype is None else str(gpu_dtype),
        "torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction":
            None if reduced is None else bool(reduced),
        "torch.num_threads": int(torch.get_num_threads()),
    }


def torch_cuda():
    """PyTorch's view of CUDA: {"available", "runtime", "cudnn", "gpus"} for env_record."""
    available = torch.cuda.is_available()
    gpus = []
    if available:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append(env_record.gpu(i, p.name, f"{p.major}.{p.minor}",
                                       p.multi_processor_count, p.total_memory))
    return {"available": bool(available), "runtime": torch.version.cuda,
            "cudnn": _cudnn_version(), "gpus": gpus}


def environment(capture=None):
    """The capturing machine's environment record (tools/env_record.py; docs/format.md,
    capture_environment), with PyTorch's CUDA view and numerics switches as they are now."""
    info = {"framework": "pytorch", "platform": platform.platform()}
    info.update(capture or {})
    return env_record.build("capture_torch.py", torch_flags(), torch_cuda(), info)


class _Record(_Float64Run):
    """Runs the graph on one batch and hands each recorded node's value to `sink`."""

    def __init__(self, gm, wanted, sink):
        super().__init__(gm)
        self.wanted, self.sink = wanted, sink

    def run_node(self, n):
        r = super().run_node(n)
        for entry in self.wanted.get(n.name, ()):
            self.sink(entry, r)
        return r


def _store(g, name, t, v, n, compress):
    a = t.detach().cpu()
    attrs = {}
    if a.dtype == torch.bfloat16:   # no bfloat16 in HDF5: its bits, and the dtype said
        a = a.view(torch.int16)
        attrs["dtype"] = "bfloat16"
    a = to_divscope(a.numpy(), v, n)
    d = g.create_dataset(name, data=a, compression="gzip" if compress else None,
                         compression_opts=1 if compress else None, shuffle=compress)
    for k, x in attrs.items():
        d.attrs[k] = x


def _record(group, gm, wanted, hooked, args, n):
    """Runs gm on one batch, storing each recorded layer's output in `group` as it comes."""
    def sink(entry, r):
        name, v, node, item = entry
        _store(group, name, r[item] if item is not None else r, v, n, True)

    handles = []
    for entry in hooked:
        module = gm.get_submodule(entry[2])
        handles.append(module.register_forward_hook(
            lambda m, i, o, entry=entry: None if entry[0] in group else sink(entry, o)))
    try:
        with torch.no_grad():
            _Record(gm, wanted, sink).run(*args)
    finally:
        for h in handles:
            h.remove()


def write_recording(path, cap, example_batches, input_names, record_activations, source,
                    record_run=False):
    if source is None:
        source = f"pytorch {torch.__version__}, cpu"
    wanted = {}
    for entry in cap.recorded():
        wanted.setdefault(entry[2].name, []).append(entry)
    gm_run = torch.fx.GraphModule(cap.module, cap.gm64.graph) if record_run else None
    with h5py.File(path, "w", libver=_LIBVER) as f:
        f.attrs["divscope_format"] = "recording"
        f.attrs["divscope_version"] = np.int64(FORMAT_VERSION)
        f.attrs["source"] = str(source)
        f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).replace(
            microsecond=0).isoformat()
        f.attrs["capture_environment"] = json.dumps(environment(
            {"record_activations": bool(record_activations), "record_run": bool(record_run)}))
        gb = f.create_group("batches")
        progress = sys.stderr.isatty() and len(example_batches) > 1
        for bi, b in enumerate(example_batches):
            if progress:
                print(f"\rcapture_torch: recording batch {bi + 1}/{len(example_batches)}",
                      end="", file=sys.stderr, flush=True)
            b = _as_batch(b, input_names)
            if len(b) != len(cap.specs):
                raise CaptureError(f"capture_torch: batch {bi} has {len(b)} tensors, "
                                   f"expected {len(cap.specs)}")
            g = gb.create_group(f"{bi:06d}")
            n0 = int(b[0].shape[cap.specs[0][3]])
            for (name, shape, dtype, ax), t in zip(cap.specs, b):
                per = list(t.shape[:ax]) + list(t.shape[ax + 1:])
                if per != shape or int(t.shape[ax]) != n0:
                    raise CaptureError(f"capture_torch: batch {bi} input '{name}' has shape "
                                       f"{list(t.shape)}, expected {shape} with batch axis {ax}")
                a = t.detach().cpu()
                a = a.movedim(ax, 0) if ax else a
                if dtype == "int64":
                    if t.dtype != torch.int64:
                        raise CaptureError(f"capture_torch: batch {bi} input '{name}' must be int64")
                    g.create_dataset(name, data=a.numpy().astype(np.int64))
                else:
                    g.create_dataset(name, data=a.to(torch.float32).numpy())
            runs = [("activations", cap.gm64, [_to64(t) for t in b])] if record_activations else []
            runs += [("run_activations", gm_run, list(b))] if record_run else []
            for group, gm, args in runs:
                if group == "activations":
                    with float64_exact():
                        _record(g.create_group(group), gm, wanted, cap.hooked(), args, n0)
                else:
                    _record(g.create_group(group), gm, wanted, cap.hooked(), args, n0)
        if progress:
            print(file=sys.stderr)


def _large_blocks_to_the_os():
    """glibc raises its mmap threshold as large blocks are freed, after which float64
    activations come from the heap and stay in it: measured on resnet50 (batch 8, 224x224), the
    recording pass then peaks at 2.3-2.9x PyTorch's own forward instead of 1.9x
    (bench/bench_capture.py). A fixed 1 MiB threshold returns every large tensor to the OS when
    it is freed. (Process-wide; harmless for PyTorch, whose large tensors are mmap'ed anyway
    until the threshold moves.)"""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)   # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def capture(module, example_batches, model_path, recording_path, input_names=None,
            record_activations=False, name=None, source=None, batch_axes=None,
            concrete_args=None, trace_fn=None, record_run=False):
    """Trace `module`, write model_path (docs/format.md model) and recording_path (the batches,
    with the float64 oracle's activations of every layer when record_activations, and those of
    the module as given when record_run). Returns the list of (layer name, op) written."""
    example_batches = list(example_batches)
    _large_blocks_to_the_os()
    cap = build(module, example_batches, input_names, batch_axes, concrete_args, trace_fn)
    write_model(model_path, name or module.__class__.__name__, cap)
    write_recording(recording_path, cap, example_batches, input_names, record_activations,
                    source, record_run)
    return [(L.name, L.op) for L in cap.layers]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", required=True, help="example name from data/make_examples.py")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args(argv)
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, os.path.join(here, "..", "data"))
        import make_examples  # noqa: E402
        make_examples.build_one(args.example, args.out_dir)
    except (CaptureError, KeyError, ValueError) as e:
        text = str(e.args[0]) if e.args else ""
        msg = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        print(msg if msg.startswith("capture_torch") else f"capture_torch: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
