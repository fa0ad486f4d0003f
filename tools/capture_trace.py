"""Tracing a model for capture_torch.py: torch.fx with the example batch's values at hand.

torch.fx's symbolic tracer cannot take a Python decision on a traced value: nanoGPT's
`assert t <= block_size`, nn.MultiheadAttention's `if not is_batched:`, a loop over
`x.size()`. The ConcreteTracer below runs the model on the example batch while it traces, so
each Proxy knows its value; `bool()`, `len()` and iteration of a Proxy use that value (the
recording's shapes are static: a decision on a shape is the same for every batch), while the
graph itself stays symbolic (`x.view(B, T, ...)` keeps B as a node, so the graph runs at any
batch size). A decision on tensor *data* (`if x.sum() > 0`) would be specific to the example
and is refused.

For models with a tracer of their own (Hugging Face `transformers.utils.fx`), pass `trace_fn`;
fx_compat.patched_fx() fixes Proxy iteration on Python 3.11 for those.
"""
import contextlib

import torch
import torch.fx
from torch.fx.node import map_aggregate

from capture_values import CaptureError


class _DataDependent(Exception):
    pass


class ConcreteProxy(torch.fx.Proxy):
    def _value(self):
        return self.tracer.values.get(self.node, None)

    def __bool__(self):
        v = self._value()
        if isinstance(v, torch.Tensor):
            raise CaptureError(
                f"capture_torch: the model branches on tensor data at node '{self.node.name}' "
                f"({self.node.format_node()}); only decisions on shapes can be captured")
        if v is None and self.node not in self.tracer.values:
            return super().__bool__()
        return bool(v)

    def __len__(self):
        v = self._value()
        if isinstance(v, (tuple, list, torch.Size)) or isinstance(v, torch.Tensor):
            return len(v)
        return super().__len__()

    def __iter__(self):
        v = self._value()
        if isinstance(v, (tuple, list, torch.Size)) or isinstance(v, torch.Tensor):
            return iter([self[i] for i in range(len(v))])
        return super().__iter__()

    def __setitem__(self, key, value):
        # In-place writes into a tensor (torchvision's swin builds its shift mask this way):
        # recorded in order, and applied to the value so later reads see them.
        import operator
        self.tracer.create_proxy("call_function", operator.setitem, (self, key, value), {})

    def __index__(self):
        return int(self._value())


class ConcreteTracer(torch.fx.Tracer):
    """fx.Tracer whose proxies carry the value of the node on the example inputs."""

    def __init__(self, example_inputs, leaf_types=(), autowrap_functions=()):
        super().__init__(autowrap_functions=tuple(autowrap_functions))
        self.examples = dict(example_inputs)   # placeholder (forward argument) name -> value
        self.paths = []
        self.first_error = None   # (node, exception): the first value that could not be computed
        self.values = {}
        self.leaf_types = tuple(leaf_types)

    def is_leaf_module(self, m, qualname):
        if isinstance(m, self.leaf_types):
            return True
        return super().is_leaf_module(m, qualname)

    def proxy(self, node):
        return ConcreteProxy(node, self)

    # While a value is computed, module calls and parameter reads go straight to PyTorch (the
    # tracer's patches of Module.__call__ and __getattr__ are still in place).
    evaluating = False

    def call_module(self, m, forward, args, kwargs):
        if self.evaluating:
            return forward(*args, **kwargs)
        # The module path every node is created under, for names and messages.
        self.paths.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self.paths.pop()

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self.evaluating:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None,
                     proxy_factory_fn=None):
        p = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        if isinstance(p, torch.fx.Proxy) and self.paths and not self.evaluating:
            p.node.meta["divscope_module"] = self.paths[-1]
        if isinstance(p, torch.fx.Proxy):
            try:
                self.values[p.node] = self._evaluate(kind, target, args, kwargs)
            except CaptureError:
                raise
            except Exception as e:   # decisions on this value fall back to fx; if tracing
                if self.first_error is None:   # then fails, this is the likely reason
                    self.first_error = (p.node, e)
        return p

    def _val(self, a):
        def one(x):
            if isinstance(x, torch.fx.Proxy):
                if x.node not in self.values:
                    raise KeyError(x.node.name)
                return self.values[x.node]
            if isinstance(x, torch.fx.Node):
                return self.values[x]
            return x
        return map_aggregate(a, one)

    def _evaluate(self, kind, target, args, kwargs):
        args, kwargs = self._val(args), self._val(kwargs)
        self.evaluating = True
        try:
            return self._run(kind, target, args, kwargs)
        finally:
            self.evaluating = False

    def _run(self, kind, target, args, kwargs):
        with torch.no_grad():
            if kind == "placeholder":
                name = target[1:] if target.startswith("*") else target
                return self.examples[name]
            if kind == "get_attr":
                obj = self.root
                for part in target.split("."):
                    obj = getattr(obj, part)
                return obj
            if kind == "call_function":
                return target(*args, **kwargs)
            if kind == "call_method":
                return getattr(args[0], target)(*args[1:], **kwargs)
            if kind == "call_module":
                return self.root.get_submodule(target)(*args, **kwargs)
        raise KeyError(kind)

    def trace(self, root, concrete_args=None):
        try:
            with _factories_traced(self):
                return super().trace(root, concrete_args)
        finally:
            self.values = {}


_FACTORIES = ("arange", "ones", "zeros", "full", "empty", "tensor", "eye", "tril", "triu")


@contextlib.contextmanager
def _factories_traced(tracer):
    """torch.arange(0, t) with t a traced size is not a tensor op (no __torch_function__):
    while tracing, a factory given a Proxy becomes a node (folded into a constant later)."""
    saved = {name: getattr(torch, name) for name in _FACTORIES}

    def wrap(orig):
        def f(*args, **kwargs):
            found = []
            map_aggregate((args, kwargs), lambda x: found.append(x) if isinstance(x, torch.fx.Proxy) else None)
            if found and not tracer.evaluating:
                return tracer.create_proxy("call_function", orig, args, kwargs)
            return orig(*args, **kwargs)
        f.__wrapped__ = orig
        return f

    try:
        for name, orig in saved.items():
            setattr(torch, name, wrap(orig))
        yield
    finally:
        for name, orig in saved.items():
            setattr(torch, name, orig)


@contextlib.contextmanager
def traced_through(functions):
    """Trace into functions a library registered with torch.fx.wrap (whose bodies we map op by
    op) instead of keeping them as one opaque node."""
    import torch.fx._symbolic_trace as st
    saved = list(st._wrapped_fns_to_patch)
    st._wrapped_fns_to_patch[:] = [(g, n) for g, n in saved if n not in functions]
    try:
        yield
    finally:
        st._wrapped_fns_to_patch[:] = saved
