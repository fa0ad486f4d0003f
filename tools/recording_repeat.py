"""Long recordings from a short one, for tests and benchmarks of long runs (the journal, atomic
outputs): batch 0 of a recording repeated, optionally with seeded noise and NaN samples.

    repeat_first_batch(src, dst, batches, noise=0.05, seed=7, nan_batches=(3, 250))
"""
import h5py
import numpy as np


def repeat_first_batch(src_path, dst_path, batches, noise=0.0, seed=7, nan_batches=()):
    """Writes `dst_path`: the root attributes of `src_path` and `batches` copies of its batch 0.
    Float inputs of each copy are scaled by (1 + noise * N(0, 1)) elementwise (seeded); in the
    batches listed in `nan_batches`, sample 1 of every float input gets a NaN at element 5."""
    rng = np.random.default_rng(seed)
    with h5py.File(src_path, "r") as src, h5py.File(dst_path, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        first = src["batches"]["000000"]
        g = dst.create_group("batches")
        for i in range(batches):
            b = g.create_group("%06d" % i)
            for name in first:
                if not isinstance(first[name], h5py.Dataset):
                    continue
                x = first[name][()]
                if x.dtype.kind == "f" and noise:
                    x = (x * (1 + noise * rng.standard_normal(x.shape))).astype(x.dtype)
                if x.dtype.kind == "f" and i in nan_batches:
                    x[1].flat[5] = np.nan
                b[name] = x
