"""The model zoo of tests/python/zoo.py: real networks a user would bring, random-initialised.

Each entry: name -> (build() -> (module, batches, input_names, capture kwargs), label).
Inputs are small (the FP64 check is what matters, not the size); `zoo` marks the heavy ones
(CTest label `zoo`).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _images(n, c=3, hw=32, batches=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, c, hw, hw, generator=g),) for _ in range(batches)]


def _tv(name, hw=32, n=2, **kw):
    def build():
        import torchvision.models as tvm
        torch.manual_seed(0)
        m = getattr(tvm, name)(weights=None, **kw).eval()
        _randomize_bn(m)
        return m, _images(n, hw=hw), ["x"], {}
    return build


def _randomize_bn(m):
    """Running statistics away from (0, 1), so that batchnorm does real arithmetic."""
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)


# ---- nanoGPT, as nanoGPT writes it (model.py, Karpathy), trimmed to inference
class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.n_head, self.n_embd = n_head, n_embd
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size))
                             .view(1, 1, block_size, block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, vocab_size=64, block_size=32, n_layer=2, n_head=4, n_embd=32):
        super().__init__()
        self.block_size = block_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd),
            drop=nn.Dropout(0.1),
            h=nn.ModuleList([Block(n_embd, n_head, block_size) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(n_embd)))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets=None):
        b, t = idx.size()
        assert t <= self.block_size, f"Cannot forward sequence of length {t}"
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        tok_emb = self.transformer.wte(idx)
        pos_emb = self.transformer.wpe(pos)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        return self.lm_head(x)


def _tokens(n, t, vocab, batches=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, vocab, (n, t), generator=g),) for _ in range(batches)]


def nanogpt():
    torch.manual_seed(0)
    return GPT().eval(), _tokens(2, 16, 64), ["idx"], {"concrete_args": {"targets": None}}


class Encoder(nn.Module):
    def __init__(self, batch_first):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64,
                                           batch_first=batch_first)
        self.enc = nn.TransformerEncoder(layer, num_layers=2)
        self.head = nn.Linear(32, 10)

    def forward(self, src):
        return self.head(self.enc(src))


def encoder(batch_first):
    def build():
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        shape = (2, 12, 32) if batch_first else (12, 2, 32)
        batches = [(torch.randn(*shape, generator=g),) for _ in range(2)]
        kw = {} if batch_first else {"batch_axes": {"src": 1}}
        return Encoder(batch_first).eval(), batches, ["src"], kw
    return build


class UNetBlock(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.mid = nn.Sequential(nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.skip = nn.Conv2d(3, c, 1)
        self.out = nn.Conv2d(2 * c, 2, 1)

    def forward(self, x):
        u = self.up(self.mid(self.down(x)))
        return self.out(torch.cat([u, self.skip(x)], dim=1))


def unet():
    torch.manual_seed(0)
    m = UNetBlock().eval()
    _randomize_bn(m)
    return m, _images(2, hw=16), ["x"], {}


class OpsCoverage(nn.Module):
    """The mappings the zoo's networks do not reach: stack, einsum, normalize, pad (non-zero),
    roll, unbind, chunk, strided slices, masked_fill, where, clamp, expand, seq-first attention
    with a mask, addmm, elementwise math with scalars."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.attn = nn.MultiheadAttention(8, 2)          # seq-first
        self.w = nn.Parameter(torch.randn(8, 6))
        self.b = nn.Parameter(torch.randn(6))
        self.register_buffer("mask", torch.triu(torch.ones(6, 6, dtype=torch.bool), 1))

    def forward(self, x):                                 # x [N, 6, 8]
        a, b = self.proj(x).chunk(2, dim=-1)              # [N, 6, 4] each
        s = torch.stack([a, b], dim=1)                    # [N, 2, 6, 4]
        e = torch.einsum("nhid,nhjd->nhij", s, s)         # [N, 2, 6, 6]
        e = e.masked_fill(self.mask, -1e4).softmax(-1)
        u0, u1 = e.unbind(1)
        n = torch.nn.functional.normalize(u0 + 2 * u1, dim=-1)
        p = torch.nn.functional.pad(n, (1, 2, 0, 1), value=0.5)[:, ::2, 1:-1]   # [N, 4, 6]
        r = torch.roll(p, shifts=(1, -2), dims=(1, 2)).clamp(0.1, 0.9)
        t = x.transpose(0, 1)                             # [6, N, 8] seq-first
        o, _ = self.attn(t, t, t, attn_mask=self.mask, need_weights=False)
        g = torch.addmm(self.b, o.reshape(-1, 8), self.w).view(6, -1, 6).transpose(0, 1)
        return r.sum(-1, keepdim=True) * g[:, :4] + (1 - torch.exp(-g[:, 2:].abs())).sqrt() / 3


def ops_coverage():
    torch.manual_seed(0)
    m = OpsCoverage().eval()
    g = torch.Generator().manual_seed(0)
    return m, [(torch.randn(3, 6, 8, generator=g),), (torch.randn(2, 6, 8, generator=g),)], ["x"], {}


class SeqFirstAttention(nn.Module):
    """Self-attention on [T, N, E] written as F.multi_head_attention_forward writes it: the batch
    merged with the heads ([T, N*H, d] -> [N*H, T, d]) and with the sequence ([T*N, E])."""

    def __init__(self, E=8, H=2):
        super().__init__()
        self.E, self.H = E, H
        self.in_proj = nn.Linear(E, 3 * E)
        self.out_proj = nn.Linear(E, E)

    def forward(self, x):
        T, N, E = x.shape
        q, k, v = self.in_proj(x).chunk(3, dim=-1)
        d = E // self.H
        q = q.contiguous().view(T, N * self.H, d).transpose(0, 1)
        k = k.contiguous().view(T, N * self.H, d).transpose(0, 1)
        v = v.contiguous().view(T, N * self.H, d).transpose(0, 1)
        a = torch.bmm(q / math.sqrt(d), k.transpose(1, 2)).softmax(-1)
        o = torch.bmm(a, v).transpose(0, 1).contiguous().view(T * N, E)
        return self.out_proj(o).view(T, N, E)


def seq_first_attention():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(5, 3, 8, generator=g),), (torch.randn(5, 2, 8, generator=g),)]
    return SeqFirstAttention().eval(), batches, ["x"], {"batch_axes": {"x": 1}}


def hf_bert():
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    return BertModel(cfg).eval(), _tokens(2, 12, 100), ["input_ids"], {}


def hf_gpt2():
    from transformers import GPT2Config, GPT2Model
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    return GPT2Model(cfg).eval(), _tokens(2, 12, 100), ["input_ids"], {}


MODELS = {
    "resnet18": (_tv("resnet18"), "quick"),
    "resnet50": (_tv("resnet50"), "zoo"),
    "mobilenet_v2": (_tv("mobilenet_v2"), "zoo"),
    "mobilenet_v3_small": (_tv("mobilenet_v3_small"), "zoo"),
    "efficientnet_b0": (_tv("efficientnet_b0"), "zoo"),
    "vgg11": (_tv("vgg11"), "zoo"),
    "densenet121": (_tv("densenet121"), "zoo"),
    "squeezenet1_0": (_tv("squeezenet1_0", hw=64), "zoo"),
    "shufflenet_v2_x0_5": (_tv("shufflenet_v2_x0_5"), "zoo"),
    "regnet_y_400mf": (_tv("regnet_y_400mf"), "zoo"),
    "convnext_tiny": (_tv("convnext_tiny"), "zoo"),
    "vit_b_16": (_tv("vit_b_16", hw=32, image_size=32), "zoo"),
    "swin_t": (_tv("swin_t"), "zoo"),
    "swin_v2_t": (_tv("swin_v2_t", hw=64), "zoo"),
    "maxvit_t": (_tv("maxvit_t", hw=224, n=1), "zoo"),   # its windows need 224x224
    "googlenet": (_tv("googlenet", aux_logits=False, init_weights=True), "zoo"),
    "inception_v3": (_tv("inception_v3", hw=75, aux_logits=False, init_weights=True), "zoo"),
    "nanogpt": (nanogpt, "quick"),
    "encoder_batch_first": (encoder(True), "quick"),
    "encoder_seq_first": (encoder(False), "quick"),
    "unet_block": (unet, "quick"),
    "ops_coverage": (ops_coverage, "quick"),
    "seq_first_attention": (seq_first_attention, "quick"),
    "hf_bert": (hf_bert, "hf"),
    "hf_gpt2": (hf_gpt2, "hf"),
}
