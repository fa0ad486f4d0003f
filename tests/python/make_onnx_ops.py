"""One tiny ONNX model per op case divscope's ONNX importer must run (issue "ONNX models in").

usage: make_onnx_ops.py OUT_DIR [CASE ...]     (run with .venv-test/bin/python: needs onnx)

Writes OUT_DIR/<case>.onnx for every case (or those named) and OUT_DIR/index.json:
    {case: {"file": "<case>.onnx", "opset": 17, "nodes": 3,
            "inputs": {"input": {"shape": ["batch", 4, 9, 9], "dtype": "float32"}},
            "int_range": {"input_ids": 10}}}            (int_range: integer inputs only)
The models look like PyTorch exports: a float input "input" with a dynamic batch dim "batch",
node names "/block/Conv", values "/block/Conv_output_0", weights as initializers named
"block.weight", the last value named "output". Opset 17 unless a case says otherwise, IR
version 8, checked with onnx.checker (full check: shapes inferred). No value_info is written:
consumers infer shapes themselves. Weights are seeded (numpy default_rng(case index)).
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8
F32 = TensorProto.FLOAT
I64 = TensorProto.INT64


class G:
    """A graph under construction, named the way torch.onnx names things."""

    def __init__(self, name, seed, opset=17):
        self.name, self.opset = name, opset
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.inputs = [], [], []
        self.used = {}
        self.int_range = {}

    # data ------------------------------------------------------------------------------------
    def randn(self, *shape, scale=1.0):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def input(self, name="input", shape=("batch",), elem=F32, int_range=None):
        self.inputs.append(helper.make_tensor_value_info(name, elem, list(shape)))
        if int_range is not None:
            self.int_range[name] = int_range
        return name

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, name, *shape, scale=None):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        return self.init(name, self.randn(*shape, scale=scale or 1.0 / np.sqrt(fan_in)))

    # nodes -----------------------------------------------------------------------------------
    def _node_name(self, scope, op):
        base = f"{scope}/{op}"
        k = self.used.get(base, 0)
        self.used[base] = k + 1
        return base if k == 0 else f"{base}_{k}"

    def op(self, op, inputs, scope="", outputs=1, out=None, **attrs):
        """Adds a node; returns its output name (or the list of them when outputs > 1). `out`
        names the (single) output, e.g. "output" for the graph's last value."""
        name = self._node_name(scope, op)
        outs = [out] if out else [f"{name}_output_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def const(self, array, scope=""):
        """A Constant node (as torch.onnx emits for literals and shape constants)."""
        a = np.asarray(array)
        return self.op("Constant", [], scope, value=numpy_helper.from_array(a))

    def i64(self, values, scope=""):
        return self.const(np.array(values, dtype=np.int64), scope)

    def f32(self, values, scope=""):
        return self.const(np.array(values, dtype=np.float32), scope)

    # model -----------------------------------------------------------------------------------
    def model(self, outputs=("output",)):
        outs = [helper.make_tensor_value_info(o, F32, None) for o in outputs]
        graph = helper.make_graph(self.nodes, "main_graph", self.inputs, outs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                              producer_name="divscope make_onnx_ops", producer_version="1")
        m.ir_version = IR_VERSION
        # The outputs' shapes, as an exporter writes them (inferred; the batch stays symbolic).
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
        shapes = {vi.name: vi for vi in inferred.graph.output}
        for o in m.graph.output:
            if shapes.get(o.name) is not None and shapes[o.name].type.tensor_type.HasField("shape"):
                o.type.CopyFrom(shapes[o.name].type)
        onnx.checker.check_model(m, full_check=True)
        return m


# --------------------------------------------------------------------------------------------
# The cases. Each takes a G and returns nothing; the last value is named "output".

def conv(g):
    x = g.input(shape=("batch", 4, 9, 9))
    g.op("Conv", [x, g.weight("block.weight", 6, 2, 3, 3), g.weight("block.bias", 6, scale=0.5)],
         "/block", out="output", kernel_shape=[3, 3], pads=[2, 2, 2, 2], strides=[2, 2],
         dilations=[2, 2], group=2)


def conv1x1_nobias(g):
    x = g.input(shape=("batch", 4, 5, 5))
    g.op("Conv", [x, g.weight("proj.weight", 8, 4, 1, 1)], "/proj", out="output",
         kernel_shape=[1, 1], pads=[0, 0, 0, 0], strides=[1, 1], dilations=[1, 1], group=1)


def conv_transpose(g):
    x = g.input(shape=("batch", 4, 5, 5))
    g.op("ConvTranspose", [x, g.weight("up.weight", 4, 3, 3, 3), g.weight("up.bias", 3, scale=0.5)],
         "/up", out="output", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
         output_padding=[1, 1], dilations=[1, 1], group=1)


def gemm(g):
    x = g.input(shape=("batch", 8))
    g.op("Gemm", [x, g.weight("fc.weight", 5, 8), g.weight("fc.bias", 5, scale=0.5)], "/fc",
         out="output", alpha=1.0, beta=1.0, transB=1)


def gemm_alpha_beta(g):
    x = g.input(shape=("batch", 8))
    g.op("Gemm", [x, g.weight("fc.weight", 8, 5), g.weight("fc.bias", 5, scale=0.5)], "/fc",
         out="output", alpha=0.5, beta=2.0)


def matmul_init(g):
    x = g.input(shape=("batch", 4, 8))
    g.op("MatMul", [x, g.weight("onnx::MatMul_12", 8, 6)], "/fc", out="output")


def matmul_add(g):
    x = g.input(shape=("batch", 4, 8))
    y = g.op("MatMul", [x, g.weight("onnx::MatMul_12", 8, 6)], "/fc")
    g.op("Add", [g.init("fc.bias", g.randn(6, scale=0.5)), y], "/fc", out="output")


def matmul_activations(g):
    x = g.input(shape=("batch", 2, 4, 8))
    q = g.op("MatMul", [x, g.weight("onnx::MatMul_20", 8, 8)], "/attn/q")
    kt = g.op("Transpose", [x], "/attn", perm=[0, 1, 3, 2])
    g.op("MatMul", [q, kt], "/attn", out="output")


def batchnorm(g):
    x = g.input(shape=("batch", 4, 5, 5))
    g.op("BatchNormalization",
         [x, g.init("bn.weight", 1 + g.randn(4, scale=0.2)), g.init("bn.bias", g.randn(4, scale=0.2)),
          g.init("bn.running_mean", g.randn(4, scale=0.3)),
          g.init("bn.running_var", (0.5 + g.rng.random(4)).astype(np.float32))],
         "/bn", out="output", epsilon=1e-5, momentum=0.9)


def layernorm(g):
    x = g.input(shape=("batch", 5, 8))
    g.op("LayerNormalization", [x, g.init("ln.weight", 1 + g.randn(8, scale=0.2)),
                                g.init("ln.bias", g.randn(8, scale=0.2))],
         "/ln", out="output", axis=-1, epsilon=1e-5)


def layernorm_decomposed(g):
    """torch.onnx's LayerNorm below opset 17."""
    x = g.input(shape=("batch", 5, 8))
    s = "/ln"
    mean = g.op("ReduceMean", [x], s, axes=[-1], keepdims=1)
    d = g.op("Sub", [x, mean], s)
    sq = g.op("Pow", [d, g.f32(2.0, s)], s)
    var = g.op("ReduceMean", [sq], s, axes=[-1], keepdims=1)
    ve = g.op("Add", [var, g.f32(1e-5, s)], s)
    sd = g.op("Sqrt", [ve], s)
    n = g.op("Div", [d, sd], s)
    w = g.op("Mul", [n, g.init("ln.weight", 1 + g.randn(8, scale=0.2))], s)
    g.op("Add", [w, g.init("ln.bias", g.randn(8, scale=0.2))], s, out="output")


def instancenorm(g):
    x = g.input(shape=("batch", 4, 5, 5))
    g.op("InstanceNormalization", [x, g.init("norm.weight", 1 + g.randn(4, scale=0.2)),
                                   g.init("norm.bias", g.randn(4, scale=0.2))],
         "/norm", out="output", epsilon=1e-5)


def groupnorm_decomposed(g):
    """torch.onnx's GroupNorm(3, 6): Reshape [N, G, -1], InstanceNormalization with ones and
    zeros, Reshape back to the input's shape, Mul weight, Add bias."""
    x = g.input(shape=("batch", 6, 4, 4))
    s = "/gn"
    r = g.op("Reshape", [x, g.i64([0, 3, -1], s)], s)
    n = g.op("InstanceNormalization", [r, g.f32(np.ones(3), s), g.f32(np.zeros(3), s)], s,
             epsilon=1e-5)
    shp = g.op("Shape", [x], s)
    back = g.op("Reshape", [n, shp], s)
    w = g.op("Mul", [back, g.init("gn.weight", 1 + g.randn(6, 1, 1, scale=0.2))], s)
    g.op("Add", [w, g.init("gn.bias", g.randn(6, 1, 1, scale=0.2))], s, out="output")


def _unary(op, **attrs):
    def case(g):
        x = g.input(shape=("batch", 4, 6))
        g.op(op, [x], "/act", out="output", **attrs)
    case.__doc__ = f"{op} {attrs or ''}"
    return case


def gelu_erf(g):
    """torch.onnx's GELU (approximate='none') below opset 20."""
    x = g.input(shape=("batch", 4, 6))
    s = "/act"
    d = g.op("Div", [x, g.f32(1.4142135381698608, s)], s)
    e = g.op("Erf", [d], s)
    a = g.op("Add", [e, g.f32(1.0, s)], s)
    m = g.op("Mul", [x, a], s)
    g.op("Mul", [m, g.f32(0.5, s)], s, out="output")


def clip6(g):
    """ReLU6: Clip with min/max as inputs (opset 11+), inputs scaled so both bounds clip."""
    x = g.input(shape=("batch", 4, 6))
    y = g.op("Mul", [x, g.f32(5.0, "/act")], "/act")
    g.op("Clip", [y, g.f32(0.0, "/act"), g.f32(6.0, "/act")], "/act", out="output")


def softmax13(g):
    x = g.input(shape=("batch", 3, 5))
    g.op("Softmax", [x], "/softmax", out="output", axis=-1)


def softmax11_axis1(g):
    """Opset 11: Softmax coerces the input to 2-D [prod(dims < axis), prod(dims >= axis)]."""
    x = g.input(shape=("batch", 3, 5))
    g.op("Softmax", [x], "/softmax", out="output", axis=1)


def log_softmax(g):
    x = g.input(shape=("batch", 3, 5))
    g.op("LogSoftmax", [x], "/log_softmax", out="output", axis=-1)


def _binary(op, scalar, bcast, const_first=False, positive=False):
    """op(x, scalar constant), then op(that, lower-rank constant broadcast against it) (the
    constant first when const_first). positive: the input goes through Abs + 0.5 first (Pow)."""
    def case(g):
        x = g.input(shape=("batch", 3, 4, 5))
        s = f"/{op.lower()}"
        if positive:
            x = g.op("Add", [g.op("Abs", [x], s), g.f32(0.5, s)], s)
        y = g.op(op, [x, g.f32(scalar, s)], s)
        c = g.init(f"{op.lower()}.const", bcast(g))
        g.op(op, [c, y] if const_first else [y, c], s, out="output")
    case.__doc__ = f"{op} with a scalar constant and a broadcast lower-rank constant"
    return case


def where_causal(g):
    """Attention-style masking: a causal mask computed from constants (Less, Not, Equal), Where
    with the float32 minimum, Softmax."""
    x = g.input(shape=("batch", 2, 5, 5))
    s = "/attn"
    row = g.i64(np.arange(5).reshape(5, 1), s)
    col = g.i64(np.arange(5).reshape(1, 5), s)
    above = g.op("Less", [row, col], s)
    keep = g.op("Not", [above], s)
    diag = g.op("Equal", [row, col], s)
    masked = g.op("Where", [keep, x, g.f32(np.finfo(np.float32).min, s)], s)
    half = g.op("Mul", [masked, g.f32(0.5, s)], s)
    sel = g.op("Where", [diag, masked, half], s)
    g.op("Softmax", [sel], s, out="output", axis=-1)


def _reduce(op, axes, keepdims, axes_input=False):
    def case(g):
        x = g.input(shape=("batch", 3, 4, 5))
        s = f"/{op.lower()}"
        if axes_input:
            g.op(op, [x, g.i64(axes, s)], s, out="output", keepdims=keepdims)
        else:
            g.op(op, [x], s, out="output", axes=axes, keepdims=keepdims)
    case.__doc__ = f"{op} axes {axes} keepdims {keepdims}"
    return case


def maxpool(g):
    x = g.input(shape=("batch", 3, 7, 7))
    g.op("MaxPool", [x], "/pool", out="output", kernel_shape=[3, 3], strides=[2, 2],
         pads=[1, 1, 1, 1], ceil_mode=1)


def _avgpool(include):
    def case(g):
        x = g.input(shape=("batch", 3, 7, 7))
        g.op("AveragePool", [x], "/pool", out="output", kernel_shape=[3, 3], strides=[2, 2],
             pads=[1, 1, 1, 1], ceil_mode=0, count_include_pad=include)
    return case


def global_avgpool(g):
    x = g.input(shape=("batch", 3, 5, 5))
    g.op("GlobalAveragePool", [x], "/pool", out="output")


def resize_nearest(g):
    """nn.Upsample(scale_factor=2, mode='nearest') as torch.onnx exports it."""
    x = g.input(shape=("batch", 3, 4, 4))
    s = "/up"
    g.op("Resize", [x, "", g.f32([1.0, 1.0, 2.0, 2.0], s)], s, out="output",
         coordinate_transformation_mode="asymmetric", cubic_coeff_a=-0.75, mode="nearest",
         nearest_mode="floor")


def concat(g):
    x = g.input(shape=("batch", 3, 4))
    r = g.op("Relu", [x], "/act")
    g.op("Concat", [x, r], "", out="output", axis=1)


def split(g):
    x = g.input(shape=("batch", 5, 4))
    s = "/split"
    a, b, c = g.op("Split", [x, g.i64([2, 2, 1], s)], s, outputs=3, axis=1)
    t = g.op("Tanh", [b], s)
    g.op("Concat", [c, t, a], s, out="output", axis=1)


def slice_(g):
    x = g.input(shape=("batch", 6, 8))
    s = "/slice"
    g.op("Slice", [x, g.i64([1, 0], s), g.i64([-1, 8], s), g.i64([1, -1], s), g.i64([1, 2], s)],
         s, out="output")


def gather_embedding(g):
    ids = g.input("input_ids", ("batch", 6), I64, int_range=10)
    g.op("Gather", [g.weight("embeddings.word_embeddings.weight", 10, 8, scale=1.0), ids],
         "/embeddings/word_embeddings", out="output")


def gather_index(g):
    x = g.input(shape=("batch", 4, 5))
    t = g.op("Tanh", [x], "/act")
    g.op("Gather", [t, g.const(np.array(2, dtype=np.int64), "/select")], "/select", out="output",
         axis=1)


def transpose(g):
    x = g.input(shape=("batch", 3, 4, 5))
    g.op("Transpose", [x], "", out="output", perm=[0, 2, 3, 1])


def reshape_shape_subgraph(g):
    """x.view(x.size(0), -1): Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
    x = g.input(shape=("batch", 4, 6))
    s = "/flatten"
    shp = g.op("Shape", [x], s)
    n = g.op("Gather", [shp, g.const(np.array(0, dtype=np.int64), s)], s, axis=0)
    nu = g.op("Unsqueeze", [n, g.i64([0], s)], s)
    new = g.op("Concat", [nu, g.i64([-1], s)], s, axis=0)
    r = g.op("Reshape", [x, new], s)
    g.op("Mul", [r, g.f32(2.0, s)], s, out="output")


def flatten(g):
    x = g.input(shape=("batch", 3, 4, 5))
    g.op("Flatten", [x], "", out="output", axis=1)


def squeeze_unsqueeze(g):
    x = g.input(shape=("batch", 3, 1, 5))
    s = "/sq"
    y = g.op("Squeeze", [x, g.i64([2], s)], s)
    t = g.op("Sigmoid", [y], s)
    g.op("Unsqueeze", [t, g.i64([1], s)], s, out="output")


def expand_cls(g):
    """A ViT class token: cls [1, 1, D] expanded to [N, 1, D] (N from Shape of the input),
    concatenated before the tokens."""
    x = g.input(shape=("batch", 3, 5))
    s = "/cls"
    shp = g.op("Shape", [x], s)
    n = g.op("Gather", [shp, g.const(np.array(0, dtype=np.int64), s)], s, axis=0)
    nu = g.op("Unsqueeze", [n, g.i64([0], s)], s)
    target = g.op("Concat", [nu, g.i64([1, 5], s)], s, axis=0)
    e = g.op("Expand", [g.init("cls_token", g.randn(1, 1, 5)), target], s)
    g.op("Concat", [e, x], s, out="output", axis=1)


def cast(g):
    x = g.input(shape=("batch", 4, 6))
    c = g.op("Cast", [x], "", to=F32)
    g.op("Add", [c, g.f32(1.0)], "", out="output")


def identity(g):
    x = g.input(shape=("batch", 4, 6))
    i = g.op("Identity", [x], "/id")
    g.op("Mul", [i, g.f32(3.0)], "", out="output")


def dropout(g):
    x = g.input(shape=("batch", 4, 6))
    d = g.op("Dropout", [x], "/drop")
    g.op("Mul", [d, g.f32(3.0)], "", out="output")


def constant_nodes(g):
    """Constant nodes with value (a tensor), value_float and value_floats."""
    x = g.input(shape=("batch", 4, 6))
    c1 = g.const(g.randn(6))
    c2 = g.op("Constant", [], "", value_float=0.25)
    c3 = g.op("Constant", [], "", value_floats=[1.0, -1.0, 2.0, 0.5, 1.5, -0.5])
    a = g.op("Add", [x, c1])
    m = g.op("Mul", [a, c2])
    g.op("Sub", [m, c3], "", out="output")


def _b(*shape, lo=None):
    """A broadcast constant of `shape`, away from 0 when lo is given (divisors, exponents)."""
    def f(g):
        if lo is None:
            return g.randn(*shape)
        return (lo + g.rng.random(shape)).astype(np.float32)
    return f


# name -> (builder, opset)
CASES = {
    "conv": (conv, 17),
    "conv1x1_nobias": (conv1x1_nobias, 17),
    "conv_transpose": (conv_transpose, 17),
    "gemm": (gemm, 17),
    "gemm_alpha_beta": (gemm_alpha_beta, 17),
    "matmul_init": (matmul_init, 17),
    "matmul_add": (matmul_add, 17),
    "matmul_activations": (matmul_activations, 17),
    "batchnorm": (batchnorm, 17),
    "layernorm": (layernorm, 17),
    "layernorm_decomposed": (layernorm_decomposed, 13),
    "instancenorm": (instancenorm, 17),
    "groupnorm_decomposed": (groupnorm_decomposed, 17),
    "relu": (_unary("Relu"), 17),
    "leaky_relu": (_unary("LeakyRelu", alpha=0.1), 17),
    "sigmoid": (_unary("Sigmoid"), 17),
    "tanh": (_unary("Tanh"), 17),
    "erf": (_unary("Erf"), 17),
    "gelu_erf": (gelu_erf, 17),
    "hardsigmoid_sixth": (_unary("HardSigmoid", alpha=1.0 / 6.0, beta=0.5), 17),
    "hardsigmoid_default": (_unary("HardSigmoid"), 17),
    "hardswish": (_unary("HardSwish"), 17),
    "clip6": (clip6, 17),
    "softmax13": (softmax13, 13),
    "softmax11_axis1": (softmax11_axis1, 11),
    "log_softmax": (log_softmax, 17),
    "add": (_binary("Add", 0.5, _b(4, 5)), 17),
    "sub": (_binary("Sub", 0.25, _b(4, 1), const_first=True), 17),
    "mul": (_binary("Mul", 1.5, _b(5)), 17),
    "div": (_binary("Div", 3.0, _b(3, 1, 1, lo=0.5)), 17),
    "pow": (_binary("Pow", 2.0, _b(5, lo=0.5), positive=True), 17),
    "sqrt_abs": (lambda g: g.op("Sqrt", [g.op("Abs", [g.input(shape=("batch", 4, 6))], "/act")],
                                "/act", out="output"), 17),
    "reciprocal": (_unary("Reciprocal"), 17),
    "exp": (_unary("Exp"), 17),
    "log_abs1": (lambda g: g.op("Log", [g.op("Add", [g.op("Abs", [g.input(shape=("batch", 4, 6))],
                                                            "/act"), g.f32(1.0, "/act")], "/act")],
                                "/act", out="output"), 17),
    "neg": (_unary("Neg"), 17),
    "abs": (_unary("Abs"), 17),
    "where_causal": (where_causal, 17),
    "reduce_mean_keepdims": (_reduce("ReduceMean", [-1], 1), 17),
    "reduce_mean_nokeep": (_reduce("ReduceMean", [1], 0), 17),
    "reduce_sum_keepdims": (_reduce("ReduceSum", [2, 3], 1, axes_input=True), 13),
    "reduce_sum_nokeep": (_reduce("ReduceSum", [1], 0, axes_input=True), 13),
    "reduce_max_keepdims": (_reduce("ReduceMax", [-1], 1), 17),
    "reduce_max_nokeep": (_reduce("ReduceMax", [2], 0), 17),
    "maxpool_ceil": (maxpool, 17),
    "avgpool_exclude_pad": (_avgpool(0), 17),
    "avgpool_include_pad": (_avgpool(1), 17),
    "global_avgpool": (global_avgpool, 17),
    "resize_nearest": (resize_nearest, 17),
    "concat": (concat, 17),
    "split": (split, 13),
    "slice": (slice_, 17),
    "gather_embedding": (gather_embedding, 17),
    "gather_index": (gather_index, 17),
    "transpose": (transpose, 17),
    "reshape_shape_subgraph": (reshape_shape_subgraph, 17),
    "flatten": (flatten, 17),
    "squeeze_unsqueeze": (squeeze_unsqueeze, 13),
    "expand_cls": (expand_cls, 17),
    "cast": (cast, 17),
    "identity": (identity, 17),
    "dropout": (dropout, 17),
    "constant_nodes": (constant_nodes, 17),
}


def _dtype(elem):
    return {F32: "float32", I64: "int64"}[elem]


def build(name, seed=0):
    fn, opset = CASES[name]
    g = G(name, seed, opset)
    fn(g)
    return g, g.model()


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out, names = argv[1], argv[2:] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"make_onnx_ops: unknown case(s) {unknown}", file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    index = {}
    order = list(CASES)
    for name in names:
        g, m = build(name, seed=order.index(name))
        path = os.path.join(out, f"{name}.onnx")
        onnx.save(m, path)
        inputs = {}
        for vi in m.graph.input:
            dims = [d.dim_param if d.dim_param else d.dim_value
                    for d in vi.type.tensor_type.shape.dim]
            inputs[vi.name] = {"shape": dims, "dtype": _dtype(vi.type.tensor_type.elem_type)}
        entry = {"file": f"{name}.onnx", "opset": g.opset, "nodes": len(m.graph.node),
                 "inputs": inputs}
        if g.int_range:
            entry["int_range"] = g.int_range
        index[name] = entry
    with open(os.path.join(out, "index.json"), "w") as f:   # one line per case
        f.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in index.items())
                + "\n}\n")
    print(f"make_onnx_ops: {len(index)} model(s) in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
