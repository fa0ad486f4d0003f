"""The recording holds the user's own run (issue "Real networks in", item 4).

usage: test_run_activations.py OUT_DIR     (exit 0 when every check holds)

Captures a small network as the user runs it -- float32, then bfloat16 -- with
record_activations (the float64 oracle) and record_run (the model as given), and checks from
the file alone: both groups hold every recorded layer in divscope's batch-first layout; the
run's activations are in the model's own dtype and equal a plain forward hook's outputs bit for
bit; the oracle's are float64 and differ from the run's by a rounding-sized amount; the
capturing environment is in the root attributes.
"""
import json
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import capture_torch  # noqa: E402


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        return torch.softmax(self.fc2(self.act(self.fc1(x))), dim=-1)


def fail(msg):
    print(f"test_run_activations: {msg}", file=sys.stderr)
    sys.exit(1)


def check(out, dtype):
    torch.manual_seed(0)
    net = Net().eval().to(dtype)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(3, 8, generator=g).to(dtype),) for _ in range(2)]
    hooks = {}
    for name in ("fc1", "act", "fc2"):
        getattr(net, name).register_forward_hook(
            lambda m, i, o, name=name: hooks.setdefault(name, []).append(o.detach().clone()))
    with torch.no_grad():
        for (x,) in batches:
            net(x)
    model, rec = f"{out}/{dtype}.model.h5", f"{out}/{dtype}.recording.h5"
    capture_torch.capture(net, batches, model, rec, input_names=["x"], record_activations=True,
                          record_run=True)
    with h5py.File(rec, "r") as f:
        env = json.loads(f.attrs["capture_environment"])
        if (env.get("divscope_env") != 1
                or not env["libraries"].get("torch", "").startswith(torch.__version__)
                or "torch.backends.cuda.matmul.allow_tf32" not in env["flags"]):
            fail(f"capture_environment incomplete: {sorted(env)}")
        for b in range(2):
            g64, grun = f[f"batches/{b:06d}/activations"], f[f"batches/{b:06d}/run_activations"]
            for name in ("fc1", "act", "fc2"):
                d = grun[name]
                a = d[()]
                if dtype == torch.bfloat16:
                    if d.attrs.get("dtype") != "bfloat16" or a.dtype != np.int16:
                        fail(f"{name}: bfloat16 not stored as its bits")
                    got = torch.from_numpy(a).view(torch.bfloat16)
                else:
                    if a.dtype != np.float32:
                        fail(f"{name}: run activation has dtype {a.dtype}, not float32")
                    got = torch.from_numpy(a)
                want = hooks[name][b]
                if got.shape != want.shape or not torch.equal(got, want):
                    fail(f"{dtype} batch {b} {name}: run activation is not the model's own output")
                o = g64[name][()]
                if o.dtype != np.float64:
                    fail(f"{name}: oracle activation is {o.dtype}")
                rel = np.linalg.norm(o - got.double().numpy()) / np.linalg.norm(o)
                tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
                if not (0 < rel < tol) and not (dtype == torch.float32 and rel < tol):
                    fail(f"{dtype} {name}: oracle vs run rel_l2 {rel:.2e} outside (0, {tol})")
    print(f"ok {dtype}")


def check_autocast(out):
    """Under the caller's autocast the run is the autocast one (bfloat16 linears), the
    environment says so, and the float64 oracle stays the model's float64 result."""
    torch.manual_seed(0)
    net = Net().eval()
    batches = [(torch.randn(3, 8),)]
    with torch.no_grad():
        plain = net(batches[0][0]).double()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        capture_torch.capture(net, batches, f"{out}/ac.model.h5", f"{out}/ac.recording.h5",
                              input_names=["x"], record_activations=True, record_run=True)
    with h5py.File(f"{out}/ac.recording.h5", "r") as f:
        env = json.loads(f.attrs["capture_environment"])
        if not env["flags"]["torch.autocast_cpu"]:
            fail("autocast not recorded in the capture environment")
        d = f["batches/000000/run_activations/fc1"]
        if d.attrs.get("dtype") != "bfloat16":
            fail("autocast run: fc1 is not bfloat16")
        o = f["batches/000000/activations/softmax"][()]
        rel = np.linalg.norm(o - plain.numpy()) / np.linalg.norm(o)
        if not rel < 1e-6:
            fail(f"the float64 oracle ran under autocast (rel_l2 {rel:.2e} to the float32 model)")
    print("ok autocast")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    check(out, torch.float32)
    check(out, torch.bfloat16)
    check_autocast(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
