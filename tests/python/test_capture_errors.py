"""What capture_torch refuses, and how it says so (one CaptureError naming the node, its target
and its module path, and why).

usage: test_capture_errors.py OUT_DIR      (exit 0 when every case gives its error)
"""
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import capture_torch  # noqa: E402


class Inner(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=1)


class NoMapping(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4), Inner())

    def forward(self, x):
        return self.block(x)


class MixesSamples(nn.Module):
    def forward(self, x):
        return x - x.mean(0, keepdim=True)


class BranchOnData(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


class BatchSizedScalar(nn.Module):
    def forward(self, x):
        return x * x.size(0)


class FailsOnExample(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), 3, -1)


CASES = [
    (NoMapping, ["node 'cumsum'", "torch.cumsum", "in module 'block.1'", "no divscope mapping"]),
    (MixesSamples, ["node 'mean'", "dim 0 is the batch dim"]),
    (BranchOnData, ["branches on tensor data", "only decisions on shapes"]),
    (BatchSizedScalar, ["node 'mul'", "depends on the batch size"]),
    (FailsOnExample, ["fails on the example batch", "node 'view'"]),
]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    bad = 0
    for cls, parts in CASES:
        try:
            capture_torch.capture(cls().eval(), [(torch.randn(3, 4),)], f"{out}/m.h5", f"{out}/r.h5")
            print(f"{cls.__name__}: captured, expected a CaptureError", file=sys.stderr)
            bad += 1
            continue
        except capture_torch.CaptureError as e:
            msg = str(e)
        missing = [p for p in parts if p not in msg]
        if missing or "\n" in msg or not msg.startswith("capture_torch: "):
            print(f"{cls.__name__}: {missing} not in one-line error: {msg}", file=sys.stderr)
            bad += 1
        else:
            print(f"ok {cls.__name__}: {msg}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
