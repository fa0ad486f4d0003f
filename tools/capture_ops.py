"""Handlers: one batched torch.fx node -> divscope layers (capture_map.Mapper does the rest).

A handler gets the Mapper (node in mp.node) and returns the node's Val. Element-wise ops,
reductions, views and data movement are here; modules (Linear, Conv2d, norms, attention,
transformer layers) are in capture_modules.py.
"""
import operator

import numpy as np
import torch
import torch.nn.functional as F

from capture_values import Val, const_per_sample, merge_after_reshape, norm_dim


def fns(*specs):
    out = []
    for owner, names in specs:
        for n in names.split():
            f = getattr(owner, n, None)
            if f is not None:
                out.append(f)
    return out


# ---------------------------------------------------------------- element-wise
def unary(op, attrs=None):
    def h(mp):
        x = mp.tv(mp.arg(0, "input"))
        return mp.emit(op, [x.ref], attrs(mp) if callable(attrs) else attrs, out=mp.out(x))
    return h


def binary(op, swap=False):
    def h(mp):
        a, b = mp.arg(0, "input"), mp.arg(1, "other")
        if swap:
            a, b = b, a
        va, vb = mp.tv(a), mp.tv(b)
        like = va if va.kind == "batched" else vb
        out = mp.out(like)
        alpha = mp.node.kwargs.get("alpha", 1)
        if alpha != 1:
            mp.fail("alpha != 1")
        return mp.emit(op, [mp.operand(va, out), mp.operand(vb, out)], out=out)
    return h


def identity(mp):
    what = mp.node.target if isinstance(mp.node.target, str) else mp.node.target.__name__
    return mp.drop(mp.tv(mp.node.args[0] if mp.node.args else mp.arg(0, "input")), what)


def to_dtype(mp):
    x = mp.tv(mp.node.args[0])
    for a in list(mp.node.args[1:]) + list(mp.node.kwargs.values()):
        a = mp.pv(a) if not isinstance(a, torch.fx.Node) else a
        if isinstance(a, torch.dtype) and not a.is_floating_point:
            mp.fail(f"cast of a float tensor to {a}")
    return mp.drop(x, "float cast")


def hardtanh_args(lo_i, hi_i, lo=-1.0, hi=1.0):
    return lambda mp: {"min_val": float(mp.pv(mp.arg(lo_i, "min_val", lo))),
                       "max_val": float(mp.pv(mp.arg(hi_i, "max_val", hi)))}


def clamp(mp):
    x = mp.tv(mp.arg(0, "input"))
    lo, hi = mp.pv(mp.arg(1, "min")), mp.pv(mp.arg(2, "max"))
    if lo is None or hi is None:
        out = mp.out(x)
        c = mp.tv(lo if lo is not None else hi)
        return mp.emit("maximum" if lo is not None else "minimum",
                       [x.ref, mp.operand(c, out)], out=out)
    return mp.emit("hardtanh", [x.ref], {"min_val": float(lo), "max_val": float(hi)}, out=mp.out(x))


def gelu(mp):
    x = mp.tv(mp.arg(0, "input"))
    return mp.emit("gelu", [x.ref], {"approximate": str(mp.pv(mp.arg(1, "approximate", "none")))},
                   out=mp.out(x))


def leaky(mp):
    x = mp.tv(mp.arg(0, "input"))
    return mp.emit("leaky_relu", [x.ref],
                   {"negative_slope": float(mp.pv(mp.arg(1, "negative_slope", 0.01)))}, out=mp.out(x))


def softmax(op):
    def h(mp):
        x = mp.tv(mp.arg(0, "input"))
        dim = mp.pv(mp.arg(1, "dim"))
        if dim is None:
            mp.fail("softmax without an explicit dim")
        dt = mp.node.kwargs.get("dtype")
        if dt is not None and dt not in (torch.float32, torch.float64):
            mp.fail(f"softmax with dtype={dt}")
        return mp.emit(op, [x.ref], {"axis": mp.ds_dim(x, dim)}, out=mp.out(x))
    return h


def where(mp):
    c, a, b = (mp.tv(mp.arg(i, n)) for i, n in ((0, "condition"), (1, "input"), (2, "other")))
    like = next(v for v in (a, b, c) if v.kind == "batched")
    out = mp.out(like)
    return mp.emit("where", [mp.operand(c, out), mp.operand(a, out), mp.operand(b, out)], out=out)


def masked_fill(mp):
    x, m, val = mp.tv(mp.node.args[0]), mp.tv(mp.arg(1, "mask")), mp.tv(mp.arg(2, "value"))
    out = mp.out(x)
    return mp.emit("where", [mp.operand(m, out), mp.operand(val, out), x.ref], out=out)


# ---------------------------------------------------------------- reductions
def reduce(op):
    def h(mp):
        x = mp.tv(mp.arg(0, "input"))
        dims = mp.pv(mp.arg(1, "dim"))
        if dims is None or dims == [] or dims == ():
            mp.fail("reduction over every dim (the batch included)")
        dims = [dims] if isinstance(dims, int) else list(dims)
        keep = bool(mp.pv(mp.arg(2, "keepdim", False)))
        if mp.node.kwargs.get("dtype") is not None:
            mp.fail("reduction with dtype=")
        axes = sorted(mp.ds_dim(x, d) for d in dims)
        return mp.emit(op, [x.ref], {"axes": axes, "keepdim": int(keep)}, out=mp.out(x))
    return h


# ---------------------------------------------------------------- views and data movement
def reshape(mp):
    """view/reshape/flatten/squeeze/unsqueeze/unflatten: a per-sample reshape (capture_values)."""
    x = mp.tv(mp.node.args[0] if mp.node.args else mp.arg(0, "input"))
    if x.kind != "batched":
        mp.fail("reshape of a constant")
    inf_in, inf_out = mp.info[mp.node.args[0].name], mp.info[mp.node.name]
    big_in, big_out, n = inf_in.shape, inf_out.shape, inf_in.n_big
    if inf_in.n_small > n:
        big_in, big_out, n = inf_in.shape_small, inf_out.shape_small, inf_in.n_small
    try:
        axis, outer, inner = merge_after_reshape(x, big_in, big_out, n)
    except Exception as e:  # CaptureError
        mp.fail(str(e))
    out = mp.out(x, layout=(outer, inner))
    if out.axis != axis or outer * inner != out.tshape[axis] // inf_out.n_big:
        mp.fail("cannot follow the batch dim through this reshape")
    if out.per_sample() == x.per_sample():
        out.ref = x.ref
        return out
    return mp.emit("reshape", [x.ref], {"shape": out.per_sample()}, out=out)


def permute_dims(mp, x, perm):
    """torch permutation perm (out dim j <- in dim perm[j]) -> divscope permute."""
    out = mp.out(x)
    dims = x.ds_permutation(perm)
    if dims == list(range(len(dims))):
        out.ref = x.ref
        return out
    return mp.emit("permute", [x.ref], {"dims": dims}, out=out)


def permute(mp):
    x = mp.tv(mp.node.args[0])
    dims = mp.pv(list(mp.node.args[1:]) or mp.node.kwargs.get("dims"))
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = dims[0]
    return permute_dims(mp, x, [norm_dim(d, x.rank) for d in dims])


def transpose(mp):
    x = mp.tv(mp.node.args[0])
    if mp.node.target in ("t",) or len(mp.node.args) < 3 and not mp.node.kwargs:
        a, b = x.rank - 2, x.rank - 1
    else:
        a, b = mp.pv(mp.arg(1, "dim0")), mp.pv(mp.arg(2, "dim1"))
    perm = list(range(x.rank))
    a, b = norm_dim(a, x.rank), norm_dim(b, x.rank)
    perm[a], perm[b] = perm[b], perm[a]
    return permute_dims(mp, x, perm)


def getitem(mp):
    src, idx = mp.node.args
    x = mp.tv(src)
    idx = mp.pv(idx)
    if x.kind == "multi":
        v = x.items[idx]
        if v.kind == "absent" and mp.node.users:
            mp.fail(v.why)
        return v
    if x.kind != "batched":
        mp.fail("indexing a non-tensor")
    idx = idx if isinstance(idx, tuple) else (idx,)
    if any(isinstance(i, (torch.Tensor, list, torch.fx.Node)) for i in idx):
        mp.fail("indexing with a tensor (advanced indexing)")
    n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (slice(None),) * (x.rank - n_real) + idx[k + 1:]
    idx = idx + (slice(None),) * (x.rank - sum(1 for i in idx if i is not None))
    cur, d = x, 0
    for i in idx:
        if i is None:
            continue
        size = x.tshape[d]
        if isinstance(i, int) or (isinstance(i, slice) and i != slice(None)):
            if d == x.axis:
                mp.fail("indexing the batch dim")
            if isinstance(i, int):
                start, stop, step = (i % size), (i % size) + 1, 1
            else:
                start, stop, step = i.indices(size)
            if stop <= start:
                mp.fail("empty slice")
            if (start, stop, step) != (0, size, 1):
                ps = list(cur.per_sample())
                ax = x.ds_dim(d)
                ps[ax - 1] = len(range(start, stop, step))
                attrs = {"axis": ax, "start": start, "end": stop}
                if step != 1:
                    attrs["step"] = step
                cur = mp.emit("slice", [cur.ref], attrs, out=mp.virtual(None, ps, mp.n_big),
                              final=False)
        d += 1
    out = mp.out(x)
    if cur.per_sample() != out.per_sample():
        return mp.emit("reshape", [cur.ref], {"shape": out.per_sample()}, out=out)
    if cur is x:
        return x
    out.ref = cur.ref
    mp.layers[-1].node, mp.layers[-1].val = mp.node, out   # the last slice is the node's value
    return out


def split(mp, kind):
    """split/chunk/unbind: one divscope `split` layer (outputs '<name>:<i>')."""
    x = mp.tv(mp.node.args[0])
    dim = mp.pv(mp.arg(1, "dim", 0)) if kind == "unbind" else mp.pv(mp.arg(2, "dim", 0))
    dim = norm_dim(dim, x.rank)
    ax = mp.ds_dim(x, dim)
    inf = mp.info[mp.node.name]
    sizes = [1] * len(inf.items) if kind == "unbind" else [it.shape[dim] for it in inf.items]
    s = mp.emit("split", [x.ref], {"axis": ax, "sizes": sizes}, out=x, final=False)
    layer = mp.layers[-1]
    items = []
    for i in range(len(sizes)):
        v = mp.out(x, item=i)
        v.ref = f"{s.ref}:{i}"
        if kind == "unbind":
            v = mp.emit("reshape", [v.ref], {"shape": v.per_sample()}, out=v,
                        name=f"{s.ref}.{i}", item=i)
        items.append(v)
    if kind != "unbind":
        layer.node = mp.node
        layer.outputs = [(v.ref, v, i) for i, v in enumerate(items)]
    return Val("multi", items=items)


def chunk(mp):
    return split(mp, "chunk")


def split_fn(mp):
    return split(mp, "split")


def unbind(mp):
    return split(mp, "unbind")


def cat(mp):
    ts = mp.node.args[0] if mp.node.args else mp.node.kwargs["tensors"]
    vals = [mp.tv(t) for t in ts]
    dim = mp.pv(mp.arg(1, "dim", 0))
    like = next(v for v in vals if v.kind == "batched")
    out = mp.out(like)
    ax = mp.ds_dim(out, dim)
    refs = []
    for v in vals:
        if v.kind == "const":
            ps = const_per_sample(v.value, out)
            c = mp.constant(v, out, per_sample=ps)
            e = mp.emit("expand", [c, mp.like_input()], {"shape": list(ps.shape)},
                        out=mp.virtual(None, list(ps.shape), mp.n_big),
                        name=f"{c}.expand", final=False)
            refs.append(e.ref)
        else:
            refs.append(mp.operand(v, out))
    return mp.emit("concat", refs, {"axis": ax}, out=out)


def stack(mp):
    """torch.stack as concat of the inputs, each reshaped with a new dim of 1."""
    ts = mp.node.args[0] if mp.node.args else mp.node.kwargs["tensors"]
    vals = [mp.tv(t) for t in ts]
    if any(v.kind != "batched" for v in vals):
        mp.fail("torch.stack of a constant")
    out = mp.out(vals[0])
    ax = mp.ds_dim(out, mp.pv(mp.arg(1, "dim", 0)))
    refs = []
    for i, v in enumerate(vals):
        if not v.same_layout(vals[0]) or v.tshape != vals[0].tshape:
            mp.fail("torch.stack of tensors with different shapes or batch layouts")
        ps = list(v.per_sample())
        ps.insert(ax - 1, 1)
        refs.append(mp.emit("reshape", [v.ref], {"shape": ps}, out=mp.virtual(None, ps, mp.n_big),
                            name=f"{mp.base_name()}.{i}", final=False).ref)
    return mp.emit("concat", refs, {"axis": ax}, out=out)


def expand(mp):
    x = mp.tv(mp.node.args[0])
    out = mp.out(x if x.kind == "batched" else None)
    ps = out.per_sample()
    if x.kind == "const":
        c = mp.constant(x, out)
        return mp.emit("expand", [c, mp.like_input()], {"shape": ps}, out=out)
    src = mp.operand(x, out)
    return mp.emit("expand", [src], {"shape": ps}, out=out)


def pad(mp):
    """F.pad (constant mode) as concat with constant blocks (expanded over the batch)."""
    x = mp.tv(mp.arg(0, "input"))
    p = list(mp.pv(mp.arg(1, "pad")))
    if mp.pv(mp.arg(2, "mode", "constant")) != "constant":
        mp.fail("padding mode other than 'constant'")
    value = float(mp.pv(mp.arg(3, "value", 0.0)) or 0.0)
    cur, ps = x.ref, list(x.per_sample())
    for i in range(len(p) // 2):
        before, after = p[2 * i], p[2 * i + 1]
        if before == 0 and after == 0:
            continue
        if before < 0 or after < 0:
            mp.fail("negative padding (cropping)")
        d = x.rank - 1 - i
        ax = mp.ds_dim(x, d)
        parts = []
        for amount in (before, after):
            if amount:
                shape = list(ps)
                shape[ax - 1] = amount
                c = mp.constant(None, None, key=f"{mp.node.name}_pad",
                                per_sample=np.full(shape, value))
                parts.append(mp.emit("expand", [c, mp.like_input()], {"shape": shape},
                                     out=mp.virtual(None, shape, mp.n_big),
                                     name=f"{mp.base_name()}.block", final=False).ref)
            else:
                parts.append(None)
        ps[ax - 1] += before + after
        ins = [r for r in (parts[0], cur, parts[1]) if r is not None]
        cur = mp.emit("concat", ins, {"axis": ax}, out=mp.virtual(None, list(ps), mp.n_big),
                      name=f"{mp.base_name()}", final=False).ref
    return mp.finish(cur, x)


def roll(mp):
    """torch.roll as concat of the two slices of each rolled dim."""
    x = mp.tv(mp.arg(0, "input"))
    shifts, dims = mp.pv(mp.arg(1, "shifts")), mp.pv(mp.arg(2, "dims"))
    if dims is None:
        mp.fail("roll without dims (over the flattened tensor)")
    shifts = [shifts] if isinstance(shifts, int) else list(shifts)
    dims = [dims] if isinstance(dims, int) else list(dims)
    cur, ps = x.ref, list(x.per_sample())
    for sh, d in zip(shifts, dims):
        ax = mp.ds_dim(x, d)
        size = ps[ax - 1]
        k = sh % size
        if k == 0:
            continue
        halves = []
        for start, end in ((size - k, size), (0, size - k)):
            shape = list(ps)
            shape[ax - 1] = end - start
            halves.append(mp.emit("slice", [cur], {"axis": ax, "start": start, "end": end},
                                  out=mp.virtual(None, shape, mp.n_big),
                                  name=f"{mp.base_name()}.part", final=False).ref)
        cur = mp.emit("concat", halves, {"axis": ax}, out=mp.virtual(None, list(ps), mp.n_big),
                      name=mp.base_name(), final=False).ref
    return mp.finish(cur, x)


def normalize(mp):
    """F.normalize(x, p=2, dim): x / max(sqrt(sum(x*x, dim)), eps), as mul, reduce_sum, sqrt,
    maximum, div (PyTorch: x / x.norm(2, dim, keepdim=True).clamp_min(eps))."""
    x = mp.tv(mp.arg(0, "input"))
    if float(mp.pv(mp.arg(1, "p", 2.0))) != 2.0:
        mp.fail("normalize with p != 2")
    ax = mp.ds_dim(x, mp.pv(mp.arg(2, "dim", 1)))
    eps = float(mp.pv(mp.arg(3, "eps", 1e-12)))
    base, ps = mp.base_name(), list(x.per_sample())
    red = list(ps)
    red[ax - 1] = 1
    v = lambda shape: mp.virtual(None, shape, mp.n_big)
    sq = mp.emit("mul", [x.ref, x.ref], out=v(ps), name=f"{base}.square", final=False)
    ss = mp.emit("reduce_sum", [sq.ref], {"axes": [ax], "keepdim": 1}, out=v(red),
                 name=f"{base}.sum", final=False)
    nrm = mp.emit("sqrt", [ss.ref], out=v(red), name=f"{base}.norm", final=False)
    c = mp.constant(None, None, key=f"{base}.eps", per_sample=np.full([1] * len(ps), eps))
    den = mp.emit("maximum", [nrm.ref, c], out=v(red), name=f"{base}.clamp", final=False)
    out = mp.out(x)
    return mp.emit("div", [x.ref, den.ref], out=out)


# ---------------------------------------------------------------- linear algebra
def _permuted(mp, x, perm, name):
    """x permuted by torch permutation perm (a layer unless it is the identity)."""
    t = Val("batched", tshape=[x.tshape[p] for p in perm], axis=perm.index(x.axis),
            outer=x.outer, inner=x.inner, dtype=x.dtype)
    dims = x.ds_permutation(perm)
    if dims == list(range(len(dims))):
        t.ref = x.ref
        return t
    return mp.emit("permute", [x.ref], {"dims": dims}, out=t, name=name, final=False)


def einsum(mp):
    """Two-operand einsum that is a batched matrix product ("bhid,bhjd->bhij"): permutes,
    matmul, permute."""
    eq = mp.pv(mp.node.args[0]).replace(" ", "")
    ops = mp.node.args[1:]
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = ops[0]
    if "->" not in eq or "." in eq or len(ops) != 2:
        mp.fail(f"einsum '{eq}' (only two operands, explicit output, no ellipsis)")
    ins, out_s = eq.split("->")
    sa, sb = ins.split(",")
    a, b = mp.tv(ops[0]), mp.tv(ops[1])
    if a.kind != "batched" or b.kind != "batched":
        mp.fail("einsum with a constant operand")
    batch = [c for c in out_s if c in sa and c in sb]
    m = [c for c in out_s if c in sa and c not in sb]
    n = [c for c in out_s if c in sb and c not in sa]
    k = [c for c in sa if c in sb and c not in out_s]
    if len(m) != 1 or len(n) != 1 or len(k) != 1 or len(set(sa)) != len(sa) or \
            len(set(sb)) != len(sb) or len(sa) != len(batch) + 2 or len(sb) != len(batch) + 2:
        mp.fail(f"einsum '{eq}' is not a batched matrix product")
    if sa[a.axis] not in batch or sb[b.axis] != sa[a.axis]:
        mp.fail("einsum with the batch in a matrix dim")
    base = mp.base_name()
    pa = _permuted(mp, a, [sa.index(c) for c in batch + m + k], f"{base}.a")
    pb = _permuted(mp, b, [sb.index(c) for c in batch + k + n], f"{base}.b")
    if not pa.same_layout(pb):
        mp.fail("einsum operands hold the batch in different places")
    prod = Val("batched", tshape=pa.tshape[:-1] + [pb.tshape[-1]], axis=pa.axis, outer=pa.outer,
               inner=pa.inner)
    prod = mp.emit("matmul", [pa.ref, pb.ref], out=prod, name=base, final=False)
    order = batch + m + n
    res = _permuted(mp, prod, [order.index(c) for c in out_s], f"{base}.out")
    return mp.finish(res.ref, a if res.ref != a.ref else prod)



def matmul(mp):
    a, b = mp.tv(mp.arg(0, "input")), mp.tv(mp.arg(1, "other"))
    if a.kind == "batched" and b.kind == "batched":
        out = mp.out(a)
        if a.axis >= a.rank - 2 or b.axis >= b.rank - 2:
            mp.fail("matmul of two batched operands with the batch in a matrix dim")
        return mp.emit("matmul", [mp.operand(a, out), mp.operand(b, out)], out=out)
    if a.kind == "batched":
        if a.axis == a.rank - 1:
            mp.fail("matmul with the batch in the contracted dim")
        out = mp.out(a)
        bt = b.value if isinstance(b.value, torch.Tensor) else mp.fail("matmul by a number")
        if bt.dim() == 2:
            return linear_like(mp, a, bt.t(), None, out)
        ps = [1] * (len(a.per_sample()) - bt.dim()) + list(bt.shape) if bt.dim() <= len(a.per_sample()) else None
        if ps is None or a.axis >= a.rank - 2:
            mp.fail("matmul by a constant of this shape")
        c = mp.constant(b, out, per_sample=bt.reshape(ps).numpy())
        return mp.emit("matmul", [a.ref, c], out=out)
    mp.fail("matmul with a constant left operand")


def linear_like(mp, x, w_out_in, bias, out):
    """x @ w.T + b as a divscope linear (weight [out, in])."""
    if x.axis == x.rank - 1:
        mp.fail("the batch dim is the features dim")
    return mp.emit("linear", [x.ref], {}, {"weight": w_out_in, "bias": bias}, out=out)


def addmm(mp):
    bias, x, w = mp.tv(mp.arg(0, "input")), mp.tv(mp.arg(1, "mat1")), mp.tv(mp.arg(2, "mat2"))
    if mp.pv(mp.node.kwargs.get("beta", 1)) != 1 or mp.pv(mp.node.kwargs.get("alpha", 1)) != 1:
        mp.fail("addmm with beta/alpha != 1")
    if x.kind != "batched" or w.kind != "const" or bias.kind != "const":
        mp.fail("addmm needs a batched mat1 and constant mat2/bias")
    b = bias.value.reshape(-1) if bias.value.dim() <= 1 or bias.value.shape[0] == 1 else mp.fail("bias shape")
    return linear_like(mp, x, w.value.t(), b, mp.out(x))


def f_linear(mp):
    x = mp.tv(mp.arg(0, "input"))
    w, b = mp.tv(mp.arg(1, "weight")), mp.arg(2, "bias")
    b = mp.tv(b).value if b is not None else None
    if w.kind != "const":
        mp.fail("linear with a computed weight")
    return linear_like(mp, x, w.value, b, mp.out(x))


def sdpa(mp, q, k, v, mask, dropout, is_causal, scale):
    if dropout not in (0, 0.0, None):
        mp.fail("attention with dropout_p != 0")
    if mask is not None:
        mp.fail("attention with attn_mask (only is_causal)")
    qv, kv, vv = mp.tv(q), mp.tv(k), mp.tv(v)
    for t in (qv, kv, vv):
        if t.rank != 4 or t.axis != 0 or t.outer * t.inner != 1:
            mp.fail("attention operands must be [N, H, T, D]")
    attrs = {"is_causal": int(bool(mp.pv(is_causal)))}
    if scale is not None:
        attrs["scale"] = float(mp.pv(scale))
    return mp.emit("scaled_dot_product_attention", [qv.ref, kv.ref, vv.ref], attrs, out=mp.out(qv))


# ---------------------------------------------------------------- tables
FUNCTIONS = [
    (fns((F, "relu"), (torch, "relu")), unary("relu")),
    (fns((F, "relu6"),), unary("hardtanh", {"min_val": 0.0, "max_val": 6.0})),
    (fns((F, "hardtanh"),), unary("hardtanh", hardtanh_args(1, 2))),
    (fns((F, "hardswish"),), unary("hardswish")),
    (fns((F, "hardsigmoid"),), unary("hardsigmoid")),
    (fns((F, "silu"),), unary("silu")),
    (fns((F, "sigmoid"), (torch, "sigmoid")), unary("sigmoid")),
    (fns((F, "tanh"), (torch, "tanh")), unary("tanh")),
    (fns((torch, "sqrt"),), unary("sqrt")),
    (fns((torch, "rsqrt"),), unary("rsqrt")),
    (fns((torch, "exp"),), unary("exp")),
    (fns((torch, "log"),), unary("log")),
    (fns((torch, "abs"),) + [operator.abs], unary("abs")),
    (fns((torch, "neg"),) + [operator.neg], unary("neg")),
    (fns((torch, "erf"), (torch.special, "erf")), unary("erf")),
    (fns((torch, "clamp"), (torch, "clip")), clamp),
    (fns((F, "gelu"),), gelu),
    (fns((F, "leaky_relu"),), leaky),
    (fns((F, "softmax"), (torch, "softmax")), softmax("softmax")),
    (fns((F, "log_softmax"), (torch, "log_softmax")), softmax("log_softmax")),
    ([operator.add, operator.iadd] + fns((torch, "add")), binary("add")),
    ([operator.sub, operator.isub] + fns((torch, "sub")), binary("sub")),
    (fns((torch, "rsub"),), binary("sub", swap=True)),
    ([operator.mul, operator.imul] + fns((torch, "mul")), binary("mul")),
    ([operator.truediv, operator.itruediv] + fns((torch, "div"), (torch, "true_divide")), binary("div")),
    ([operator.pow] + fns((torch, "pow")), binary("pow")),
    (fns((torch, "maximum"),), binary("maximum")),
    (fns((torch, "minimum"),), binary("minimum")),
    (fns((torch, "where"),), where),
    (fns((torch, "masked_fill"),), masked_fill),
    (fns((torch, "mean"),), reduce("reduce_mean")),
    (fns((torch, "sum"),), reduce("reduce_sum")),
    (fns((torch, "amax"),), reduce("reduce_max")),
    (fns((F, "dropout"), (F, "dropout1d"), (F, "dropout2d"), (F, "alpha_dropout"), (torch, "dropout")),
     identity),
    (fns((torch, "flatten"), (torch, "reshape"), (torch, "squeeze"), (torch, "unsqueeze"),
         (torch, "unflatten")), reshape),
    (fns((torch, "permute"),), permute),
    (fns((torch, "transpose"), (torch, "swapaxes"), (torch, "swapdims"), (torch, "t")), transpose),
    ([operator.getitem], getitem),
    (fns((torch, "split"),), split_fn),
    (fns((torch, "chunk"),), chunk),
    (fns((torch, "unbind"),), unbind),
    (fns((torch, "cat"), (torch, "concat"), (torch, "concatenate")), cat),
    (fns((F, "pad"),), pad),
    (fns((torch, "roll"),), roll),
    (fns((torch, "stack"),), stack),
    ([operator.matmul] + fns((torch, "matmul"), (torch, "bmm")), matmul),
    (fns((torch, "addmm"),), addmm),
    (fns((torch, "einsum"), (torch.functional, "einsum")), einsum),
    (fns((F, "normalize"),), normalize),
    (fns((F, "linear"),), f_linear),
]

METHODS = {
    "relu": unary("relu"), "relu_": unary("relu"), "sigmoid": unary("sigmoid"),
    "tanh": unary("tanh"), "sqrt": unary("sqrt"), "rsqrt": unary("rsqrt"), "exp": unary("exp"),
    "log": unary("log"), "abs": unary("abs"), "neg": unary("neg"), "erf": unary("erf"),
    "clamp": clamp, "clip": clamp,
    "add": binary("add"), "add_": binary("add"), "sub": binary("sub"), "sub_": binary("sub"),
    "mul": binary("mul"), "mul_": binary("mul"), "div": binary("div"), "div_": binary("div"),
    "pow": binary("pow"), "maximum": binary("maximum"), "minimum": binary("minimum"),
    "softmax": softmax("softmax"), "log_softmax": softmax("log_softmax"),
    "masked_fill": masked_fill, "masked_fill_": masked_fill, "where": where,
    "mean": reduce("reduce_mean"), "sum": reduce("reduce_sum"), "amax": reduce("reduce_max"),
    "contiguous": identity, "clone": identity, "detach": identity,
    "to": to_dtype, "type": to_dtype, "float": identity, "double": identity, "type_as": identity,
    "view": reshape, "reshape": reshape, "flatten": reshape, "squeeze": reshape,
    "unsqueeze": reshape, "unflatten": reshape, "view_as": reshape, "reshape_as": reshape,
    "permute": permute, "transpose": transpose, "swapaxes": transpose, "t": transpose,
    "split": split_fn, "chunk": chunk, "unbind": unbind,
    "expand": expand, "expand_as": expand, "roll": roll,
    "matmul": matmul, "bmm": matmul,
}
