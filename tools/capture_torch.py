#!/usr/bin/python3
"""capture_torch -- PyTorch module -> divscope HDF5 (model.h5 + recording.h5).

DESIGN §3 (file formats) and §4 (ops) are the contract this file implements.

    import capture_torch
    capture_torch.capture(module, [batch0, batch1, ...], "m.model.h5", "m.recording.h5",
                          input_names=["x"], record_activations=True)

Each batch is a tuple/list of tensors, one per graph input, batch dim first. The module is
traced with torch.fx (symbolic_trace semantics), every node is mapped to one §4 layer (or
dropped when it is the identity at inference: dropout, Identity, contiguous), shapes come from
torch.fx ShapeProp on the first batch. Anything that cannot be mapped raises CaptureError
naming the node and its target.

torch 1.13 has neither F.scaled_dot_product_attention nor nn.RMSNorm; models can use
divscope_sdpa(), divscope_rmsnorm() and the RMSNorm module below, which the tracer keeps as
single nodes. The torch versions are mapped too when the installed torch has them.

CLI: /usr/bin/python3 tools/capture_torch.py --example NAME --out-dir DIR
     (NAME: an example from data/make_examples.py). Errors: one line on stderr, exit 2.
"""
import argparse
import copy
import datetime
import math
import operator
import os
import sys

import h5py
import numpy as np
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

FORMAT_VERSION = 1
# HDF5 1.8+ object format: compact groups, several times smaller files for many small layers.
_LIBVER = ("v108", "latest")


class CaptureError(Exception):
    """A model or batch that cannot be expressed in the divscope format."""


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
_LEAF_EXTRA = tuple(c for c in (RMSNorm, _TORCH_RMSNORM) if c is not None)


class _Tracer(torch.fx.Tracer):
    def __init__(self):
        super().__init__(autowrap_functions=(divscope_sdpa, divscope_rmsnorm))

    def is_leaf_module(self, m, qualname):
        if isinstance(m, _LEAF_EXTRA):
            return True
        return super().is_leaf_module(m, qualname)


def trace(module):
    tracer = _Tracer()
    try:
        graph = tracer.trace(module)
    except Exception as e:  # torch.fx.proxy.TraceError, data-dependent control flow, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CaptureError(f"capture_torch: torch.fx cannot trace "
                           f"{module.__class__.__name__}: {first}") from e
    name = module.__class__.__name__
    return torch.fx.GraphModule(tracer.root, graph, name)


# --------------------------------------------------------------------------------------------
# Target tables (getattr: functions missing from this torch are simply absent).

def _fns(*specs):
    out = []
    for owner, names in specs:
        for n in names.split():
            f = getattr(owner, n, None)
            if f is not None:
                out.append(f)
    return out


def _is(target, fns):
    return any(target is f for f in fns)


_UNARY_FN = {  # functional target -> op
    "relu": _fns((F, "relu"), (torch, "relu")),
    "silu": _fns((F, "silu"),),
    "sigmoid": _fns((F, "sigmoid"), (torch, "sigmoid")),
    "tanh": _fns((F, "tanh"), (torch, "tanh")),
}
_UNARY_METHOD = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "relu_": "relu",
                 "sigmoid_": "sigmoid", "tanh_": "tanh"}
_UNARY_MODULE = [(nn.ReLU, "relu"), (nn.SiLU, "silu"), (nn.Sigmoid, "sigmoid"), (nn.Tanh, "tanh")]

_ADD_FN = [operator.add, operator.iadd] + _fns((torch, "add"))
_MUL_FN = [operator.mul, operator.imul] + _fns((torch, "mul"))
_MATMUL_FN = [operator.matmul] + _fns((torch, "matmul"), (torch, "bmm"))
_SOFTMAX_FN = _fns((F, "softmax"), (torch, "softmax"))
_LOGSOFTMAX_FN = _fns((F, "log_softmax"), (torch, "log_softmax"))
_GELU_FN = _fns((F, "gelu"),)
_LEAKY_FN = _fns((F, "leaky_relu"),)
_LINEAR_FN = _fns((F, "linear"),)
_CONV_FN = _fns((F, "conv2d"), (torch, "conv2d"))
_CONVT_FN = _fns((F, "conv_transpose2d"), (torch, "conv_transpose2d"))
_LN_FN = _fns((F, "layer_norm"),)
_GN_FN = _fns((F, "group_norm"),)
_RMS_FN = [divscope_rmsnorm] + _fns((F, "rms_norm"),)
_EMB_FN = _fns((F, "embedding"),)
_MAXPOOL_FN = _fns((F, "max_pool2d"), (torch, "max_pool2d"))
_AVGPOOL_FN = _fns((F, "avg_pool2d"),) + [getattr(torch._C._nn, "avg_pool2d", None)]
_ADAPTIVE_FN = _fns((F, "adaptive_avg_pool2d"),) + [getattr(torch._C._nn, "adaptive_avg_pool2d", None)]
_INTERP_FN = _fns((F, "interpolate"), (F, "upsample_nearest"), (F, "upsample"))
_FLATTEN_FN = _fns((torch, "flatten"),)
_RESHAPE_FN = _fns((torch, "reshape"),)
_PERMUTE_FN = _fns((torch, "permute"),)
_TRANSPOSE_FN = _fns((torch, "transpose"), (torch, "swapaxes"), (torch, "swapdims"))
_DROP_FN = _fns((F, "dropout"), (F, "dropout2d"), (F, "alpha_dropout"), (torch, "dropout"))
_SDPA_FN = [divscope_sdpa] + _fns((F, "scaled_dot_product_attention"),)
_DROP_MODULES = (nn.Dropout, nn.Dropout2d, nn.Dropout1d if hasattr(nn, "Dropout1d") else nn.Dropout,
                 nn.AlphaDropout, nn.Identity)


def _tname(target):
    if isinstance(target, str):
        return target
    mod = getattr(target, "__module__", None)
    name = getattr(target, "__name__", None) or repr(target)
    if mod in (None, "torch._C._nn", "torch._C._VariableFunctions"):
        mod = "torch"
    if mod == "_operator":
        mod = "operator"
    return f"{mod}.{name}"


def _describe(node, gm=None):
    if node.op == "call_module" and gm is not None:
        m = gm.get_submodule(node.target)
        return f"{node.op} {node.target}: {m.__class__.__module__}.{m.__class__.__name__}"
    return f"{node.op} {_tname(node.target)}"


# --------------------------------------------------------------------------------------------
# Shape propagation that also keeps every node's value (sizes used in reshape, params).

class _Prop(ShapeProp):
    def __init__(self, gm):
        super().__init__(gm)
        self.values = {}

    def run_node(self, n):
        r = super().run_node(n)
        self.values[n.name] = r
        return r


class _Layer:
    def __init__(self, name, op, inputs, attrs=None, params=None, node=None):
        self.name, self.op, self.inputs = name, op, inputs
        self.attrs = attrs or {}
        self.params = params or {}
        self.node = node


def _pair(v, what):
    if isinstance(v, int):
        return [v, v]
    v = list(v)
    if len(v) == 1:
        return [int(v[0])] * 2
    if len(v) != 2:
        raise ValueError(f"{what} must have 2 entries, got {v}")
    return [int(v[0]), int(v[1])]


class _Mapper:
    def __init__(self, gm, values, batch_size, input_names):
        self.gm = gm
        self.values = values
        self.N = batch_size
        self.layers = []
        self.alias = {}        # node name -> layer or graph input name
        self.used = set(input_names)
        self.node_of_layer = {}

    # ----- small utilities
    def fail(self, node, why=""):
        msg = f"capture_torch: cannot map node '{node.name}' ({_describe(node, self.gm)})"
        if why:
            msg += f": {why}"
        raise CaptureError(msg)

    def arg(self, node, i, name, default=None):
        if i is not None and len(node.args) > i:
            return node.args[i]
        return node.kwargs.get(name, default)

    def const(self, node, v):
        """Resolve a non-tensor argument (ints from x.size(0), tuples of them) to a value."""
        if isinstance(v, torch.fx.Node):
            val = self.values[v.name]
            if isinstance(val, torch.Tensor):
                self.fail(node, f"argument '{v.name}' is a tensor where a constant was expected")
            return val
        if isinstance(v, (list, tuple)):
            return type(v)(self.const(node, e) for e in v)
        return v

    def src(self, node, v):
        """Name of the layer/graph input producing tensor argument v."""
        if isinstance(v, torch.fx.Node):
            if v.name in self.alias:
                return self.alias[v.name]
            if v.op == "get_attr":
                self.fail(node, f"operand '{v.name}' is a parameter/buffer (get_attr {v.target}); "
                                "only graph inputs and layer outputs can be operands")
            self.fail(node, f"operand '{v.name}' is not a tensor produced by a mapped layer")
        if isinstance(v, torch.Tensor):
            self.fail(node, "tensor constant operand is not supported")
        self.fail(node, f"scalar constant operand {v!r} is not supported "
                        "(divscope ops take tensors from graph inputs or layers)")

    def param(self, node, v):
        """A parameter passed to a functional op (get_attr node) -> float32 numpy."""
        if v is None:
            return None
        if isinstance(v, torch.fx.Node) and v.op == "get_attr":
            return self.values[v.name].detach().cpu().to(torch.float32).numpy()
        self.fail(node, f"parameter argument {v} must be a module parameter (get_attr)")

    def out_shape(self, node):
        val = self.values[node.name]
        return list(val.shape)

    def in_rank(self, node, v):
        return self.values[v.name].dim()

    def unique(self, name):
        base, i = name, 1
        while name in self.used:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name

    def emit(self, node, op, inputs, attrs=None, params=None):
        if node.op == "call_module":
            name = self.unique(node.target)
        else:
            name = self.unique(node.name)
        val = self.values[node.name]
        if not isinstance(val, torch.Tensor):
            self.fail(node, "does not produce a single tensor")
        if val.dim() == 0 or val.shape[0] != self.N:
            self.fail(node, f"output shape {list(val.shape)} does not keep the batch dim "
                            f"({self.N}) first")
        self.layers.append(_Layer(name, op, inputs, attrs, params, node))
        self.alias[node.name] = name

    def drop(self, node, v):
        self.alias[node.name] = self.src(node, v)

    # ----- the mapping
    def map_node(self, node):
        if node.op == "placeholder" or node.op == "output":
            return
        if node.op == "get_attr":
            return  # used as a parameter by a functional op, or rejected where used as operand
        val = self.values[node.name]
        if not isinstance(val, torch.Tensor):
            # shape arithmetic (x.size(0), x.shape, getitem on it): resolved where consumed
            if isinstance(val, (int, float, bool, torch.Size)) or (
                    isinstance(val, (tuple, list)) and all(isinstance(e, int) for e in val)):
                return
            self.fail(node, f"produces a {type(val).__name__}, not a tensor")
        if node.op == "call_module":
            return self.map_module(node, self.gm.get_submodule(node.target))
        if node.op == "call_function":
            return self.map_function(node, node.target)
        if node.op == "call_method":
            return self.map_method(node, node.target)
        self.fail(node)

    def map_module(self, node, m):
        x = node.args[0] if node.args else None
        if len(node.args) + len(node.kwargs) != 1:
            self.fail(node, "module called with more than one argument")
        xin = [self.src(node, x)]
        f32 = lambda t: t.detach().cpu().to(torch.float32).numpy()
        if isinstance(m, _DROP_MODULES):
            return self.drop(node, x)
        if isinstance(m, nn.Linear):
            p = {"weight": f32(m.weight)}
            if m.bias is not None:
                p["bias"] = f32(m.bias)
            return self.emit(node, "linear", xin, {}, p)
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                self.fail(node, f"padding_mode '{m.padding_mode}' (only 'zeros')")
            pad = self.conv_padding(node, m.padding, m.kernel_size, m.dilation, m.stride)
            p = {"weight": f32(m.weight)}
            if m.bias is not None:
                p["bias"] = f32(m.bias)
            return self.emit(node, "conv2d", xin, {
                "stride": _pair(m.stride, "stride"), "padding": pad,
                "dilation": _pair(m.dilation, "dilation"), "groups": int(m.groups)}, p)
        if isinstance(m, nn.ConvTranspose2d):
            if m.padding_mode != "zeros":
                self.fail(node, f"padding_mode '{m.padding_mode}' (only 'zeros')")
            p = {"weight": f32(m.weight)}
            if m.bias is not None:
                p["bias"] = f32(m.bias)
            return self.emit(node, "conv_transpose2d", xin, {
                "stride": _pair(m.stride, "stride"), "padding": _pair(m.padding, "padding"),
                "output_padding": _pair(m.output_padding, "output_padding"),
                "dilation": _pair(m.dilation, "dilation"), "groups": int(m.groups)}, p)
        if isinstance(m, nn.BatchNorm2d):
            if m.training:
                self.fail(node, "BatchNorm2d in training mode (call .eval())")
            if m.running_mean is None or m.running_var is None:
                self.fail(node, "BatchNorm2d without running statistics (track_running_stats=False)")
            c = m.num_features
            p = {"weight": f32(m.weight) if m.weight is not None else np.ones(c, np.float32),
                 "bias": f32(m.bias) if m.bias is not None else np.zeros(c, np.float32),
                 "running_mean": f32(m.running_mean), "running_var": f32(m.running_var)}
            return self.emit(node, "batchnorm2d", xin, {"eps": float(m.eps)}, p)
        if isinstance(m, nn.LayerNorm):
            p = {}
            if m.weight is not None:
                p["weight"] = f32(m.weight)
            if m.bias is not None:
                p["bias"] = f32(m.bias)
            return self.emit(node, "layernorm", xin, {
                "normalized_shape": [int(s) for s in m.normalized_shape], "eps": float(m.eps)}, p)
        if isinstance(m, _LEAF_EXTRA):  # RMSNorm (ours or torch's)
            p = {}
            if getattr(m, "weight", None) is not None:
                p["weight"] = f32(m.weight)
            eps = m.eps if m.eps is not None else torch.finfo(torch.float32).eps
            return self.emit(node, "rmsnorm", xin, {
                "normalized_shape": [int(s) for s in m.normalized_shape], "eps": float(eps)}, p)
        if isinstance(m, nn.GroupNorm):
            p = {}
            if m.affine:
                p = {"weight": f32(m.weight), "bias": f32(m.bias)}
            return self.emit(node, "groupnorm", xin, {"num_groups": int(m.num_groups),
                                                      "eps": float(m.eps)}, p)
        for cls, op in _UNARY_MODULE:
            if type(m) is cls:
                return self.emit(node, op, xin)
        if isinstance(m, nn.LeakyReLU):
            return self.emit(node, "leaky_relu", xin, {"negative_slope": float(m.negative_slope)})
        if isinstance(m, nn.GELU):
            return self.emit(node, "gelu", xin, {"approximate": getattr(m, "approximate", "none")})
        if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
            if m.dim is None:
                self.fail(node, "softmax without an explicit dim")
            op = "softmax" if isinstance(m, nn.Softmax) else "log_softmax"
            return self.emit(node, op, xin, {"axis": int(m.dim)})
        if isinstance(m, nn.MaxPool2d):
            if m.return_indices:
                self.fail(node, "return_indices=True")
            return self.emit_maxpool(node, xin, m.kernel_size, m.stride, m.padding, m.dilation,
                                     m.ceil_mode)
        if isinstance(m, nn.AvgPool2d):
            if m.divisor_override is not None:
                self.fail(node, "divisor_override")
            return self.emit_avgpool(node, xin, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                     m.count_include_pad)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self.emit_adaptive(node, xin, m.output_size)
        if isinstance(m, nn.Upsample):
            return self.emit_upsample(node, x, xin, m.size, m.scale_factor, m.mode)
        if isinstance(m, nn.Flatten):
            return self.emit_flatten(node, x, xin, m.start_dim, m.end_dim)
        if isinstance(m, nn.Embedding):
            if m.max_norm is not None:
                self.fail(node, "Embedding with max_norm (modifies the weight)")
            return self.emit_embedding(node, x, xin, f32(m.weight))
        self.fail(node)

    def conv_padding(self, node, padding, k, d, stride):
        if isinstance(padding, str):
            if padding == "valid":
                return [0, 0]
            if padding == "same":
                out = []
                for kk, dd in zip(_pair(k, "kernel_size"), _pair(d, "dilation")):
                    total = dd * (kk - 1)
                    if total % 2:
                        self.fail(node, "padding='same' is asymmetric for this kernel/dilation")
                    out.append(total // 2)
                return out
            self.fail(node, f"padding '{padding}'")
        return _pair(padding, "padding")

    def emit_maxpool(self, node, xin, k, s, p, d, ceil):
        k = _pair(k, "kernel_size")
        s = k if (s is None or (isinstance(s, (list, tuple)) and len(s) == 0)) else _pair(s, "stride")
        return self.emit(node, "maxpool2d", xin, {
            "kernel_size": k, "stride": s, "padding": _pair(p, "padding"),
            "dilation": _pair(d, "dilation"), "ceil_mode": int(bool(ceil))})

    def emit_avgpool(self, node, xin, k, s, p, ceil, cip):
        k = _pair(k, "kernel_size")
        s = k if (s is None or (isinstance(s, (list, tuple)) and len(s) == 0)) else _pair(s, "stride")
        return self.emit(node, "avgpool2d", xin, {
            "kernel_size": k, "stride": s, "padding": _pair(p, "padding"),
            "ceil_mode": int(bool(ceil)), "count_include_pad": int(bool(cip))})

    def emit_adaptive(self, node, xin, out):
        o = out if isinstance(out, (list, tuple)) else (out, out)
        if len(o) == 1:
            o = (o[0], o[0])
        if tuple(o) != (1, 1):
            self.fail(node, f"adaptive_avg_pool2d output_size {out} (only 1 / (1, 1))")
        return self.emit(node, "global_avgpool2d", xin)

    def emit_upsample(self, node, x, xin, size, scale, mode):
        if mode != "nearest":
            self.fail(node, f"upsample mode '{mode}' (only 'nearest')")
        ish = list(self.values[x.name].shape)
        if len(ish) != 4:
            self.fail(node, "upsample of a non-4D tensor")
        if size is not None:
            size = _pair(size, "size")
            f = []
            for o, i in zip(size, ish[2:]):
                if o % i:
                    self.fail(node, f"size {size} is not an integer multiple of {ish[2:]}")
                f.append(o // i)
        else:
            if scale is None:
                self.fail(node, "neither size nor scale_factor")
            sc = list(scale) if isinstance(scale, (list, tuple)) else [scale, scale]
            if len(sc) == 1:
                sc = sc * 2
            if any(float(v) != int(v) for v in sc):
                self.fail(node, f"non-integer scale_factor {scale}")
            f = [int(v) for v in sc]
        return self.emit(node, "upsample_nearest2d", xin, {"scale_factor": f})

    def emit_flatten(self, node, x, xin, start, end):
        r = self.in_rank(node, x)
        if (start % r if start < 0 else start) == 0:
            self.fail(node, "flatten start_dim must not include the batch dim 0")
        return self.emit(node, "flatten", xin, {"start_dim": int(start), "end_dim": int(end)})

    def emit_embedding(self, node, x, xin, w):
        if self.values[x.name].dtype != torch.int64:
            self.fail(node, "embedding indices must be int64")
        return self.emit(node, "embedding", xin, {}, {"weight": w})

    def emit_reshape(self, node, x, xin):
        out = self.out_shape(node)
        if not out or out[0] != self.N:
            self.fail(node, f"reshape to {out} does not keep the batch dim ({self.N}) first")
        in_shape = list(self.values[x.name].shape)
        if in_shape[0] != self.N:
            self.fail(node, "input has no batch dim first")
        return self.emit(node, "reshape", xin, {"shape": [int(s) for s in out[1:]]})

    def emit_permute(self, node, xin, dims, rank):
        dims = [int(d) % rank for d in dims]
        if len(dims) != rank or sorted(dims) != list(range(rank)):
            self.fail(node, f"permute dims {dims} are not a permutation of rank {rank}")
        if dims[0] != 0:
            self.fail(node, "permute must keep the batch dim first (dims[0] = 0)")
        return self.emit(node, "permute", xin, {"dims": dims})

    def emit_transpose(self, node, x, xin, a, b):
        r = self.in_rank(node, x)
        a, b = int(a) % r, int(b) % r
        dims = list(range(r))
        dims[a], dims[b] = dims[b], dims[a]
        return self.emit_permute(node, xin, dims, r)

    def emit_binary(self, node, op, a, b):
        return self.emit(node, op, [self.src(node, a), self.src(node, b)])

    def emit_softmax(self, node, op, x, dim, dtype=None):
        if dtype is not None:
            self.fail(node, "softmax with dtype=")
        if dim is None:
            self.fail(node, "softmax without an explicit dim")
        return self.emit(node, op, [self.src(node, x)], {"axis": int(self.const(node, dim))})

    def emit_sdpa(self, node, q, k, v, mask, dropout, is_causal, scale, gqa=False):
        if mask is not None:
            self.fail(node, "attention with attn_mask (only is_causal)")
        if dropout not in (0, 0.0, None):
            self.fail(node, "attention with dropout_p != 0")
        if gqa:
            self.fail(node, "attention with enable_gqa")
        for t in (q, k, v):
            if self.in_rank(node, t) != 4:
                self.fail(node, "attention operands must be [N, H, T, D]")
        attrs = {"is_causal": int(bool(self.const(node, is_causal)))}
        if scale is not None:
            attrs["scale"] = float(self.const(node, scale))
        return self.emit(node, "scaled_dot_product_attention",
                         [self.src(node, q), self.src(node, k), self.src(node, v)], attrs)

    def map_function(self, node, t):
        a = lambda i, n, d=None: self.arg(node, i, n, d)
        for op, fns in _UNARY_FN.items():
            if _is(t, fns):
                return self.emit(node, op, [self.src(node, a(0, "input"))])
        if _is(t, _DROP_FN):
            return self.drop(node, a(0, "input"))
        if _is(t, _ADD_FN) or _is(t, _MUL_FN):
            op = "add" if _is(t, _ADD_FN) else "mul"
            if op == "add" and a(2, "alpha", 1) != 1:
                self.fail(node, "torch.add with alpha != 1")
            return self.emit_binary(node, op, a(0, "input"), a(1, "other"))
        if _is(t, _MATMUL_FN):
            return self.emit_binary(node, "matmul", a(0, "input"), a(1, "other"))
        if _is(t, _SOFTMAX_FN):
            return self.emit_softmax(node, "softmax", a(0, "input"), a(1, "dim"),
                                     a(3 if t is F.softmax else 2, "dtype"))
        if _is(t, _LOGSOFTMAX_FN):
            return self.emit_softmax(node, "log_softmax", a(0, "input"), a(1, "dim"),
                                     a(3 if t is F.log_softmax else 2, "dtype"))
        if _is(t, _GELU_FN):
            return self.emit(node, "gelu", [self.src(node, a(0, "input"))],
                             {"approximate": str(a(1, "approximate", "none"))})
        if _is(t, _LEAKY_FN):
            return self.emit(node, "leaky_relu", [self.src(node, a(0, "input"))],
                             {"negative_slope": float(self.const(node, a(1, "negative_slope", 0.01)))})
        if _is(t, _LINEAR_FN):
            p = {"weight": self.param(node, a(1, "weight"))}
            b = self.param(node, a(2, "bias"))
            if b is not None:
                p["bias"] = b
            return self.emit(node, "linear", [self.src(node, a(0, "input"))], {}, p)
        if _is(t, _CONV_FN):
            p = {"weight": self.param(node, a(1, "weight"))}
            b = self.param(node, a(2, "bias"))
            if b is not None:
                p["bias"] = b
            k = list(p["weight"].shape[2:])
            d = self.const(node, a(5, "dilation", 1))
            pad = self.conv_padding(node, self.const(node, a(4, "padding", 0)), k, d, None)
            return self.emit(node, "conv2d", [self.src(node, a(0, "input"))], {
                "stride": _pair(self.const(node, a(3, "stride", 1)), "stride"), "padding": pad,
                "dilation": _pair(d, "dilation"), "groups": int(self.const(node, a(6, "groups", 1)))}, p)
        if _is(t, _CONVT_FN):
            p = {"weight": self.param(node, a(1, "weight"))}
            b = self.param(node, a(2, "bias"))
            if b is not None:
                p["bias"] = b
            c = lambda i, n, d: self.const(node, a(i, n, d))
            return self.emit(node, "conv_transpose2d", [self.src(node, a(0, "input"))], {
                "stride": _pair(c(3, "stride", 1), "stride"),
                "padding": _pair(c(4, "padding", 0), "padding"),
                "output_padding": _pair(c(5, "output_padding", 0), "output_padding"),
                "groups": int(c(6, "groups", 1)),
                "dilation": _pair(c(7, "dilation", 1), "dilation")}, p)
        if _is(t, _LN_FN):
            p = {}
            for i, n in ((2, "weight"), (3, "bias")):
                v = self.param(node, a(i, n))
                if v is not None:
                    p[n] = v
            ns = self.const(node, a(1, "normalized_shape"))
            ns = [ns] if isinstance(ns, int) else list(ns)
            return self.emit(node, "layernorm", [self.src(node, a(0, "input"))], {
                "normalized_shape": [int(s) for s in ns],
                "eps": float(self.const(node, a(4, "eps", 1e-5)))}, p)
        if _is(t, _RMS_FN):
            ns = self.const(node, a(1, "normalized_shape"))
            ns = [ns] if isinstance(ns, int) else list(ns)
            p = {}
            w = self.param(node, a(2, "weight"))
            if w is not None:
                p["weight"] = w
            eps = self.const(node, a(3, "eps", 1e-6 if t is divscope_rmsnorm else None))
            if eps is None:
                eps = torch.finfo(torch.float32).eps
            return self.emit(node, "rmsnorm", [self.src(node, a(0, "input"))], {
                "normalized_shape": [int(s) for s in ns], "eps": float(eps)}, p)
        if _is(t, _GN_FN):
            p = {}
            for i, n in ((2, "weight"), (3, "bias")):
                v = self.param(node, a(i, n))
                if v is not None:
                    p[n] = v
            return self.emit(node, "groupnorm", [self.src(node, a(0, "input"))], {
                "num_groups": int(self.const(node, a(1, "num_groups"))),
                "eps": float(self.const(node, a(4, "eps", 1e-5)))}, p)
        if _is(t, _EMB_FN):
            for i, n in ((2, "padding_idx"), (3, "max_norm")):
                if n == "max_norm" and a(i, n) is not None:
                    self.fail(node, "embedding with max_norm")
            x = a(0, "input")
            return self.emit_embedding(node, x, [self.src(node, x)], self.param(node, a(1, "weight")))
        if _is(t, _MAXPOOL_FN):
            if a(6, "return_indices", False):
                self.fail(node, "return_indices=True")
            c = lambda i, n, d: self.const(node, a(i, n, d))
            return self.emit_maxpool(node, [self.src(node, a(0, "input"))], c(1, "kernel_size", None),
                                     c(2, "stride", None), c(3, "padding", 0), c(4, "dilation", 1),
                                     c(5, "ceil_mode", False))
        if _is(t, [f for f in _AVGPOOL_FN if f is not None]):
            if a(6, "divisor_override") is not None:
                self.fail(node, "divisor_override")
            c = lambda i, n, d: self.const(node, a(i, n, d))
            return self.emit_avgpool(node, [self.src(node, a(0, "input"))], c(1, "kernel_size", None),
                                     c(2, "stride", None), c(3, "padding", 0),
                                     c(4, "ceil_mode", False), c(5, "count_include_pad", True))
        if _is(t, [f for f in _ADAPTIVE_FN if f is not None]):
            return self.emit_adaptive(node, [self.src(node, a(0, "input"))],
                                      self.const(node, a(1, "output_size")))
        if _is(t, _INTERP_FN):
            x = a(0, "input")
            return self.emit_upsample(node, x, [self.src(node, x)], self.const(node, a(1, "size")),
                                      self.const(node, a(2, "scale_factor")), a(3, "mode", "nearest"))
        if _is(t, _FLATTEN_FN):
            x = a(0, "input")
            return self.emit_flatten(node, x, [self.src(node, x)],
                                     int(self.const(node, a(1, "start_dim", 0))),
                                     int(self.const(node, a(2, "end_dim", -1))))
        if _is(t, _RESHAPE_FN):
            x = a(0, "input")
            return self.emit_reshape(node, x, [self.src(node, x)])
        if _is(t, _PERMUTE_FN):
            x = a(0, "input")
            return self.emit_permute(node, [self.src(node, x)], self.const(node, a(1, "dims")),
                                     self.in_rank(node, x))
        if _is(t, _TRANSPOSE_FN):
            x = a(0, "input")
            return self.emit_transpose(node, x, [self.src(node, x)],
                                       self.const(node, a(1, "dim0")), self.const(node, a(2, "dim1")))
        if _is(t, _SDPA_FN):
            if t is divscope_sdpa:
                return self.emit_sdpa(node, a(0, "q"), a(1, "k"), a(2, "v"), None, 0.0,
                                      a(3, "is_causal", False), a(4, "scale"))
            return self.emit_sdpa(node, a(0, "query"), a(1, "key"), a(2, "value"),
                                  a(3, "attn_mask"), a(4, "dropout_p", 0.0),
                                  a(5, "is_causal", False), a(6, "scale"), a(7, "enable_gqa", False))
        self.fail(node)

    def map_method(self, node, t):
        x = node.args[0]
        rest = list(node.args[1:])
        kw = node.kwargs
        if t in _UNARY_METHOD:
            return self.emit(node, _UNARY_METHOD[t], [self.src(node, x)])
        if t in ("contiguous", "clone"):
            return self.drop(node, x)
        if t in ("add", "add_", "mul", "mul_"):
            other = rest[0] if rest else kw.get("other")
            if t.startswith("add") and kw.get("alpha", rest[1] if len(rest) > 1 else 1) != 1:
                self.fail(node, "add with alpha != 1")
            return self.emit_binary(node, t.rstrip("_"), x, other)
        if t in ("matmul", "bmm"):
            return self.emit_binary(node, "matmul", x, rest[0] if rest else kw.get("other"))
        if t in ("softmax", "log_softmax"):
            dim = rest[0] if rest else kw.get("dim")
            return self.emit_softmax(node, t, x, dim, kw.get("dtype", rest[1] if len(rest) > 1 else None))
        if t == "flatten":
            s = self.const(node, rest[0] if rest else kw.get("start_dim", 0))
            e = self.const(node, rest[1] if len(rest) > 1 else kw.get("end_dim", -1))
            return self.emit_flatten(node, x, [self.src(node, x)], int(s), int(e))
        if t in ("reshape", "view"):
            return self.emit_reshape(node, x, [self.src(node, x)])
        if t == "permute":
            dims = self.const(node, rest if rest else kw.get("dims"))
            if len(dims) == 1 and isinstance(dims[0], (list, tuple, torch.Size)):
                dims = dims[0]
            return self.emit_permute(node, [self.src(node, x)], dims, self.in_rank(node, x))
        if t in ("transpose", "swapaxes", "swapdims"):
            d0 = self.const(node, rest[0] if rest else kw.get("dim0"))
            d1 = self.const(node, rest[1] if len(rest) > 1 else kw.get("dim1"))
            return self.emit_transpose(node, x, [self.src(node, x)], d0, d1)
        self.fail(node)


# --------------------------------------------------------------------------------------------

def _as_batch(b):
    if isinstance(b, torch.Tensor):
        return (b,)
    return tuple(b)


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


def build(module, example_batches, input_names=None):
    """Trace and map; returns (graph module, layers, outputs, input specs)."""
    module.eval()
    gm = trace(module)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if input_names is None:
        input_names = [n.name for n in placeholders]
    input_names = list(input_names)
    if len(input_names) != len(placeholders):
        raise CaptureError(f"capture_torch: {len(input_names)} input names for "
                           f"{len(placeholders)} graph inputs")
    if len(set(input_names)) != len(input_names):
        raise CaptureError("capture_torch: input names must be unique")
    if not example_batches:
        raise CaptureError("capture_torch: need at least one example batch")
    batch0 = _as_batch(example_batches[0])
    if len(batch0) != len(placeholders):
        raise CaptureError(f"capture_torch: a batch has {len(batch0)} tensors, the graph "
                           f"has {len(placeholders)} inputs")
    N = int(batch0[0].shape[0])
    specs = []
    for name, t in zip(input_names, batch0):
        if t.dtype not in (torch.float32, torch.int64):
            raise CaptureError(f"capture_torch: input '{name}' has dtype {t.dtype} "
                               "(only float32 and int64)")
        if t.dim() < 1 or t.shape[0] != N:
            raise CaptureError(f"capture_torch: input '{name}' does not have batch dim {N} first")
        specs.append((name, list(t.shape[1:]), "float32" if t.dtype == torch.float32 else "int64"))
    prop = _Prop(gm)
    with torch.no_grad():
        prop.propagate(*batch0)
    mapper = _Mapper(gm, prop.values, N, input_names)
    for p, name in zip(placeholders, input_names):
        mapper.alias[p.name] = name
    for node in gm.graph.nodes:
        mapper.map_node(node)
    if not mapper.layers:
        raise CaptureError("capture_torch: the model has no layers")
    out_node = [n for n in gm.graph.nodes if n.op == "output"][0]
    outs = out_node.args[0]
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    out_names = []
    for o in outs:
        if not isinstance(o, torch.fx.Node) or o.name not in mapper.alias or \
                mapper.alias[o.name] in input_names:
            raise CaptureError(f"capture_torch: model output {o} is not a layer output")
        out_names.append(mapper.alias[o.name])
    return gm, mapper.layers, out_names, specs


def write_model(path, name, layers, outputs, specs):
    with h5py.File(path, "w", libver=_LIBVER) as f:
        f.attrs["divscope_format"] = "model"
        f.attrs["divscope_version"] = np.int64(FORMAT_VERSION)
        f.attrs["name"] = str(name)
        f.attrs["outputs"] = _str_array(outputs)
        gi = f.create_group("inputs")
        for n, shape, dtype in specs:
            g = gi.create_group(n)
            g.attrs["shape"] = np.array(shape, dtype=np.int64)
            g.attrs["dtype"] = dtype
        gl = f.create_group("layers")
        for i, L in enumerate(layers):
            g = gl.create_group(f"{i:04d}")
            g.attrs["name"] = L.name
            g.attrs["op"] = L.op
            g.attrs["inputs"] = _str_array(L.inputs)
            for k, v in L.attrs.items():
                g.attrs[k] = _attr_value(v)
            for k, v in L.params.items():
                arr = np.ascontiguousarray(v, dtype=np.float32)
                if not np.all(np.isfinite(arr)):
                    raise CaptureError(f"capture_torch: layer '{L.name}' parameter '{k}' "
                                       "is not finite")
                g.create_dataset(k, data=arr)


def _activations64(gm, layers, batch):
    gm64 = copy.deepcopy(gm).double()
    want = {L.node.name: L.name for L in layers}
    got = {}

    class _Rec(torch.fx.Interpreter):
        def run_node(self, n):
            r = super().run_node(n)
            if n.name in want:
                got[want[n.name]] = r.detach().cpu().numpy().astype(np.float64)
            return r

    args = [t.double() if t.is_floating_point() else t for t in batch]
    with torch.no_grad():
        _Rec(gm64).run(*args)
    return got


def write_recording(path, gm, layers, specs, example_batches, record_activations, source):
    if source is None:
        dev = "cpu"
        source = f"pytorch {torch.__version__}, {dev}"
    with h5py.File(path, "w", libver=_LIBVER) as f:
        f.attrs["divscope_format"] = "recording"
        f.attrs["divscope_version"] = np.int64(FORMAT_VERSION)
        f.attrs["source"] = str(source)
        f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).replace(
            microsecond=0).isoformat()
        gb = f.create_group("batches")
        for bi, b in enumerate(example_batches):
            b = _as_batch(b)
            if len(b) != len(specs):
                raise CaptureError(f"capture_torch: batch {bi} has {len(b)} tensors, "
                                   f"expected {len(specs)}")
            g = gb.create_group(f"{bi:06d}")
            n0 = int(b[0].shape[0])
            for (name, shape, dtype), t in zip(specs, b):
                if list(t.shape[1:]) != shape or int(t.shape[0]) != n0:
                    raise CaptureError(f"capture_torch: batch {bi} input '{name}' has shape "
                                       f"{list(t.shape)}, expected [N]+{shape}")
                if dtype == "int64":
                    if t.dtype != torch.int64:
                        raise CaptureError(f"capture_torch: batch {bi} input '{name}' must be int64")
                    g.create_dataset(name, data=t.detach().cpu().numpy().astype(np.int64))
                else:
                    g.create_dataset(name, data=t.detach().cpu().to(torch.float32).numpy())
            if record_activations:
                acts = _activations64(gm, layers, b)
                ga = g.create_group("activations")
                for L in layers:
                    a = acts[L.name]
                    if a.shape[0] != n0:
                        raise CaptureError(f"capture_torch: layer '{L.name}' output does not "
                                           f"keep the batch dim in batch {bi}")
                    ga.create_dataset(L.name, data=a)


def capture(module, example_batches, model_path, recording_path, input_names=None,
            record_activations=False, name=None, source=None):
    """Trace `module`, write model_path (DESIGN §3 model) and recording_path (the batches).

    Returns the list of (layer name, op) written."""
    example_batches = [_as_batch(b) for b in example_batches]
    gm, layers, outputs, specs = build(module, example_batches, input_names)
    write_model(model_path, name or module.__class__.__name__, layers, outputs, specs)
    write_recording(recording_path, gm, layers, specs, example_batches, record_activations, source)
    return [(L.name, L.op) for L in layers]


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
