"""Malformed ONNX models: exit 2 and one line naming the file (and the node).

usage: test_onnx_malformed.py DIVSCOPE WORK_DIR [CASE ...]
Run with .venv-test/bin/python (onnx, h5py, numpy; onnxruntime for the control recording).

Builds one bad model per case in WORK_DIR/<case>/ (with onnx.helper, or by damaging the bytes of
a good model) and runs
    DIVSCOPE inspect BAD.onnx [--recording REC.h5]
    DIVSCOPE run --model BAD.onnx --recording REC.h5 --backend cpu --modes fp32
(run where a recording can be made: a hand-written recording, docs/format.md, holding the bad
model's inputs, or the control recording captured from the good model with
tools/capture_onnx.py). Each command must
  - finish within 20 s, not die of a signal, and exit with exactly 2 (3 = internal error fails);
  - write exactly ONE line on stderr, starting with "divscope: " and containing the path of the
    model as given on the command line;
  - for a node-level problem, contain "<file>: node '<name>' (<OpType>): " (the importer's
    format; a node without a name is labelled by its first output);
  - contain the case's key words where the case has some (the dynamic dim: "--recording"; an
    initializer: its name).
Controls (the good model, the dynamic-dim model with a recording, and a valid Gemm whose C is a
scalar) must exit 0 (inspect) or 0/1 (run), so that a binary that refuses everything does not
pass.

Prints one row per case and command (case/command, exit code, the message truncated to 100
characters with WORK_DIR/ left out, PASS/FAIL), then the full command, stderr and reasons of each
failure. Exit 0 only when every row passes.
"""
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..", "..", "tools")
sys.path.insert(0, TOOLS)

F32, I64 = TensorProto.FLOAT, TensorProto.INT64
TIMEOUT_S = 20
N_SAMPLES, N_BATCHES = 3, 2


# --------------------------------------------------------------------------------------------
# Models

class M:
    """A model under construction (torch.onnx-style names)."""

    def __init__(self, opset=17, ir=8):
        self.opset, self.ir = opset, ir
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.extra_opsets = []
        self.rng = np.random.default_rng(0)

    def input(self, name="input", shape=("batch", 4, 6), elem=F32):
        self.inputs.append(helper.make_tensor_value_info(name, elem, None if shape is None else list(shape)))
        return name

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, name, *shape):
        return self.init(name, self.rng.standard_normal(shape).astype(np.float32))

    def i64(self, name, values):
        return self.init(name, np.array(values, dtype=np.int64))

    def node(self, op, inputs, outputs, name, domain=None, **attrs):
        n = helper.make_node(op, list(inputs), list(outputs), name=name, domain=domain, **attrs)
        self.nodes.append(n)
        return outputs[0] if outputs else None

    def output(self, name="output", elem=F32):
        self.outputs.append(helper.make_tensor_value_info(name, elem, None))

    def proto(self):
        if not self.outputs:
            self.output()
        g = helper.make_graph(self.nodes, "main_graph", self.inputs, self.outputs, self.inits)
        ops = [helper.make_opsetid("", self.opset)] if self.opset else []
        ops += [helper.make_opsetid(d, v) for d, v in self.extra_opsets]
        m = helper.make_model(g, opset_imports=ops, producer_name="divscope test_onnx_malformed")
        m.ir_version = self.ir
        return m


def good_model():
    """input [batch, 4, 6] -> MatMul(block.weight [6, 5]) -> Relu -> output [batch, 4, 5]."""
    m = M()
    x = m.input()
    y = m.node("MatMul", [x, m.weight("block.weight", 6, 5)], ["/block/MatMul_output_0"], "/block/MatMul")
    m.node("Relu", [y], ["output"], "/act/Relu")
    return m


def image_model(c=3, hw=8):
    m = M()
    m.input(shape=("batch", c, hw, hw))
    return m


def save(proto, path):
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


# --------------------------------------------------------------------------------------------
# The cases: (name, build(m_path) -> writes the model; returns a recording spec, "good" or None)
# Spec: {input: (per-sample shape, "float" | "int")}; "good": the control recording; None: no
# run (no recording can be made). Every case lists `nodes` (acceptable (name, op) pairs; empty:
# not node-level) and `needs` (substrings the line must contain).

CASES = []


def case(name, nodes=(), needs=(), rec="auto", inspect_rec=False, run=True):
    def deco(fn):
        CASES.append(dict(name=name, build=fn, nodes=list(nodes), needs=list(needs), rec=rec,
                          inspect_rec=inspect_rec, run=run))
        return fn
    return deco


def _bytes_of_good():
    return good_model().proto().SerializeToString()


@case("truncated_50pct", rec="good")
def _(p):
    b = _bytes_of_good()
    open(p, "wb").write(b[: len(b) // 2])


@case("truncated_10_bytes", rec="good")
def _(p):
    open(p, "wb").write(_bytes_of_good()[:10])


@case("random_bytes", rec="good")
def _(p):
    open(p, "wb").write(np.random.default_rng(1).bytes(4096))


@case("random_bytes_onnx_key", rec="good")
def _(p):
    # Starts with the ir_version key (0x08), so the protobuf reader takes it.
    open(p, "wb").write(b"\x08\x08" + np.random.default_rng(2).bytes(4094))


@case("empty_file", rec="good")
def _(p):
    open(p, "wb").close()


@case("hdf5_not_divscope", rec="good")
def _(p):
    with h5py.File(p, "w") as f:
        f.create_dataset("x", data=np.arange(4.0))


@case("missing_file", rec="good")
def _(p):
    pass


@case("model_is_directory", rec="good")
def _(p):
    os.mkdir(p)


@case("opset_7", needs=["opset"], rec="good")
def _(p):
    m = good_model()
    m.opset = 7
    save(m.proto(), p)


@case("no_default_opset", needs=["opset"], rec="good")
def _(p):
    m = good_model()
    m.opset = None
    m.extra_opsets = [("com.microsoft", 1)]
    save(m.proto(), p)


@case("no_nodes", rec="good")
def _(p):
    m = M()
    m.input()
    m.outputs.append(helper.make_tensor_value_info("input", F32, None))
    save(m.proto(), p)


@case("output_is_constant_node", needs=["const_out"], rec="good")
def _(p):
    m = M()
    m.input()
    m.node("Constant", [], ["const_out"], "/Constant", value=numpy_helper.from_array(np.ones(3, np.float32)))
    m.output("const_out")
    save(m.proto(), p)


@case("output_is_initializer", needs=["block.weight"], rec="good")
def _(p):
    m = good_model()
    m.output("output")
    m.output("block.weight")
    save(m.proto(), p)


@case("output_not_computed", needs=["nowhere"], rec="good")
def _(p):
    m = good_model()
    m.output("output")
    m.output("nowhere")
    save(m.proto(), p)


def dynamic_model():
    m = M()
    x = m.input(shape=("batch", "seq", 6))
    y = m.node("MatMul", [x, m.weight("block.weight", 6, 5)], ["/block/MatMul_output_0"], "/block/MatMul")
    m.node("Relu", [y], ["output"], "/act/Relu")
    return m


@case("dynamic_dim_no_recording", needs=["--recording", "seq"], rec=None, run=False)
def _(p):
    save(dynamic_model().proto(), p)


@case("dynamic_dim_recording_disagrees", rec={"input": ((4, 5), "float")}, inspect_rec=True)
def _(p):
    # dim 2 is fixed at 6; the recording's samples are [4, 5].
    save(dynamic_model().proto(), p)


@case("recording_rank_disagrees", rec={"input": ((24,), "float")}, inspect_rec=True)
def _(p):
    save(good_model().proto(), p)


@case("input_string_type", rec="good")
def _(p):
    m = good_model()
    m.inputs[0] = helper.make_tensor_value_info("input", TensorProto.STRING, ["batch", 4, 6])
    save(m.proto(), p)


@case("input_scalar", rec="good")
def _(p):
    m = good_model()
    m.inputs[0] = helper.make_tensor_value_info("input", F32, [])
    save(m.proto(), p)


@case("input_without_shape", rec="good")
def _(p):
    m = good_model()
    m.inputs[0] = helper.make_tensor_value_info("input", F32, None)
    save(m.proto(), p)


def _external(location):
    def build(p):
        m = good_model()
        t = m.inits[0]
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", "0"), ("length", str(6 * 5 * 4))):
            e = t.external_data.add()
            e.key, e.value = k, v
        save(m.proto(), p)
    return build


case("external_data_etc_passwd", needs=["block.weight"])(_external("/etc/passwd"))
case("external_data_relative_escape", needs=["block.weight"])(_external("../../../../../../../../etc/passwd"))


@case("raw_data_length_mismatch", needs=["block.weight"])
def _(p):
    m = good_model()
    m.inits[0].raw_data = m.inits[0].raw_data[:100]   # 120 bytes needed
    save(m.proto(), p)


@case("initializer_negative_dim", needs=["block.weight"])
def _(p):
    m = good_model()
    t = m.inits[0]
    del t.dims[:]
    t.dims.extend([-1, 5])
    t.raw_data = b""
    save(m.proto(), p)


@case("initializer_huge_dims", needs=["block.weight"])
def _(p):
    m = good_model()
    t = m.inits[0]
    del t.dims[:]
    t.dims.extend([1 << 31, 1 << 31])
    t.raw_data = b""
    save(m.proto(), p)


@case("unknown_op_Foo", nodes=[("/block/Foo", "Foo")])
def _(p):
    m = M()
    x = m.input()
    y = m.node("Foo", [x], ["/block/Foo_output_0"], "/block/Foo")
    m.node("Relu", [y], ["output"], "/act/Relu")
    save(m.proto(), p)


@case("unknown_op_unnamed_node", nodes=[("foo_out", "Foo")])
def _(p):
    m = M()
    x = m.input()
    y = m.node("Foo", [x], ["foo_out"], "")
    m.node("Relu", [y], ["output"], "/act/Relu")
    save(m.proto(), p)


@case("op_domain_com_microsoft", nodes=[("/block/FusedMatMul", "FusedMatMul")])
def _(p):
    m = M()
    m.extra_opsets = [("com.microsoft", 1)]
    x = m.input()
    y = m.node("FusedMatMul", [x, m.weight("block.weight", 6, 5)], ["/block/FusedMatMul_output_0"],
               "/block/FusedMatMul", domain="com.microsoft", alpha=1.0)
    m.node("Relu", [y], ["output"], "/act/Relu")
    save(m.proto(), p)


@case("missing_initializer", nodes=[("/block/MatMul", "MatMul")], needs=["block.weight"])
def _(p):
    m = good_model()
    m.inits.clear()
    save(m.proto(), p)


@case("cycle", nodes=[("/a/Add", "Add"), ("/b/Relu", "Relu")])
def _(p):
    m = M()
    x = m.input()
    m.node("Add", [x, "/b/Relu_output_0"], ["/a/Add_output_0"], "/a/Add")
    m.node("Relu", ["/a/Add_output_0"], ["/b/Relu_output_0"], "/b/Relu")
    m.node("Relu", ["/b/Relu_output_0"], ["output"], "/c/Relu")
    save(m.proto(), p)


@case("not_topologically_sorted", nodes=[("/act/Relu", "Relu")])
def _(p):
    m = good_model()
    m.nodes.reverse()
    save(m.proto(), p)


@case("node_missing_input", nodes=[("/conv/Conv", "Conv")])
def _(p):
    m = image_model()
    m.node("Conv", ["input"], ["output"], "/conv/Conv", kernel_shape=[3, 3])
    save(m.proto(), p)


@case("node_without_outputs", nodes=[("/dead/Relu", "Relu")])
def _(p):
    m = good_model()
    m.nodes.insert(0, helper.make_node("Relu", ["input"], [], name="/dead/Relu"))
    save(m.proto(), p)


@case("split_without_outputs", nodes=[("/split/Split", "Split")])
def _(p):
    m = good_model()
    m.nodes.insert(0, helper.make_node("Split", ["input"], [], name="/split/Split", axis=2))
    save(m.proto(), p)


@case("attribute_wrong_type", nodes=[("/softmax/Softmax", "Softmax")])
def _(p):
    m = M()
    x = m.input()
    n = helper.make_node("Softmax", [x], ["output"], name="/softmax/Softmax")
    n.attribute.append(helper.make_attribute("axis", -1.0))
    m.nodes.append(n)
    save(m.proto(), p)


def _conv(p, w_shape, b_shape=None, **attrs):
    m = image_model()
    ins = ["input", m.weight("conv.weight", *w_shape)]
    if b_shape:
        ins.append(m.weight("conv.bias", *b_shape))
    m.node("Conv", ins, ["output"], "/conv/Conv", **attrs)
    save(m.proto(), p)


@case("conv_weight_wrong_rank", nodes=[("/conv/Conv", "Conv")])
def _(p):
    _conv(p, (8, 3, 3), kernel_shape=[3, 3])


@case("conv_in_channels_mismatch", nodes=[("/conv/Conv", "Conv")])
def _(p):
    _conv(p, (8, 5, 3, 3), (8,), kernel_shape=[3, 3])


@case("conv_bias_size_mismatch", nodes=[("/conv/Conv", "Conv")])
def _(p):
    _conv(p, (8, 3, 3, 3), (7,), kernel_shape=[3, 3])


@case("conv_strides_zero", nodes=[("/conv/Conv", "Conv")])
def _(p):
    _conv(p, (8, 3, 3, 3), (8,), kernel_shape=[3, 3], strides=[0, 0])


@case("conv_group_zero", nodes=[("/conv/Conv", "Conv")])
def _(p):
    _conv(p, (8, 3, 3, 3), (8,), kernel_shape=[3, 3], group=0)


@case("maxpool_strides_zero", nodes=[("/pool/MaxPool", "MaxPool")])
def _(p):
    m = image_model()
    m.node("MaxPool", ["input"], ["output"], "/pool/MaxPool", kernel_shape=[2, 2], strides=[0, 0])
    save(m.proto(), p)


@case("batchnorm_param_size_mismatch", nodes=[("/bn/BatchNormalization", "BatchNormalization")])
def _(p):
    m = image_model()
    ps = [m.init(f"bn.{k}", np.ones(5, np.float32)) for k in ("weight", "bias", "running_mean", "running_var")]
    m.node("BatchNormalization", ["input"] + ps, ["output"], "/bn/BatchNormalization")
    save(m.proto(), p)


@case("conv_dilations_zero", nodes=[("/conv/Conv", "Conv")])
def _(p):
    _conv(p, (8, 3, 3, 3), (8,), kernel_shape=[3, 3], dilations=[0, 0])


@case("duplicate_output_name", nodes=[("/dup/Relu", "Relu"), ("/block/MatMul", "MatMul")])
def _(p):
    # Not SSA: a second node writes '/block/MatMul_output_0'.
    m = good_model()
    m.nodes.append(helper.make_node("Relu", ["input"], ["/block/MatMul_output_0"], name="/dup/Relu"))
    save(m.proto(), p)


@case("transpose_constant_bad_perm", nodes=[("/t/Transpose", "Transpose")])
def _(p):
    # Folded (every input constant): perm [0, 7] on a rank-2 constant.
    m = M()
    x = m.input()
    m.node("Transpose", [m.weight("c", 4, 6)], ["/t/Transpose_output_0"], "/t/Transpose", perm=[0, 7])
    m.node("Add", [x, "/t/Transpose_output_0"], ["output"], "/add/Add")
    save(m.proto(), p)


@case("constant_of_shape_bad_value", nodes=[("/c/ConstantOfShape", "ConstantOfShape")])
def _(p):
    m = M()
    x = m.input()
    v = numpy_helper.from_array(np.ones(1, np.float32))
    v.raw_data = b"\0\0"   # 2 bytes for one float
    m.node("ConstantOfShape", [m.i64("/c/shape", [4, 6])], ["/c/ConstantOfShape_output_0"],
           "/c/ConstantOfShape", value=v)
    m.node("Add", [x, "/c/ConstantOfShape_output_0"], ["output"], "/add/Add")
    save(m.proto(), p)


@case("range_empty_input", nodes=[("/r/Range", "Range")])
def _(p):
    m = M()
    x = m.input()
    m.node("Range", [m.init("/r/start", np.zeros(0, np.float32)), m.init("/r/limit", np.array(6, np.float32)),
                     m.init("/r/delta", np.array(1, np.float32))], ["/r/Range_output_0"], "/r/Range")
    m.node("Add", [x, "/r/Range_output_0"], ["output"], "/add/Add")
    save(m.proto(), p)


@case("trilu_empty_constant", nodes=[("/tr/Trilu", "Trilu"), ("/add/Add", "Add")])
def _(p):
    # Trilu of a [0, 0] constant (folded), added to [batch, 4, 6]: does not broadcast.
    m = M()
    x = m.input()
    m.node("Trilu", [m.init("/tr/z", np.zeros((0, 0), np.float32))], ["/tr/Trilu_output_0"], "/tr/Trilu")
    m.node("Add", [x, "/tr/Trilu_output_0"], ["output"], "/add/Add")
    save(m.proto(), p)


@case("matmul_weight_shape_mismatch", nodes=[("/block/MatMul", "MatMul")])
def _(p):
    m = M()
    x = m.input()
    m.node("MatMul", [x, m.weight("block.weight", 5, 3)], ["output"], "/block/MatMul")
    save(m.proto(), p)


@case("matmul_activations_shape_mismatch", nodes=[("/attn/MatMul", "MatMul")])
def _(p):
    m = M()
    x = m.input()
    m.node("MatMul", [x, x], ["output"], "/attn/MatMul")   # [b, 4, 6] @ [b, 4, 6]
    save(m.proto(), p)


@case("gemm_shape_mismatch", nodes=[("/fc/Gemm", "Gemm")])
def _(p):
    m = M()
    x = m.input(shape=("batch", 6))
    m.node("Gemm", [x, m.weight("fc.weight", 5, 3)], ["output"], "/fc/Gemm")
    save(m.proto(), p)


@case("add_shapes_do_not_broadcast", nodes=[("/add/Add", "Add")])
def _(p):
    m = M()
    x = m.input()
    m.node("Add", [x, m.weight("add.bias", 5)], ["output"], "/add/Add")
    save(m.proto(), p)


@case("reshape_does_not_fit", nodes=[("/reshape/Reshape", "Reshape")])
def _(p):
    m = M()
    x = m.input()
    m.node("Reshape", [x, m.i64("/reshape/shape", [0, 5, 5])], ["output"], "/reshape/Reshape")
    save(m.proto(), p)


@case("reshape_minus1_does_not_divide", nodes=[("/reshape/Reshape", "Reshape")])
def _(p):
    m = M()
    x = m.input()
    m.node("Reshape", [x, m.i64("/reshape/shape", [0, -1, 5])], ["output"], "/reshape/Reshape")
    save(m.proto(), p)


@case("transpose_bad_perm", nodes=[("/t/Transpose", "Transpose")])
def _(p):
    m = M()
    x = m.input()
    m.node("Transpose", [x], ["output"], "/t/Transpose", perm=[0, 2, 2])
    save(m.proto(), p)


@case("concat_rank_mismatch", nodes=[("/cat/Concat", "Concat")])
def _(p):
    m = M()
    x = m.input()
    m.node("Concat", [x, m.weight("cat.const", 4, 6)], ["output"], "/cat/Concat", axis=1)
    save(m.proto(), p)


@case("pad_reflect", nodes=[("/pad/Pad", "Pad")])
def _(p):
    m = image_model()
    m.node("Pad", ["input", m.i64("/pad/pads", [0, 0, 1, 1, 0, 0, 1, 1])], ["output"], "/pad/Pad",
           mode="reflect")
    save(m.proto(), p)


@case("resize_linear", nodes=[("/up/Resize", "Resize")])
def _(p):
    m = image_model(hw=4)
    m.node("Resize", ["input", "", m.init("/up/scales", np.array([1, 1, 2, 2], np.float32))], ["output"],
           "/up/Resize", mode="linear")
    save(m.proto(), p)


@case("gather_indices_from_input", nodes=[("/g/Gather", "Gather")],
      rec={"input": ((5, 6), "float"), "ids": ((3,), "int")})
def _(p):
    m = M()
    x = m.input(shape=("batch", 5, 6))
    ids = m.input("ids", shape=("batch", 3), elem=I64)
    m.node("Gather", [x, ids], ["output"], "/g/Gather", axis=1)
    save(m.proto(), p)


@case("gather_indices_computed", nodes=[("/g/Gather", "Gather"), ("/g/ArgMax", "ArgMax")])
def _(p):
    m = M()
    x = m.input(shape=("batch", 5, 6))
    i = m.node("ArgMax", [x], ["/g/ArgMax_output_0"], "/g/ArgMax", axis=2, keepdims=0)
    m.node("Gather", [x, i], ["output"], "/g/Gather", axis=1)
    save(m.proto(), p)


@case("gather_index_out_of_range", nodes=[("/g/Gather", "Gather")])
def _(p):
    m = M()
    x = m.input(shape=("batch", 5, 6))
    m.node("Gather", [x, m.i64("/g/idx", [7])], ["output"], "/g/Gather", axis=1)
    save(m.proto(), p)


@case("softmax_batch_axis", nodes=[("/softmax/Softmax", "Softmax")])
def _(p):
    m = M(opset=13)
    m.node("Softmax", [m.input()], ["output"], "/softmax/Softmax", axis=0)
    save(m.proto(), p)


@case("softmax_batch_axis_opset11", nodes=[("/softmax/Softmax", "Softmax")])
def _(p):
    m = M(opset=11)
    m.node("Softmax", [m.input()], ["output"], "/softmax/Softmax", axis=0)
    save(m.proto(), p)


@case("reduce_mean_all_axes", nodes=[("/mean/ReduceMean", "ReduceMean")])
def _(p):
    m = M(opset=18)
    m.node("ReduceMean", [m.input()], ["output"], "/mean/ReduceMean", keepdims=1, noop_with_empty_axes=0)
    save(m.proto(), p)


@case("reduce_mean_all_axes_opset13", nodes=[("/mean/ReduceMean", "ReduceMean")])
def _(p):
    m = M(opset=13)
    m.node("ReduceMean", [m.input()], ["output"], "/mean/ReduceMean", keepdims=0)
    save(m.proto(), p)


@case("reduce_sum_batch_axis", nodes=[("/sum/ReduceSum", "ReduceSum")])
def _(p):
    m = M(opset=13)
    m.node("ReduceSum", [m.input(), m.i64("/sum/axes", [0])], ["output"], "/sum/ReduceSum", keepdims=1)
    save(m.proto(), p)


@case("layernorm_batch_axis", nodes=[("/ln/LayerNormalization", "LayerNormalization")])
def _(p):
    m = M()
    x = m.input()
    m.node("LayerNormalization", [x, m.init("ln.weight", np.ones((3, 4, 6), np.float32))], ["output"],
           "/ln/LayerNormalization", axis=0)
    save(m.proto(), p)


@case("dropout_mask_used", nodes=[("/drop/Dropout", "Dropout")])
def _(p):
    m = M(opset=13)
    x = m.input()
    y, _mask = "/drop/Dropout_output_0", "/drop/Dropout_output_1"
    m.node("Dropout", [x], [y, _mask], "/drop/Dropout")
    m.node("Relu", [y], ["output"], "/act/Relu")
    m.output("output")
    m.output(_mask, TensorProto.BOOL)
    save(m.proto(), p)


# --------------------------------------------------------------------------------------------
# Recordings

def write_recording(path, spec, seed=0):
    """docs/format.md: a version 2 recording, N_BATCHES batches of N_SAMPLES samples."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.attrs["divscope_format"] = "recording"
        f.attrs["divscope_version"] = np.int64(2)
        f.attrs["source"] = "test_onnx_malformed.py"
        gb = f.create_group("batches")
        for b in range(N_BATCHES):
            g = gb.create_group(f"{b:06d}")
            for name, (shape, kind) in spec.items():
                full = (N_SAMPLES,) + tuple(shape)
                if kind == "int":
                    g.create_dataset(name, data=rng.integers(0, 2, size=full, dtype=np.int64))
                else:
                    g.create_dataset(name, data=rng.standard_normal(full).astype(np.float32))


def auto_spec(path):
    """The recording spec of a model's inputs when every non-batch dim is fixed, else None."""
    try:
        mp = onnx.load(path)
    except Exception:
        return None
    inits = {t.name for t in mp.graph.initializer}
    spec = {}
    for vi in mp.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or len(tt.shape.dim) == 0:
            return None
        dims = tt.shape.dim[1:]
        if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims):
            return None
        if tt.elem_type == F32:
            kind = "float"
        elif tt.elem_type in (I64, TensorProto.INT32):
            kind = "int"
        else:
            return None
        spec[vi.name] = (tuple(d.dim_value for d in dims), kind)
    return spec or None


# --------------------------------------------------------------------------------------------
# Running and judging

def run_cmd(args, cwd):
    try:
        p = subprocess.run(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        return None, (e.stdout or b"").decode(errors="replace"), (e.stderr or b"").decode(errors="replace")
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def describe_rc(rc):
    if rc is None:
        return f"timeout>{TIMEOUT_S}s"
    if rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return str(rc)


def judge_bad(rc, err, model, c):
    why = []
    if rc is None:
        why.append(f"did not finish within {TIMEOUT_S} s")
    elif rc < 0:
        why.append(f"killed by {describe_rc(rc)} (crash)")
    elif rc != 2:
        why.append(f"exit code {rc}, expected 2" + (" (3: internal error / crash)" if rc == 3 else ""))
    lines = err.splitlines()
    if len(lines) != 1:
        why.append(f"stderr has {len(lines)} lines, expected exactly 1")
    line = lines[0] if lines else ""
    if not line.startswith("divscope: "):
        why.append("the line does not start with 'divscope: '")
    if model not in line:
        why.append(f"the line does not contain the file path {model}")
    if c["nodes"]:
        labels = [f"{model}: node '{n}' ({op}): " for n, op in c["nodes"]]
        if not any(lab in line for lab in labels):
            why.append("the line does not name the node as " +
                       " or ".join(repr(f"<file>: node '{n}' ({op}): ") for n, op in c["nodes"]))
    for s in c["needs"]:
        if s not in line:
            why.append(f"the line does not contain {s!r}")
    return why


def judge_control(rc, err, ok_codes):
    why = []
    if rc not in ok_codes:
        why.append(f"exit {describe_rc(rc)}, expected {' or '.join(map(str, ok_codes))}")
    return why


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    divscope, work = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    only = set(argv[3:])
    names = [c["name"] for c in CASES]
    unknown = only - set(names) - {"control"}
    if unknown:
        print(f"test_onnx_malformed: unknown case(s) {sorted(unknown)}; cases: {' '.join(names)}",
              file=sys.stderr)
        return 2
    if not os.access(divscope, os.X_OK):
        print(f"test_onnx_malformed: {divscope}: not an executable", file=sys.stderr)
        return 2
    os.makedirs(work, exist_ok=True)

    rows, failures = [], []

    def record(label, rc, err, args, why):
        line = err.splitlines()[0] if err.splitlines() else ""
        shown = line.replace(work + "/", "")
        if len(shown) > 100:
            shown = shown[:97] + "..."
        rows.append((label, describe_rc(rc), shown, "FAIL" if why else "PASS"))
        if why:
            failures.append((label, args, rc, err, why))

    # Controls: the good model with a captured and a hand-written recording; the dynamic-dim
    # model with a recording that fixes the dim.
    cdir = os.path.join(work, "control")
    os.makedirs(cdir, exist_ok=True)
    good = os.path.join(cdir, "good.onnx")
    gm = good_model().proto()
    gm.graph.output[0].CopyFrom(helper.make_tensor_value_info("output", F32, ["batch", 4, 5]))
    onnx.checker.check_model(gm, full_check=True)
    save(gm, good)
    good_rec = os.path.join(cdir, "good.rec.h5")
    import capture_onnx  # noqa: E402  (onnxruntime)
    rng = np.random.default_rng(0)
    capture_onnx.capture(good, [{"input": rng.standard_normal((N_SAMPLES, 4, 6)).astype(np.float32)}
                                for _ in range(N_BATCHES)], good_rec, activations=True)
    hand_rec = os.path.join(cdir, "good.hand.rec.h5")
    write_recording(hand_rec, {"input": ((4, 6), "float")})
    dyn = os.path.join(cdir, "dynamic.onnx")
    save(dynamic_model().proto(), dyn)
    dyn_rec = os.path.join(cdir, "dynamic.rec.h5")
    write_recording(dyn_rec, {"input": ((4, 6), "float")})
    # A valid model (C of Gemm is a scalar: ONNX broadcasts it) that must load.
    gemm = os.path.join(cdir, "gemm_scalar_c.onnx")
    gmm = M()
    gmm.node("Gemm", [gmm.input(shape=("batch", 6)), gmm.weight("fc.weight", 6, 1),
                      gmm.init("fc.bias", np.array(0.5, np.float32))], ["output"], "/fc/Gemm")
    gp = gmm.proto()
    gp.graph.output[0].CopyFrom(helper.make_tensor_value_info("output", F32, ["batch", 1]))
    onnx.checker.check_model(gp, full_check=True)
    save(gp, gemm)
    gemm_rec = os.path.join(cdir, "gemm_scalar_c.rec.h5")
    write_recording(gemm_rec, {"input": ((6,), "float")})
    if not only or "control" in only:
        controls = [
            ("control/good/inspect", [divscope, "inspect", good], (0,)),
            ("control/good/run", [divscope, "run", "--model", good, "--recording", good_rec,
                                  "--backend", "cpu", "--modes", "fp32"], (0, 1)),
            ("control/good_hand_rec/run", [divscope, "run", "--model", good, "--recording", hand_rec,
                                           "--backend", "cpu", "--modes", "fp32"], (0, 1)),
            ("control/dynamic_with_rec/inspect", [divscope, "inspect", dyn, "--recording", dyn_rec], (0,)),
            ("control/dynamic_with_rec/run", [divscope, "run", "--model", dyn, "--recording", dyn_rec,
                                              "--backend", "cpu", "--modes", "fp32"], (0, 1)),
            ("control/valid_gemm_scalar_c/inspect", [divscope, "inspect", gemm], (0,)),
            ("control/valid_gemm_scalar_c/run", [divscope, "run", "--model", gemm, "--recording", gemm_rec,
                                                 "--backend", "cpu", "--modes", "fp32"], (0, 1)),
        ]
        for label, args, ok in controls:
            rc, _out, err = run_cmd(args, cdir)
            record(label, rc, err, args, judge_control(rc, err, ok))

    for c in CASES:
        if only and c["name"] not in only:
            continue
        d = os.path.join(work, c["name"])
        os.makedirs(d, exist_ok=True)
        model = os.path.join(d, "bad.onnx")
        if os.path.isdir(model):
            os.rmdir(model)
        elif os.path.exists(model):
            os.remove(model)
        c["build"](model)
        rec = None
        if c["rec"] == "good":
            rec = good_rec
        elif isinstance(c["rec"], dict):
            rec = os.path.join(d, "rec.h5")
            write_recording(rec, c["rec"])
        elif c["rec"] == "auto":
            spec = auto_spec(model)
            if spec:
                rec = os.path.join(d, "rec.h5")
                write_recording(rec, spec)
            else:
                rec = good_rec
        cmds = [("inspect", [divscope, "inspect", model] + (["--recording", rec] if c["inspect_rec"] else []))]
        if c["run"] and rec:
            cmds.append(("run", [divscope, "run", "--model", model, "--recording", rec,
                                 "--backend", "cpu", "--modes", "fp32"]))
        for kind, args in cmds:
            rc, _out, err = run_cmd(args, d)
            record(f"{c['name']}/{kind}", rc, err, args, judge_bad(rc, err, model, c))

    w = max(len(r[0]) for r in rows)
    print(f"{'case':<{w}}  {'exit':>12}  {'result':<6}  message")
    for label, rc, msg, res in rows:
        print(f"{label:<{w}}  {rc:>12}  {res:<6}  {msg}")
    passed = sum(r[3] == "PASS" for r in rows)
    print(f"\n{passed}/{len(rows)} passed")
    for label, args, rc, err, why in failures:
        print(f"\nFAIL {label}: " + "; ".join(why))
        print("  $ " + " ".join(args))
        print(f"  exit: {describe_rc(rc)}")
        for ln in (err.splitlines() or ["(no stderr)"])[:20]:
            print("  stderr: " + ln)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
