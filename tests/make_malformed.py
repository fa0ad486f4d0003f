"""Writes the HDF5 files of tests/test_h5io.cpp into OUTDIR, with h5py as users will.

usage: /usr/bin/python3 tests/make_malformed.py OUTDIR

Valid files cover h5py's string forms (variable-length UTF-8, fixed-length ASCII), narrow and
unsigned integer attributes, numpy bools, float32 parameters. Each malformed file breaks one
rule of docs/format.md and is named after it; test_h5io.cpp expects the matching error.
"""
import os
import sys

import h5py
import numpy as np

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)


def path(name):
    return os.path.join(out, name)


def header(f, fmt):
    f.attrs["divscope_format"] = fmt
    f.attrs["divscope_version"] = 1


def mlp(name, edit=None):
    """x[4] -> fc1 linear[8] -> act relu -> fc2 linear[3]; `edit(f)` breaks one thing."""
    with h5py.File(path(name), "w") as f:
        header(f, "model")
        f.attrs["name"] = "mlp"
        f.attrs["outputs"] = ["fc2"]
        x = f.create_group("inputs/x")
        x.attrs["shape"] = np.array([4], dtype=np.int64)
        x.attrs["dtype"] = "float32"
        l0 = f.create_group("layers/0000")
        l0.attrs["name"] = "fc1"
        l0.attrs["op"] = "linear"
        l0.attrs["inputs"] = ["x"]
        l0["weight"] = rng.standard_normal((8, 4))
        l0["bias"] = rng.standard_normal(8).astype(np.float32)
        l1 = f.create_group("layers/0001")
        l1.attrs["name"] = "act"
        l1.attrs["op"] = "relu"
        l1.attrs["inputs"] = ["fc1"]
        l2 = f.create_group("layers/0002")
        l2.attrs["name"] = "fc2"
        l2.attrs["op"] = "linear"
        l2.attrs["inputs"] = ["act"]
        l2["weight"] = rng.standard_normal((3, 8))
        if edit:
            edit(f)


mlp("good.model.h5")


def replace(group, name, data):
    del group[name]
    group[name] = data


mlp("no_layers.model.h5", lambda f: f.__delitem__("layers"))
mlp("no_inputs.model.h5", lambda f: f.__delitem__("inputs"))
mlp("missing_weight.model.h5", lambda f: f["layers/0000"].__delitem__("weight"))
mlp("weight_rank3.model.h5", lambda f: replace(f["layers/0000"], "weight", np.ones((8, 4, 1))))
mlp("weight_mismatch.model.h5", lambda f: replace(f["layers/0000"], "weight", np.ones((8, 5))))
mlp("unknown_op.model.h5", lambda f: f["layers/0001"].attrs.__setitem__("op", "relux"))
mlp("unknown_attr.model.h5", lambda f: f["layers/0001"].attrs.__setitem__("alpha", 0.5))
mlp("missing_attr.model.h5", lambda f: f["layers/0001"].attrs.__setitem__("op", "leaky_relu"))
mlp("unknown_input.model.h5", lambda f: f["layers/0001"].attrs.__setitem__("inputs", ["y"]))
mlp("forward_ref.model.h5", lambda f: f["layers/0000"].attrs.__setitem__("inputs", ["act"]))
mlp("cycle.model.h5", lambda f: f["layers/0001"].attrs.__setitem__("inputs", ["act"]))
mlp("nan_param.model.h5",
    lambda f: replace(f["layers/0000"], "bias", np.array([0, 1, np.nan, 3, 4, 5, 6, 7.0])))
mlp("int32_weight.model.h5",
    lambda f: replace(f["layers/0000"], "weight", np.ones((8, 4), dtype=np.int32)))
mlp("wrong_format.model.h5", lambda f: f.attrs.__setitem__("divscope_format", "recording"))
mlp("wrong_version.model.h5", lambda f: f.attrs.__setitem__("divscope_version", 3))
mlp("bad_numbering.model.h5", lambda f: f["layers"].move("0002", "0003"))
mlp("missing_op.model.h5", lambda f: f["layers/0001"].attrs.__delitem__("op"))
mlp("op_not_string.model.h5", lambda f: f["layers/0001"].attrs.__setitem__("op", 3))
mlp("attr_rank2.model.h5",
    lambda f: f["layers/0001"].attrs.__setitem__("alpha", np.ones((2, 2))))
mlp("group_in_layer.model.h5", lambda f: f["layers/0000"].create_group("extra"))


def leaky(slope):
    def edit(f):
        f["layers/0001"].attrs["op"] = "leaky_relu"
        f["layers/0001"].attrs["negative_slope"] = slope
    return edit


mlp("attr_wrong_kind.model.h5", leaky("0.1"))     # read only when the layer runs
mlp("attr_not_finite.model.h5", leaky(np.inf))

mlp("truncated.model.h5")
size = os.path.getsize(path("truncated.model.h5"))
with open(path("truncated.model.h5"), "r+b") as fh:
    fh.truncate(size // 2)
with open(path("not_hdf5.txt"), "w") as fh:
    fh.write("this is not an HDF5 file\n")

# Every string form and integer width a reader must accept.
S = np.bytes_
with h5py.File(path("variety.model.h5"), "w") as f:
    f.attrs["divscope_format"] = S("model")                 # fixed-length ASCII
    f.attrs["divscope_version"] = np.uint8(1)
    f.attrs["name"] = "variety ü"                            # variable-length UTF-8
    x = f.create_group("inputs/img")
    x.attrs["shape"] = np.array([3, 6, 6], dtype=np.int32)
    x.attrs["dtype"] = np.array(b"float32", dtype="S10")     # fixed, null-padded
    c = f.create_group("layers/0000")
    c.attrs["name"] = S("conv.0")
    c.attrs["op"] = S("conv2d")
    c.attrs["inputs"] = np.array([b"img"], dtype="S3")       # fixed-length array
    c.attrs["stride"] = np.array([1, 2], dtype=np.int32)
    c.attrs["padding"] = np.int16(1)                         # scalar broadcast to a pair
    c.attrs["dilation"] = np.array([1, 1], dtype=np.uint8)
    c.attrs["groups"] = np.int32(1)
    c["weight"] = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = f.create_group("layers/0001")
    b.attrs["name"] = "bn"
    b.attrs["op"] = "batchnorm2d"
    b.attrs["inputs"] = "conv.0"                             # scalar string, not an array
    b.attrs["eps"] = np.float32(1e-5)
    for p in ("weight", "bias", "running_mean"):
        b[p] = rng.standard_normal(4)
    b["running_var"] = np.ones(4, dtype=np.float32)
    g = f.create_group("layers/0002")
    g.attrs["name"] = "act"
    g.attrs["op"] = "gelu"
    g.attrs["inputs"] = ["bn"]
    g.attrs.create("approximate", "tanh", dtype=h5py.string_dtype("ascii"))  # vlen ASCII
    fl = f.create_group("layers/0003")
    fl.attrs["name"] = "flat"
    fl.attrs["op"] = "flatten"
    fl.attrs["inputs"] = ["act"]
    fl.attrs["start_dim"] = np.int8(1)
    s = f.create_group("layers/0004")
    s.attrs["name"] = "sm"
    s.attrs["op"] = "softmax"
    s.attrs["inputs"] = ["flat"]
    s.attrs["axis"] = np.int64(-1)

with h5py.File(path("attention.model.h5"), "w") as f:
    header(f, "model")
    f.attrs["name"] = "attn"
    for n in ("q", "k", "v"):
        g = f.create_group("inputs/" + n)
        g.attrs["shape"] = [2, 5, 4]
        g.attrs["dtype"] = "float32"
    a = f.create_group("layers/0000")
    a.attrs["name"] = "sdpa"
    a.attrs["op"] = "scaled_dot_product_attention"
    a.attrs["inputs"] = ["q", "k", "v"]
    a.attrs["is_causal"] = np.bool_(True)                    # h5py: an int8 enum
    a.attrs["scale"] = np.float32(0.25)

with h5py.File(path("embed.model.h5"), "w") as f:
    header(f, "model")
    f.attrs["name"] = "embed"
    g = f.create_group("inputs/ids")
    g.attrs["shape"] = [5]
    g.attrs["dtype"] = "int64"
    e = f.create_group("layers/0000")
    e.attrs["name"] = "emb"
    e.attrs["op"] = "embedding"
    e.attrs["inputs"] = ["ids"]
    e["weight"] = rng.standard_normal((10, 3))

with h5py.File(path("two.model.h5"), "w") as f:
    header(f, "model")
    f.attrs["name"] = "two"
    for n in ("a", "b"):
        g = f.create_group("inputs/" + n)
        g.attrs["shape"] = [4]
        g.attrs["dtype"] = "float32"
    s = f.create_group("layers/0000")
    s.attrs["name"] = "sum"
    s.attrs["op"] = "add"
    s.attrs["inputs"] = ["a", "b"]


# Recordings against good.model.h5 (input x [4]) unless named otherwise.
def recording(name, batches, edit=None):
    with h5py.File(path(name), "w") as f:
        header(f, "recording")
        f.attrs["source"] = "pytorch 2.1, test"
        f.attrs["created"] = "2024-01-02T03:04:05Z"
        bg = f.create_group("batches")
        for i, inputs in enumerate(batches):
            g = bg.create_group("%06d" % i)
            for k, v in inputs.items():
                g[k] = v
        if edit:
            edit(f)


x0 = np.arange(8, dtype=np.float32).reshape(2, 4)
x1 = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
recording("good.rec.h5", [{"x": x0}, {"x": x1}],
          lambda f: f.create_dataset("batches/000001/activations/fc1", data=np.ones((3, 8))))
recording("missing_input.rec.h5", [{"x": x0}, {"y": x0}])
recording("wrong_shape.rec.h5", [{"x": np.ones((2, 5), dtype=np.float32)}])
recording("wrong_rank.rec.h5", [{"x": np.ones((2, 4, 1), dtype=np.float32)}])
recording("wrong_dtype.rec.h5", [{"x": np.ones((2, 4), dtype=np.int32)}])
recording("string_dtype.rec.h5", [{"x": np.array([[b"a"] * 4] * 2)}])
recording("empty_batch.rec.h5", [{"x": np.ones((0, 4), dtype=np.float32)}])
recording("no_batches.rec.h5", [])
recording("wrong_format.rec.h5", [{"x": x0}],
          lambda f: f.attrs.__setitem__("divscope_format", "dump"))
recording("bad_batch_name.rec.h5", [{"x": x0}], lambda f: f["batches"].move("000000", "batch0"))
recording("mismatched_n.rec.h5",
          [{"a": np.ones((2, 4), dtype=np.float32), "b": np.ones((3, 4), dtype=np.float32)}])
recording("ids.rec.h5", [{"ids": np.array([[0, 1, 2, 3, 9], [9, 8, 7, 6, 5]], dtype=np.int32)}])
recording("float_ids.rec.h5", [{"ids": np.zeros((2, 5))}])
recording("activation_wrong_shape.rec.h5", [{"x": x0}, {"x": x1}],
          lambda f: f.create_dataset("batches/000001/activations/fc2", data=np.ones((3, 4))))


# ---- files whose data would come from outside the file named (issue 12): refused at open
def _external_storage(f):
    g = f["batches/000000"]
    del g["x"]
    g.create_dataset("x", shape=(2, 4), dtype="f4", external=[("/etc/passwd", 0, 32)])


def _external_link(f):
    g = f["batches/000000"]
    del g["x"]
    g["x"] = h5py.ExternalLink("good.rec.h5", "/batches/000000/x")


def _virtual(f):
    g = f["batches/000000"]
    del g["x"]
    layout = h5py.VirtualLayout(shape=(2, 4), dtype="f4")
    layout[:] = h5py.VirtualSource("good.rec.h5", "/batches/000000/x", shape=(2, 4))
    g.create_virtual_dataset("x", layout)


def _plugin_filter(f):
    g = f["batches/000000"]
    del g["x"]
    space = h5py.h5s.create_simple((2, 4))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk((2, 4))
    dcpl.set_filter(32015, h5py.h5z.FLAG_OPTIONAL, ())
    ds = h5py.h5d.create(g.id, b"x", h5py.h5t.IEEE_F32LE, space, dcpl=dcpl)
    ds.write(h5py.h5s.ALL, h5py.h5s.ALL, x0)


recording("external_storage.rec.h5", [{"x": x0}], _external_storage)
recording("external_link.rec.h5", [{"x": x0}], _external_link)
recording("virtual.rec.h5", [{"x": x0}], _virtual)
recording("plugin_filter.rec.h5", [{"x": x0}], _plugin_filter)


# ---- model format v2: constants, a split with two outputs, concat
def v2(name, edit=None):
    """x[6] * scale (constant [6]) -> parts = split(axis 1, [2, 4]) -> relu of each ->
    concat -> + offset (constant [1]); /batches/000000/expected is the output, by numpy."""
    with h5py.File(path(name), "w", track_order=True) as f:
        f.attrs["divscope_format"] = "model"
        f.attrs["divscope_version"] = 2
        f.attrs["name"] = "v2"
        x = f.create_group("inputs/x")
        x.attrs["shape"] = np.array([6], dtype=np.int64)
        x.attrs["dtype"] = "float32"
        x.attrs["batch_axis"] = np.int64(1)
        c = f.create_group("constants", track_order=True)
        c["scale"] = np.array([1, -2, 3, -4, 5, -6], dtype=np.float32)
        c["offset"] = np.array(0.5)
        layers = [("mul1", "mul", ["x", "scale"], {}), ("parts", "split", ["mul1"], {"axis": 1, "sizes": [2, 4]}),
                  ("a", "relu", ["parts:0"], {}), ("b", "relu", ["parts:1"], {}),
                  ("cat", "concat", ["b", "a"], {"axis": -1}), ("out", "add", ["cat", "offset"], {})]
        for i, (n, op, ins, attrs) in enumerate(layers):
            g = f.create_group(f"layers/{i:04d}")
            g.attrs["name"], g.attrs["op"], g.attrs["inputs"] = n, op, ins
            g.attrs["source"] = f"hand-written {op}"
            for k, v in attrs.items():
                g.attrs[k] = np.array(v, dtype=np.int64) if isinstance(v, list) else np.int64(v)
        if edit:
            edit(f)


v2("good_v2.model.h5")
xv2 = rng.standard_normal((3, 6)).astype(np.float32)
with h5py.File(path("good_v2.rec.h5"), "w") as f:
    header(f, "recording")
    f.attrs["divscope_version"] = 2
    f["batches/000000/x"] = xv2
    m = xv2.astype(np.float64) * np.array([1, -2, 3, -4, 5, -6.0])
    f["batches/000000/expected"] = np.concatenate([np.maximum(m[:, 2:], 0), np.maximum(m[:, :2], 0)], 1) + 0.5
v2("v2_split_sizes.model.h5", lambda f: f["layers/0001"].attrs.__setitem__("sizes", np.array([2, 3])))
v2("v2_split_unindexed.model.h5", lambda f: f["layers/0002"].attrs.__setitem__("inputs", ["parts"]))
v2("v2_constant_nan.model.h5",
   lambda f: replace(f["constants"], "scale", np.array([1, np.nan, 3, 4, 5, 6.0])))
v2("v2_constant_int.model.h5", lambda f: replace(f["constants"], "scale", np.arange(6)))
v2("v2_constants_only.model.h5", lambda f: f["layers/0002"].attrs.__setitem__("inputs", ["scale"]))
v2("v2_constant_output.model.h5", lambda f: f.attrs.__setitem__("outputs", ["offset"]))
v2("v2_bad_batch_axis.model.h5", lambda f: f["inputs/x"].attrs.__setitem__("batch_axis", np.int64(5)))
v2("v2_as_v1.model.h5", lambda f: f.attrs.__setitem__("divscope_version", 1))
