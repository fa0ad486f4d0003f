#!/usr/bin/python3
"""Regenerate divscope's example models and recordings (data/*.model.h5, *.recording.h5).

    /usr/bin/python3 data/make_examples.py            # write every example into data/
    /usr/bin/python3 data/make_examples.py --only mlp --out-dir /tmp/x
    /usr/bin/python3 data/make_examples.py --check    # also verify the written files:
        structure, a float64 re-computation of every layer from the stored parameters with
        plain torch ops against the stored activations, and a numpy emulation of the DESIGN §5
        precision modes on the planted examples (the numbers quoted in data/EXPECTED.md).

Deterministic: every example seeds torch itself (torch.manual_seed), so the parameters and
inputs do not depend on which examples are built or in what order. (The recordings' `created`
attribute is the only thing that changes between runs.)
"""
import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import capture_torch as ct  # noqa: E402
from capture_torch import RMSNorm, divscope_sdpa  # noqa: E402

SOURCE = f"pytorch {torch.__version__}, cpu (data/make_examples.py)"


def _grid(shape, lo, hi, denom):
    """Random values k/denom with integer k in [lo, hi]: exact in fp16, bf16 and tf32 when
    |k| < 128 (7 significant bits)."""
    return torch.randint(lo, hi + 1, shape).to(torch.float32) / denom


def _randomize_bn(bn):
    c = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(1.0 + 0.25 * torch.randn(c))
        bn.bias.copy_(0.1 * torch.randn(c))
        bn.running_mean.copy_(0.2 * torch.randn(c))
        bn.running_var.copy_(0.5 + torch.rand(c))


# --------------------------------------------------------------------------------------------
# Ordinary examples

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(64, 32)
        self.act2 = nn.GELU(approximate="tanh")
        self.drop = nn.Dropout(0.1)          # identity at inference: dropped by the capture
        self.fc3 = nn.Linear(32, 10)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        return self.softmax(self.fc3(self.drop(self.act2(self.fc2(self.act1(self.fc1(x)))))))


def ex_mlp():
    torch.manual_seed(1)
    m = MLP()
    batches = [(torch.randn(16, 32),) for _ in range(3)]
    return m, batches, ["x"]


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 8, 3, padding="same", groups=2)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 2 * 2, 10)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.softmax(self.fc(self.flatten(x)))


def ex_cnn():
    torch.manual_seed(2)
    m = CNN()
    _randomize_bn(m.bn1)
    _randomize_bn(m.bn2)
    batches = [(torch.randn(8, 3, 16, 16),) for _ in range(3)]
    return m, batches, ["image"]


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + identity)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(4, 4, 1))
        self.layer2 = nn.Sequential(BasicBlock(4, 8, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def ex_resnet():
    torch.manual_seed(3)
    m = ResNet()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            _randomize_bn(mod)
    batches = [(torch.randn(3, 3, 8, 8),) for _ in range(2)]
    return m, batches, ["image"]


class TransformerBlockLM(nn.Module):
    """Tiny causal decoder: token + learned positional embeddings, one pre-LN block."""

    def __init__(self, vocab=32, t=8, d=16, heads=2, hidden=32):
        super().__init__()
        self.heads = heads
        self.tok_emb = nn.Embedding(vocab, d)
        self.pos_emb = nn.Embedding(t, d)
        self.ln1 = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, hidden)
        self.gelu = nn.GELU()
        self.fc2 = nn.Linear(hidden, d)
        self.drop = nn.Dropout(0.1)
        self.ln_f = nn.LayerNorm(d, elementwise_affine=False)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, tokens, positions):
        x = self.tok_emb(tokens) + self.pos_emb(positions)
        h = self.ln1(x)
        n, t, d = h.size(0), h.size(1), h.size(2)
        dh = d // self.heads
        q = self.q(h).view(n, t, self.heads, dh).permute(0, 2, 1, 3)
        k = self.k(h).view(n, t, self.heads, dh).permute(0, 2, 1, 3)
        v = self.v(h).view(n, t, self.heads, dh).permute(0, 2, 1, 3)
        a = divscope_sdpa(q, k, v, is_causal=True)
        a = a.transpose(1, 2).contiguous().reshape(n, t, d)
        x = x + self.drop(self.proj(a))
        x = x + self.fc2(self.gelu(self.fc1(self.ln2(x))))
        return self.head(self.ln_f(x))


def ex_transformer():
    torch.manual_seed(4)
    m = TransformerBlockLM()
    with torch.no_grad():
        for ln in (m.ln1, m.ln2):
            ln.weight.copy_(1.0 + 0.1 * torch.randn(ln.weight.shape))
            ln.bias.copy_(0.05 * torch.randn(ln.bias.shape))
    batches = []
    for _ in range(2):
        tokens = torch.randint(0, 32, (3, 8), dtype=torch.int64)
        positions = torch.arange(8, dtype=torch.int64).repeat(3, 1)
        batches.append((tokens, positions))
    return m, batches, ["tokens", "positions"]


class DCGANGenerator(nn.Module):
    def __init__(self, nz=8, ngf=8, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False),      # -> 16 x 4 x 4
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),     # -> 8 x 8 x 8
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),          # -> 3 x 16 x 16
            nn.Tanh(),
        )

    def forward(self, z):
        return self.main(z)


def ex_dcgan():
    torch.manual_seed(5)
    m = DCGANGenerator()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.ConvTranspose2d):
                mod.weight.normal_(0.0, 0.1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            _randomize_bn(mod)
    batches = [(torch.randn(3, 8, 1, 1),) for _ in range(2)]
    return m, batches, ["z"]


class OpsZoo(nn.Module):
    """Small model that exercises the ops the other examples do not."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.silu = nn.SiLU()
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.gate = nn.Conv2d(8, 8, 1)
        self.lrelu = nn.LeakyReLU(0.1)
        self.norm = RMSNorm(8, eps=1e-6)
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 12)
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        y = self.up(self.pool(self.silu(self.gn(self.conv(x)))))     # [N, 8, 8, 8]
        y = y * torch.sigmoid(self.gate(y))
        y = self.lrelu(y)
        f = F.adaptive_avg_pool2d(y, 1).flatten(1)                     # [N, 8]
        f = self.norm(f)
        a = self.a(f).reshape(-1, 2, 4)                                # [N, 2, 4]
        b = self.b(f).view(f.size(0), 3, 4).transpose(1, 2)            # [N, 4, 3] via permute
        m = torch.matmul(a, b).flatten(1)                              # [N, 6]
        return F.log_softmax(self.fc(m), dim=1)


def ex_ops():
    torch.manual_seed(6)
    m = OpsZoo()
    with torch.no_grad():
        m.gn.weight.copy_(1.0 + 0.2 * torch.randn(8))
        m.gn.bias.copy_(0.1 * torch.randn(8))
        m.norm.weight.copy_(1.0 + 0.2 * torch.randn(8))
    batches = [(torch.randn(3, 4, 6, 6),) for _ in range(2)]
    return m, batches, ["x"]


# --------------------------------------------------------------------------------------------
# Planted divergences (see data/EXPECTED.md)

class PlantedFP16Overflow(nn.Module):
    """fc1 -> relu1 -> amplify (large positive weights: outputs ~1e5) -> head -> softmax."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.relu1 = nn.ReLU()
        self.amplify = nn.Linear(32, 32)
        self.head = nn.Linear(32, 10)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        return self.softmax(self.head(self.amplify(self.relu1(self.fc1(x)))))


def ex_planted_fp16_overflow():
    torch.manual_seed(11)
    m = PlantedFP16Overflow()
    with torch.no_grad():
        m.fc1.weight.copy_(_grid((32, 16), -32, 32, 64))            # [-0.5, 0.5], step 1/64
        m.fc1.bias.copy_(_grid((32,), -16, 16, 64))
        m.amplify.weight.copy_(_grid((32, 32), 32, 127, 1) * 128)  # 4096 ... 16256, positive
        m.amplify.bias.copy_(_grid((32,), 0, 127, 1) * 64)
        m.head.weight.copy_(_grid((10, 32), 1, 8, 1) * 2.0 ** -24)  # positive, tiny
        m.head.bias.zero_()
    batches = [(_grid((16, 16), -64, 64, 64),) for _ in range(3)]  # [-1, 1], step 1/64
    return m, batches, ["x"]


class PlantedTF32Cancellation(nn.Module):
    """pre (relu) -> diff (each output = 256*(x_a + x_b - x_c - x_d), x ~ 1 + 2^-16 k)
    -> act (relu) -> head."""

    def __init__(self):
        super().__init__()
        self.pre = nn.ReLU()
        self.diff = nn.Linear(32, 16, bias=False)
        self.act = nn.ReLU()
        self.head = nn.Linear(16, 4, bias=False)

    def forward(self, x):
        return self.head(self.act(self.diff(self.pre(x))))


def ex_planted_tf32_cancellation():
    torch.manual_seed(12)
    m = PlantedTF32Cancellation()
    with torch.no_grad():
        w = torch.zeros(16, 32)
        for i in range(16):
            idx = torch.randperm(32)[:4]
            w[i, idx[:2]] = 256.0
            w[i, idx[2:]] = -256.0
        m.diff.weight.copy_(w)
        m.head.weight.copy_(_grid((4, 16), -64, 64, 64))
    # 1 + k * 2^-16, |k| <= 64: exact in fp32 (17 significant bits), not in tf32/fp16/bf16
    batches = [(1.0 + _grid((16, 32), -64, 64, 65536),) for _ in range(3)]
    return m, batches, ["x"]


class PlantedLayerNormOffset(nn.Module):
    """pre (relu) -> ln (LayerNorm over 64 features of 1e4 + small variation) -> head."""

    def __init__(self):
        super().__init__()
        self.pre = nn.ReLU()
        self.ln = nn.LayerNorm(64, eps=1e-5)
        self.head = nn.Linear(64, 8, bias=False)

    def forward(self, x):
        return self.head(self.ln(self.pre(x)))


def ex_planted_layernorm_offset():
    torch.manual_seed(13)
    m = PlantedLayerNormOffset()
    with torch.no_grad():
        m.ln.weight.copy_(_grid((64,), 48, 80, 64))                 # 0.75 ... 1.25
        m.ln.bias.copy_(_grid((64,), -16, 16, 64))
        m.head.weight.copy_(_grid((8, 64), -8, 8, 64))              # [-1/8, 1/8], step 1/64
    # 10000 + k/4, |k| <= 64: exact in fp32 and every float32 sum of 64 of them is exact too
    batches = [(10000.0 + _grid((16, 64), -64, 64, 4),) for _ in range(3)]
    return m, batches, ["x"]


class _MatMulT(nn.Module):
    """a @ b^T (the attention logits): its layers are named `<module>.transpose`, `<module>.matmul`."""

    def forward(self, a, b):
        return a @ b.transpose(-2, -1)


class _BMM(nn.Module):
    def forward(self, a, b):
        return torch.bmm(a, b)


class _Mul(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return x * self.c


class _Add(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return x + self.c


class _Sub(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return x - self.c


class _LayerScale(nn.Module):
    """x * gamma, one gamma per feature (the layer scale of ConvNeXt / CaiT)."""

    def __init__(self, n, value):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((n,), value))

    def forward(self, x):
        return x * self.gamma


class PlantedFP16Underflow(nn.Module):
    """fc1 -> act -> shrink (layer scale gamma = 2^-26: outputs ~1e-8) -> rescale (weights
    ~4e4) -> head."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.act = nn.ReLU()
        self.shrink = _LayerScale(32, 2.0 ** -26)
        self.rescale = nn.Linear(32, 8, bias=False)
        self.head = nn.Linear(8, 4, bias=False)

    def forward(self, x):
        return self.head(self.rescale(self.shrink(self.act(self.fc1(x)))))


def ex_planted_fp16_underflow():
    torch.manual_seed(14)
    m = PlantedFP16Underflow()
    with torch.no_grad():
        m.fc1.weight.copy_(_grid((32, 16), -16, 16, 64))            # [-1/4, 1/4], step 1/64
        m.fc1.bias.copy_(_grid((32,), -16, 16, 64))
        m.rescale.weight.copy_(_grid((8, 32), 1, 15, 1) * 4096)     # 4096 ... 61440, positive
        m.head.weight.copy_(_grid((4, 8), -64, 64, 1))              # integers in [-64, 64]
    batches = [(_grid((16, 16), -64, 64, 64),) for _ in range(3)]  # [-1, 1], step 1/64
    return m, batches, ["x"]


class PlantedAttentionOverflow(nn.Module):
    """q, k (positive weights: entries ~30..140) -> logits = q k^T (~1e4..3e5) -> scale (2^-14)
    -> softmax -> v -> mix = p v -> head. Input x [T=8, D=16] per sample."""

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(16, 16, bias=False)
        self.k = nn.Linear(16, 16, bias=False)
        self.v = nn.Linear(16, 16, bias=False)
        self.logits = _MatMulT()
        self.scale = _Mul(2.0 ** -14)
        self.softmax = nn.Softmax(dim=-1)
        self.mix = _BMM()
        self.head = nn.Linear(16, 4, bias=False)

    def forward(self, x):
        p = self.softmax(self.scale(self.logits(self.q(x), self.k(x))))
        return self.head(self.mix(p, self.v(x)))


def ex_planted_attention_overflow():
    torch.manual_seed(15)
    m = PlantedAttentionOverflow()
    with torch.no_grad():
        m.q.weight.copy_(_grid((16, 16), 1, 15, 1))                 # integers 1 ... 15
        m.k.weight.copy_(_grid((16, 16), 1, 15, 1))
        m.v.weight.copy_(_grid((16, 16), -32, 32, 64))              # [-1/2, 1/2], step 1/64
        m.head.weight.copy_(_grid((4, 16), -32, 32, 64))
    batches = [(_grid((8, 8, 16), 16, 64, 64),) for _ in range(2)]  # [1/4, 1], step 1/64
    return m, batches, ["x"]


class PlantedBF16Offset(nn.Module):
    """shift (x + 256) -> act (relu, identity here) -> unshift (- 256) -> head."""

    def __init__(self):
        super().__init__()
        self.shift = _Add(256.0)
        self.act = nn.ReLU()
        self.unshift = _Sub(256.0)
        self.head = nn.Linear(32, 8, bias=False)

    def forward(self, x):
        return self.head(self.unshift(self.act(self.shift(x))))


def ex_planted_bf16_offset():
    torch.manual_seed(16)
    m = PlantedBF16Offset()
    with torch.no_grad():
        m.head.weight.copy_(_grid((8, 32), 1, 16, 64))              # [1/64, 1/4], positive
    batches = [(_grid((16, 32), 0, 32, 32),) for _ in range(3)]    # [0, 1], step 1/32
    return m, batches, ["x"]


class PlantedConvCancellation(nn.Module):
    """pre (relu, identity here) -> edges (3x3 conv, zero-sum kernels x 64, on images
    1 + k 2^-16) -> act -> pool -> flatten -> head."""

    def __init__(self):
        super().__init__()
        self.pre = nn.ReLU()
        self.edges = nn.Conv2d(2, 4, 3, bias=False)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(4 * 4 * 4, 4, bias=False)

    def forward(self, x):
        return self.head(self.flatten(self.pool(self.act(self.edges(self.pre(x))))))


def ex_planted_conv_cancellation():
    torch.manual_seed(17)
    m = PlantedConvCancellation()
    with torch.no_grad():
        w = torch.randint(-3, 4, (4, 2, 3, 3)).to(torch.float32)
        for o in range(4):                                          # every kernel sums to 0
            w[o, 0, 1, 1] -= w[o].sum()
        m.edges.weight.copy_(w * 64)
        m.head.weight.copy_(_grid((4, 64), -8, 8, 64))
    # 1 + k * 2^-16, |k| <= 24: exact in fp32; TF32 and fp16 keep steps of 2^-11 below 1 and
    # 2^-10 above (k = -32, 0, +64), bf16 steps of 2^-8
    batches = [(1.0 + _grid((8, 2, 10, 10), -24, 24, 65536),) for _ in range(3)]
    return m, batches, ["image"]


EXAMPLES = {
    "mlp": ex_mlp,
    "cnn": ex_cnn,
    "resnet": ex_resnet,
    "transformer": ex_transformer,
    "dcgan": ex_dcgan,
    "ops": ex_ops,
    "planted_fp16_overflow": ex_planted_fp16_overflow,
    "planted_tf32_cancellation": ex_planted_tf32_cancellation,
    "planted_layernorm_offset": ex_planted_layernorm_offset,
    "planted_fp16_underflow": ex_planted_fp16_underflow,
    "planted_attention_overflow": ex_planted_attention_overflow,
    "planted_bf16_offset": ex_planted_bf16_offset,
    "planted_conv_cancellation": ex_planted_conv_cancellation,
}


def build_one(name, out_dir):
    if name not in EXAMPLES:
        raise KeyError(f"unknown example '{name}' (known: {', '.join(EXAMPLES)})")
    m, batches, input_names = EXAMPLES[name]()
    m.eval()
    os.makedirs(out_dir, exist_ok=True)
    return ct.capture(m, batches, os.path.join(out_dir, f"{name}.model.h5"),
                      os.path.join(out_dir, f"{name}.recording.h5"), input_names=input_names,
                      record_activations=True, name=name, source=SOURCE)


# --------------------------------------------------------------------------------------------
# --check: recompute every layer from the files, and emulate the precision modes

def _attr(g, k, default=None):
    if k not in g.attrs:
        return default
    v = g.attrs[k]
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "OSU":
            return [e.decode() if isinstance(e, bytes) else str(e) for e in v]
        return [int(e) if v.dtype.kind in "iu" else float(e) for e in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def ref_layer(op, g, xs):
    """float64 re-computation of one layer from the stored attributes/params (torch ops)."""
    P = {k: torch.from_numpy(np.asarray(g[k], dtype=np.float64)) for k in g.keys()}
    A = lambda k, d=None: _attr(g, k, d)
    x = xs[0]
    if op == "linear":
        return F.linear(x, P["weight"], P.get("bias"))
    if op == "matmul":
        return torch.matmul(xs[0], xs[1])
    if op == "conv2d":
        return F.conv2d(x, P["weight"], P.get("bias"), A("stride"), A("padding"), A("dilation"),
                        A("groups"))
    if op == "conv_transpose2d":
        return F.conv_transpose2d(x, P["weight"], P.get("bias"), A("stride"), A("padding"),
                                  A("output_padding"), A("groups"), A("dilation"))
    if op == "batchnorm2d":
        return F.batch_norm(x, P["running_mean"], P["running_var"], P["weight"], P["bias"],
                            False, 0.0, A("eps"))
    if op == "layernorm":
        return F.layer_norm(x, A("normalized_shape"), P.get("weight"), P.get("bias"), A("eps"))
    if op == "rmsnorm":
        ns = A("normalized_shape")
        dims = tuple(range(-len(ns), 0))
        y = x / torch.sqrt((x * x).mean(dim=dims, keepdim=True) + A("eps"))
        return y * P["weight"] if "weight" in P else y
    if op == "groupnorm":
        return F.group_norm(x, A("num_groups"), P.get("weight"), P.get("bias"), A("eps"))
    if op in ("relu", "silu", "sigmoid", "tanh"):
        return {"relu": torch.relu, "silu": F.silu, "sigmoid": torch.sigmoid,
                "tanh": torch.tanh}[op](x)
    if op == "leaky_relu":
        return F.leaky_relu(x, A("negative_slope"))
    if op == "gelu":
        return F.gelu(x, approximate=A("approximate"))
    if op == "softmax":
        return torch.softmax(x, A("axis"))
    if op == "log_softmax":
        return torch.log_softmax(x, A("axis"))
    if op == "add":
        return xs[0] + xs[1]
    if op == "sub":
        return xs[0] - xs[1]
    if op == "mul":
        return xs[0] * xs[1]
    if op == "maxpool2d":
        return F.max_pool2d(x, A("kernel_size"), A("stride"), A("padding"), A("dilation", [1, 1]),
                            bool(A("ceil_mode", 0)))
    if op == "avgpool2d":
        return F.avg_pool2d(x, A("kernel_size"), A("stride"), A("padding"), bool(A("ceil_mode", 0)),
                            bool(A("count_include_pad", 1)))
    if op == "global_avgpool2d":
        return x.mean(dim=(2, 3), keepdim=True)
    if op == "upsample_nearest2d":
        f = A("scale_factor")
        return x.repeat_interleave(f[0], dim=2).repeat_interleave(f[1], dim=3)
    if op == "flatten":
        return torch.flatten(x, A("start_dim", 1), A("end_dim", -1))
    if op == "reshape":
        return x.reshape([x.shape[0]] + A("shape"))
    if op == "permute":
        return x.permute(A("dims"))
    if op == "embedding":
        return F.embedding(x, P["weight"])
    if op == "scaled_dot_product_attention":
        q, k, v = xs
        s = A("scale", 1.0 / math.sqrt(q.shape[-1]))
        sc = torch.matmul(q, k.transpose(-2, -1)) * s
        if A("is_causal", 0):
            keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
            sc = sc.masked_fill(~keep, float("-inf"))
        return torch.matmul(torch.softmax(sc, -1), v)
    raise ValueError(f"unknown op {op}")


def _constants(fm):
    """A version 2 model's /constants as float64 arrays [1, shape...] (empty for version 1)."""
    if int(fm.attrs["divscope_version"]) < 2 or "constants" not in fm:
        return {}
    return {k: np.asarray(d[()], dtype=np.float64)[None] for k, d in fm["constants"].items()}


def check_files(name, out_dir):
    import h5py
    mp = os.path.join(out_dir, f"{name}.model.h5")
    rp = os.path.join(out_dir, f"{name}.recording.h5")
    worst = 0.0
    ops = set()
    with h5py.File(mp, "r") as fm, h5py.File(rp, "r") as fr:
        assert _attr(fm, "divscope_format") == "model" and int(fm.attrs["divscope_version"]) in (1, 2)
        assert _attr(fr, "divscope_format") == "recording" and int(fr.attrs["divscope_version"]) in (1, 2)
        inputs = {k: (_attr(g, "shape"), _attr(g, "dtype")) for k, g in fm["inputs"].items()}
        consts = _constants(fm)
        layers = [fm["layers"][k] for k in sorted(fm["layers"].keys())]
        assert [int(k) for k in sorted(fm["layers"].keys())] == list(range(len(layers)))
        known = set(inputs) | set(consts)
        for g in layers:
            for i in _attr(g, "inputs"):
                assert i in known, f"{name}: layer {_attr(g, 'name')} input {i} not earlier"
            known.add(_attr(g, "name"))
            ops.add(_attr(g, "op"))
        for o in _attr(fm, "outputs"):
            assert o in known
        for bk in sorted(fr["batches"].keys()):
            b = fr["batches"][bk]
            env = {k: torch.from_numpy(v) for k, v in consts.items()}
            for k, (shape, dtype) in inputs.items():
                arr = b[k][()]
                assert list(arr.shape[1:]) == shape, (name, k, arr.shape, shape)
                assert arr.dtype == (np.float32 if dtype == "float32" else np.int64)
                env[k] = torch.from_numpy(arr.astype(np.float64) if dtype == "float32" else arr)
            for g in layers:
                ln = _attr(g, "name")
                xs = [env[i] for i in _attr(g, "inputs")]
                want = torch.from_numpy(b["activations"][ln][()])
                got = ref_layer(_attr(g, "op"), g, xs)
                assert list(got.shape) == list(want.shape), (name, ln, got.shape, want.shape)
                err = (got - want).abs().max().item() / max(1.0, want.abs().max().item())
                worst = max(worst, err)
                if not err < 1e-12:
                    raise AssertionError(f"{name}: layer {ln} recompute differs by {err}")
                env[ln] = want  # continue from the recorded activation
    return len(layers), sorted(ops), worst


# --- numpy emulation of DESIGN §5 modes for the ops used by the planted examples -------------

def to_tf32(a):
    """float32 -> TF32 (10 explicit mantissa bits), round to nearest, ties away from zero."""
    b = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    sign = b & np.uint32(0x80000000)
    mag = b & np.uint32(0x7FFFFFFF)
    finite = mag < np.uint32(0x7F800000)
    r = (mag + np.uint32(0x1000)) & np.uint32(0xFFFFE000)
    out = np.where(finite, sign | r, b)
    return out.view(np.float32)


def to_fp16(a):
    with np.errstate(over="ignore"):
        return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def to_bf16(a):
    return torch.from_numpy(np.asarray(a, np.float32)).bfloat16().float().numpy()


MODES = {  # storage rounding, GEMM operand rounding, atol, rtol
    "fp32": (lambda a: np.asarray(a, np.float32), lambda a: np.asarray(a, np.float32), 1e-5, 1e-4),
    "tf32": (lambda a: np.asarray(a, np.float32), to_tf32, 1e-3, 1e-2),
    "fp16": (to_fp16, to_fp16, 1e-2, 1e-2),
    "bf16": (to_bf16, to_bf16, 1e-2, 4e-2),
}


def emulate_layer(op, g, xs, mode, ln_algo="two_pass"):
    store, operand, _, _ = MODES[mode]
    P = {k: np.asarray(g[k], dtype=np.float32) for k in g.keys()}
    x = xs[0]
    with np.errstate(over="ignore", invalid="ignore"):
        if op == "linear":
            y = operand(x) @ operand(P["weight"]).T
            if "bias" in P:
                y = y + store(P["bias"])
        elif op == "matmul":
            y = np.matmul(operand(xs[0]), operand(xs[1]))
        elif op == "conv2d":
            A = lambda k: _attr(g, k)
            y = F.conv2d(torch.from_numpy(operand(x)), torch.from_numpy(operand(P["weight"])),
                         None, A("stride"), A("padding"), A("dilation"), A("groups")).numpy()
            if "bias" in P:
                y = y + store(P["bias"]).reshape(-1, 1, 1)
        elif op in ("add", "sub", "mul"):
            a, b = np.asarray(xs[0], np.float32), np.asarray(xs[1], np.float32)
            y = a + b if op == "add" else a - b if op == "sub" else a * b
        elif op in ("permute", "reshape", "flatten", "maxpool2d"):
            y = ref_layer(op, g, [torch.from_numpy(np.asarray(x, np.float32))]).numpy()
        elif op == "relu":
            y = np.maximum(x, np.float32(0))
        elif op == "softmax":
            ax = _attr(g, "axis")
            e = np.exp(x - x.max(axis=ax, keepdims=True))
            y = e / e.sum(axis=ax, keepdims=True)
        elif op == "layernorm":
            n = x.shape[-1]
            if ln_algo == "two_pass":
                mu = x.sum(-1, keepdims=True, dtype=np.float32) / np.float32(n)
                var = ((x - mu) ** 2).sum(-1, keepdims=True, dtype=np.float32) / np.float32(n)
            elif ln_algo == "welford":
                mu = np.zeros(x.shape[:-1] + (1,), np.float32)
                m2 = np.zeros_like(mu)
                for i in range(n):
                    xi = x[..., i:i + 1]
                    d = xi - mu
                    mu = mu + d / np.float32(i + 1)
                    m2 = m2 + d * (xi - mu)
                var = m2 / np.float32(n)
            else:  # one_pass: E[x^2] - E[x]^2
                mu = x.sum(-1, keepdims=True, dtype=np.float32) / np.float32(n)
                var = (x * x).sum(-1, keepdims=True, dtype=np.float32) / np.float32(n) - mu * mu
                var = np.maximum(var, np.float32(0))
            y = (x - mu) / np.sqrt(var + np.float32(_attr(g, "eps")))
            if "weight" in P:
                y = y * store(P["weight"])
            if "bias" in P:
                y = y + store(P["bias"])
        else:
            raise ValueError(op)
        return store(np.asarray(y, np.float32))


def emulate_planted(name, out_dir, ln_algo="two_pass"):
    """Chained run per mode; returns {mode: [(layer, mismatches, count, worst ratio, nonfinite)]}."""
    import h5py
    res = {}
    with h5py.File(os.path.join(out_dir, f"{name}.model.h5"), "r") as fm, \
            h5py.File(os.path.join(out_dir, f"{name}.recording.h5"), "r") as fr:
        layers = [fm["layers"][k] for k in sorted(fm["layers"].keys())]
        for mode, (store, _, atol, rtol) in MODES.items():
            rows = {}
            for bk in sorted(fr["batches"].keys()):
                b = fr["batches"][bk]
                env = {k: store(b[k][()]) for k in fm["inputs"].keys()}
                env.update({k: store(v) for k, v in _constants(fm).items()})
                for g in layers:
                    ln = _attr(g, "name")
                    c = emulate_layer(_attr(g, "op"), g, [env[i] for i in _attr(g, "inputs")],
                                      mode, ln_algo)
                    env[ln] = c
                    r = b["activations"][ln][()]
                    c64 = c.astype(np.float64)
                    with np.errstate(invalid="ignore"):
                        bad = ~(np.abs(c64 - r) <= atol + rtol * np.abs(r))
                        ratio = np.nanmax(np.where(np.isfinite(c64),
                                                   np.abs(c64 - r) / (atol + rtol * np.abs(r)),
                                                   np.inf))
                    nonfinite = int((~np.isfinite(c64)).sum())
                    mm, cnt, wr, nf = rows.get(ln, (0, 0, 0.0, 0))
                    rows[ln] = (mm + int(bad.sum()), cnt + c.size, max(wr, float(ratio)),
                                nf + nonfinite)
            res[mode] = [(ln, *v) for ln, v in rows.items()]
    return res


UNIT = {"fp32": 2.0 ** -24, "tf32": 2.0 ** -11, "fp16": 2.0 ** -11, "bf16": 2.0 ** -8}
PROBE = 2.0 ** -30
COLLAPSE = 0.5


def _sample_rel_l2(c, r):
    """Per-sample ||c - r|| / ||r|| (inf where the reference is 0 and c is not)."""
    n = r.shape[0]
    d = (c.astype(np.float64) - r).reshape(n, -1)
    rr = np.sqrt((r.reshape(n, -1) ** 2).sum(1))
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.sqrt((d ** 2).sum(1))
        return np.where(rr > 0, e / np.where(rr > 0, rr, 1), np.where(e > 0, np.inf, 0.0))


EXACT_OPS = {"relu", "maxpool2d", "upsample_nearest2d", "flatten", "reshape", "permute",
             "hardtanh", "abs", "neg", "maximum", "minimum", "where", "reduce_max", "concat",
             "slice", "expand"}


def probe_sensitivity(fm, fr, layers, seed=0):
    """Per-sample kappa per layer and batch, as divscope's FP64 probe measures it: a float64 run
    where the graph inputs, the constants and every layer's output (except ops that only select or move what
    they read) are multiplied by 1 + 2^-30 xi, xi uniform in [-1, 1), layers reading the
    perturbed values; kappa = the sample's rel_l2 against the reference / 2^-30, at least 1.
    Returns {(batch key, layer): array over samples} and {layer: kappa over all samples}."""
    rng = np.random.default_rng(seed)
    per_sample, sums = {}, {}

    def perturb(a):
        return a * (1.0 + PROBE * rng.uniform(-1.0, 1.0, size=a.shape))

    for bk in sorted(fr["batches"].keys()):
        b = fr["batches"][bk]
        env = {k: torch.from_numpy(perturb(v)) for k, v in _constants(fm).items()}
        for k in fm["inputs"].keys():
            a = b[k][()]
            env[k] = torch.from_numpy(perturb(a.astype(np.float64)) if a.dtype != np.int64 else a)
        for g in layers:
            ln, op = _attr(g, "name"), _attr(g, "op")
            y = ref_layer(op, g, [env[i] for i in _attr(g, "inputs")]).numpy()
            if op not in EXACT_OPS:
                y = perturb(y)
            env[ln] = torch.from_numpy(y)
            r = b["activations"][ln][()]
            per_sample[(bk, ln)] = np.maximum(_sample_rel_l2(y, r) / PROBE, 1.0)
            e2, r2 = sums.get(ln, (0.0, 0.0))
            sums[ln] = (e2 + float(((y - r) ** 2).sum()), r2 + float((r ** 2).sum()))
    overall = {ln: max(1.0, math.sqrt(e2 / r2) / PROBE if r2 > 0 else 1.0)
               for ln, (e2, r2) in sums.items()}
    return per_sample, overall


def _reduction_length(g, shapes):
    """Length of the longest sum behind one output element (GEMM/conv dot product, a norm's or a
    softmax's row), 1 elsewhere; `shapes` maps value names to per-sample shapes."""
    op = _attr(g, "op")
    if op == "linear":
        return int(g["weight"].shape[1])
    if op == "conv2d":
        w = g["weight"].shape
        return int(w[1] * w[2] * w[3])
    if op == "matmul":
        return int(shapes[_attr(g, "inputs")[0]][-1])
    if op in ("layernorm", "rmsnorm"):
        return int(np.prod(_attr(g, "normalized_shape")))
    if op in ("softmax", "log_softmax"):
        x = shapes[_attr(g, "inputs")[0]]
        ax = _attr(g, "axis")
        ax = ax + len(x) + 1 if ax < 0 else ax          # the axis counts the batch dim
        return int(x[ax - 1])
    return 1


def effective_unit(mode, chain_sum):
    """divscope's unit: max(u_mode, sqrt(K) 2^-24), K the longest sum on the layer's chain (float
    accumulation counts once sums get long; it dominates fp32's unit)."""
    return max(UNIT[mode], math.sqrt(max(chain_sum, 1)) * UNIT["fp32"])


def emulate_budget(name, out_dir, factor=32.0):
    """The `budget` verdict on the emulated chained run: per mode, rows (layer, max and min over
    samples of rel_l2, count of NaN/Inf the reference lacks, kappa over all samples, budget_use
    = max over samples of rel_l2 / (unit kappa of that sample), unit = effective_unit, rule) where rule is nonfinite /
    collapse (a sample's rel_l2 >= 0.5) / budget (budget_use > factor) or None."""
    import h5py
    res = {}
    with h5py.File(os.path.join(out_dir, f"{name}.model.h5"), "r") as fm, \
            h5py.File(os.path.join(out_dir, f"{name}.recording.h5"), "r") as fr:
        layers = [fm["layers"][k] for k in sorted(fm["layers"].keys())]
        kappa_s, kappa = probe_sensitivity(fm, fr, layers)
        b0 = fr["batches"][sorted(fr["batches"].keys())[0]]
        shapes = {k: b0[k].shape[1:] for k in fm["inputs"].keys()}
        shapes.update({k: b0["activations"][k].shape[1:] for k in b0["activations"].keys()})
        chain = {}
        for g in layers:
            ln = _attr(g, "name")
            chain[ln] = max([_reduction_length(g, shapes)] +
                            [chain[i] for i in _attr(g, "inputs") if i in chain])
        for mode, (store, _, _, _) in MODES.items():
            rows = {}
            for bk in sorted(fr["batches"].keys()):
                b = fr["batches"][bk]
                env = {k: store(b[k][()]) for k in fm["inputs"].keys()}
                env.update({k: store(v) for k, v in _constants(fm).items()})
                for g in layers:
                    ln = _attr(g, "name")
                    c = emulate_layer(_attr(g, "op"), g, [env[i] for i in _attr(g, "inputs")],
                                      mode)
                    env[ln] = c
                    r = b["activations"][ln][()]
                    newbad = int((~np.isfinite(c) & np.isfinite(r)).sum())
                    with np.errstate(invalid="ignore"):
                        rel = _sample_rel_l2(np.where(np.isfinite(c), c, 0.0), r)
                    unit = effective_unit(mode, chain[ln])
                    use = float(np.max(rel / (unit * kappa_s[(bk, ln)])))
                    worst, least, nf, mu = rows.get(ln, (0.0, np.inf, 0, 0.0))
                    rows[ln] = (max(worst, float(np.max(rel))), min(least, float(np.min(rel))),
                                nf + newbad, max(mu, use))
            out = []
            for ln, (worst, least, nf, use) in rows.items():
                rule = ("nonfinite" if nf else "collapse" if worst >= COLLAPSE
                        else "budget" if use > factor else None)
                out.append((ln, worst, least, nf, kappa[ln], use, rule))
            res[mode] = out
    return res


def first_divergent(rows):
    for ln, mm, cnt, wr, nf in rows:
        if mm > 0:
            return ln
    return None


def main():
    ap = argparse.ArgumentParser(description="regenerate divscope example data")
    ap.add_argument("--out-dir", default=HERE)
    ap.add_argument("--only", action="append", help="example name (repeatable)")
    ap.add_argument("--check", action="store_true", help="verify the written files")
    ap.add_argument("--no-write", action="store_true", help="with --check: check existing files")
    ap.add_argument("--budget-factor", type=float, default=32.0,
                    help="with --check: F of the emulated budget criterion (default 32)")
    args = ap.parse_args()
    names = args.only or list(EXAMPLES)
    for n in names:
        if not args.no_write:
            layers = build_one(n, args.out_dir)
            print(f"{n}: {len(layers)} layers -> {n}.model.h5, {n}.recording.h5")
    if args.check:
        all_ops = set()
        for n in names:
            nl, ops, worst = check_files(n, args.out_dir)
            all_ops |= set(ops)
            print(f"check {n}: {nl} layers, recompute max rel diff {worst:.2e}, ops {ops}")
        print(f"ops covered: {len(all_ops)}: {sorted(all_ops)}")
        for n in names:
            if not n.startswith("planted_"):
                continue
            algos = ["two_pass", "welford", "one_pass"] if "layernorm" in n else ["two_pass"]
            res = emulate_budget(n, args.out_dir, args.budget_factor)
            print(f"emulate {n}, budget criterion (F = {args.budget_factor:g})")
            for mode, rows in res.items():
                first = next((r[0] for r in rows if r[6]), None)
                print(f"  {mode}: first divergent = {first}")
                for ln, worst, least, nf, kap, use, rule in rows:
                    print(f"      {ln:18s} rel_l2 max {worst:9.3g} min {least:9.3g}  kappa "
                          f"{kap:9.3g}  budget_use {use:9.3g}  new nonfinite {nf:5d}  "
                          f"{rule or 'ok'}")
            for algo in algos:
                res = emulate_planted(n, args.out_dir, algo)
                print(f"emulate {n}" + (f" (layernorm {algo})" if len(algos) > 1 else ""))
                for mode, rows in res.items():
                    print(f"  {mode}: first divergent = {first_divergent(rows)}")
                    for ln, mm, cnt, wr, nf in rows:
                        print(f"      {ln:10s} mismatch {mm:5d}/{cnt:<5d} worst |c-r|/tol "
                              f"{wr:10.3g}  nonfinite {nf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
