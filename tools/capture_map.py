"""torch.fx nodes -> divscope layers (capture_torch.py). docs/ops.md is the contract.

Every node is one of: a graph input; a value that does not depend on the inputs (parameters,
buffers, aranges, masks, scalars -- folded into a constant, from the float64 run); or a
batched value, mapped by a handler to one or more divscope layers. Handlers live in
capture_ops.py; this file holds the machinery they share.
"""
import copy

import numpy as np
import torch

from capture_values import CaptureError, Val, const_per_sample


def tname(target):
    if isinstance(target, str):
        return target
    mod = getattr(target, "__module__", None)
    name = getattr(target, "__name__", None) or repr(target)
    if mod in (None, "torch._C._nn", "torch._C._VariableFunctions"):
        mod = "torch"
    if mod == "_operator":
        mod = "operator"
    return f"{mod}.{name}"


class Layer:
    """One divscope layer. `node`/`item`: the fx node (and tuple item) whose value is this
    layer's output, for the recorded activations; None for layers inside a decomposition."""

    def __init__(self, name, op, inputs, attrs, params, val, source, node=None, item=None):
        self.name, self.op, self.inputs = name, op, list(inputs)
        self.attrs, self.params = attrs or {}, params or {}
        self.val, self.source, self.node, self.item = val, source, node, item
        self.outputs = None   # split: [(name:i, Val)]
        self.hook = None      # (module path, tuple item, Val): recorded by a forward hook


class Mapper:
    def __init__(self, gm, gm64, info, n_big, input_names):
        self.gm, self.gm64, self.info, self.n_big = gm, gm64, info, n_big
        self.layers, self.constants, self.vals = [], {}, {}
        self.used = set(input_names)
        self.first_input = input_names[0]
        self.node = None          # the node being mapped (for messages and names)
        self.dropped = {}         # what was dropped as the identity at inference -> count

    # ----- messages, names
    def describe(self, node=None):
        node = node or self.node
        if node.op == "call_module":
            m = self.gm.get_submodule(node.target)
            path = node.target
            return f"call_module {m.__class__.__module__}.{m.__class__.__name__} at '{path}'"
        path = self.module_path(node)
        where = f" in module '{path}'" if path else ""
        return f"{node.op} {tname(node.target)}{where}"

    @staticmethod
    def module_path(node):
        """The module a function/method node was created in (ConcreteTracer, or fx's own
        nn_module_stack where a tracer records it)."""
        meta = getattr(node, "meta", {})
        if meta.get("divscope_module"):
            return meta["divscope_module"]
        stack = meta.get("nn_module_stack")
        return list(stack.keys())[-1] if stack else ""

    def fail(self, why=""):
        node = self.node
        msg = f"capture_torch: cannot map node '{node.name}' ({self.describe(node)})"
        raise CaptureError(msg + (f": {why}" if why else ""))

    def unique(self, name):
        name = name.replace("/", ".")
        base, i = name, 1
        while name in self.used:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name

    def base_name(self, node=None):
        node = node or self.node
        if node.op == "call_module":
            return node.target
        path = self.module_path(node)
        return f"{path}.{node.name}" if path else node.name

    # ----- values of arguments
    def tv(self, x):
        """Val of a tensor-or-number argument."""
        if isinstance(x, torch.fx.Node):
            v = self.vals.get(x.name)
            if v is None:
                self.fail(f"argument '{x.name}' was not mapped")
            if v.kind == "absent":
                self.fail(f"uses '{x.name}': {v.why}")
            if v.kind == "other" and isinstance(v.value, (int, float, bool)):
                inf = self.info.get(x.name)
                if inf is not None and inf.value_small is not None and inf.value_small != inf.value:
                    self.fail(f"operand '{x.name}' is a number that depends on the batch size "
                              f"({inf.value} vs {inf.value_small}): it would be fixed at one batch's")
                return Val("const", value=float(v.value))   # 1.0 / math.sqrt(x.size(-1))
            return v
        if isinstance(x, (int, float, bool)):
            return Val("const", value=float(x))
        if isinstance(x, torch.Tensor):
            return Val("const", value=x.detach().to(torch.float64))
        self.fail(f"argument {x!r} is not a tensor")

    def pv(self, x):
        """Python value of a non-tensor argument (sizes, dims, flags), nodes resolved."""
        if isinstance(x, torch.fx.Node):
            v = self.vals.get(x.name)
            if v is None or v.kind not in ("other", "const"):
                self.fail(f"argument '{x.name}' is a tensor where a constant was expected")
            if v.kind == "const" and isinstance(v.value, torch.Tensor):
                if v.value.numel() != 1:
                    self.fail(f"argument '{x.name}' is a tensor where a number was expected")
                return v.value.item()
            return v.value
        if isinstance(x, (list, tuple)):
            return type(x)(self.pv(e) for e in x)
        if isinstance(x, slice):
            return slice(self.pv(x.start), self.pv(x.stop), self.pv(x.step))
        if isinstance(x, torch.Size):
            return tuple(x)
        return x

    def arg(self, i, name, default=None):
        node = self.node
        if i is not None and len(node.args) > i:
            return node.args[i]
        return node.kwargs.get(name, default)

    def module(self, target, fp64=True):
        return (self.gm64 if fp64 else self.gm).get_submodule(target)

    # ----- output metadata of the node being mapped
    def out(self, like=None, item=None, layout=None):
        """Val (without ref) of the node's batched output, from the two runs' shapes; outer and
        inner come from `like` (the batched input it keeps the layout of)."""
        inf = self.info[self.node.name]
        if item is not None:
            inf = inf.items[item]
        axis, ext = inf.batch_axis()
        if axis is None:
            self.fail(inf.why)
        if layout is not None:
            outer, inner = layout
        elif ext == 1:
            outer = inner = 1
        elif like is not None and like.outer * like.inner == ext:
            outer, inner = like.outer, like.inner
        else:
            self.fail("the batch dim is merged with another dim in a way capture cannot follow")
        return Val("batched", tshape=list(inf.shape), axis=axis, outer=outer, inner=inner,
                   dtype=inf.dtype)

    @staticmethod
    def virtual(ref, per_sample, n):
        """A value that only exists inside a decomposition (no torch counterpart): batch-first."""
        return Val("batched", ref=ref, tshape=[n] + list(per_sample), axis=0)

    # ----- emitting
    def emit(self, op, inputs, attrs=None, params=None, out=None, name=None, final=True,
             item=None):
        node = self.node
        name = self.unique(name or self.base_name(node))
        v = copy.copy(out)
        v.ref = name
        L = Layer(name, op, inputs, attrs, self._params(params), v,
                  f"{self.describe(node)} (fx node '{node.name}')",
                  node if final else None, item)
        self.layers.append(L)
        return v

    @staticmethod
    def _params(params):
        out = {}
        for k, p in (params or {}).items():
            if p is None:
                continue
            a = p.detach().cpu().to(torch.float64).numpy() if isinstance(p, torch.Tensor) else np.asarray(p, np.float64)
            f = a.astype(np.float32)
            out[k] = f if np.array_equal(f.astype(np.float64), a) else a
        return out

    def finish(self, ref, x):
        """The node's value is the last layer emitted (`ref`), laid out like its input x; or x
        itself when nothing was emitted."""
        if ref == x.ref:
            return x
        out = self.out(x)
        out.ref = ref
        self.layers[-1].node, self.layers[-1].val = self.node, out
        return out

    def constant(self, v, like, key=None, per_sample=None):
        """Name of a /constants entry holding constant Val v laid out as an operand of `like`."""
        a = per_sample if per_sample is not None else const_per_sample(v.value, like)
        a = np.asarray(a, dtype=np.float64)
        if np.isnan(a).any():
            self.fail("a folded constant contains NaN")
        base = key or f"{self.node.name}_const"
        for name, b in self.constants.items():
            if name.startswith(base) and b.shape == a.shape and np.array_equal(b, a):
                return name
        name = self.unique(base)
        self.constants[name] = a
        return name

    def operand(self, v, out):
        """divscope value name of operand v for an elementwise op whose output is `out`
        (same-rank broadcasting: constants laid out per sample, lower-rank values reshaped)."""
        if v.kind == "const":
            return self.constant(v, out, key=v.key)
        if v.kind != "batched":
            self.fail("operand is not a tensor")
        shift = out.rank - v.rank
        if v.axis + shift != out.axis or (v.outer, v.inner) != (out.outer, out.inner):
            self.fail("operands hold the batch in different places (samples would mix)")
        if shift == 0:
            return v.ref
        ps = [1] * shift + v.per_sample()
        r = self.emit("reshape", [v.ref], {"shape": ps}, self.virtual(None, ps, self.n_big),
                      name=f"{v.ref}.unsqueeze", final=False)
        return r.ref

    def drop(self, v, what):
        """The node is its input: an op that is the identity at inference (noted)."""
        self.dropped[what] = self.dropped.get(what, 0) + 1
        return v

    def like_input(self):
        return self.first_input

    def ds_dim(self, v, d):
        try:
            return v.ds_dim(d)
        except ValueError:
            self.fail(f"dim {d} is the batch dim (samples would mix)")
