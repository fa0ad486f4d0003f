"""Handlers for modules and their functional forms (capture_map.Mapper does the rest): Linear,
convolutions, norms, pools, upsampling, embeddings, attention and transformer layers.

Attention (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder) is kept as
one module while tracing and written out here as divscope layers, batch-first whatever the
module's batch_first: q/k/v projections, heads split per sample, scaled_dot_product_attention
(or matmul/softmax/matmul when a mask is given), heads merged, output projection.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from capture_ops import fns, linear_like
from capture_values import Val


def pair(v, what="value"):
    if isinstance(v, int):
        return [v, v]
    v = list(v)
    if len(v) == 1:
        return [int(v[0])] * 2
    if len(v) != 2:
        raise ValueError(f"{what} must have 2 entries, got {v}")
    return [int(v[0]), int(v[1])]


def need_nchw(mp, x):
    if x.kind != "batched" or x.axis != 0 or x.outer * x.inner != 1:
        mp.fail("expects a batch-first [N, C, H, W] tensor")


def conv_padding(mp, padding, k, d):
    if isinstance(padding, str):
        if padding == "valid":
            return [0, 0]
        if padding == "same":
            out = []
            for kk, dd in zip(pair(k), pair(d)):
                total = dd * (kk - 1)
                if total % 2:
                    mp.fail("padding='same' is asymmetric for this kernel/dilation")
                out.append(total // 2)
            return out
        mp.fail(f"padding '{padding}'")
    return pair(padding, "padding")


def emit_conv(mp, x, w, b, stride, padding, dilation, groups):
    need_nchw(mp, x)
    k = list(w.shape[2:])
    return mp.emit("conv2d", [x.ref], {
        "stride": pair(stride, "stride"), "padding": conv_padding(mp, padding, k, dilation),
        "dilation": pair(dilation, "dilation"), "groups": int(groups)},
        {"weight": w, "bias": b}, out=mp.out(x))


def emit_maxpool(mp, x, k, s, p, d, ceil):
    need_nchw(mp, x)
    k = pair(k, "kernel_size")
    s = k if s is None or (isinstance(s, (list, tuple)) and not s) else pair(s, "stride")
    return mp.emit("maxpool2d", [x.ref], {"kernel_size": k, "stride": s, "padding": pair(p),
                                          "dilation": pair(d), "ceil_mode": int(bool(ceil))},
                   out=mp.out(x))


def emit_avgpool(mp, x, k, s, p, ceil, cip, div):
    need_nchw(mp, x)
    if div is not None:
        mp.fail("divisor_override")
    k = pair(k, "kernel_size")
    s = k if s is None or (isinstance(s, (list, tuple)) and not s) else pair(s, "stride")
    return mp.emit("avgpool2d", [x.ref], {"kernel_size": k, "stride": s, "padding": pair(p),
                                          "ceil_mode": int(bool(ceil)),
                                          "count_include_pad": int(bool(cip))}, out=mp.out(x))


def emit_adaptive(mp, x, size):
    need_nchw(mp, x)
    o = list(size) if isinstance(size, (list, tuple)) else [size, size]
    if len(o) == 1:
        o = o * 2
    o = [x.tshape[2 + i] if v is None else int(v) for i, v in enumerate(o)]
    if o == [1, 1]:
        return mp.emit("global_avgpool2d", [x.ref], out=mp.out(x))
    return mp.emit("adaptive_avgpool2d", [x.ref], {"output_size": o}, out=mp.out(x))


def emit_upsample(mp, x, size, scale, mode):
    need_nchw(mp, x)
    if mode != "nearest":
        mp.fail(f"upsample mode '{mode}' (only 'nearest')")
    if size is not None:
        f = []
        for o, i in zip(pair(size), x.tshape[2:]):
            if o % i:
                mp.fail(f"size {size} is not an integer multiple of {x.tshape[2:]}")
            f.append(o // i)
    else:
        sc = list(scale) if isinstance(scale, (list, tuple)) else [scale, scale]
        sc = sc * 2 if len(sc) == 1 else sc
        if any(float(v) != int(v) for v in sc):
            mp.fail(f"non-integer scale_factor {scale}")
        f = [int(v) for v in sc]
    return mp.emit("upsample_nearest2d", [x.ref], {"scale_factor": f}, out=mp.out(x))


def emit_norm(mp, op, x, ns, eps, w, b, extra=None):
    ns = [ns] if isinstance(ns, int) else [int(s) for s in ns]
    if x.axis >= x.rank - len(ns):
        mp.fail("the batch dim is among the normalized dims")
    attrs = {"normalized_shape": ns, "eps": float(eps)}
    return mp.emit(op, [x.ref], attrs, {"weight": w, "bias": b}, out=mp.out(x))


def emit_embedding(mp, x, w, m=None):
    if x.kind != "batched" or x.dtype != torch.int64:
        mp.fail("embedding indices must be an int64 graph input")
    if x.ref not in mp.input_names:
        mp.fail("embedding indices must be a graph input (not computed in the model)")
    return mp.emit("embedding", [x.ref], {}, {"weight": w}, out=mp.out(x))


# ---------------------------------------------------------------- attention
def mha(mp, m, q, k, v, attn_mask, key_padding_mask, prefix, n):
    """nn.MultiheadAttention m (float64 copy) on q/k/v Vals -> Val of its output."""
    for t in (q, k, v):
        if t.kind != "batched" or t.rank != 3 or t.axis != (0 if m.batch_first else 1) \
                or t.outer * t.inner != 1:
            mp.fail("attention inputs must be [N, T, E] (batch_first) or [T, N, E]")
    if m.bias_k is not None or m.add_zero_attn:
        mp.fail("MultiheadAttention with add_bias_kv / add_zero_attn")
    if key_padding_mask is not None:
        mp.fail("MultiheadAttention with key_padding_mask")
    E, H = m.embed_dim, m.num_heads
    d = E // H
    if m._qkv_same_embed_dim:
        wq, wk, wv = m.in_proj_weight.chunk(3)
    else:
        wq, wk, wv = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
    bq, bk, bv = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None else (None,) * 3
    T, S = q.tshape[1 - q.axis], k.tshape[1 - k.axis]

    def heads(x, w, b, name, L):
        y = mp.emit("linear", [x.ref], {}, {"weight": w, "bias": b},
                    out=mp.virtual(None, [L, E], n), name=f"{prefix}.{name}_proj", final=False)
        y = mp.emit("reshape", [y.ref], {"shape": [L, H, d]}, out=mp.virtual(None, [L, H, d], n),
                    name=f"{prefix}.{name}_heads", final=False)
        return mp.emit("permute", [y.ref], {"dims": [0, 2, 1, 3]},
                       out=mp.virtual(None, [H, L, d], n), name=f"{prefix}.{name}_t", final=False)

    qh, kh, vh = heads(q, wq, bq, "q", T), heads(k, wk, bk, "k", S), heads(v, wv, bv, "v", S)
    if attn_mask is None:
        o = mp.emit("scaled_dot_product_attention", [qh.ref, kh.ref, vh.ref], {"is_causal": 0},
                    out=mp.virtual(None, [H, T, d], n), name=f"{prefix}.attention", final=False)
    else:
        am = attn_mask.value if attn_mask.kind == "const" else mp.fail("attn_mask computed from the inputs")
        if am.dim() != 2:
            mp.fail("attn_mask must be [T, S]")
        am = torch.zeros(am.shape, dtype=torch.float64).masked_fill(am, float("-inf")) \
            if am.dtype == torch.bool else am.to(torch.float64)
        kt = mp.emit("permute", [kh.ref], {"dims": [0, 1, 3, 2]}, out=mp.virtual(None, [H, d, S], n),
                     name=f"{prefix}.k_tt", final=False)
        s = mp.emit("matmul", [qh.ref, kt.ref], out=mp.virtual(None, [H, T, S], n),
                    name=f"{prefix}.scores", final=False)
        c = mp.constant(None, None, key=f"{prefix}.scale", per_sample=[[[1.0 / math.sqrt(d)]]])
        s = mp.emit("mul", [s.ref, c], out=s, name=f"{prefix}.scaled", final=False)
        cm = mp.constant(None, None, key=f"{prefix}.attn_mask", per_sample=am.reshape(1, T, S).numpy())
        s = mp.emit("add", [s.ref, cm], out=s, name=f"{prefix}.masked", final=False)
        s = mp.emit("softmax", [s.ref], {"axis": -1}, out=s, name=f"{prefix}.softmax", final=False)
        o = mp.emit("matmul", [s.ref, vh.ref], out=mp.virtual(None, [H, T, d], n),
                    name=f"{prefix}.context", final=False)
    o = mp.emit("permute", [o.ref], {"dims": [0, 2, 1, 3]}, out=mp.virtual(None, [T, H, d], n),
                name=f"{prefix}.merge_t", final=False)
    o = mp.emit("reshape", [o.ref], {"shape": [T, E]}, out=mp.virtual(None, [T, E], n),
                name=f"{prefix}.merge", final=False)
    out = Val("batched", tshape=list(q.tshape), axis=q.axis, dtype=q.dtype)
    return mp.emit("linear", [o.ref], {}, {"weight": m.out_proj.weight, "bias": m.out_proj.bias},
                   out=out, name=f"{prefix}.out_proj", final=False)


def mha_module(mp, m):
    a = lambda i, name, d=None: mp.arg(i, name, d)
    q, k, v = mp.tv(a(0, "query")), mp.tv(a(1, "key")), mp.tv(a(2, "value"))
    am, kpm = a(5, "attn_mask"), a(3, "key_padding_mask")
    am = mp.tv(am) if am is not None else None
    kpm = mp.tv(kpm) if kpm is not None else None
    out = mha(mp, m, q, k, v, am, kpm, mp.node.target, mp.n_big)
    mp.layers[-1].node, mp.layers[-1].item = mp.node, 0
    real = mp.out(q, item=0)
    real.ref = out.ref
    mp.layers[-1].val = real
    why = "attention weights are not captured (call the module with need_weights=False)"
    return Val("multi", items=[real, Val("absent", why=why)])


def activation_of(mp, act, x, name):
    if act in (F.relu, "relu") or isinstance(act, nn.ReLU):
        return mp.emit("relu", [x.ref], out=x, name=name, final=False)
    if act in (F.gelu, "gelu") or isinstance(act, nn.GELU):
        return mp.emit("gelu", [x.ref], {"approximate": getattr(act, "approximate", "none")},
                       out=x, name=name, final=False)
    mp.fail(f"transformer activation {act!r}")


def layernorm_of(mp, y, norm, name):
    """nn.LayerNorm `norm` inside a module written out: a layer of its own (not a node's value)."""
    return mp.emit("layernorm", [y.ref], {"normalized_shape": list(norm.normalized_shape),
                                          "eps": float(norm.eps)},
                   {"weight": norm.weight, "bias": norm.bias}, out=y, name=name, final=False)


def encoder_layer(mp, m, x, mask, prefix, n):
    """nn.TransformerEncoderLayer (eval) on Val x -> Val."""
    if not isinstance(m.self_attn, nn.MultiheadAttention):
        mp.fail("TransformerEncoderLayer without nn.MultiheadAttention")
    T, E = x.per_sample()

    def hooked(v, module, width=E, item=None):
        """The layer just emitted is submodule `module`'s output: recorded by a forward hook
        (in the module's own layout, x's), so that it too is checked against PyTorch."""
        t = Val("batched", tshape=list(x.tshape[:-1]) + [width], axis=x.axis)
        mp.layers[-1].hook = (f"{prefix}.{module}" if module else prefix, item, t)
        return v

    def ln(y, norm, name):
        return hooked(layernorm_of(mp, y, norm, f"{prefix}.{name}"), name)

    def add(a, b, name):
        return mp.emit("add", [a.ref, b.ref], out=a, name=f"{prefix}.{name}", final=False)

    def sa(y):
        o = mha(mp, m.self_attn, y, y, y, mask, None, f"{prefix}.self_attn", n)
        o.tshape, o.axis = x.tshape, x.axis
        return hooked(o, "self_attn", item=0)

    def ff(y):
        F1 = m.linear1.out_features
        h = mp.emit("linear", [y.ref], {}, {"weight": m.linear1.weight, "bias": m.linear1.bias},
                    out=mp.virtual(None, [T, F1], n), name=f"{prefix}.linear1", final=False)
        h = hooked(h, "linear1", F1)
        h = activation_of(mp, m.activation, h, f"{prefix}.activation")
        o = mp.emit("linear", [h.ref], {}, {"weight": m.linear2.weight, "bias": m.linear2.bias},
                    out=y, name=f"{prefix}.linear2", final=False)
        return hooked(o, "linear2")

    if m.norm_first:
        x = add(x, sa(ln(x, m.norm1, "norm1")), "add1")
        x = add(x, ff(ln(x, m.norm2, "norm2")), "add2")
    else:
        x = ln(add(x, sa(x), "add1"), m.norm1, "norm1")
        x = ln(add(x, ff(x), "add2"), m.norm2, "norm2")
    return hooked(x, "")   # the layer's own output


def encoder_layer_module(mp, m):
    x = mp.tv(mp.arg(0, "src"))
    mask = mp.arg(1, "src_mask")
    if mp.arg(2, "src_key_padding_mask") is not None:
        mp.fail("src_key_padding_mask")
    y = encoder_layer(mp, m, x, mp.tv(mask) if mask is not None else None, mp.node.target, mp.n_big)
    return mp.finish(y.ref, x)


def encoder_module(mp, m):
    x = mp.tv(mp.arg(0, "src"))
    mask = mp.arg(1, "mask")
    if mp.arg(2, "src_key_padding_mask") is not None:
        mp.fail("src_key_padding_mask")
    mask = mp.tv(mask) if mask is not None else None
    y = x
    for i, layer in enumerate(m.layers):
        y = encoder_layer(mp, layer, y, mask, f"{mp.node.target}.layers.{i}", mp.n_big)
    if m.norm is not None:
        y = layernorm_of(mp, y, m.norm, f"{mp.node.target}.norm")
    return mp.finish(y.ref, x)


# ---------------------------------------------------------------- modules
def map_module(mp, m):
    """nn.Module leaf (float64 copy m) -> Val."""
    node = mp.node
    if isinstance(m, nn.MultiheadAttention):
        return mha_module(mp, m)
    if isinstance(m, nn.TransformerEncoderLayer):
        return encoder_layer_module(mp, m)
    if isinstance(m, nn.TransformerEncoder):
        return encoder_module(mp, m)
    if len(node.args) + len(node.kwargs) != 1:
        mp.fail("module called with more than one argument")
    x = mp.tv(node.args[0] if node.args else next(iter(node.kwargs.values())))
    if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity)):
        return mp.drop(x, type(m).__name__)
    if x.kind != "batched":
        mp.fail("module applied to a constant")
    out = mp.out(x)
    simple = [(nn.ReLU, "relu", None), (nn.SiLU, "silu", None), (nn.Sigmoid, "sigmoid", None),
              (nn.Tanh, "tanh", None), (nn.Hardswish, "hardswish", None),
              (nn.Hardsigmoid, "hardsigmoid", None)]
    for cls, op, attrs in simple:
        if type(m) is cls:
            return mp.emit(op, [x.ref], attrs, out=out)
    if isinstance(m, (nn.ReLU6, nn.Hardtanh)):
        return mp.emit("hardtanh", [x.ref], {"min_val": float(m.min_val), "max_val": float(m.max_val)}, out=out)
    if isinstance(m, nn.LeakyReLU):
        return mp.emit("leaky_relu", [x.ref], {"negative_slope": float(m.negative_slope)}, out=out)
    if isinstance(m, nn.GELU):
        return mp.emit("gelu", [x.ref], {"approximate": getattr(m, "approximate", "none")}, out=out)
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
        if m.dim is None:
            mp.fail("softmax without an explicit dim")
        op = "softmax" if isinstance(m, nn.Softmax) else "log_softmax"
        return mp.emit(op, [x.ref], {"axis": mp.ds_dim(x, m.dim)}, out=out)
    if isinstance(m, nn.Linear):
        return linear_like(mp, x, m.weight, m.bias, out)
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            mp.fail(f"padding_mode '{m.padding_mode}' (only 'zeros')")
        return emit_conv(mp, x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)
    if isinstance(m, nn.ConvTranspose2d):
        need_nchw(mp, x)
        if m.padding_mode != "zeros":
            mp.fail(f"padding_mode '{m.padding_mode}' (only 'zeros')")
        return mp.emit("conv_transpose2d", [x.ref], {
            "stride": pair(m.stride), "padding": pair(m.padding),
            "output_padding": pair(m.output_padding), "dilation": pair(m.dilation),
            "groups": int(m.groups)}, {"weight": m.weight, "bias": m.bias}, out=out)
    if isinstance(m, nn.BatchNorm2d):
        need_nchw(mp, x)
        if m.training:
            mp.fail("BatchNorm2d in training mode (call .eval())")
        if m.running_mean is None:
            mp.fail("BatchNorm2d without running statistics (track_running_stats=False)")
        c = m.num_features
        one = torch.ones(c, dtype=torch.float64)
        return mp.emit("batchnorm2d", [x.ref], {"eps": float(m.eps)}, {
            "weight": m.weight if m.weight is not None else one,
            "bias": m.bias if m.bias is not None else one * 0,
            "running_mean": m.running_mean, "running_var": m.running_var}, out=out)
    if isinstance(m, nn.LayerNorm):
        return emit_norm(mp, "layernorm", x, m.normalized_shape, m.eps, m.weight, m.bias)
    if isinstance(m, nn.GroupNorm):
        need_nchw(mp, x)
        return mp.emit("groupnorm", [x.ref], {"num_groups": int(m.num_groups), "eps": float(m.eps)},
                       {"weight": m.weight, "bias": m.bias} if m.affine else {}, out=out)
    if type(m).__name__ == "RMSNorm" and hasattr(m, "normalized_shape"):
        eps = m.eps if m.eps is not None else torch.finfo(torch.float32).eps
        return emit_norm(mp, "rmsnorm", x, m.normalized_shape, eps, getattr(m, "weight", None), None)
    if isinstance(m, nn.MaxPool2d):
        if m.return_indices:
            mp.fail("return_indices=True")
        return emit_maxpool(mp, x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        return emit_avgpool(mp, x, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                            m.count_include_pad, m.divisor_override)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return emit_adaptive(mp, x, m.output_size)
    if isinstance(m, nn.Upsample):
        return emit_upsample(mp, x, m.size, m.scale_factor, m.mode)
    if isinstance(m, (nn.Flatten, nn.Unflatten)):
        from capture_ops import reshape
        return reshape(mp)
    if isinstance(m, nn.Embedding):
        if m.max_norm is not None:
            mp.fail("Embedding with max_norm (modifies the weight)")
        return emit_embedding(mp, x, m.weight)
    mp.fail("no divscope mapping for this module")


# ---------------------------------------------------------------- functional forms
def f_conv(mp):
    a = mp.arg
    w = mp.tv(a(1, "weight"))
    b = a(2, "bias")
    return emit_conv(mp, mp.tv(a(0, "input")), w.value, mp.tv(b).value if b is not None else None,
                     mp.pv(a(3, "stride", 1)), mp.pv(a(4, "padding", 0)),
                     mp.pv(a(5, "dilation", 1)), mp.pv(a(6, "groups", 1)))


def f_norm(op):
    def h(mp):
        a = mp.arg
        w, b = a(2, "weight"), a(3, "bias")
        w = mp.tv(w).value if w is not None else None
        b = mp.tv(b).value if b is not None and op == "layernorm" else None
        eps = mp.pv(a(4 if op == "layernorm" else 3, "eps", 1e-5 if op == "layernorm" else None))
        if eps is None:
            eps = torch.finfo(torch.float32).eps
        return emit_norm(mp, op, mp.tv(a(0, "input")), mp.pv(a(1, "normalized_shape")), eps, w, b)
    return h


def f_group_norm(mp):
    a = mp.arg
    x = mp.tv(a(0, "input"))
    need_nchw(mp, x)
    w, b = a(2, "weight"), a(3, "bias")
    p = {"weight": mp.tv(w).value if w is not None else None,
         "bias": mp.tv(b).value if b is not None else None}
    return mp.emit("groupnorm", [x.ref], {"num_groups": int(mp.pv(a(1, "num_groups"))),
                                          "eps": float(mp.pv(a(4, "eps", 1e-5)))}, p, out=mp.out(x))


def f_embedding(mp):
    return emit_embedding(mp, mp.tv(mp.arg(0, "input")), mp.tv(mp.arg(1, "weight")).value)


def f_maxpool(mp):
    a = lambda i, n, d=None: mp.pv(mp.arg(i, n, d))
    if a(6, "return_indices", False):
        mp.fail("return_indices=True")
    return emit_maxpool(mp, mp.tv(mp.arg(0, "input")), a(1, "kernel_size"), a(2, "stride"),
                        a(3, "padding", 0), a(4, "dilation", 1), a(5, "ceil_mode", False))


def f_avgpool(mp):
    a = lambda i, n, d=None: mp.pv(mp.arg(i, n, d))
    return emit_avgpool(mp, mp.tv(mp.arg(0, "input")), a(1, "kernel_size"), a(2, "stride"),
                        a(3, "padding", 0), a(4, "ceil_mode", False), a(5, "count_include_pad", True),
                        a(6, "divisor_override"))


def f_adaptive(mp):
    return emit_adaptive(mp, mp.tv(mp.arg(0, "input")), mp.pv(mp.arg(1, "output_size")))


def f_interpolate(mp):
    a = lambda i, n, d=None: mp.pv(mp.arg(i, n, d))
    return emit_upsample(mp, mp.tv(mp.arg(0, "input")), a(1, "size"), a(2, "scale_factor"),
                         a(3, "mode", "nearest"))


def f_sdpa(mp):
    from capture_ops import sdpa
    a = mp.arg
    if mp.node.target.__name__ == "divscope_sdpa":
        return sdpa(mp, a(0, "q"), a(1, "k"), a(2, "v"), None, 0.0, a(3, "is_causal", False),
                    a(4, "scale"))
    if a(7, "enable_gqa", False):
        mp.fail("attention with enable_gqa")
    return sdpa(mp, a(0, "query"), a(1, "key"), a(2, "value"), a(3, "attn_mask"),
                mp.pv(a(4, "dropout_p", 0.0)), a(5, "is_causal", False), a(6, "scale"))


def f_stochastic_depth(mp):
    if mp.pv(mp.arg(3, "training", True)):
        mp.fail("stochastic_depth in training mode (call .eval())")
    return mp.drop(mp.tv(mp.arg(0, "input")), "stochastic_depth")


def _nn(name):
    f = getattr(torch._C._nn, name, None)
    return [f] if f is not None else []


FUNCTIONS = [
    (fns((F, "conv2d"), (torch, "conv2d")), f_conv),
    (fns((F, "layer_norm"), (torch, "layer_norm")), f_norm("layernorm")),
    (fns((F, "group_norm"),), f_group_norm),
    (fns((F, "embedding"),), f_embedding),
    (fns((F, "max_pool2d"), (torch, "max_pool2d")), f_maxpool),
    (fns((F, "avg_pool2d"),) + _nn("avg_pool2d"), f_avgpool),
    (fns((F, "adaptive_avg_pool2d"),) + _nn("adaptive_avg_pool2d"), f_adaptive),
    (fns((F, "interpolate"), (F, "upsample_nearest"), (F, "upsample")), f_interpolate),
]
try:
    from torchvision.ops import stochastic_depth as _sd
    FUNCTIONS.append(([_sd], f_stochastic_depth))
except Exception:  # torchvision is optional
    pass
