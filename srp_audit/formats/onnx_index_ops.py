"""ONNX ops that only reorder or pick entries — DepthToSpace, SpaceToDepth, GatherElements, GatherND — and
CumSum, a running sum. Each index op has an exact numpy folder (the ONNX definition, applied to constants); on
the model's data the pick handler of `onnx_shape_ops` runs the same folder on entry numbers and gives one Select,
so no new bound rule is needed.
CumSum on data is a Dense layer with a 0/1 triangular matrix along its axis (the sum is Dense's rule)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..ops.affine import Dense
from ..ops.shape import Transpose
from .context import Tensor, Value
from .onnx_const import folds
from .onnx_context import OnnxContext
from .onnx_ops import handles


def _blocksize(attrs: dict) -> int:
    k = int(attrs["blocksize"])
    if k < 1:
        raise ValueError(f"blocksize {k} (it must be ≥ 1)")
    return k


@folds("DepthToSpace")
def _depth_to_space(inputs, attrs, opset):
    x = np.asarray(inputs[0])
    b, c, h, w = x.shape
    k = _blocksize(attrs)
    if c % (k * k):
        raise ValueError(f"DepthToSpace: {c} channels are not a multiple of blocksize² = {k * k}")
    if attrs.get("mode", b"DCR") in (b"CRD", "CRD"):
        t = x.reshape(b, c // (k * k), k, k, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        t = x.reshape(b, k, k, c // (k * k), h, w).transpose(0, 3, 4, 1, 5, 2)
    return [t.reshape(b, c // (k * k), h * k, w * k)]


@folds("SpaceToDepth")
def _space_to_depth(inputs, attrs, opset):
    x = np.asarray(inputs[0])
    b, c, h, w = x.shape
    k = _blocksize(attrs)
    if h % k or w % k:
        raise ValueError(f"SpaceToDepth: height {h} and width {w} must be multiples of blocksize {k}")
    t = x.reshape(b, c, h // k, k, w // k, k).transpose(0, 3, 5, 1, 2, 4)
    return [t.reshape(b, c * k * k, h // k, w // k)]


def _indices(idx: Any, size: int, what: str) -> np.ndarray:
    """Integer indices with negatives counted from the end; out-of-range ones refused (ONNX leaves them undefined)."""
    idx = np.asarray(idx)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{what} indices must be integers")
    if idx.size and (idx.min() < -size or idx.max() >= size):
        raise ValueError(f"{what} indices outside [-{size}, {size - 1}]")
    return np.where(idx < 0, idx + size, idx).astype(np.int64)


@folds("GatherElements")
def _gather_elements(inputs, attrs, opset):
    """out[…, i, …] = x[…, idx[…, i, …], …] over the index's own shape (no broadcasting: an index with 1 where the
    data has 3 reads only the first entry of that axis, as onnxruntime does)."""
    x, idx = np.asarray(inputs[0]), np.asarray(inputs[1])
    axis = int(attrs.get("axis", 0)) % x.ndim
    if idx.ndim != x.ndim or any(i > d for k, (i, d) in enumerate(zip(idx.shape, x.shape)) if k != axis):
        raise ValueError(f"GatherElements: indices of shape {idx.shape} for data of shape {x.shape}")
    part = x[tuple(slice(None) if k == axis else slice(0, i) for k, i in enumerate(idx.shape))]
    return [np.take_along_axis(part, _indices(idx, x.shape[axis], "GatherElements"), axis=axis)]


@folds("GatherND")
def _gather_nd(inputs, attrs, opset):
    x, idx = np.asarray(inputs[0]), np.asarray(inputs[1])
    bd = int(attrs.get("batch_dims", 0))
    depth = idx.shape[-1]
    if bd + depth > x.ndim:
        raise ValueError(f"GatherND: index depth {depth} past the data's rank {x.ndim}")
    lead = x.shape[:bd]
    xs = x.reshape((-1,) + x.shape[bd:])
    ids = idx.reshape((xs.shape[0], -1, depth)) if bd else idx.reshape((1, -1, depth))
    out = []
    for i in range(xs.shape[0]):
        cols = tuple(_indices(ids[i if bd else 0][:, j], xs.shape[1 + j], "GatherND") for j in range(depth))
        out.append(xs[i][cols])
    shape = tuple(lead) + tuple(idx.shape[bd:-1]) + tuple(x.shape[bd + depth:])
    return [np.stack(out).reshape(shape)]


def _cumsum_matrix(n: int, exclusive: bool, reverse: bool) -> np.ndarray:
    """W with (W·v)_j = Σ v_i over i ≤ j (< j when exclusive; ≥ / > when reverse)."""
    i, j = np.meshgrid(np.arange(n), np.arange(n))  # j: the output (row), i: the input (column)
    keep = (i >= j) if reverse else (i <= j)
    if exclusive:
        keep &= i != j
    return keep.astype(np.float64)


@folds("CumSum")
def _cumsum(inputs, attrs, opset):
    x = np.asarray(inputs[0])
    axis = int(np.asarray(inputs[1]).reshape(-1)[0]) % x.ndim
    w = _cumsum_matrix(x.shape[axis], bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0)))
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError("CumSum of float constants would round each partial sum; only integer ones are folded")
    moved = np.moveaxis(x, axis, -1)
    return [np.moveaxis((moved.astype(np.int64) @ w.T.astype(np.int64)).astype(x.dtype), -1, axis)]


@handles("CumSum")
def _cumsum_data(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    """A running sum along one sample axis: moved last, a Dense layer with a 0/1 triangular matrix, moved back."""
    x = ctx.tensor(node.input[0])
    rank = len(ctx.onnx_shape(x))
    axis = int(np.asarray(ctx.const(node.input[1], "axis")).reshape(-1)[0])
    axis = axis + rank if axis < 0 else axis
    if ctx.batched and axis == 0:
        raise ctx.unsupported("CumSum along the batch axis mixes samples")
    sample_axis = ctx.sample_axis(x, axis)
    last = len(x.shape) - 1
    n = x.shape[sample_axis]
    w = torch.from_numpy(_cumsum_matrix(n, bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0))))
    dense = Dense(w.to(torch.float32))  # entries 0 and 1: exact in every float type
    if sample_axis == last:
        return [ctx.emit(dense, [x], "cumsum")]
    perm = tuple(a for a in range(len(x.shape)) if a != sample_axis) + (sample_axis,)
    back = tuple(int(i) for i in np.argsort(perm))
    moved = ctx.emit(Transpose(perm), [x])
    summed: Tensor = ctx.emit(dense, [moved], "cumsum")
    return [ctx.emit(Transpose(back), [summed])]
