"""Oracle for tests/test_precision.cpp: PyTorch's float32 -> float16 / bfloat16 casts (both RNE).

usage: torch_conversions.py OUT.bin [SEED] [COUNT]

Writes, little-endian: uint32 n, then n uint32 input bit patterns (float32), then n uint16
float16 bit patterns, then n uint16 bfloat16 bit patterns. The inputs are hand-picked edge values
followed by COUNT (default 100000) uniformly random 32-bit patterns from SEED (default 1), so every
exponent -- subnormals, NaNs, infinities -- is covered.
"""
import sys

import numpy as np
import torch


def edge_bits():
    vals = [
        0x00000000, 0x80000000, 0x3F800000, 0xBF800000,       # +-0, +-1
        0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000,       # +-inf, quiet NaNs
        0x7F800001, 0x7FA00000, 0xFF800001,                   # signalling / low-payload NaNs
        0x00000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF,       # float subnormals, min normal, max
        0x477FE000, 0x477FE001, 0x477FEFFF, 0x477FF000,       # 65504 .. 65520 (fp16 overflow edge)
        0x477FF001, 0x47800000,
        0x38800000, 0x387FFFFF, 0x387FE000, 0x387FF000,       # fp16 min normal and just below
        0x33800000, 0x33000000, 0x33000001, 0x32FFFFFF,       # fp16 min subnormal, half of it
        0x33C00000, 0x34200000,                               # 1.5 and 2.5 fp16 min subnormals
        0x3F801000, 0x3F803000, 0x3F800FFF, 0x3F801001,       # fp16 ties to even, both ways
        0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001,       # bf16 ties to even, both ways
        0x7F7F8000, 0x7F7F7FFF, 0x7F7FFFFF,                   # bf16 overflow edge
        0x00008000, 0x00018000, 0x007F8000, 0x007FFFFF,       # bf16 subnormal ties / carry
    ]
    return vals + [v ^ 0x80000000 for v in vals]


def main():
    out = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 100000
    rng = np.random.default_rng(seed)
    bits = np.concatenate([np.array(edge_bits(), dtype=np.uint32),
                           rng.integers(0, 2**32, size=count, dtype=np.uint64).astype(np.uint32)])
    x = torch.from_numpy(bits.view(np.float32).copy())
    h = x.to(torch.float16).view(torch.int16).numpy().view(np.uint16)
    b = x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    with open(out, "wb") as f:
        f.write(np.array([bits.size], dtype="<u4").tobytes())
        f.write(bits.astype("<u4").tobytes())
        f.write(h.astype("<u2").tobytes())
        f.write(b.astype("<u2").tobytes())


if __name__ == "__main__":
    main()
