"""Resize / Upsample (nearest and bilinear) as linear maps: per spatial axis, a constant interpolation matrix
applied as a Dense over that axis (transposed into last place and back). Nearest is a 0/1 matrix, linear has
two weights per row; both are exact linear maps of the data, so every bound method handles them as Dense.

ONNX: the matrices follow the operator's coordinate transformation and nearest-rounding modes (opset 10–18;
cubic, antialias and crop-and-resize are refused). ATen: they are computed by running torch's own 1-D
upsampling on the identity, so they match torch by construction.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import ops
from .context import LoaderContext, Tensor

_COORD = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def onnx_matrix(n_in: int, n_out: int, scale: float, mode: str, coord: str, nearest: str) -> np.ndarray:
    """(n_out, n_in) interpolation weights of one axis, following the ONNX Resize specification."""
    i = np.arange(n_out, dtype=np.float64)
    if coord == "half_pixel":
        x = (i + 0.5) / scale - 0.5
    elif coord == "pytorch_half_pixel":
        x = (i + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(i)
    elif coord == "align_corners":
        x = i * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros_like(i)
    else:  # asymmetric
        x = i / scale
    m = np.zeros((n_out, n_in))
    if mode == "nearest":
        frac = x - np.floor(x)
        idx = {"floor": np.floor(x), "ceil": np.ceil(x),
               "round_prefer_floor": np.where(frac == 0.5, np.floor(x), np.round(x)),
               "round_prefer_ceil": np.where(frac == 0.5, np.ceil(x), np.round(x))}[nearest]
        m[np.arange(n_out), np.clip(idx, 0, n_in - 1).astype(int)] = 1.0
        return m
    x = np.clip(x, 0, n_in - 1)
    x0 = np.floor(x).astype(int)
    x1 = np.minimum(x0 + 1, n_in - 1)
    w1 = x - x0
    np.add.at(m, (np.arange(n_out), x0), 1 - w1)
    np.add.at(m, (np.arange(n_out), x1), w1)
    return m


def torch_matrix(n_in: int, n_out: int, mode: str, align_corners: bool | None, scale: float | None) -> np.ndarray:
    """(n_out, n_in) weights of torch's 1-D upsampling with the same arguments, read off the identity."""
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in)
    size, scales = ([n_out], None) if scale is None else (None, [scale])  # torch takes one or the other
    if mode == "nearest":
        y = torch.ops.aten.upsample_nearest1d.vec(eye, size, scales)
    else:
        y = torch.ops.aten.upsample_linear1d.vec(eye, size, bool(align_corners), scales)
    if y.shape[-1] != n_out:
        raise ValueError(f"upsampling {n_in} by {scale} gives {y.shape[-1]} entries, not {n_out}")
    return y.reshape(n_in, n_out).T.numpy()


def apply_axes(ctx: LoaderContext, x: Tensor, matrices: dict[int, np.ndarray]) -> Tensor:
    """Apply each (n_out, n_in) matrix along its sample axis (identity matrices are skipped)."""
    rank = len(x.shape)
    for axis, m in sorted(matrices.items()):
        if m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(m.shape[0])):
            continue
        last = rank - 1
        perm = list(range(rank))
        perm[axis], perm[last] = perm[last], perm[axis]
        t = x if axis == last else ctx.emit(ops.Transpose(tuple(perm)), [x])
        t = ctx.emit(ops.Dense(torch.from_numpy(m).to(torch.float32)), [t], "resize")
        x = t if axis == last else ctx.emit(ops.Transpose(tuple(perm)), [t])
    return x


def onnx_resize(ctx: LoaderContext, x: Tensor, full_in: list[int], out_sizes: list[int], scales: list[float],
                mode: str, coord: str, nearest: str) -> Tensor:
    """Resize an (N, C, …) tensor whose framework shape is `full_in` to `out_sizes` (framework, batch included)."""
    if mode not in ("nearest", "linear"):
        raise ctx.unsupported(f"mode {mode!r} (nearest and linear are supported)")
    if coord not in _COORD:
        raise ctx.unsupported(f"coordinate_transformation_mode {coord!r} (supported: {', '.join(_COORD)})")
    if nearest not in _NEAREST:
        raise ctx.unsupported(f"nearest_mode {nearest!r}")
    offset = len(full_in) - len(x.shape)  # 1 when the batch axis is in full_in
    matrices = {}
    for axis, (n_in, n_out, s) in enumerate(zip(full_in, out_sizes, scales)):
        if n_in == n_out and s == 1.0:
            continue
        if axis < offset or (ctx.batched and axis == 0):
            raise ctx.unsupported("resizing the batch axis")
        matrices[axis - offset] = onnx_matrix(n_in, n_out, s, mode, coord, nearest)
    return apply_axes(ctx, x, matrices)


def out_size(n_in: int, scale: float) -> int:
    return int(math.floor(n_in * scale + 1e-9))

