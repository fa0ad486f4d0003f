#!/usr/bin/env python3
"""The anchor of issue 15's whole-analysis target: what a user writes instead of divscope.

PyTorch forward hooks on every leaf module record its output in float64, float32 and bfloat16;
each float32 and bfloat16 output is compared with the float64 one (rel_l2), chained (each
precision runs the whole model in that dtype). That is all: no isolated runs, no tf32/fp16/
strict, no sensitivity probe, no per-sample statistics.

    from hooks_anchor import hooks_comparison
    seconds, worst = hooks_comparison(model, inputs, threads)
"""
import copy
import time

import torch


def _leaf_outputs(model, inputs):
    outs = {}
    hooks = []
    for name, mod in model.named_modules():
        if len(list(mod.children())) == 0:
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, name=name: outs.__setitem__(name, o.detach() if torch.is_tensor(o) else None)))
    with torch.no_grad():
        model(*inputs)
    for h in hooks:
        h.remove()
    return outs


def _as(inputs, dtype):
    return tuple(x.to(dtype) if x.is_floating_point() else x for x in inputs)


def hooks_comparison(model, inputs, threads):
    """Seconds for the float64, float32 and bfloat16 hooked forwards and the comparisons, and the
    worst rel_l2 of each precision (a check that it computed something)."""
    torch.set_num_threads(threads)
    m64 = copy.deepcopy(model).double().eval()
    m32 = copy.deepcopy(model).float().eval()
    m16 = copy.deepcopy(model).bfloat16().eval()
    t0 = time.perf_counter()
    ref = _leaf_outputs(m64, _as(inputs, torch.float64))
    worst = {}
    for tag, m, dt in (("fp32", m32, torch.float32), ("bf16", m16, torch.bfloat16)):
        got = _leaf_outputs(m, _as(inputs, dt))
        w = 0.0
        for name, r in ref.items():
            g = got.get(name)
            if r is None or g is None or not r.is_floating_point():
                continue
            d = (g.double() - r).norm() / max(r.norm().item(), 1e-300)
            w = max(w, float(d))
        worst[tag] = w
    return time.perf_counter() - t0, worst
