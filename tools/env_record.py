"""env_record -- the environment record of a capturing machine (docs/format.md, capture_environment).

One builder for both capture tools: capture_torch.py passes PyTorch's CUDA view and numerics
switches, capture_onnx.py its ONNX Runtime settings; this module adds what any Python process can
see (host, CPU, OS, CUDA driver, installed ML libraries, environment variables). It imports
nothing beyond the standard library, so capture_onnx.py stays free of torch.

    record = env_record.build("capture_torch.py", flags={...}, cuda={...}, capture={...})

The record (version 1; every group present, a value that cannot be known is null):
    {"divscope_env": 1, "producer", "host", "hardware", "runtime", "libraries", "flags",
     "environment", "capture"}
`divscope env-diff` compares it field by field with the replaying machine's record.
"""
import ctypes
import importlib.metadata
import os
import platform
import re
import socket
import sys

VERSION = 1

# CPU features that change which kernels numerics libraries pick (vector width, FMA contraction,
# half/bfloat16 conversions and dot products), in /proc/cpuinfo's spelling.
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")

# Environment variables that change numerics, determinism or threading: every set one whose name
# starts with one of these, and these exact names (already covered; listed so that they are kept
# whatever the prefixes become).
ENV_PREFIXES = ("NVIDIA_TF32", "CUBLAS_", "CUBLASLT_", "CUDNN_", "CUDA_", "NCCL_ALGO", "OMP_",
                "MKL_", "OPENBLAS_", "KMP_", "TORCH_", "PYTORCH_", "ORT_", "TF_", "XLA_",
                "DIVSCOPE_")
ENV_EXACT = ("NVIDIA_TF32_OVERRIDE", "CUBLAS_WORKSPACE_CONFIG", "CUDA_LAUNCH_BLOCKING",
             "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")
# Never recorded, whatever the prefix (a recording is a file users send around): names that say
# they hold a secret, and Terraform's TF_ variables (TF_TOKEN_<host> holds API tokens, TF_VAR_*
# anything), which share TensorFlow's prefix.
ENV_NEVER = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE|AUTH|^TF_(VAR|TOKEN|CLI)_")

# Installed distributions whose versions matter for numerics (normalized names, PEP 503:
# lowercase, runs of '-', '_', '.' as one '-'): frameworks and their compilers, array and BLAS
# libraries, model libraries with their own kernels, ONNX, TensorRT, JAX, TensorFlow.
LIBRARIES = frozenset((
    # PyTorch and its compiler / kernels
    "torch", "torchvision", "torchaudio", "torchtext", "triton", "pytorch-triton",
    "pytorch-triton-rocm", "torch-tensorrt", "xformers", "flash-attn", "bitsandbytes", "apex",
    "deepspeed", "functorch",
    # arrays, linear algebra, BLAS / threading runtimes
    "numpy", "scipy", "h5py", "ml-dtypes", "numba", "llvmlite", "cupy", "opt-einsum", "mkl",
    "mkl-service", "intel-openmp", "tbb", "scipy-openblas32", "scipy-openblas64",
    # model libraries
    "transformers", "tokenizers", "safetensors", "accelerate", "optimum", "peft", "timm",
    # ONNX
    "onnx", "onnxruntime", "onnxruntime-gpu", "onnxruntime-training", "onnxruntime-extensions",
    "onnxscript", "onnxconverter-common", "onnxsim", "protobuf",
    # TensorRT
    "tensorrt", "tensorrt-lean", "tensorrt-dispatch", "polygraphy",
    # JAX
    "jax", "jaxlib", "flax",
    # TensorFlow
    "tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tf-keras", "keras",
    # CUDA from Python
    "cuda-python", "cuda-bindings", "nvidia-ml-py", "pynvml",
))
# ... and every distribution whose normalized name starts with one of these: NVIDIA's CUDA wheels
# (nvidia-cublas-cu12, nvidia-cudnn-cu12, nvidia-cuda-runtime-cu12, nvidia-nccl-cu12, ...), CuPy
# builds, TensorRT's per-CUDA packages, JAX's CUDA plugins.
LIBRARY_PREFIXES = ("nvidia-", "cupy-cuda", "tensorrt-cu", "jax-cuda")

# The CUDA driver library (a test may point this at a stand-in).
LIBCUDA = "libcuda.so.1"

# CUdevice_attribute values (cuda.h)
_CU_CLOCK_RATE = 13            # kHz
_CU_MULTIPROCESSOR_COUNT = 16
_CU_ECC_ENABLED = 32
_CU_MEMORY_CLOCK_RATE = 36     # kHz
_CU_CC_MAJOR = 75
_CU_CC_MINOR = 76


def _normalize(name):
    n = re.sub(r"[-_.]+", "-", name).lower()
    return re.sub(r"-debian-.*$", "", n)   # Debian's h5py: "h5py.-debian-h5py-serial"


def libraries():
    """{normalized name: version} of the installed distributions in LIBRARIES / LIBRARY_PREFIXES,
    the one Python would import where several are installed (first on sys.path). A package
    already imported without installed metadata is taken from its __version__."""
    out = {}
    for d in importlib.metadata.distributions():
        try:
            name, version = d.metadata["Name"], d.version
        except Exception:
            continue
        if not name or not version:
            continue
        n = _normalize(name)
        if n in out or not (n in LIBRARIES or n.startswith(LIBRARY_PREFIXES)):
            continue
        out[n] = str(version)
    for mod in ("torch", "numpy", "h5py", "onnx", "onnxruntime", "scipy", "transformers"):
        v = getattr(sys.modules.get(mod), "__version__", None)
        if mod not in out and isinstance(v, str):
            out[mod] = v
    return dict(sorted(out.items()))


def environment_variables(environ=None):
    """{NAME: value} of the set variables that change numerics, determinism or threading (none
    whose name matches ENV_NEVER)."""
    environ = os.environ if environ is None else environ
    return {k: environ[k] for k in sorted(environ)
            if (k.startswith(ENV_PREFIXES) or k in ENV_EXACT) and not ENV_NEVER.search(k.upper())}


def _cpuinfo():
    """(model name, [CPU_FLAGS present]) from /proc/cpuinfo; (None, None) when unreadable."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None, None
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip() or None
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, [f for f in CPU_FLAGS if f in flags]


def _distribution():
    for p in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                for line in f:
                    k, _, v = line.strip().partition("=")
                    if k == "PRETTY_NAME":
                        v = v.strip()
                        if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                            v = v[1:-1]
                        return v or None
        except OSError:
            continue
    return None


def _version_str(v):
    """CUDA's integer versions (12040) as "12.4", as divscope's own record writes them."""
    return f"{v // 1000}.{(v % 1000) // 10}"


def _libcuda():
    try:
        return ctypes.CDLL(LIBCUDA)
    except OSError:
        return None


def cuda_driver_version():
    """The CUDA driver API version ("12.4") of libcuda, or None without a driver."""
    lib = _libcuda()
    if lib is None:
        return None
    v = ctypes.c_int(0)
    try:
        if lib.cuDriverGetVersion(ctypes.byref(v)) != 0 or v.value <= 0:
            return None
    except AttributeError:
        return None
    return _version_str(v.value)


def driver_gpus():
    """The visible GPUs as the CUDA driver API reports them (honours CUDA_VISIBLE_DEVICES, like
    the CUDA runtime), in the record's form; None when there is no usable driver (no library,
    cuInit fails: no device, driver too old, ...)."""
    lib = _libcuda()
    if lib is None:
        return None
    try:
        if lib.cuInit(ctypes.c_uint(0)) != 0:
            return None
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return None
        gpus = []
        for i in range(count.value):
            dev = ctypes.c_int(0)
            if lib.cuDeviceGet(ctypes.byref(dev), ctypes.c_int(i)) != 0:
                return None

            def attr(a, dev=dev):
                v = ctypes.c_int(0)
                ok = lib.cuDeviceGetAttribute(ctypes.byref(v), ctypes.c_int(a), dev) == 0
                return v.value if ok else None

            buf = ctypes.create_string_buffer(256)
            name = (buf.value.decode("utf-8", "replace")
                    if lib.cuDeviceGetName(buf, ctypes.c_int(255), dev) == 0 else None)
            mem = ctypes.c_size_t(0)
            memory = mem.value if lib.cuDeviceTotalMem_v2(ctypes.byref(mem), dev) == 0 else None
            major, minor = attr(_CU_CC_MAJOR), attr(_CU_CC_MINOR)
            clock, mclock, ecc = attr(_CU_CLOCK_RATE), attr(_CU_MEMORY_CLOCK_RATE), attr(_CU_ECC_ENABLED)
            gpus.append(gpu(i, name,
                            f"{major}.{minor}" if major is not None and minor is not None else None,
                            attr(_CU_MULTIPROCESSOR_COUNT), memory,
                            clock // 1000 if clock else None, mclock // 1000 if mclock else None,
                            bool(ecc) if ecc is not None else None))
        return gpus
    except (AttributeError, OSError, ctypes.ArgumentError):
        return None


def gpu(index, name, compute_capability, multiprocessors, memory_bytes, clock_mhz=None,
        memory_clock_mhz=None, ecc=None):
    """One entry of hardware.gpus. `mig`: whether the device is a MIG instance, which CUDA names
    "... MIG <profile>" (with MIG on, only instances are visible); None when the name is not
    known."""
    return {"index": int(index), "name": name, "compute_capability": compute_capability,
            "multiprocessors": None if multiprocessors is None else int(multiprocessors),
            "memory_bytes": None if memory_bytes is None else int(memory_bytes),
            "clock_mhz": clock_mhz, "memory_clock_mhz": memory_clock_mhz, "ecc": ecc,
            "mig": None if name is None else "MIG" in name}


def merge_driver_gpus(gpus, driver=None):
    """Fills the clocks and ECC that a framework does not report (torch's device properties
    have neither) from the driver's view of the same device: same index and name."""
    driver = driver_gpus() if driver is None else driver
    by_index = {g["index"]: g for g in driver or ()}
    out = []
    for g in gpus:
        g = dict(g)
        d = by_index.get(g["index"])
        if d is not None and d["name"] == g["name"]:
            for k in ("clock_mhz", "memory_clock_mhz", "ecc"):
                if g.get(k) is None:
                    g[k] = d[k]
        out.append(g)
    return out


def build(producer, flags, cuda=None, capture=None):
    """The record. `flags`: the framework's numerics switches ({name: value}). `cuda`: the
    framework's own CUDA view, {"available", "runtime", "cudnn", "gpus"} (gpus made with gpu());
    None for a framework that does not use CUDA: then the machine's as the driver reports it,
    no runtime, no cuDNN. `capture`: informational, specific to the capture."""
    cpu, cpu_flags = _cpuinfo()
    if cuda is None:
        gpus = driver_gpus() or []
        cuda = {"available": bool(gpus), "runtime": None, "cudnn": None, "gpus": gpus}
    else:
        cuda = dict(cuda)
        if cuda.get("gpus"):
            cuda["gpus"] = merge_driver_gpus(cuda["gpus"])
    try:
        hostname = socket.gethostname() or platform.node() or None
    except OSError:
        hostname = platform.node() or None
    return {
        "divscope_env": VERSION,
        "producer": producer,
        "host": {"hostname": hostname},
        "hardware": {"cpu": cpu, "cpu_flags": cpu_flags, "cores": os.cpu_count(),
                     "arch": platform.machine() or None, "gpus": list(cuda.get("gpus") or [])},
        "runtime": {"os": (platform.system() + " " + platform.release()).strip() or None,
                    "distribution": _distribution(),
                    "cuda_available": bool(cuda.get("available")),
                    "cuda_driver": cuda_driver_version(),
                    "cuda_runtime": cuda.get("runtime"),
                    "cudnn": cuda.get("cudnn"),
                    "python": platform.python_version()},
        "libraries": libraries(),
        "flags": dict(flags),
        "environment": environment_variables(),
        "capture": dict(capture or {}),
    }
