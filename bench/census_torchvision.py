"""Census: does every torchvision classifier go in? (issue "Real networks in")

usage: /usr/bin/python3 bench/census_torchvision.py [--max-params 150e6] [--out FILE]

For every model of torchvision.models.list_models() (random init): capture_torch.capture with
the float64 oracle's activations (64x64 inputs, 224x224 for vit and maxvit, 75x75 for inception;
batch 2), `divscope run --backend cpu --modes fp32`, and the worst FP64-vs-PyTorch rel_l2 over
the recorded layers. One line per model (OK / FAIL with the error / SKIP above --max-params);
minutes to hours on a laptop, so it is not a test (tests/python/zoo.py is).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--divscope", default=os.path.join(HERE, "..", "build", "divscope"))
    ap.add_argument("--max-params", type=float, default=150e6)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import torch
    import torchvision.models as tvm
    import capture_torch
    lines = []
    tmp = tempfile.mkdtemp(prefix="divscope_census_")
    for n in a.only or tvm.list_models(module=tvm):
        t0 = time.time()
        try:
            kw = dict(aux_logits=False, init_weights=True) if n in ("googlenet", "inception_v3") else {}
            m = tvm.get_model(n, weights=None, **kw).eval()
            npar = sum(p.numel() for p in m.parameters())
            if npar > a.max_params:
                lines.append(f"SKIP {n}: {npar / 1e6:.0f}M parameters")
                print(lines[-1], flush=True)
                continue
            hw = 75 if n == "inception_v3" else 224 if n.startswith(("vit", "maxvit")) else 64
            x = torch.randn(2, 3, hw, hw)
            mp, rp, jp = (os.path.join(tmp, f"{n}.{e}") for e in ("model.h5", "recording.h5", "json"))
            capture_torch.capture(m, [(x,)], mp, rp, input_names=["x"], record_activations=True)
            subprocess.run([a.divscope, "run", "--backend", "cpu", "--modes", "fp32", "-q",
                            "--model", mp, "--recording", rp, "--report", jp], check=False)
            j = json.load(open(jp))
            worst = max(r["rel_l2"] for r in j["recorded"] if r["count"])
            lines.append(f"OK {n}: {len(j['modes'][0]['layers'])} layers, worst rel_l2 "
                         f"{worst:.2e}, {time.time() - t0:.0f} s")
            for p in (mp, rp, jp):
                os.remove(p)
        except Exception as e:  # one line per model, whatever failed
            lines.append(f"FAIL {n}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        print(lines[-1], flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
