#!/usr/bin/env python3
"""PyTorch FP64 oracle for tests/test_reference.cpp.

    torch_oracle.py OUTDIR

For every case below: seeds torch with a fixed per-case seed, draws the inputs and parameters
in float64, runs PyTorch's own op (or, where Debian's torch 1.13 lacks it, the op's textbook
definition in float64 torch) and writes

    OUTDIR/cases.txt               one case name per line
    OUTDIR/<case>/manifest.txt     op, seed, inputs, attributes, parameters, output shape
    OUTDIR/<case>/<tensor>.bin     raw little-endian float64, row-major

manifest.txt lines (whitespace separated):
    op <op>
    seed <int>
    input <name> <dtype float32|int64> <full shape...>     (file input_<name>.bin)
    attr <name> int|float|str|ints <value...>
    param <name> <shape...>                                (file param_<name>.bin)
    output <full shape...>                                 (file output.bin)
Case names are the GoogleTest names of the tests that check them (Reference.<case>).
"""
import math
import os
import sys
import zlib

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
CASES = []


def case(fn):
    CASES.append(fn)
    return fn


class Case:
    def __init__(self, name, op):
        self.name, self.op = name, op
        self.seed = zlib.crc32(name.encode()) & 0x7FFFFFFF
        torch.manual_seed(self.seed)
        self.inputs, self.attrs, self.params = [], [], []

    def randn(self, *shape):
        return torch.randn(*shape, dtype=torch.float64)

    def input(self, name, t, dtype="float32"):
        self.inputs.append((name, dtype, t))
        return t

    def attr(self, name, kind, value):
        self.attrs.append((name, kind, value))
        return value

    def param(self, name, t):
        self.params.append((name, t))
        return t


def write_bin(path, t):
    t.detach().to(torch.float64).contiguous().numpy().astype("<f8").tofile(path)


def emit(outdir, c, out):
    d = os.path.join(outdir, c.name)
    os.makedirs(d, exist_ok=True)
    lines = ["op " + c.op, "seed %d" % c.seed]
    for name, dtype, t in c.inputs:
        lines.append("input %s %s %s" % (name, dtype, " ".join(map(str, t.shape))))
        write_bin(os.path.join(d, "input_%s.bin" % name), t)
    for name, kind, v in c.attrs:
        if kind == "ints":
            val = " ".join(str(int(x)) for x in v)
        elif kind == "float":
            val = repr(float(v))
        else:
            val = str(v)
        lines.append("attr %s %s %s" % (name, kind, val))
    for name, t in c.params:
        lines.append("param %s %s" % (name, " ".join(map(str, t.shape))))
        write_bin(os.path.join(d, "param_%s.bin" % name), t)
    lines.append("output " + " ".join(map(str, out.shape)))
    write_bin(os.path.join(d, "output.bin"), out)
    with open(os.path.join(d, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---- GEMM family -------------------------------------------------------------------------

def linear_case(name, xshape, out_features, bias):
    c = Case(name, "linear")
    x = c.input("x", c.randn(*xshape))
    w = c.param("weight", c.randn(out_features, xshape[-1]))
    b = c.param("bias", c.randn(out_features)) if bias else None
    return c, F.linear(x, w, b)


@case
def LinearLeadingDims(): return linear_case("LinearLeadingDims", (3, 7, 13), 5, True)
@case
def LinearNoBiasBatch1(): return linear_case("LinearNoBiasBatch1", (1, 300), 17, False)
@case
def LinearBlocked(): return linear_case("LinearBlocked", (2, 70, 600), 1030, True)


def matmul_case(name, ashape, bshape):
    c = Case(name, "matmul")
    a = c.input("a", c.randn(*ashape))
    b = c.input("b", c.randn(*bshape))
    return c, torch.matmul(a, b)


@case
def MatmulBatched(): return matmul_case("MatmulBatched", (2, 3, 5, 7), (2, 3, 7, 4))
@case
def MatmulBroadcastA(): return matmul_case("MatmulBroadcastA", (2, 1, 5, 7), (2, 3, 7, 6))
@case
def MatmulBroadcastB(): return matmul_case("MatmulBroadcastB", (2, 4, 1, 9, 3), (2, 1, 3, 3, 5))
@case
def MatmulRank3(): return matmul_case("MatmulRank3", (3, 300, 33), (3, 33, 270))


# ---- convolutions ------------------------------------------------------------------------

def conv_case(name, xshape, co, k, stride, padding, dilation, groups, bias):
    c = Case(name, "conv2d")
    x = c.input("x", c.randn(*xshape))
    c.attr("stride", "ints", stride)
    c.attr("padding", "ints", padding)
    c.attr("dilation", "ints", dilation)
    c.attr("groups", "int", groups)
    w = c.param("weight", c.randn(co, xshape[1] // groups, *k))
    b = c.param("bias", c.randn(co)) if bias else None
    return c, F.conv2d(x, w, b, stride, padding, dilation, groups)


@case
def Conv2dPadded(): return conv_case("Conv2dPadded", (2, 3, 8, 9), 4, (3, 3), [1, 1], [1, 1], [1, 1], 1, True)
@case
def Conv2dStride2Dilation(): return conv_case("Conv2dStride2Dilation", (2, 3, 11, 10), 5, (3, 2), [2, 2], [2, 1], [2, 3], 1, True)
@case
def Conv2dGroupsNoBias(): return conv_case("Conv2dGroupsNoBias", (2, 6, 7, 8), 9, (3, 3), [1, 2], [1, 0], [1, 1], 3, False)
@case
def Conv2dDepthwiseBatch1(): return conv_case("Conv2dDepthwiseBatch1", (1, 4, 6, 5), 8, (3, 3), [1, 1], [1, 1], [1, 1], 4, True)
@case
def Conv2dNonSquareKernel(): return conv_case("Conv2dNonSquareKernel", (2, 5, 9, 12), 7, (1, 5), [1, 3], [0, 2], [1, 1], 1, True)
@case
def Conv2dLargeChannels(): return conv_case("Conv2dLargeChannels", (1, 40, 12, 13), 33, (3, 3), [1, 1], [1, 1], [1, 1], 1, True)


def conv_t_case(name, xshape, co, k, stride, padding, opad, dilation, groups, bias):
    c = Case(name, "conv_transpose2d")
    x = c.input("x", c.randn(*xshape))
    c.attr("stride", "ints", stride)
    c.attr("padding", "ints", padding)
    c.attr("output_padding", "ints", opad)
    c.attr("dilation", "ints", dilation)
    c.attr("groups", "int", groups)
    w = c.param("weight", c.randn(xshape[1], co // groups, *k))
    b = c.param("bias", c.randn(co)) if bias else None
    return c, F.conv_transpose2d(x, w, b, stride, padding, opad, groups, dilation)


@case
def ConvTranspose2dStride2(): return conv_t_case("ConvTranspose2dStride2", (2, 4, 5, 6), 3, (3, 3), [2, 2], [1, 1], [1, 1], [1, 1], 1, True)
@case
def ConvTranspose2dGroupsDilation(): return conv_t_case("ConvTranspose2dGroupsDilation", (1, 6, 4, 5), 6, (3, 2), [2, 3], [0, 1], [1, 0], [2, 1], 3, False)


# ---- normalizations ----------------------------------------------------------------------

@case
def BatchNorm2d():
    c = Case("BatchNorm2d", "batchnorm2d")
    x = c.input("x", c.randn(3, 4, 5, 6))
    eps = c.attr("eps", "float", 1e-5)
    w, b = c.param("weight", c.randn(4)), c.param("bias", c.randn(4))
    m, v = c.param("running_mean", c.randn(4)), c.param("running_var", torch.rand(4) + 0.5)
    return c, F.batch_norm(x, m, v, w, b, False, 0.0, eps)


def layernorm_case(name, xshape, ns, affine, eps=1e-5):
    c = Case(name, "layernorm")
    x = c.input("x", c.randn(*xshape))
    c.attr("normalized_shape", "ints", ns)
    c.attr("eps", "float", eps)
    w = c.param("weight", c.randn(*ns)) if affine else None
    b = c.param("bias", c.randn(*ns)) if affine else None
    return c, F.layer_norm(x, ns, w, b, eps)


@case
def LayerNorm(): return layernorm_case("LayerNorm", (2, 5, 12), [12], True)
@case
def LayerNorm2dNoAffine(): return layernorm_case("LayerNorm2dNoAffine", (2, 3, 4, 5), [4, 5], False, 1e-3)


def rmsnorm_case(name, xshape, ns, weight, eps):
    c = Case(name, "rmsnorm")
    x = c.input("x", c.randn(*xshape))
    c.attr("normalized_shape", "ints", ns)
    c.attr("eps", "float", eps)
    dims = tuple(range(-len(ns), 0))
    y = x / torch.sqrt(x.pow(2).mean(dims, keepdim=True) + eps)   # torch 1.13 has no RMSNorm
    if weight:
        y = y * c.param("weight", c.randn(*ns))
    return c, y


@case
def RmsNorm(): return rmsnorm_case("RmsNorm", (2, 5, 16), [16], True, 1e-6)
@case
def RmsNorm2dNoWeight(): return rmsnorm_case("RmsNorm2dNoWeight", (3, 2, 3, 7), [3, 7], False, 1e-2)


def groupnorm_case(name, xshape, groups, affine):
    c = Case(name, "groupnorm")
    x = c.input("x", c.randn(*xshape))
    c.attr("num_groups", "int", groups)
    eps = c.attr("eps", "float", 1e-5)
    w = c.param("weight", c.randn(xshape[1])) if affine else None
    b = c.param("bias", c.randn(xshape[1])) if affine else None
    return c, F.group_norm(x, groups, w, b, eps)


@case
def GroupNorm(): return groupnorm_case("GroupNorm", (2, 6, 5, 4), 3, True)
@case
def GroupNormRank3NoAffine(): return groupnorm_case("GroupNormRank3NoAffine", (2, 4, 7), 2, False)


# ---- elementwise -------------------------------------------------------------------------

def unary_case(name, op, fn, attrs=()):
    c = Case(name, op)
    x = c.input("x", c.randn(2, 3, 4, 5) * 3)
    for a in attrs:
        c.attr(*a)
    return c, fn(x)


@case
def Relu(): return unary_case("Relu", "relu", F.relu)
@case
def GeluErf(): return unary_case("GeluErf", "gelu", lambda x: F.gelu(x, approximate="none"), [("approximate", "str", "none")])
@case
def GeluTanh(): return unary_case("GeluTanh", "gelu", lambda x: F.gelu(x, approximate="tanh"), [("approximate", "str", "tanh")])
@case
def Silu(): return unary_case("Silu", "silu", F.silu)
@case
def Sigmoid(): return unary_case("Sigmoid", "sigmoid", torch.sigmoid)
@case
def Tanh(): return unary_case("Tanh", "tanh", torch.tanh)
@case
def LeakyRelu(): return unary_case("LeakyRelu", "leaky_relu", lambda x: F.leaky_relu(x, 0.07), [("negative_slope", "float", 0.07)])


def binary_case(name, op, ashape, bshape):
    c = Case(name, op)
    a = c.input("a", c.randn(*ashape))
    b = c.input("b", c.randn(*bshape))
    return c, (a + b if op == "add" else a * b)


@case
def AddSameShape(): return binary_case("AddSameShape", "add", (2, 3, 4), (2, 3, 4))
@case
def AddBroadcast(): return binary_case("AddBroadcast", "add", (2, 3, 1, 5), (2, 1, 4, 5))
@case
def MulBroadcast(): return binary_case("MulBroadcast", "mul", (3, 1, 6), (3, 4, 1))


# ---- softmax -----------------------------------------------------------------------------

def softmax_case(name, op, shape, axis):
    c = Case(name, op)
    x = c.input("x", c.randn(*shape) * 4)
    c.attr("axis", "int", axis)
    return c, (F.softmax(x, axis) if op == "softmax" else F.log_softmax(x, axis))


@case
def SoftmaxLastAxis(): return softmax_case("SoftmaxLastAxis", "softmax", (3, 4, 10), -1)
@case
def SoftmaxMiddleAxis(): return softmax_case("SoftmaxMiddleAxis", "softmax", (2, 5, 3, 4), 1)
@case
def SoftmaxNegativeAxis(): return softmax_case("SoftmaxNegativeAxis", "softmax", (2, 5, 3, 4), -2)
@case
def LogSoftmax(): return softmax_case("LogSoftmax", "log_softmax", (2, 6, 7), 2)


# ---- pools -------------------------------------------------------------------------------

def pool_case(name, op, xshape, k, s, p, dilation=None, ceil_mode=None, include_pad=None):
    c = Case(name, op)
    x = c.input("x", c.randn(*xshape))
    c.attr("kernel_size", "ints", k)
    c.attr("stride", "ints", s)
    c.attr("padding", "ints", p)
    if dilation is not None:
        c.attr("dilation", "ints", dilation)
    if ceil_mode is not None:
        c.attr("ceil_mode", "int", ceil_mode)
    if include_pad is not None:
        c.attr("count_include_pad", "int", include_pad)
    if op == "maxpool2d":
        return c, F.max_pool2d(x, k, s, p, dilation or 1, bool(ceil_mode))
    return c, F.avg_pool2d(x, k, s, p, bool(ceil_mode),
                           True if include_pad is None else bool(include_pad))


@case
def MaxPool2d(): return pool_case("MaxPool2d", "maxpool2d", (2, 3, 8, 6), [2, 2], [2, 2], [0, 0])
@case
def MaxPool2dPaddingDilationCeil(): return pool_case("MaxPool2dPaddingDilationCeil", "maxpool2d", (2, 3, 10, 9), [3, 2], [2, 2], [1, 1], [2, 1], 1)
@case
def MaxPool2dCeilBatch1(): return pool_case("MaxPool2dCeilBatch1", "maxpool2d", (1, 2, 7, 8), [3, 3], [2, 3], [1, 0], None, 1)
@case
def AvgPool2d(): return pool_case("AvgPool2d", "avgpool2d", (2, 3, 8, 6), [2, 2], [2, 2], [0, 0])
@case
def AvgPool2dCeilIncludePad(): return pool_case("AvgPool2dCeilIncludePad", "avgpool2d", (2, 3, 6, 7), [3, 3], [2, 2], [1, 1], None, 1, 1)
@case
def AvgPool2dCeilExcludePad(): return pool_case("AvgPool2dCeilExcludePad", "avgpool2d", (2, 3, 6, 7), [3, 2], [2, 2], [1, 1], None, 1, 0)
@case
def AvgPool2dNonSquare(): return pool_case("AvgPool2dNonSquare", "avgpool2d", (1, 2, 9, 8), [2, 4], [3, 1], [1, 2], None, 0, 1)


@case
def GlobalAvgPool2d():
    c = Case("GlobalAvgPool2d", "global_avgpool2d")
    x = c.input("x", c.randn(2, 5, 7, 6))
    return c, F.adaptive_avg_pool2d(x, 1)


@case
def UpsampleNearest2d():
    c = Case("UpsampleNearest2d", "upsample_nearest2d")
    x = c.input("x", c.randn(2, 3, 4, 5))
    c.attr("scale_factor", "ints", [2, 3])
    return c, F.interpolate(x, scale_factor=(2, 3), mode="nearest")


# ---- shape ops ---------------------------------------------------------------------------

@case
def FlattenDefault():
    c = Case("FlattenDefault", "flatten")
    x = c.input("x", c.randn(2, 3, 4, 5))
    return c, torch.flatten(x, 1)


@case
def FlattenMiddleDims():
    c = Case("FlattenMiddleDims", "flatten")
    x = c.input("x", c.randn(2, 3, 4, 5, 6))
    c.attr("start_dim", "int", 2)
    c.attr("end_dim", "int", -2)
    return c, torch.flatten(x, 2, -2)


@case
def Reshape():
    c = Case("Reshape", "reshape")
    x = c.input("x", c.randn(2, 3, 4, 5))
    c.attr("shape", "ints", [5, -1, 2])
    return c, x.reshape(2, 5, -1, 2)


@case
def Permute():
    c = Case("Permute", "permute")
    x = c.input("x", c.randn(2, 3, 4, 5))
    c.attr("dims", "ints", [0, 3, 1, 2])
    return c, x.permute(0, 3, 1, 2)


@case
def Embedding():
    c = Case("Embedding", "embedding")
    idx = torch.randint(0, 11, (3, 5))
    c.input("idx", idx.to(torch.float64), "int64")
    w = c.param("weight", c.randn(11, 6))
    return c, F.embedding(idx, w)


# ---- attention ---------------------------------------------------------------------------

def sdpa_case(name, qshape, tk, dv, causal=None, scale=None):
    c = Case(name, "scaled_dot_product_attention")
    q = c.input("q", c.randn(*qshape))
    k = c.input("k", c.randn(*qshape[:-2], tk, qshape[-1]))
    v = c.input("v", c.randn(*qshape[:-2], tk, dv))
    if causal is not None:
        c.attr("is_causal", "int", causal)
    if scale is not None:
        c.attr("scale", "float", scale)
    # torch 1.13 has no F.scaled_dot_product_attention: its definition, in float64.
    s = scale if scale is not None else 1.0 / math.sqrt(qshape[-1])
    att = q @ k.transpose(-2, -1) * s
    if causal:
        keep = torch.ones(qshape[-2], tk, dtype=torch.bool).tril()   # top-left aligned
        att = att.masked_fill(~keep, float("-inf"))
    return c, torch.softmax(att, -1) @ v


@case
def Sdpa(): return sdpa_case("Sdpa", (2, 3, 5, 8), 7, 6)
@case
def SdpaCausal(): return sdpa_case("SdpaCausal", (2, 2, 6, 4), 6, 4, causal=1)
@case
def SdpaCausalRectangular(): return sdpa_case("SdpaCausalRectangular", (1, 2, 4, 5), 7, 3, causal=1, scale=0.3)
@case
def SdpaRank3Scale(): return sdpa_case("SdpaRank3Scale", (2, 9, 16), 11, 5, causal=0, scale=0.125)


# ---- model format v2 ops (notes/new_ops_contract.md) ---------------------------------------
# Special values go in first: NaN, +inf, -inf, 0 (the C++ side compares non-finite outputs by
# class, finite ones by relative L2). A batch-1 operand is a v2 constant, broadcast over N.

def special(t, values=(float("nan"), float("inf"), float("-inf"), 0.0)):
    t.view(-1)[:len(values)] = torch.tensor(values)
    return t


def unary_v2_case(name, op, fn, attrs=(), positive=False, values=None):
    c = Case(name, op)
    x = c.randn(2, 3, 4, 5) * 3
    if positive:
        x = x.abs() + 0.01
    x = c.input("x", special(x) if values is None else special(x, values))
    for a in attrs:
        c.attr(*a)
    return c, fn(x)


@case
def Hardtanh(): return unary_v2_case("Hardtanh", "hardtanh", lambda x: F.hardtanh(x, -1.5, 2.0), [("min_val", "float", -1.5), ("max_val", "float", 2.0)])
@case
def Relu6(): return unary_v2_case("Relu6", "hardtanh", F.relu6, [("min_val", "float", 0.0), ("max_val", "float", 6.0)])
@case
def Hardswish(): return unary_v2_case("Hardswish", "hardswish", F.hardswish)
@case
def Hardsigmoid(): return unary_v2_case("Hardsigmoid", "hardsigmoid", F.hardsigmoid)
@case
def Sqrt(): return unary_v2_case("Sqrt", "sqrt", torch.sqrt, positive=True, values=(float("nan"), float("inf"), -1.0, 0.0))
@case
def Rsqrt(): return unary_v2_case("Rsqrt", "rsqrt", torch.rsqrt, positive=True, values=(float("nan"), float("inf"), -1.0, 0.0))
@case
def Exp(): return unary_v2_case("Exp", "exp", torch.exp)
@case
def Log(): return unary_v2_case("Log", "log", torch.log, positive=True, values=(float("nan"), float("inf"), -1.0, 0.0))
@case
def Abs(): return unary_v2_case("Abs", "abs", torch.abs)
@case
def Neg(): return unary_v2_case("Neg", "neg", torch.neg)
@case
def Erf(): return unary_v2_case("Erf", "erf", torch.erf)


def binary_v2_case(name, op, fn, ashape, bshape, a_fill=None, b_fill=None):
    c = Case(name, op)
    a, b = c.randn(*ashape), c.randn(*bshape)
    if a_fill:
        a = a_fill(a)
    if b_fill:
        b = b_fill(b)
    c.input("a", a)
    c.input("b", b)
    return c, fn(a, b)


@case
def SubBatch1Operand(): return binary_v2_case("SubBatch1Operand", "sub", torch.sub, (3, 4, 5), (1, 4, 1))
@case
def DivSpecials(): return binary_v2_case("DivSpecials", "div", torch.div, (2, 3, 7), (2, 3, 7), special, lambda b: special(b, (2.0, 0.0, -0.5, 0.0)))
@case
def DivBatch1Numerator(): return binary_v2_case("DivBatch1Numerator", "div", torch.div, (3, 2, 5), (1, 2, 5))
@case
def PowPositiveBase(): return binary_v2_case("PowPositiveBase", "pow", torch.pow, (2, 3, 6), (1, 3, 6), lambda a: a.abs() + 0.1, lambda b: b * 2)
@case
def PowIntegerExponents(): return binary_v2_case("PowIntegerExponents", "pow", torch.pow, (2, 4, 5), (1, 1, 5), None, lambda b: torch.tensor([[[2.0, 3.0, -1.0, 0.0, 4.0]]]))
@case
def PowSpecials(): return binary_v2_case("PowSpecials", "pow", torch.pow, (2, 8), (2, 8), lambda a: special(a, (float("nan"), -2.0, 0.0, 1.0, -1.5, float("inf"), -0.5, 3.0)), lambda b: special(b, (0.0, 3.0, -2.0, float("nan"), 0.5, -1.0, 2.5, float("inf"))))
@case
def MaximumNaN(): return binary_v2_case("MaximumNaN", "maximum", torch.maximum, (2, 3, 5), (1, 3, 5), special, None)
@case
def MinimumNaN(): return binary_v2_case("MinimumNaN", "minimum", torch.minimum, (2, 3, 5), (2, 1, 5), None, special)


@case
def WhereBroadcast():
    c = Case("WhereBroadcast", "where")
    cond = c.input("cond", (c.randn(2, 3, 4) > 0).to(torch.float64))
    a = c.input("a", special(c.randn(1, 3, 4)))
    b = c.input("b", c.randn(2, 1, 4))
    return c, torch.where(cond != 0, a, b)


def reduce_case(name, op, shape, axes, keepdim=None, fill=None):
    c = Case(name, op)
    x = c.randn(*shape)
    x = c.input("x", fill(x) if fill else x)
    c.attr("axes", "ints", axes)
    if keepdim is not None:
        c.attr("keepdim", "int", keepdim)
    fn = {"reduce_sum": torch.sum, "reduce_mean": torch.mean, "reduce_max": torch.amax}[op]
    return c, fn(x, axes, keepdim=bool(keepdim))


@case
def ReduceSumTwoAxes(): return reduce_case("ReduceSumTwoAxes", "reduce_sum", (2, 3, 4, 5), [1, 3])
@case
def ReduceSumLongRow(): return reduce_case("ReduceSumLongRow", "reduce_sum", (2, 300, 7), [1], 1)
@case
def ReduceMeanKeepdim(): return reduce_case("ReduceMeanKeepdim", "reduce_mean", (2, 5, 7), [-1], 1)
@case
def ReduceMeanUnorderedAxes(): return reduce_case("ReduceMeanUnorderedAxes", "reduce_mean", (3, 4, 5, 6), [3, -3], 0)
@case
def ReduceMaxSpecials(): return reduce_case("ReduceMaxSpecials", "reduce_max", (2, 4, 6), [2, 1], None, lambda x: special(x, (float("nan"), 1.0, float("inf"))))
@case
def ReduceMaxKeepdim(): return reduce_case("ReduceMaxKeepdim", "reduce_max", (2, 3, 4, 5), [2], 1)


def concat_case(name, shapes, axis):
    c = Case(name, "concat")
    xs = [c.input("x%d" % i, c.randn(*s)) for i, s in enumerate(shapes)]
    c.attr("axis", "int", axis)
    return c, torch.cat(xs, axis)


@case
def ConcatMiddle(): return concat_case("ConcatMiddle", [(2, 3, 4), (2, 1, 4), (2, 5, 4)], 1)
@case
def ConcatLastNegative(): return concat_case("ConcatLastNegative", [(2, 3, 2, 4), (2, 3, 2, 3)], -1)
@case
def ConcatSingle(): return concat_case("ConcatSingle", [(3, 2, 5)], 2)


def slice_case(name, shape, axis, start, end, step=None):
    c = Case(name, "slice")
    x = c.input("x", c.randn(*shape))
    c.attr("axis", "int", axis)
    c.attr("start", "int", start)
    c.attr("end", "int", end)
    if step is not None:
        c.attr("step", "int", step)
    idx = [slice(None)] * len(shape)
    idx[axis] = slice(start, end, step)
    return c, x[tuple(idx)]


@case
def SliceStep(): return slice_case("SliceStep", (2, 10, 3), 1, 1, 9, 3)
@case
def SliceLastAxis(): return slice_case("SliceLastAxis", (2, 3, 7), -1, 2, 5)
@case
def SliceWhole(): return slice_case("SliceWhole", (2, 4, 3), 2, 0, 3, 1)


@case
def ExpandBatch1Like():
    c = Case("ExpandBatch1Like", "expand")
    x = c.input("x", c.randn(1, 1, 4))
    c.input("like", c.randn(3, 2))
    c.attr("shape", "ints", [5, -1])
    return c, x.expand(3, 5, -1)


@case
def ExpandPerSample():
    c = Case("ExpandPerSample", "expand")
    x = c.input("x", c.randn(2, 3, 1))
    c.attr("shape", "ints", [3, 6])
    return c, x.expand(2, 3, 6)


def adaptive_case(name, xshape, out):
    c = Case(name, "adaptive_avgpool2d")
    x = c.input("x", c.randn(*xshape))
    c.attr("output_size", "ints", out)
    return c, F.adaptive_avg_pool2d(x, out)


@case
def AdaptiveAvgPool2dRagged(): return adaptive_case("AdaptiveAvgPool2dRagged", (2, 3, 7, 10), [3, 4])
@case
def AdaptiveAvgPool2dUpsampling(): return adaptive_case("AdaptiveAvgPool2dUpsampling", (2, 2, 4, 3), [6, 5])
@case
def AdaptiveAvgPool2dBatch1(): return adaptive_case("AdaptiveAvgPool2dBatch1", (1, 4, 9, 9), [2, 7])


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: torch_oracle.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    names = []
    for fn in CASES:
        c, out = fn()
        assert c.name == fn.__name__, (c.name, fn.__name__)
        emit(outdir, c, out)
        names.append(c.name)
    with open(os.path.join(outdir, "cases.txt"), "w") as f:
        f.write("\n".join(names) + "\n")


if __name__ == "__main__":
    main()
