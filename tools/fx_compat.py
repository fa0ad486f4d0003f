"""torch.fx compatibility shim for Python 3.11 with torch < 2.0.

Problem
-------
``torch.fx.proxy.Proxy.__iter__`` in torch 1.13 (Debian 12's python3-torch) decides
whether a Proxy is being tuple-unpacked (``B, T, C = x.size()``, ``a, b = x.chunk(2)``,
``out, _ = self.attn(q, k, v)``) by looking at the caller's current bytecode
instruction::

    inst = list(dis.get_instructions(calling_frame.f_code))[calling_frame.f_lasti // 2]
    if inst.opname == 'UNPACK_SEQUENCE':
        return (self[i] for i in range(inst.argval))
    return self.tracer.iter(self)          # -> TraceError "Proxy object cannot be iterated"

``f_lasti // 2`` is an *index into the instruction list* only while every instruction is
exactly one 2-byte code unit.  From Python 3.11 on, many instructions are followed by
inline ``CACHE`` code units that ``dis.get_instructions`` does not list, so the index
drifts past the real instruction: the lookup lands on some unrelated later instruction
("Proxy object cannot be iterated") or runs off the end ("list index out of range").

Fix
---
``frame.f_lasti`` is still the *byte offset* of the instruction being executed (the
``UNPACK_SEQUENCE`` that called ``iter()``), so on 3.11+ we find the instruction whose
``Instruction.offset`` equals ``f_lasti`` (the same approach torch >= 2.1 takes with
``bisect`` on ``inst.offset``).  On Python <= 3.10 we keep the original ``f_lasti // 2``
lookup, so behaviour there is unchanged.

The patch is applied only inside :func:`patched_fx` and the original method is restored on
exit.  When the installed torch/Python pair does not have the bug (Python <= 3.10, or a
torch whose ``Proxy.__iter__`` already handles 3.11) the context manager does nothing.

``Proxy.__bool__`` has the same ``f_lasti // 2`` lookup.  It only matters for a tracer with
``trace_asserts = True`` (off by default, in ``torch.fx.symbolic_trace`` and in Hugging
Face's ``HFTracer``), which turns ``assert <proxy condition>`` into a ``torch._assert`` node
instead of failing with "symbolically traced variables cannot be used as inputs to control
flow" (nanoGPT's ``assert t <= self.config.block_size``).  On 3.11 the assert's jump is also
named ``POP_JUMP_FORWARD_IF_TRUE``, so the patched ``__bool__`` finds the instruction by
offset, accepts both jump names, and locates the jump target by offset (``inst.argval``).

Usage::

    from fx_compat import patched_fx
    with patched_fx():
        gm = torch.fx.symbolic_trace(model)
"""

import contextlib
import dis
import inspect
import sys
import threading

import torch.fx.proxy as _fx_proxy

__all__ = ["patched_fx", "needs_patch"]

_ORIGINAL_ITER = _fx_proxy.Proxy.__iter__
_ORIGINAL_BOOL = _fx_proxy.Proxy.__bool__
_lock = threading.Lock()
_depth = 0


def _index_at(insts, lasti):
    """Index in ``insts`` of the instruction executing at byte offset ``lasti`` (or None)."""
    if sys.version_info >= (3, 11):
        # Instruction offsets are byte offsets that skip the CACHE code units.
        for i, inst in enumerate(insts):
            if inst.offset == lasti:
                return i
        return None
    idx = lasti // 2  # pre-3.11: one 2-byte code unit per listed instruction
    return idx if 0 <= idx < len(insts) else None


def _instruction_at(code, lasti):
    """The dis.Instruction executing at byte offset ``lasti`` in ``code`` (or None)."""
    insts = list(dis.get_instructions(code))
    idx = _index_at(insts, lasti)
    return None if idx is None else insts[idx]


def _patched_iter(self):
    """Proxy.__iter__ with 3.11-correct detection of tuple unpacking."""
    frame = inspect.currentframe()
    assert frame is not None
    calling_frame = frame.f_back
    assert calling_frame is not None
    try:
        inst = _instruction_at(calling_frame.f_code, calling_frame.f_lasti)
    finally:
        del frame, calling_frame  # avoid reference cycles through the frame
    if inst is not None and inst.opname == "UNPACK_SEQUENCE":
        return (self[i] for i in range(inst.argval))  # type: ignore[index]
    return self.tracer.iter(self)


def _patched_bool(self):
    """Proxy.__bool__ whose assert detection (trace_asserts) works on 3.11 bytecode."""
    if self.tracer.trace_asserts:
        frame = inspect.currentframe()
        assert frame is not None
        calling_frame = frame.f_back
        assert calling_frame is not None
        try:
            insts = list(dis.get_instructions(calling_frame.f_code))
            cur = _index_at(insts, calling_frame.f_lasti)
        finally:
            del frame, calling_frame
        if cur is not None and cur + 1 < len(insts):
            inst = insts[cur]
            if inst.opname in ("POP_JUMP_IF_TRUE", "POP_JUMP_FORWARD_IF_TRUE"):
                first = insts[cur + 1]
                # argval is the jump target's byte offset; the assert's raise sits just before it.
                tgt = next((i for i, x in enumerate(insts) if x.offset == inst.argval), None)
                last = insts[tgt - 1] if tgt else None
                starts_with_assert = (first.opname == "LOAD_GLOBAL" and first.argval == "AssertionError"
                                      or first.opname == "LOAD_ASSERTION_ERROR")
                if starts_with_assert and last is not None and last.opname == "RAISE_VARARGS":
                    self.tracer.create_proxy("call_function", _fx_proxy.assert_fn, (self,), {})
                    return True
    return self.tracer.to_bool(self)


def needs_patch():
    """True when this torch's Proxy.__iter__ mis-reads 3.11+ bytecode."""
    if sys.version_info < (3, 11):
        return False
    try:
        src = inspect.getsource(_ORIGINAL_ITER)
    except (OSError, TypeError):
        # No source to inspect: torch < 2.0 is known to be affected.
        import torch
        major = int(torch.__version__.split(".")[0])
        return major < 2
    # Fixed versions branch on sys.version_info / use inst.offset.
    return "f_lasti // 2" in src and "version_info" not in src and ".offset" not in src


@contextlib.contextmanager
def patched_fx():
    """Context manager: Proxy.__iter__/__bool__ are 3.11-correct inside, original outside.

    Re-entrant (nested uses keep the patch until the outermost exits).  A no-op when
    :func:`needs_patch` is False.
    """
    global _depth
    if not needs_patch():
        yield
        return
    with _lock:
        if _depth == 0:
            _fx_proxy.Proxy.__iter__ = _patched_iter
            _fx_proxy.Proxy.__bool__ = _patched_bool
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _fx_proxy.Proxy.__iter__ = _ORIGINAL_ITER
                _fx_proxy.Proxy.__bool__ = _ORIGINAL_BOOL
