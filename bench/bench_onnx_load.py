"""ONNX load cost (issue "ONNX models in", performance target: a 100 MB ONNX file, resnet50,
loads in under 2 s and in under 2x its size of memory).

usage: /usr/bin/python3 bench/bench_onnx_load.py DIVSCOPE [--models resnet50,vit_b_16]
                                                  [--repeat 3] [--out bench/results/onnx-load-DATE.md]

Per model: torch.onnx.export at opset 17 (float32, dynamic batch), then `divscope inspect` (parse,
fold, lower, validate: all a run does before its first batch) timed in its own process, best of
--repeat, with the process's peak RSS. The anchor, measured in the same run, is the file's size
and the RSS of `divscope env` (the binary and its libraries, no model). Parameters are held in
FP64, so the loaded model itself is 2x the float32 file.
"""
import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time


def run_child(cmd):
    """(seconds, peak RSS bytes, stdout) of one child process. The RSS comes from GNU time in the
    child: RUSAGE_CHILDREN would also count this Python's pages (torch) that the child shares
    between fork and exec."""
    with tempfile.NamedTemporaryFile("r") as rss:
        t0 = time.time()
        r = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name] + cmd,
                           capture_output=True, text=True)
        dt = time.time() - t0
        if r.returncode != 0:
            sys.exit(f"bench_onnx_load: {' '.join(cmd)} failed: {r.stderr.strip()}")
        return dt, int(rss.read().split()[-1]) * 1024, r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("divscope")
    ap.add_argument("--models", default="resnet50,vit_b_16")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import torch
    import torchvision.models as tvm

    base_t, base_rss, _ = run_child([a.divscope, "env"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            torch.manual_seed(0)
            m = getattr(tvm, name)(weights=None).eval()
            size = 224
            path = os.path.join(tmp, f"{name}.onnx")
            torch.onnx.export(m, (torch.randn(1, 3, size, size),), path, opset_version=17,
                              input_names=["x"], dynamic_axes={"x": {0: "batch"}})
            mb = os.path.getsize(path) / 2**20
            best, rss, out = None, 0, ""
            for _ in range(a.repeat):
                t, r, out = run_child([a.divscope, "inspect", path])
                best = t if best is None else min(best, t)
                rss = max(rss, r)
            layers = out.splitlines()[0]
            rows.append((name, mb, best, rss / 2**20, layers))
            print(f"{name}: {mb:.1f} MB, load {best:.2f} s, peak RSS {rss / 2**20:.0f} MiB", flush=True)

    date = datetime.date.today().isoformat()
    lines = [f"# ONNX load — {date}", "",
             f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores; divscope `{a.divscope}`.",
             f"Command: `/usr/bin/python3 bench/bench_onnx_load.py {' '.join(sys.argv[1:])}`", "",
             "Load = `divscope inspect MODEL.onnx` in its own process (parse with libonnx's protobuf "
             "schema, fold constants, lower to layers, validate), best of "
             f"{a.repeat}. Anchor: `divscope env` in the same run, {base_t:.2f} s and "
             f"{base_rss / 2**20:.0f} MiB (the binary and its libraries).", "",
             "| model | file MB | load s | target s | peak RSS MiB | RSS − anchor, × file | target × file |",
             "|---|---|---|---|---|---|---|"]
    for name, mb, t, rss, _ in rows:
        over = (rss - base_rss / 2**20) / mb
        lines.append(f"| {name} | {mb:.1f} | {t:.2f} | 2 | {rss:.0f} | {over:.2f} | 2 |")
    lines += ["", "The model holds its parameters in FP64 (docs/format.md: every reference path is "
              "FP64), so a float32 file becomes 2× its size once loaded; the protobuf's own copy "
              "of each initializer is freed as soon as it is converted."]
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"onnx-load-{date}.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
