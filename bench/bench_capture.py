"""Capture cost on a real network (issue "Real networks in", performance targets).

usage: /usr/bin/python3 bench/bench_capture.py [--model resnet50] [--batch 8] [--size 224]
                                                [--out bench/results/capture-DATE.md]

Each figure comes from its own process (peak RSS is per process): the anchor is PyTorch's own
float32 forward of the same batch; then capture_torch.capture without activations, and with
the float64 oracle's activations. Targets: recording <= 2x the input bytes without
activations; capture peak RSS <= 2x the forward's.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def child(kind, model, batch, size, out):
    import torch
    import torchvision.models as tvm
    sys.path.insert(0, os.path.join(HERE, "..", "tools"))
    torch.manual_seed(0)
    m = getattr(tvm, model)(weights=None).eval()
    x = torch.randn(batch, 3, size, size)
    t0 = time.time()
    if kind == "forward":
        with torch.no_grad():
            m(x)
    else:
        import capture_torch
        capture_torch.capture(m, [(x,)], out + ".model.h5", out + ".recording.h5",
                              input_names=["x"], record_activations=(kind == "activations"))
    dt = time.time() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rec = os.path.getsize(out + ".recording.h5") if kind != "forward" else 0
    print(json.dumps({"seconds": dt, "rss": rss, "recording": rec, "input": x.numel() * 4}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--out", default=os.path.join(HERE, "results",
                                                  f"capture-{datetime.date.today()}.md"))
    ap.add_argument("--child", default=None)
    ap.add_argument("--tmp", default="/tmp/divscope_bench_capture")
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.model, a.batch, a.size, a.tmp)
    res = {}
    for kind in ("forward", "inputs only", "activations"):
        k = kind.split()[0] if kind != "inputs only" else "inputs"
        p = subprocess.run([sys.executable, __file__, "--child", k, "--model", a.model,
                            "--batch", str(a.batch), "--size", str(a.size), "--tmp", a.tmp],
                           capture_output=True, text=True)
        if p.returncode:
            print(p.stderr, file=sys.stderr)
            return 1
        res[kind] = json.loads(p.stdout.strip().splitlines()[-1])
    fwd = res["forward"]
    mb = lambda b: f"{b / 2**20:.1f} MiB"
    lines = [f"# capture_torch on {a.model}, batch {a.batch}, {a.size}x{a.size} "
             f"({datetime.date.today()})", "",
             f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores; Python {platform.python_version()}; command: "
             f"`/usr/bin/python3 bench/bench_capture.py --model {a.model} --batch {a.batch} "
             f"--size {a.size}`", "",
             "| run | seconds | peak RSS | RSS / forward's | recording | recording / input |",
             "|---|---|---|---|---|---|"]
    for kind, r in res.items():
        lines.append(f"| {kind} | {r['seconds']:.1f} | {mb(r['rss'])} | {r['rss'] / fwd['rss']:.2f} | "
                     f"{mb(r['recording']) if r['recording'] else '-'} | "
                     f"{r['recording'] / r['input']:.2f} |" if r['recording'] else
                     f"| {kind} | {r['seconds']:.1f} | {mb(r['rss'])} | 1.00 | - | - |")
    lines += ["", "Targets: recording <= 2x the input without activations; capture RSS <= 2x "
              "the forward's (the forward is the anchor, measured in the same run)."]
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
