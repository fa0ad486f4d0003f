#!/usr/bin/env python3
"""Fuzzes divscope's readers with damaged and odd files (not part of ctest: minutes, random).

usage: /usr/bin/python3 tests/fuzz/fuzz_readers.py [--divscope build/divscope] [--seed S]
                                                   [--rounds N] [--kind bytes|model|recording]
                                                   [--hdf5-timeout S]

bytes:     random bit flips, zeroed runs and truncations of the example files in data/;
model:     one attribute, dataset or input list of one layer of an example model changed;
recording: NaN/Inf/huge inputs, out-of-range indices, other dtypes, empty batches, damaged
           recorded activations, a wrong version.
Each damaged file goes through `divscope inspect` and `divscope run --backend cpu`, with
DIVSCOPE_HDF5_TIMEOUT=--hdf5-timeout (default 10 s) and a run timeout 60 s above it, so that a
libhdf5 loop ends as the watchdog's exit 2 and "hang" means one the watchdog missed. The
libFuzzer targets of fuzz/ (docs/testing.md) fuzz the same readers in-process, with ASan. The rule
(DEVELOPERS.md): exit 0, 1 or 2, and a 2 is exactly one line on stderr (glibc's own abort
message aside); never a crash, a hang, exit 3 or "internal error". Offending files are kept in
the work directory (default /tmp/divscope-fuzz) and listed; the exit status is their count.
Findings so far: an endless loop and heap corruption inside libhdf5 1.10 (now turned into exit 2
by host/h5watch), attributes of the wrong kind read only when a layer runs, recorded activations
of the wrong shape found only after the layers before them had run, absurd strides.
"""
import argparse
import os
import random
import shutil
import subprocess

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "data")
EXAMPLES = ["mlp", "cnn", "resnet", "transformer", "dcgan", "ops", "planted_fp16_overflow"]


def damage_bytes(src, dst, rng):
    buf = bytearray(open(src, "rb").read())
    how = rng.choice(["flip", "trunc", "zero"])
    if how == "flip":
        for _ in range(rng.randint(1, 20)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif how == "trunc":
        buf = buf[:rng.randrange(len(buf))]
    else:
        i, n = rng.randrange(len(buf)), rng.randint(1, 512)
        buf[i:i + n] = bytes(len(buf[i:i + n]))
    open(dst, "wb").write(buf)
    return how


def damage_model(dst, rng):
    values = [0, -1, 1, 2, 7, 2**31, 2**62, 1e30, 0.5, float("nan"), float("inf"), "none", ""]
    with h5py.File(dst, "r+") as h:
        layers = h["layers"]
        names = list(layers.keys())
        g = layers[rng.choice(names)]
        how = rng.choice(["attr", "attr", "attr", "dataset", "drop_dataset", "drop_attr", "inputs"])
        if how == "attr":
            keys = [k for k in g.attrs.keys() if k not in ("name", "op")] or ["op"]
            k = rng.choice(keys)
            if rng.random() < 0.4:
                g.attrs[k] = np.array([rng.choice([0, -1, 1, 2, 10**6, 2**40])
                                       for _ in range(rng.randint(0, 4))], dtype=np.int64)
            else:
                v = rng.choice(values)
                g.attrs[k] = np.int64(v) if isinstance(v, int) else (np.float64(v) if isinstance(v, float) else v)
        elif how == "dataset" and len(g.keys()):
            k = rng.choice(list(g.keys()))
            shape = list(g[k].shape)
            if shape and rng.random() < 0.5:
                shape[rng.randrange(len(shape))] += rng.choice([-1, 1])
            else:
                shape.append(1)
            del g[k]
            g[k] = np.ones([max(s, 0) for s in shape], dtype=rng.choice([np.float32, np.float64, np.int32]))
        elif how == "drop_dataset" and len(g.keys()):
            del g[rng.choice(list(g.keys()))]
        elif how == "drop_attr":
            del g.attrs[rng.choice(list(g.attrs.keys()))]
        elif how == "inputs":
            g.attrs["inputs"] = np.array(rng.choice([[], [names[-1]], ["nope"], ["x", "x", "x"]]), dtype=object)
    return how


def damage_recording(dst, rng):
    with h5py.File(dst, "r+") as h:
        b = h["batches"][rng.choice(list(h["batches"].keys()))]
        k = rng.choice([k for k in b.keys() if k != "activations"])
        d = b[k][()]
        how = rng.choice(["nan", "inf", "huge", "negative_index", "big_index", "dtype", "empty",
                          "activation", "version"])
        if how in ("nan", "inf", "huge") and d.dtype.kind == "f":
            d = d.astype(np.float64)
            d.reshape(-1)[rng.randrange(d.size)] = {"nan": np.nan, "inf": -np.inf, "huge": 1e300}[how]
        elif how in ("negative_index", "big_index") and d.dtype.kind in "iu":
            d.reshape(-1)[rng.randrange(d.size)] = -3 if how == "negative_index" else 10**12
        elif how == "dtype":
            d = d.astype(rng.choice([np.int8, np.float16, np.uint64, np.float32]))
        elif how == "empty":
            d = d[:0]
        elif how == "activation" and "activations" in b:
            a = b["activations"]
            n = rng.choice(list(a.keys()))
            v = a[n][()]
            del a[n]
            a[n] = rng.choice([v.astype(np.int32), np.full_like(v, np.nan), v[..., :1]])
        elif how == "version":
            h.attrs["divscope_version"] = rng.choice([0, 2, -1])
        del b[k]
        b[k] = d
    return how


def check(divscope, args, hdf5_timeout):
    # divscope's HDF5 watchdog (DIVSCOPE_HDF5_TIMEOUT) ends a libhdf5 loop with exit 2 after
    # hdf5_timeout s; this timeout is well above it, so "hang" is a hang the watchdog missed.
    env = dict(os.environ, DIVSCOPE_HDF5_TIMEOUT=str(hdf5_timeout))
    try:
        p = subprocess.run([divscope] + args, capture_output=True, text=True, env=env,
                           timeout=hdf5_timeout + 60)
    except subprocess.TimeoutExpired:
        return "hang"
    lines = [l for l in p.stderr.splitlines() if l.startswith("divscope")]
    if p.returncode not in (0, 1, 2) or "internal error" in p.stderr:
        return f"exit {p.returncode}: {p.stderr.strip()[-300:]}"
    if p.returncode == 2 and len(lines) != 1:
        return f"exit 2 with {len(lines)} lines: {p.stderr.strip()[-300:]}"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--divscope", default=os.path.join(HERE, "..", "..", "build", "divscope"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--kind", choices=["bytes", "model", "recording"], default="bytes")
    ap.add_argument("--workdir", default="/tmp/divscope-fuzz")
    ap.add_argument("--hdf5-timeout", type=float, default=10,
                    help="DIVSCOPE_HDF5_TIMEOUT for divscope (s); each run may take 60 s more")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.workdir, exist_ok=True)
    found = []
    for i in range(a.rounds):
        ex = rng.choice(EXAMPLES)
        model, rec = (os.path.join(DATA, f"{ex}.{k}.h5") for k in ("model", "recording"))
        target = rng.choice(["model", "recording"]) if a.kind == "bytes" else a.kind
        dst = os.path.join(a.workdir, f"{a.kind}-{a.seed}-{i}-{ex}.{target}.h5")
        shutil.copy(model if target == "model" else rec, dst)
        try:
            if a.kind == "bytes":
                how = damage_bytes(dst, dst, rng)
            elif a.kind == "model":
                how = damage_model(dst, rng)
            else:
                how = damage_recording(dst, rng)
        except Exception:   # h5py refused the edit itself: the file is unchanged or simply odd
            how = "h5py refused"
        if target == "model":
            model = dst
        else:
            rec = dst
        problem = check(a.divscope, ["inspect", dst], a.hdf5_timeout) or check(
            a.divscope, ["run", "--backend", "cpu", "--quiet", "--modes", "fp16,strict",
                         "--model", model, "--recording", rec], a.hdf5_timeout)
        if problem:
            found.append(dst)
            print(f"{dst} ({how}): {problem}", flush=True)
        else:
            os.remove(dst)
    print(f"{a.rounds} rounds, {len(found)} problem file(s)")
    return len(found)


if __name__ == "__main__":
    raise SystemExit(main())
