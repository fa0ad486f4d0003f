"""Tests tools/fx_compat.py: tuple-unpacking a torch.fx Proxy traces inside patched_fx().

usage: /usr/bin/python3 tests/python/test_fx_compat.py
Exits 0 when every case traces (and the traced module matches eager numerically), and the
original Proxy.__iter__ is back after the context manager exits; otherwise prints what
failed and exits 1.
"""
import math
import operator
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))

import torch  # noqa: E402
import torch.fx  # noqa: E402
import torch.fx.proxy  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import fx_compat  # noqa: E402


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention block (manual softmax path, causal mask sliced from a buffer).

    Slicing the ``bias`` buffer with the symbolic ``T`` needs a tracer with
    ``proxy_buffer_attributes = True`` (plain symbolic_trace hands the real buffer tensor to
    ``__getitem__`` and fails with "slice indices must be integers"); with ``masked=False``
    the mask is skipped so plain ``torch.fx.symbolic_trace`` can trace it.
    """

    def __init__(self, n_embd=32, n_head=4, block_size=16, masked=True):
        super().__init__()
        self.n_embd, self.n_head, self.masked = n_embd, n_head, masked
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size))
                             .view(1, 1, block_size, block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        if self.masked:
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class BufferProxyTracer(torch.fx.Tracer):
    proxy_buffer_attributes = True


def buffer_proxy_trace(model):
    return torch.fx.GraphModule(model, BufferProxyTracer().trace(model))


class AssertTracer(torch.fx.Tracer):
    trace_asserts = True


class AssertLen(nn.Module):
    """nanoGPT's GPT.forward prologue: an assert on a symbolic size."""

    def forward(self, idx):
        b, t = idx.size()
        assert t <= 64, f"Cannot forward sequence of length {t}, block size is only {64}"
        assert b
        return idx * 2


class Chunk(nn.Module):
    def forward(self, x):
        a, b = x.chunk(2, dim=-1)
        return a * torch.sigmoid(b)


class MHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(32, 4, batch_first=True)

    def forward(self, x):
        out, _ = self.attn(x, x, x, need_weights=False)
        return out


class ManyUnpack(nn.Module):
    """Unpacking late in a long function (large bytecode offsets, many CACHE entries)."""

    def forward(self, x):
        y = x
        for _ in range(3):
            y = torch.relu(y) + 1.0
        n, c = x.shape[0], x.shape[1]
        p0, p1, p2, p3 = x.split(x.shape[-1] // 4, dim=-1)
        return (p0 + p1 * p2 - p3).sum() + n + c


def main():
    failures = []
    torch.manual_seed(0)
    cases = [
        ("CausalSelfAttention (no mask)", CausalSelfAttention(masked=False), torch.randn(2, 8, 32)),
        ("CausalSelfAttention (buffer mask, proxy_buffer_attributes)", CausalSelfAttention(),
         torch.randn(2, 8, 32)),
        ("chunk", Chunk(), torch.randn(2, 8, 32)),
        ("MultiheadAttention", MHA(), torch.randn(2, 8, 32)),
        ("many-unpack", ManyUnpack(), torch.randn(2, 8, 32)),
    ]
    original = torch.fx.proxy.Proxy.__iter__
    original_bool = torch.fx.proxy.Proxy.__bool__
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"needs_patch={fx_compat.needs_patch()}")
    for name, model, x in cases:
        model.eval()
        try:
            with fx_compat.patched_fx():
                if "proxy_buffer_attributes" in name:
                    gm = buffer_proxy_trace(model)
                else:
                    gm = torch.fx.symbolic_trace(model)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{name}: trace failed: {type(e).__name__}: {e}")
            continue
        with torch.no_grad():
            ref, got = model(x), gm(x)
        if not torch.allclose(ref, got, atol=1e-6, rtol=1e-5):
            failures.append(f"{name}: traced output differs from eager "
                            f"(max |diff| {(ref - got).abs().max().item():.3g})")
            continue
        getitems = sum(1 for n in gm.graph.nodes if n.target is operator.getitem)
        print(f"ok  {name}: {len(gm.graph.nodes)} nodes, {getitems} getitem")

    # trace_asserts: an assert on a Proxy becomes torch.fx's assert_fn (torch._assert) node.
    try:
        with fx_compat.patched_fx():
            g = AssertTracer().trace(AssertLen())
        asserts = sum(1 for n in g.nodes if n.target is torch.fx.proxy.assert_fn)
        if asserts != 2:
            failures.append(f"trace_asserts: expected 2 assert nodes, got {asserts}")
        else:
            gm = torch.fx.GraphModule(AssertLen(), g)
            if not torch.equal(gm(torch.ones(2, 8)), torch.ones(2, 8) * 2):
                failures.append("trace_asserts: traced module gives a wrong result")
            else:
                print("ok  trace_asserts: assert on a symbolic size -> 2 assert nodes")
    except Exception as e:  # noqa: BLE001
        failures.append(f"trace_asserts: trace failed: {type(e).__name__}: {e}")

    if torch.fx.proxy.Proxy.__iter__ is not original or torch.fx.proxy.Proxy.__bool__ is not original_bool:
        failures.append("Proxy.__iter__/__bool__ were not restored after patched_fx()")
    # Nested use keeps the patch until the outermost exit.
    with fx_compat.patched_fx():
        with fx_compat.patched_fx():
            pass
        if fx_compat.needs_patch() and torch.fx.proxy.Proxy.__iter__ is original:
            failures.append("nested patched_fx() exit removed the patch too early")
    if torch.fx.proxy.Proxy.__iter__ is not original:
        failures.append("Proxy.__iter__ was not restored after nested patched_fx()")
    # Restored even when tracing raises.
    try:
        with fx_compat.patched_fx():
            raise ValueError("boom")
    except ValueError:
        pass
    if torch.fx.proxy.Proxy.__iter__ is not original:
        failures.append("Proxy.__iter__ was not restored after an exception")
    # Iterating a Proxy in a for loop must still be refused (original behaviour).
    class Loop(nn.Module):
        def forward(self, x):
            return sum(r for r in x)
    try:
        with fx_compat.patched_fx():
            torch.fx.symbolic_trace(Loop())
        failures.append("for-loop over a Proxy traced; expected TraceError")
    except torch.fx.proxy.TraceError:
        print("ok  for-loop over a Proxy still raises TraceError")

    if failures:
        for f in failures:
            print("FAIL", f, file=sys.stderr)
        return 1
    print("test_fx_compat: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
