#!/usr/bin/env python3
"""divscope's CPU analysis of real networks against PyTorch, side by side (issue 15).

usage: /usr/bin/python3 bench/bench_cpu_networks.py [--divscope build/divscope] [--threads 2]
           [--models resnet50,vgg11,gpt] [--repeats 3] [--out bench/results] [--tag before]

For each model (torchvision resnet50 and vgg11 at batch 8, 3x224x224, random weights with
batchnorm statistics moved off (0, 1); a GPT-2-small-shaped decoder — nanoGPT's code, 12
layers, 12 heads, 768 wide, vocabulary 8192 — at batch 8 x 256 tokens), one batch is captured
with tools/capture_torch.py, then, with the same thread count:
- PyTorch: the float64 and the float32 forward (median of `repeats`, after a warm-up), and the
  forward-hook anchor (bench/hooks_anchor.py: chained float32 and bfloat16 against float64);
- divscope: `run --backend cpu --threads T --profile` (all five modes, chained + isolated, every
  statistic): the whole analysis, peak RSS by GNU time, and its passes as profiled inside it
  (where they share the cores with the other modes' tasks); and each pass *alone*, the figure
  to set beside PyTorch's forward: `bench_reference_pass ... --passes fp64,fp32 --threads T`
  (--pass-tool; default: bench/bench_reference_pass beside --divscope, skipped when absent).
Targets: reference <= 1.0x torch float64; fp32 pass <= 1.5x torch float32; whole analysis
<= 12x torch float64 and <= 1.0x the hooks anchor; peak RSS <= 3x (the largest layer's FP64
input + output, plus the parameters in FP64).
Writes bench/results/cpu-real-networks-<date>[-tag].md.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import capture_torch  # noqa: E402
from hooks_anchor import hooks_comparison  # noqa: E402


def build(name):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    if name in ("resnet50", "vgg11"):
        import torchvision.models as tvm
        import zoo_models
        m = getattr(tvm, name)(weights=None).eval()
        zoo_models._randomize_bn(m)
        return m, (torch.randn(8, 3, 224, 224, generator=g),), ["x"], {}
    if name == "gpt":
        import zoo_models
        m = zoo_models.GPT(vocab_size=8192, block_size=256, n_layer=12, n_head=12, n_embd=768).eval()
        return m, (torch.randint(0, 8192, (8, 256), generator=g),), ["idx"], {"concrete_args": {"targets": None}}
    raise SystemExit(f"unknown model {name}")


def median_time(fn, repeats):
    fn()   # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def torch_forward(model, inputs, dtype, threads, repeats):
    torch.set_num_threads(threads)
    m = model.to(dtype)
    xs = tuple(x.to(dtype) if x.is_floating_point() else x for x in inputs)
    with torch.no_grad():
        t = median_time(lambda: m(*xs), repeats)
    model.float()
    return t


def memory_bound(model, inputs):
    """Bytes: the largest leaf module's FP64 input + output, plus every parameter in FP64."""
    m = model.double()
    largest = 0

    def hook(mod, i, o):
        nonlocal largest
        n = sum(t.numel() for t in i if torch.is_tensor(t)) + (o.numel() if torch.is_tensor(o) else 0)
        largest = max(largest, 8 * n)
    hs = [mod.register_forward_hook(hook) for mod in m.modules() if len(list(mod.children())) == 0]
    with torch.no_grad():
        m(*(x.double() if x.is_floating_point() else x for x in inputs))
    for h in hs:
        h.remove()
    params = 8 * sum(p.numel() for p in m.parameters())
    model.float()
    return largest + params


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--divscope", default=os.path.join(ROOT, "build", "divscope"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--models", default="resnet50,vgg11,gpt")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--tag", default="")
    ap.add_argument("--pass-tool", default=None,
                    help="bench_reference_pass of the same build (default: DIR/bench/bench_reference_pass)")
    a = ap.parse_args()
    if a.pass_tool is None:
        a.pass_tool = os.path.join(os.path.dirname(os.path.abspath(a.divscope)), "bench", "bench_reference_pass")
    if not os.path.exists(a.pass_tool):
        print(f"note: {a.pass_tool} not found (configure with -DDIVSCOPE_BUILD_BENCH=ON): passes alone not timed")
        a.pass_tool = None
    T = a.threads
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in a.models.split(","):
            model, inputs, input_names, kw = build(name)
            mp, rp = os.path.join(work, name + ".model.h5"), os.path.join(work, name + ".recording.h5")
            capture_torch.capture(model, [inputs], mp, rp, input_names=input_names, name=name,
                                  source="bench/bench_cpu_networks.py", **kw)
            t64 = torch_forward(model, inputs, torch.float64, T, a.repeats)
            t32 = torch_forward(model, inputs, torch.float32, T, a.repeats)
            anchor, worst = hooks_comparison(model, inputs, T)
            bound = memory_bound(model, inputs)
            prof = os.path.join(work, name + ".profile.json")
            cmd = ["/usr/bin/time", "-f", "%M", a.divscope, "run", "--backend", "cpu", "-q", "--threads", str(T),
                   "--model", mp, "--recording", rp, "--profile", prof, "--no-journal"]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode not in (0, 1, 4):
                raise SystemExit(f"{name}: divscope exit {r.returncode}: {r.stderr.strip()[-500:]}")
            rss = int(r.stderr.strip().splitlines()[-1]) * 1024
            p = json.load(open(prof))
            if a.pass_tool:
                out = subprocess.run([a.pass_tool, mp, rp, str(a.repeats), "--passes", "fp64,fp32", "--threads", str(T)],
                                     capture_output=True, text=True, check=True).stdout
                alone = {l.split()[1]: float(l.split()[2]) for l in out.splitlines() if l.startswith("pass ")}
                rows.append((name, "FP64 reference pass, alone", alone["fp64"], t64, "torch float64 forward", 1.0, None))
                rows.append((name, "fp32 chained pass, alone", alone["fp32"], t32, "torch float32 forward", 1.5, None))
            rows.append((name, "FP64 reference pass, in the analysis", p["reference_s"], t64, "torch float64 forward", 1.0, None))
            rows.append((name, "fp32 chained pass, in the analysis", p["modes"]["fp32"]["chained_s"], t32, "torch float32 forward", 1.5, None))
            rows.append((name, "whole analysis", p["wall_s"], t64, "torch float64 forward", 12.0, rss))
            rows.append((name, "whole analysis", p["wall_s"], anchor, "hooks anchor (fp32+bf16 vs fp64)", 1.0, None))
            rows.append((name, "peak RSS", rss / 2**20, bound / 2**20, "largest layer in+out + params, FP64 (MiB)", 3.0, rss))
            print(f"{name}: ref {p['reference_s']:.2f} s vs torch f64 {t64:.2f} s; fp32 {p['modes']['fp32']['chained_s']:.2f} s "
                  f"vs torch f32 {t32:.2f} s; whole {p['wall_s']:.1f} s vs anchor {anchor:.2f} s; RSS {rss / 2**20:.0f} MiB "
                  f"vs bound {bound / 2**20:.0f} MiB; anchor worst {worst}", flush=True)
    date = datetime.date.today().isoformat()
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"cpu-real-networks-{date}{'-' + a.tag if a.tag else ''}.md")
    with open(path, "w") as f:
        f.write(f"# CPU analysis of real networks vs PyTorch — {date}{' (' + a.tag + ')' if a.tag else ''}\n\n")
        f.write(f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
                f"torch {torch.__version__}; {T} thread(s) on both sides.\n\n")
        f.write(f"Command: `/usr/bin/python3 bench/bench_cpu_networks.py --threads {T} --models {a.models} "
                f"--repeats {a.repeats}{' --tag ' + a.tag if a.tag else ''}`\n\n")
        f.write("divscope's passes *alone* are `bench_reference_pass --passes` (best of the repeats, one chain "
                "with nothing else running: the figure comparable with a framework's forward); *in the analysis* "
                "they are from `run --profile` (seconds inside each pass, summed over layers, while the other "
                "modes' tasks share the cores). PyTorch's are medians of the forward. Ratio = divscope / anchor; "
                "target = the issue's.\n\n")
        f.write("| model | pass | divscope | anchor | anchor is | ratio | target | peak RSS MiB |\n|---|---|---|---|---|---|---|---|\n")
        for name, what, ours, theirs, anchor_is, target, rss in rows:
            ratio = ours / theirs if theirs else float("inf")
            f.write(f"| {name} | {what} | {ours:.2f} | {theirs:.2f} | {anchor_is} | {ratio:.2f}x | "
                    f"<= {target}x {'met' if ratio <= target else 'MISSED'} | {'' if rss is None else f'{rss / 2**20:.0f}'} |\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
