"""What every torch.fx node of a traced model is, for the divscope graph (capture_torch.py).

divscope's graph is batch-first: every layer's value is [N, per-sample shape...]. PyTorch models
need not be: a seq-first attention holds [T, N, E], views it as [T, N*H, d], transposes it to
[N*H, T, d], and GPT-2's Conv1D flattens [N, T, E] to [N*T, E]. Capture follows the batch axis
through every node and lays each value out batch-first; the rule is exact because a view never
reorders elements:

    a torch value whose axis `axis` has extent outer*N*inner, sample n owning the indices
    o*N*inner + n*inner + i, is, per sample, the torch shape with that axis replaced by
    (outer, inner) (each dropped when 1), in torch's own element order.

So a reshape of a torch value is a per-sample reshape in divscope, a transpose a per-sample
permute, and so on. Where the batch axis and its (outer, inner) come from:
  * the axis: the model runs twice, at the recording's batch size and at another; the one dim
    whose extent changes is the batch axis (none: the value is the same for every sample and is
    folded into a constant; two: the node mixes samples and capture stops there);
  * (outer, inner): 1 and 1 at the graph inputs; a reshape moves them by stride arithmetic
    (merge_after_reshape); every other op keeps its batched input's.
"""
import math

import numpy as np
import torch


class CaptureError(Exception):
    """A model or batch that cannot be expressed in the divscope format."""


class Val:
    """A node's value. kind:
    'batched' -- a divscope value `ref` (layer output or graph input) with torch shape `tshape`
                 (at the recording's batch size) and the batch at torch axis `axis`;
    'const'   -- a tensor (or Python number) that is the same for every sample: `value`
                 (float64 or integer/bool torch tensor, or a number); `axis` >= 0 when its torch
                 shape carries the batch (torch.ones(x.shape)): then `value` holds one sample;
    'multi'   -- a tuple/list of Vals (split, chunk, attention's (output, weights));
    'other'   -- anything else (sizes, ints, None): `value`;
    'absent'  -- a value capture does not produce (attention weights); `why` says why.
    """

    def __init__(self, kind, ref=None, tshape=None, axis=0, outer=1, inner=1, dtype=None,
                 value=None, items=None, why=None, key=None):
        self.kind, self.ref, self.tshape, self.axis = kind, ref, tshape, axis
        self.outer, self.inner, self.dtype = outer, inner, dtype
        self.value, self.items, self.why = value, items, why
        self.key = key   # const: the name its /constants entry starts with

    @property
    def rank(self):
        return len(self.tshape)

    def per_sample(self):
        """divscope's per-sample shape."""
        s = list(self.tshape[:self.axis])
        s += [d for d in (self.outer, self.inner) if d > 1]
        return s + list(self.tshape[self.axis + 1:])

    def ds_dim(self, d):
        """torch dim d (may be negative; must not be the batch axis) -> divscope full dim."""
        d = norm_dim(d, self.rank)
        if d == self.axis:
            raise ValueError("the batch axis")
        if d < self.axis:
            return 1 + d
        return d + (self.outer > 1) + (self.inner > 1)

    def ds_permutation(self, perm):
        """torch permutation perm (out dim j <- in dim perm[j]) -> divscope permute dims; the
        batch's outer/inner parts travel with it."""
        dims = [0]
        for p in perm:
            if p == self.axis:
                k = 1 + self.axis
                dims += list(range(k, k + sum(1 for d in (self.outer, self.inner) if d > 1)))
            else:
                dims.append(self.ds_dim(p))
        return dims

    def same_layout(self, other):
        return (self.axis, self.outer, self.inner) == (other.axis, other.outer, other.inner)


def norm_dim(d, rank):
    d = int(d)
    if d < -rank or d >= rank:
        raise ValueError(f"dim {d} out of range for rank {rank}")
    return d % rank


def to_divscope(arr, v, n):
    """A torch-layout array of value v (batch n) -> divscope layout [n, per-sample...]."""
    a = np.asarray(arr)
    s = list(a.shape)
    split = s[:v.axis] + [v.outer, n, v.inner] + s[v.axis + 1:]
    a = a.reshape(split)
    a = np.moveaxis(a, v.axis + 1, 0)
    return np.ascontiguousarray(a).reshape([n] + v.per_sample())


def merge_after_reshape(v_in, in_shape, out_shape, n):
    """(axis, outer, inner) of reshape(v_in -> out_shape): where the batch's stride lands."""
    def strides(shape):
        st, acc = [0] * len(shape), 1
        for i in range(len(shape) - 1, -1, -1):
            st[i] = acc
            acc *= shape[i]
        return st
    sb = strides(in_shape)[v_in.axis] * v_in.inner      # element stride of the batch index
    total = math.prod(in_shape)
    so = strides(out_shape)
    for j, (st, size) in enumerate(zip(so, out_shape)):
        if st <= sb < st * size and sb % st == 0:
            inner = sb // st
            if size % (n * inner):
                break
            outer = size // (n * inner)
            # the batch index must not straddle into the next outer dim
            if outer * n * inner == size and total % (sb * n) == 0:
                return j, outer, inner
        if size == n and st == sb:
            return j, 1, 1
    raise CaptureError(f"reshape {list(in_shape)} -> {list(out_shape)} splits the batch "
                       f"dim across axes (samples become inseparable)")


def sample_slice(t, axis, k=0):
    """One sample of a batch-shaped constant (all samples must be equal)."""
    first = t.narrow(axis, k, 1)
    if not torch.equal(first.expand_as(t), t):
        raise CaptureError("a value computed without the inputs differs between samples")
    return first


def const_per_sample(value, like):
    """A constant operand of an op whose output is `like` (batched), laid out per sample for
    divscope's same-rank broadcasting: right-aligned to like's torch rank, the batch axis (and
    its outer/inner) of size 1. Returns a float64 numpy array of like's per-sample rank."""
    t = value if isinstance(value, torch.Tensor) else torch.tensor(value, dtype=torch.float64)
    t = t.detach().to("cpu")
    if t.dtype == torch.bool or not t.is_floating_point():
        t = t.to(torch.float64)
    t = t.to(torch.float64)
    r = like.rank
    if t.dim() > r:
        raise CaptureError(f"constant of shape {list(t.shape)} has more dims than its operand")
    shape = [1] * (r - t.dim()) + list(t.shape)
    if shape[like.axis] != 1:
        raise CaptureError(f"constant of shape {list(t.shape)} varies along the batch axis")
    a = t.reshape(shape).numpy()
    ps = shape[:like.axis] + [1 for d in (like.outer, like.inner) if d > 1] + shape[like.axis + 1:]
    return a.reshape(ps)


class NodeInfo:
    """A node's value in the two runs (batch sizes n_big and n_small): shapes and dtype of
    tensors, the float64 value of those that do not depend on the inputs, items of tuples."""

    def __init__(self, kind, shape=None, dtype=None, value=None, items=None):
        self.kind, self.shape, self.dtype, self.value, self.items = kind, shape, dtype, value, items
        self.shape_small = None
        self.value_small = None   # 'other': the value in the second run
        self.n_big = self.n_small = None
        self.why = ""

    def batch_axis(self):
        """(axis, per-sample extent) of a batched tensor; (None, None) with self.why set."""
        if self.shape_small is None or len(self.shape) != len(self.shape_small):
            self.why = "its rank depends on the batch size"
            return None, None
        diff = [i for i, (a, b) in enumerate(zip(self.shape, self.shape_small)) if a != b]
        if len(diff) != 1:
            self.why = ("its shape does not depend on the batch size: samples are reduced "
                        "together" if not diff else
                        f"several dims {diff} depend on the batch size: samples are mixed")
            return None, None
        d = diff[0]
        if self.shape[d] % self.n_big or self.shape_small[d] % self.n_small or \
                self.shape[d] // self.n_big != self.shape_small[d] // self.n_small:
            self.why = f"dim {d} does not scale with the batch size"
            return None, None
        return d, self.shape[d] // self.n_big


def summarize(r, keep):
    """NodeInfo of a run's value; tensors' values are kept when `keep` (constants)."""
    if isinstance(r, torch.Tensor):
        return NodeInfo("tensor", list(r.shape), r.dtype, r.detach().clone() if keep else None)
    if isinstance(r, (tuple, list)) and not isinstance(r, torch.Size) and \
            any(isinstance(e, torch.Tensor) for e in r):
        return NodeInfo("seq", items=[summarize(e, keep) for e in r], value=r if keep else None)
    if isinstance(r, torch.Size):
        return NodeInfo("other", value=tuple(r))
    return NodeInfo("other", value=r)


def pair_runs(big, small, n_big, n_small):
    """Puts the second run's shapes beside the first's."""
    big.n_big, big.n_small = n_big, n_small
    if big.kind == "other" and small.kind == "other":
        big.value_small = small.value
    if big.kind == "tensor" and small.kind == "tensor":
        big.shape_small = list(small.shape)
    if big.kind == "seq" and small.kind == "seq" and len(big.items) == len(small.items):
        for a, b in zip(big.items, small.items):
            pair_runs(a, b, n_big, n_small)
