"""The capturing machine's environment record (issue 14, item 2; docs/format.md, capture_environment).

usage: test_env_record.py DIVSCOPE WORK_DIR
       test_env_record.py - WORK_DIR          (no binary: the recordings are not opened by divscope)
Run with /usr/bin/python3 (the PyTorch part) or .venv-test/bin/python (both parts: it has torch,
onnx and onnxruntime); a part whose framework does not import is skipped with a line saying so.

1. tools/env_record.py on its own: the environment-variable filter (prefixes, exact names,
   secrets never), library names (PEP 503, Debian's h5py), and the CUDA driver path through a
   stand-in libcuda compiled here (two GPUs, one a MIG instance, one attribute unreported;
   skipped without a C compiler): driver version, the GPU entries, framework GPUs completed
   with the driver's clocks and ECC.
2. capture_torch.py: a tiny model captured after setting torch.backends.cuda.matmul.allow_tf32
   = True (and back), with NVIDIA_TF32_OVERRIDE=0, CUBLAS_WORKSPACE_CONFIG and a secret-looking
   variable in the environment; the recording's capture_environment, read back with h5py, has
   exactly the schema (groups, keys, types), the flag and the variables as set, the secret not.
3. capture_onnx.py: a tiny ONNX model captured in a separate process (which must not import
   torch) with OMP_NUM_THREADS set; the same schema with ONNX Runtime's flags, the model's
   sha256 and opsets under `capture`.
Each recording must still load: DIVSCOPE inspect REC --model MODEL exits 0.
Exit 0 only when every check holds.
"""
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import h5py

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.normpath(os.path.join(HERE, "..", "..", "tools"))
sys.path.insert(0, TOOLS)
import env_record  # noqa: E402

FAILED = []


def check(cond, msg):
    if not cond:
        FAILED.append(msg)
        print(f"FAIL {msg}", file=sys.stderr)


def done(what, before):
    print(("ok " if len(FAILED) == before else "FAILED ") + what)


# --------------------------------------------------------------------------------------------
# The schema, exactly

GROUPS = ["divscope_env", "producer", "host", "hardware", "runtime", "libraries", "flags",
          "environment", "capture"]
STR, INT, BOOL = (str,), (int,), (bool,)
NULL = (type(None),)
HARDWARE = {"cpu": STR + NULL, "cpu_flags": (list,) + NULL, "cores": INT + NULL,
            "arch": STR + NULL, "gpus": (list,)}
GPU = {"index": INT, "name": STR + NULL, "compute_capability": STR + NULL,
       "multiprocessors": INT + NULL, "memory_bytes": INT + NULL, "clock_mhz": INT + NULL,
       "memory_clock_mhz": INT + NULL, "ecc": BOOL + NULL, "mig": BOOL + NULL}
RUNTIME = {"os": STR + NULL, "distribution": STR + NULL, "cuda_available": BOOL,
           "cuda_driver": STR + NULL, "cuda_runtime": STR + NULL, "cudnn": STR + NULL,
           "python": STR}
TORCH_FLAGS = {
    "torch.backends.cuda.matmul.allow_tf32": BOOL, "torch.backends.cudnn.allow_tf32": BOOL,
    "torch.backends.cudnn.benchmark": BOOL, "torch.backends.cudnn.deterministic": BOOL,
    "torch.backends.cudnn.enabled": BOOL, "torch.deterministic_algorithms": BOOL,
    "torch.float32_matmul_precision": STR + NULL, "torch.default_dtype": STR,
    "torch.autocast_gpu": BOOL, "torch.autocast_cpu": BOOL,
    "torch.autocast_gpu_dtype": STR + NULL,
    "torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction": BOOL + NULL,
    "torch.num_threads": INT}
ORT_FLAGS = {"onnxruntime.graph_optimization_level": STR,
             "onnxruntime.execution_provider": STR,
             "onnxruntime.intra_op_num_threads": INT + NULL}


def typed(value, types):
    # bool is an int in Python: an int field must not hold a bool, nor a bool field an int
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def check_keys(where, obj, spec):
    check(isinstance(obj, dict), f"{where}: not an object")
    if not isinstance(obj, dict):
        return
    check(sorted(obj) == sorted(spec), f"{where}: keys {sorted(obj)}, expected {sorted(spec)}")
    for k, types in spec.items():
        if k in obj:
            check(typed(obj[k], types),
                  f"{where}.{k}: {obj[k]!r} is not {'/'.join(t.__name__ for t in types)}")


def check_schema(env, producer, flags_spec):
    """The record has exactly the groups, keys and types of docs/format.md."""
    check(isinstance(env, dict) and list(env) == GROUPS,
          f"groups {list(env) if isinstance(env, dict) else type(env)}, expected {GROUPS}")
    check(env.get("divscope_env") == 1 and not isinstance(env.get("divscope_env"), bool),
          f"divscope_env {env.get('divscope_env')!r}")
    check(env.get("producer") == producer, f"producer {env.get('producer')!r}")
    check_keys("host", env.get("host"), {"hostname": STR + NULL})
    hw = env.get("hardware", {})
    check_keys("hardware", hw, HARDWARE)
    if isinstance(hw.get("cpu_flags"), list):
        check(all(f in env_record.CPU_FLAGS for f in hw["cpu_flags"]),
              f"hardware.cpu_flags {hw['cpu_flags']} outside the list")
        check(hw["cpu_flags"] == [f for f in env_record.CPU_FLAGS if f in hw["cpu_flags"]],
              "hardware.cpu_flags not in the list's order")
    check(hw.get("cores") == os.cpu_count(), f"hardware.cores {hw.get('cores')}")
    for i, g in enumerate(hw.get("gpus") or []):
        check_keys(f"hardware.gpus[{i}]", g, GPU)
        check(g.get("index") == i, f"hardware.gpus[{i}].index {g.get('index')}")
        cc = g.get("compute_capability")
        check(cc is None or re.fullmatch(r"\d+\.\d+", cc), f"compute_capability {cc!r}")
    rt = env.get("runtime", {})
    check_keys("runtime", rt, RUNTIME)
    check(rt.get("cuda_available") == bool(hw.get("gpus")),
          f"runtime.cuda_available {rt.get('cuda_available')} with {len(hw.get('gpus') or [])} GPUs")
    libs = env.get("libraries")
    check(isinstance(libs, dict) and all(isinstance(k, str) and isinstance(v, str)
                                         for k, v in libs.items()), f"libraries {libs!r}")
    for k in (libs or {}):
        check(k in env_record.LIBRARIES or k.startswith(env_record.LIBRARY_PREFIXES),
              f"libraries: '{k}' is not in the allow-list")
    for k in ("numpy", "h5py"):
        check(k in (libs or {}), f"libraries lacks '{k}'")
    check_keys("flags", env.get("flags"), flags_spec)
    ev = env.get("environment")
    check(isinstance(ev, dict), f"environment {ev!r}")
    for k, v in (ev or {}).items():
        check(isinstance(v, str), f"environment.{k} not a string")
        check(k.startswith(env_record.ENV_PREFIXES) or k in env_record.ENV_EXACT,
              f"environment.{k} is not a numerics variable")
        check(not env_record.ENV_NEVER.search(k), f"environment.{k} looks like a secret")
    check(isinstance(env.get("capture"), dict), "capture is not an object")


def read_env(rec):
    with h5py.File(rec, "r") as f:
        text = f.attrs["capture_environment"]
    text = text.decode() if isinstance(text, bytes) else text
    return json.loads(text, parse_constant=lambda c: FAILED.append(f"JSON constant {c}"))


def inspect(divscope, rec, model, what):
    if divscope == "-":
        return
    p = subprocess.run([divscope, "inspect", rec, "--model", model], capture_output=True,
                       text=True)
    check(p.returncode == 0, f"{what}: divscope inspect exit {p.returncode}: "
                             f"{(p.stderr or p.stdout).strip()[-300:]}")


# --------------------------------------------------------------------------------------------
# 1. env_record on its own

STUB = r"""
#include <stddef.h>
#include <string.h>
int cuDriverGetVersion(int* v) { *v = 12040; return 0; }
int cuInit(unsigned flags) { return flags == 0 ? 0 : 1; }
int cuDeviceGetCount(int* n) { *n = 2; return 0; }
int cuDeviceGet(int* d, int i) { if (i < 0 || i > 1) return 101; *d = 10 + i; return 0; }
int cuDeviceGetName(char* s, int len, int d) {
  strncpy(s, d == 10 ? "NVIDIA H200" : "NVIDIA A100-SXM4-40GB MIG 1g.5gb", len);
  s[len - 1] = 0;
  return d == 10 || d == 11 ? 0 : 101;
}
int cuDeviceTotalMem_v2(size_t* b, int d) { *b = d == 10 ? 150754820096ULL : 4972937216ULL; return 0; }
int cuDeviceGetAttribute(int* v, int a, int d) {
  switch (a) {
    case 13: *v = 1980000; return 0;                      /* clock, kHz */
    case 36: if (d == 11) return 1; *v = 3201000; return 0; /* memory clock: not on the MIG one */
    case 16: *v = d == 10 ? 132 : 14; return 0;
    case 32: *v = d == 10; return 0;                        /* ECC */
    case 75: *v = d == 10 ? 9 : 8; return 0;
    case 76: *v = 0; return 0;
  }
  return 1;
}
"""


def part_env_record(work):
    before = len(FAILED)
    ev = env_record.environment_variables({
        "NVIDIA_TF32_OVERRIDE": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "CUDA_VISIBLE_DEVICES": "1",
        "OMP_NUM_THREADS": "4", "CUBLASLT_LOG_LEVEL": "0", "CUDNN_LOGINFO_DBG": "0",
        "NCCL_ALGO": "Ring", "NCCL_DEBUG": "INFO", "KMP_AFFINITY": "x", "MKL_CBWR": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell", "PYTORCH_CUDA_ALLOC_CONF": "x", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1",
        "ORT_X": "1", "TF_ENABLE_ONEDNN_OPTS": "0", "XLA_FLAGS": "--x", "DIVSCOPE_ONNX_FUSE": "0",
        "HOME": "/root", "PATH": "/bin", "TF_TOKEN_app_terraform_io": "secret",
        "TF_VAR_db": "secret", "TF_CLI_CONFIG_FILE": "/x", "CUDA_API_KEY": "secret",
        "DIVSCOPE_AUTH_TOKEN": "secret"})
    want = ["CUBLASLT_LOG_LEVEL", "CUBLAS_WORKSPACE_CONFIG", "CUDA_VISIBLE_DEVICES",
            "CUDNN_LOGINFO_DBG", "DIVSCOPE_ONNX_FUSE", "KMP_AFFINITY", "MKL_CBWR", "NCCL_ALGO",
            "NVIDIA_TF32_OVERRIDE", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "ORT_X",
            "PYTORCH_CUDA_ALLOC_CONF", "TF_ENABLE_ONEDNN_OPTS", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
            "XLA_FLAGS"]
    check(list(ev) == want, f"environment_variables: {list(ev)}, expected {want}")
    check(env_record._normalize("h5py.-debian-h5py-serial") == "h5py", "Debian's h5py name")
    check(env_record._normalize("ML_Dtypes") == "ml-dtypes", "PEP 503 name")
    check(env_record._normalize("nvidia-cublas-cu12").startswith(env_record.LIBRARY_PREFIXES),
          "nvidia-cublas-cu12 not kept")

    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        print("skip the CUDA driver stand-in: no C compiler")
        return
    src, lib = os.path.join(work, "libcuda_stub.c"), os.path.join(work, "libcuda_stub.so")
    with open(src, "w") as f:
        f.write(STUB)
    p = subprocess.run([cc, "-shared", "-fPIC", "-o", lib, src], capture_output=True, text=True)
    if p.returncode != 0:
        print(f"skip the CUDA driver stand-in: {cc} failed: {p.stderr.strip()[:200]}")
        return
    saved = env_record.LIBCUDA
    env_record.LIBCUDA = lib
    try:
        check(env_record.cuda_driver_version() == "12.4",
              f"cuda_driver {env_record.cuda_driver_version()!r}")
        gpus = env_record.driver_gpus()
        want = [{"index": 0, "name": "NVIDIA H200", "compute_capability": "9.0",
                 "multiprocessors": 132, "memory_bytes": 150754820096, "clock_mhz": 1980,
                 "memory_clock_mhz": 3201, "ecc": True, "mig": False},
                {"index": 1, "name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
                 "compute_capability": "8.0", "multiprocessors": 14, "memory_bytes": 4972937216,
                 "clock_mhz": 1980, "memory_clock_mhz": None, "ecc": False, "mig": True}]
        check(gpus == want, f"driver_gpus: {gpus}")
        rec = env_record.build("capture_onnx.py", {}, None, {})
        check(rec["runtime"]["cuda_available"] is True and rec["hardware"]["gpus"] == want
              and rec["runtime"]["cuda_driver"] == "12.4" and rec["runtime"]["cuda_runtime"] is None,
              f"build without a framework CUDA view: {rec['runtime']}, {rec['hardware']['gpus']}")
        # A framework's GPUs (no clocks, no ECC) completed from the driver, by index and name.
        fw = [env_record.gpu(0, "NVIDIA H200", "9.0", 132, 150754820096),
              env_record.gpu(1, "another name", "8.0", 14, 4972937216)]
        rec = env_record.build("capture_torch.py", {}, {"available": True, "runtime": "12.1",
                                                        "cudnn": "8.9.2", "gpus": fw}, {})
        got = rec["hardware"]["gpus"]
        check(got[0] == want[0], f"merged GPU 0: {got[0]}")
        check(got[1] == fw[1], f"GPU 1 (another name) must not take the driver's values: {got[1]}")
        check(rec["runtime"]["cuda_runtime"] == "12.1" and rec["runtime"]["cudnn"] == "8.9.2",
              f"runtime {rec['runtime']}")
        check_schema(rec, "capture_torch.py", {})
    finally:
        env_record.LIBCUDA = saved
    done("env_record (variables, library names, CUDA driver stand-in)", before)


# --------------------------------------------------------------------------------------------
# 2. capture_torch.py

def part_torch(divscope, work):
    try:
        import torch
        import torch.nn as nn
        import capture_torch
    except ImportError as e:
        print(f"skip capture_torch: {e}")
        return

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return torch.relu(self.fc(x))

    torch.manual_seed(0)
    net = Tiny().eval()
    batches = [(torch.randn(2, 4),)]
    before = len(FAILED)
    model, rec = os.path.join(work, "tiny.model.h5"), os.path.join(work, "tiny.recording.h5")
    set_env = {"NVIDIA_TF32_OVERRIDE": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
               "TF_TOKEN_app_terraform_io": "secret"}
    saved_env = {k: os.environ.get(k) for k in set_env}
    saved_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        os.environ.update(set_env)
        torch.backends.cuda.matmul.allow_tf32 = True
        capture_torch.capture(net, batches, model, rec, input_names=["x"],
                              record_activations=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved_tf32
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    env = read_env(rec)
    check_schema(env, "capture_torch.py", TORCH_FLAGS)
    fl, ev, rt = env["flags"], env["environment"], env["runtime"]
    check(fl.get("torch.backends.cuda.matmul.allow_tf32") is True,
          "flags: matmul.allow_tf32 = True not recorded")
    check(fl.get("torch.backends.cudnn.allow_tf32") is bool(torch.backends.cudnn.allow_tf32),
          "flags: cudnn.allow_tf32")
    check(fl.get("torch.default_dtype") == "torch.float32", "flags: default_dtype")
    check(fl.get("torch.num_threads") == torch.get_num_threads(), "flags: num_threads")
    check(fl.get("torch.autocast_cpu") is False, "flags: autocast_cpu outside autocast")
    check(ev.get("NVIDIA_TF32_OVERRIDE") == "0", f"environment: NVIDIA_TF32_OVERRIDE {ev}")
    check(ev.get("CUBLAS_WORKSPACE_CONFIG") == ":4096:8", f"environment: CUBLAS_WORKSPACE_CONFIG {ev}")
    check("TF_TOKEN_app_terraform_io" not in ev, "environment: a token was recorded")
    check(env["libraries"].get("torch", "").startswith(torch.__version__),
          f"libraries.torch {env['libraries'].get('torch')!r}, torch {torch.__version__}")
    check(rt["cuda_available"] == torch.cuda.is_available(), "runtime.cuda_available")
    check(rt["cuda_runtime"] == torch.version.cuda, "runtime.cuda_runtime")
    check(len(env["hardware"]["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0),
          "hardware.gpus count")
    check(env["capture"].get("record_activations") is True, f"capture {env['capture']}")
    # the flags are read when the capture runs: the next capture sees the restored setting
    check(capture_torch.environment()["flags"]["torch.backends.cuda.matmul.allow_tf32"] is saved_tf32,
          "flags: allow_tf32 not read at capture time")
    inspect(divscope, rec, model, "capture_torch")
    done(f"capture_torch ({len(env['libraries'])} libraries, {len(env['environment'])} "
         f"variables, {len(env['hardware']['gpus'])} GPUs)", before)


# --------------------------------------------------------------------------------------------
# 3. capture_onnx.py (in its own process: it must not import torch)

ONNX_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import capture_onnx
model, rec = sys.argv[2], sys.argv[3]
w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
g = helper.make_graph(
    [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
    "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [w])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="test_env_record")
m.ir_version = 8
onnx.save(m, model)
x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
capture_onnx.capture(model, [{"x": x}], rec, activations=True)
print(json.dumps({"torch_imported": "torch" in sys.modules}))
"""


def part_onnx(divscope, work):
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"skip capture_onnx: no module {', '.join(missing)} in {sys.executable}")
        return
    before = len(FAILED)
    model, rec = os.path.join(work, "tiny.onnx"), os.path.join(work, "tiny_onnx.recording.h5")
    env = dict(os.environ, OMP_NUM_THREADS="1", NVIDIA_TF32_OVERRIDE="0",
               TF_VAR_password="secret")
    p = subprocess.run([sys.executable, "-c", ONNX_SCRIPT, TOOLS, model, rec], env=env,
                       capture_output=True, text=True)
    check(p.returncode == 0, f"capture_onnx: exit {p.returncode}: {p.stderr.strip()[-500:]}")
    if p.returncode != 0:
        return
    out = json.loads(p.stdout.strip().splitlines()[-1])
    check(out["torch_imported"] is False, "capture_onnx imported torch")
    rec_env = read_env(rec)
    check_schema(rec_env, "capture_onnx.py", ORT_FLAGS)
    fl, ev, cap = rec_env["flags"], rec_env["environment"], rec_env["capture"]
    check(fl.get("onnxruntime.graph_optimization_level") == "ORT_DISABLE_ALL", f"flags {fl}")
    check(fl.get("onnxruntime.execution_provider") == "CPUExecutionProvider", f"flags {fl}")
    check(ev.get("OMP_NUM_THREADS") == "1" and ev.get("NVIDIA_TF32_OVERRIDE") == "0",
          f"environment {ev}")
    check("TF_VAR_password" not in ev, "environment: a TF_VAR_ was recorded")
    for k in ("onnx", "onnxruntime"):
        check(k in rec_env["libraries"], f"libraries lacks '{k}'")
    with open(model, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    m = cap.get("model", {})
    check(m.get("sha256") == sha and m.get("file") == "tiny.onnx", f"capture.model {m}")
    check(m.get("opset_import") == {"ai.onnx": 13} and m.get("ir_version") == 8, f"capture.model {m}")
    check(m.get("producer") == "test_env_record", f"capture.model.producer {m.get('producer')!r}")
    check(cap.get("activations") is True and cap.get("framework") == "onnxruntime", f"capture {cap}")
    check(rec_env["runtime"]["cuda_runtime"] is None and rec_env["runtime"]["cudnn"] is None,
          "runtime: capture_onnx has no CUDA runtime or cuDNN")
    inspect(divscope, rec, model, "capture_onnx")
    done(f"capture_onnx ({len(rec_env['libraries'])} libraries, "
         f"{len(rec_env['environment'])} variables)", before)


def main(argv):
    if len(argv) != 3:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    divscope, work = argv[1], argv[2]
    os.makedirs(work, exist_ok=True)
    part_env_record(work)
    part_torch(divscope, work)
    part_onnx(divscope, work)
    if FAILED:
        print(f"test_env_record: {len(FAILED)} check(s) failed", file=sys.stderr)
        return 1
    print("test_env_record: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
