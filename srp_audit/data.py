"""Samples for certification and training: `.npz` files with `x` (images or features) and `y` (labels).

Images may be uint8 (0–255, mapped linearly onto the input domain) or floats already inside the domain.
Every problem is reported as a `DataError` saying what is wrong and how to fix it.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass

import numpy as np
import torch

from .errors import DataError, UsageError

_F32_MAX = float(np.finfo(np.float32).max)  # samples are kept in float32


@dataclass
class Samples:
    x: torch.Tensor  # (N, *sample_shape), float32, inside the domain
    y: torch.Tensor  # (N,), int64
    source: str

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, idx: np.ndarray | slice) -> "Samples":
        return Samples(self.x[idx], self.y[idx], self.source)


def samples_path_for(model_path: str) -> str:
    """The default samples file beside a model: `name.onnx` → `name.samples.npz`."""
    stem, _ = os.path.splitext(model_path)
    return stem + ".samples.npz"


def load_npz(path: str) -> dict[str, np.ndarray]:
    """Read an .npz without ever unpickling; errors say why the file is unusable."""
    if not os.path.exists(path):
        raise DataError(f"data file '{path}' does not exist")
    if not zipfile.is_zipfile(path):
        raise DataError(f"'{path}' is not a readable .npz file (expected a zip archive written by np.savez)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        odd = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray))
        if odd:  # a member not in .npy format comes back as raw bytes
            raise DataError(f"'{path}' member '{odd[0]}' is not a .npy array; save the arrays with np.savez(path, x=..., y=...)")
        return arrays
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(
                f"'{path}' stores Python objects that would need unpickling, which is unsafe and refused; "
                "save plain numeric arrays with np.savez(path, x=..., y=...)"
            ) from None
        raise DataError(f"'{path}' is not a readable .npz file ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"'{path}' is not a readable .npz file ({type(e).__name__}: {e})") from None
    except MemoryError:  # an array header claiming more than the memory holds
        raise DataError(f"'{path}' holds an array larger than this machine's memory; check the file") from None


def peek_sample_shape(path: str) -> tuple[int, ...] | None:
    """The per-sample shape of `x` in an .npz, read from the array header alone (None when it cannot be read;
    `load_samples` reports the problem properly later)."""
    try:
        with zipfile.ZipFile(path) as z, z.open("x.npy") as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape = read(f)[0]
    except Exception:
        return None
    return tuple(int(d) for d in shape[1:]) if len(shape) >= 2 else None


def _fit_shape(x: np.ndarray, shape: tuple[int, ...], path: str) -> np.ndarray:
    """Reshape samples to the model's input shape when that only adds/removes size-1 axes or flattens."""
    sample = tuple(x.shape[1:])
    if sample == shape:
        return x
    if math.prod(sample) == math.prod(shape):
        def squeeze(s: tuple[int, ...]) -> tuple[int, ...]:
            return tuple(d for d in s if d != 1)

        flat_model = len(squeeze(shape)) <= 1
        if squeeze(sample) == squeeze(shape) or flat_model:
            return x.reshape((x.shape[0],) + shape)
        if len(sample) == 3 and len(shape) == 3 and sample == (shape[1], shape[2], shape[0]):
            raise DataError(
                f"samples in '{path}' have shape {sample} (channels last) but the model expects {shape} "
                "(channels first); store x.transpose(0, 3, 1, 2)"
            )
    raise DataError(f"samples in '{path}' have shape {sample} but the model expects {shape}")


def _labels(y: np.ndarray, n: int, path: str, num_classes: int) -> np.ndarray:
    """`y` checked as n class indices of the model (int64)."""
    if y.ndim == 2 and y.shape[1] == num_classes and set(np.unique(y)) <= {0, 1}:
        raise DataError(f"labels in '{path}' look one-hot; store class indices instead (y.argmax(axis=1))")
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"'{path}': y must be a vector of {n} labels, got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)))):
        raise DataError(f"labels in '{path}' must be integers, got dtype {y.dtype}")
    if (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.unsignedinteger)) and np.any(np.abs(y) >= 2**62):
        raise DataError(f"labels in '{path}' must be class indices; a label of {np.abs(y).max()} is not")  # int64 would wrap
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"label {y[i]} of sample {i} in '{path}' is outside the model's {num_classes} classes (0–{num_classes - 1})"
        )
    return y


def prepare_samples(
    arrays: dict[str, np.ndarray],
    path: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    domain: tuple[float, float] = (0.0, 1.0),
) -> Samples:
    """Validate `x`/`y` against the model and the domain; uint8 images are scaled onto the domain."""
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(f"'{path}' lacks array(s) {missing}; it holds {sorted(arrays)} (expected 'x' and 'y')")
    x, y = arrays["x"], arrays["y"]
    if num_classes < 2:
        raise UsageError(f"the model has {num_classes} output; certifying a prediction compares class scores, so it needs "
                         "at least 2 outputs (export a one-logit binary classifier with both scores [-z, z]), or state a "
                         "property about the output with `srp-audit verify MODEL SPEC.vnnlib`")
    if x.ndim == 0 or y.ndim == 0:
        raise DataError(f"'{path}': x and y must be arrays with one entry per sample, got shapes {x.shape} and {y.shape}")
    if x.shape[0] == 0:
        raise DataError(f"'{path}' holds no samples")
    if x.size == 0:
        raise DataError(f"'{path}': the samples in x have no values (shape {x.shape})")
    y = _labels(y, x.shape[0], path, num_classes)
    lo, hi = domain
    if x.dtype == np.uint8:
        with np.errstate(over="ignore", invalid="ignore"):
            xf = lo + (hi - lo) * (x.astype(np.float32) / np.float32(255.0))
        if not np.all(np.isfinite(xf)):
            raise DataError(f"'{path}' holds uint8 pixels, scaled into the input domain [{lo:g}, {hi:g}], which passes "
                            f"float32's range (±{_F32_MAX:.3g}) that samples are kept in; give a --domain within it")
    elif np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer):
        with np.errstate(over="ignore"):
            xf = x.astype(np.float32)
        if not np.all(np.isfinite(xf)):
            i = int(np.argmax(~np.isfinite(xf).reshape(xf.shape[0], -1).all(axis=1)))
            if np.all(np.isfinite(x[i])):
                raise DataError(f"sample {i} in '{path}' holds values beyond float32's range (±{_F32_MAX:.3g}) that "
                                "samples are kept in; rescale the data")
            raise DataError(f"sample {i} in '{path}' contains NaN or inf; remove or repair it")
        if xf.min() < lo or xf.max() > hi:
            hint = " (it looks like 0–255 pixels: store uint8 or divide by 255)" if xf.max() > 1.5 and hi <= 1 else ""
            raise DataError(
                f"x in '{path}' ranges over [{xf.min():g}, {xf.max():g}], outside the input domain [{lo:g}, {hi:g}]"
                f"{hint}; rescale it or pass --domain LO,HI"
            )
    else:
        raise DataError(f"x in '{path}' has unsupported dtype {x.dtype}; use uint8 images or floats")
    xf = _fit_shape(xf, tuple(input_shape), path)
    return Samples(torch.from_numpy(np.ascontiguousarray(xf)), torch.from_numpy(y), path)


def load_samples(
    path: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    domain: tuple[float, float] = (0.0, 1.0),
    limit: int | None = None,
) -> Samples:
    """Load and validate an .npz of samples for a model with the given input shape and class count."""
    arrays = load_npz(path)
    if limit is not None and "x" in arrays and "y" in arrays:
        x, y = arrays["x"], arrays["y"]
        if x.ndim and y.ndim and x.shape[0] != y.shape[0]:  # checked on the whole file, not on the first N
            raise DataError(f"'{path}': x has {x.shape[0]} samples but y has {y.shape[0]} labels")
        arrays = {"x": x[:limit], "y": y[:limit]}
    return prepare_samples(arrays, path, input_shape, num_classes, domain)
