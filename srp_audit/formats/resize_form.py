"""Resize / Upsample (nearest and bilinear) as linear maps: per spatial axis, a constant interpolation matrix
applied as a Dense over that axis (transposed into last place and back). Nearest is a 0/1 matrix, linear has
two weights per row; both are exact linear maps of the data, so every bound method handles them as Dense.

ONNX: the matrices follow the operator's coordinate transformation and nearest-rounding modes (opset 10–18;
cubic, antialias and crop-and-resize are refused). ATen: the same rational weights for the convention torch's
kernel follows, checked against torch's own 1-D upsampling run on the identity.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from ..ir.reading import Tensor, aten_tensor
from ..kernel.enclosure import Enclosed
from ..ops.affine import Dense, ElementwiseAffine
from ..ops.shape import Transpose
from .aten_context import _AtenCtx, aten
from .context import LoaderContext, Value
from .onnx_context import OnnxContext
from .onnx_ops import handles

_COORD = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def onnx_matrix(n_in: int, n_out: int, scale: Fraction, mode: str, coord: str, nearest: str) -> np.ndarray:
    """(n_out, n_in) interpolation weights of one axis as exact rationals (an object array of `Fraction`), following
    the ONNX Resize specification in exact arithmetic: the source coordinate of an output index is a rational of
    the stored scale, never a float64 rounding of it (which can also move a nearest-neighbour tie)."""
    half = Fraction(1, 2)
    m = np.full((n_out, n_in), Fraction(0), dtype=object)
    for i in range(n_out):
        if coord == "half_pixel" or (coord == "pytorch_half_pixel" and n_out > 1):
            x = (i + half) / scale - half
        elif coord in ("pytorch_half_pixel", "align_corners") and n_out <= 1:
            x = Fraction(0)
        elif coord == "align_corners":
            x = Fraction(i * (n_in - 1), n_out - 1)
        else:  # asymmetric
            x = i / scale
        if mode == "nearest":
            fl, frac = math.floor(x), x - math.floor(x)
            idx = {"floor": fl, "ceil": math.ceil(x),
                   "round_prefer_floor": fl if frac <= half else fl + 1,
                   "round_prefer_ceil": fl if frac < half else fl + 1}[nearest]
            m[i, min(max(idx, 0), n_in - 1)] = Fraction(1)
            continue
        x = min(max(x, Fraction(0)), Fraction(n_in - 1))
        x0 = math.floor(x)
        x1 = min(x0 + 1, n_in - 1)
        w1 = x - x0
        m[i, x0] += 1 - w1
        m[i, x1] += w1
    return m


def torch_matrix(n_in: int, n_out: int, mode: str, align_corners: bool | None, scale: float | None) -> np.ndarray:
    """(n_out, n_in) weights of torch's 1-D upsampling with the same arguments, as exact rationals: the ONNX
    convention torch's kernel implements (asymmetric floor for nearest; align_corners, or pytorch_half_pixel with
    the given scale factor or out/in), checked against torch's own float64 run on the identity."""
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in)
    size, scales = ([n_out], None) if scale is None else (None, [scale])  # torch takes one or the other
    if mode == "nearest":
        y = torch.ops.aten.upsample_nearest1d.vec(eye, size, scales)
    else:
        y = torch.ops.aten.upsample_linear1d.vec(eye, size, bool(align_corners), scales)
    if y.shape[-1] != n_out:
        raise ValueError(f"upsampling {n_in} by {scale} gives {y.shape[-1]} entries, not {n_out}")
    ratio = Fraction(scale) if scale is not None else Fraction(n_out, n_in)
    if mode == "nearest":
        exact = onnx_matrix(n_in, n_out, ratio, "nearest", "asymmetric", "floor")
    else:
        exact = onnx_matrix(n_in, n_out, ratio, "linear", "align_corners" if align_corners else "pytorch_half_pixel", "floor")
    ours = exact.astype(np.float64)
    if not np.allclose(ours, y.reshape(n_in, n_out).T.numpy(), rtol=0, atol=1e-9):
        raise ValueError(f"torch's {mode} upsampling of {n_in} to {n_out} follows no convention srp-audit knows")
    return exact


def apply_axes(ctx: LoaderContext, x: Tensor, matrices: dict[int, np.ndarray]) -> Tensor:
    """Apply each (n_out, n_in) matrix (floats, or exact `Fraction`s) along its sample axis; identity matrices are
    skipped. The weights are stored exactly: as float32 or float64 where those hold them, else as integers over
    a common denominator D (a Dense of the numerators, then a division by D that the node encloses rigorously)."""
    rank = len(x.shape)
    for axis, m in sorted(matrices.items()):
        exact = np.vectorize(Fraction, otypes=[object])(m)
        if exact.shape[0] == exact.shape[1] and all(exact[i, j] == (i == j) for i in range(exact.shape[0]) for j in range(exact.shape[1])):
            continue
        last = rank - 1
        perm = list(range(rank))
        perm[axis], perm[last] = perm[last], perm[axis]
        t = x if axis == last else ctx.emit(Transpose(tuple(perm)), [x])
        weights, divisor = _stored_weights(exact)
        t = ctx.emit(Dense(weights), [t], "resize")
        if divisor != 1:
            t = ctx.emit(ElementwiseAffine(Enclosed.exact(float(divisor)).reciprocal(), 0.0), [t], "resize")
        x = t if axis == last else ctx.emit(Transpose(tuple(perm)), [t])
    return x


def _stored_weights(exact: np.ndarray) -> tuple[torch.Tensor, int]:
    """(W, D) with W·x / D the exact map: W the weights themselves where float32 (or float64) holds every one exactly,
    else the integer numerators over their common denominator D (float32 below 2^24, float64 below 2^53)."""
    for dtype in (np.float32, np.float64):
        w = exact.astype(dtype)
        if all(Fraction(float(v)) == e for v, e in zip(w.reshape(-1), exact.reshape(-1))):
            return torch.from_numpy(np.ascontiguousarray(w)), 1
    d = math.lcm(*(e.denominator for e in exact.reshape(-1)))
    numerators = np.array([[int(e * d) for e in row] for row in exact], dtype=np.float64)
    if d >= 2 ** 53 or np.abs(numerators).max() >= 2 ** 53:
        raise ValueError(f"interpolation weights with denominator {d} have no exact float64 form")
    if np.abs(numerators).max() < 2 ** 24:  # small integers: float32 holds them, the graph stays float32
        return torch.from_numpy(numerators.astype(np.float32)), d
    return torch.from_numpy(numerators), d


def onnx_resize(ctx: LoaderContext, x: Tensor, full_in: list[int], out_sizes: list[int], scales: list[Fraction],
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


def out_size(n_in: int, scale: Fraction) -> int:
    """ONNX's output size floor(n_in · scale), exactly."""
    return math.floor(n_in * scale)


# ---- reading: ONNX Resize and Upsample, ATen upsample_nearest2d and upsample_bilinear2d
@handles("Resize", "Upsample")
def _resize(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    full = [int(n) for n in ctx.full_shape(x)]

    def opt(i: int) -> np.ndarray | None:
        return ctx.const(node.input[i], "resize argument") if len(node.input) > i and node.input[i] else None

    if node.op_type == "Upsample" or ctx.opset < 11:  # scales only; asymmetric coordinates, nearest rounds down
        scales = attrs.get("scales") if "scales" in attrs else opt(1)
        sizes, coord, nearest = None, "asymmetric", "floor"
    else:
        if attrs.get("antialias", 0) or attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch" or "axes" in attrs:
            raise ctx.unsupported("antialias, keep_aspect_ratio_policy and axes are not supported")
        scales, sizes = opt(2), opt(3)
        coord = attrs.get("coordinate_transformation_mode", "half_pixel")
        nearest = attrs.get("nearest_mode", "round_prefer_floor")
    if sizes is not None and np.asarray(sizes).size:
        out = [int(v) for v in np.asarray(sizes).reshape(-1)]
        scale = [Fraction(o, i) for o, i in zip(out, full)]  # the spec's output/input ratio, exactly
    elif scales is not None and np.asarray(scales).size:
        scale = [Fraction(float(v)) for v in np.asarray(scales).reshape(-1)]  # the stored float32 values, exactly
        out = [out_size(i, s) for i, s in zip(full, scale)]
    else:
        raise ctx.unsupported("neither scales nor sizes are given")
    if len(out) != len(full):
        raise ctx.unsupported(f"{len(out)} sizes for a rank-{len(full)} tensor")
    return [onnx_resize(ctx, x, full, out, scale, attrs.get("mode", "nearest"), coord, nearest)]


@aten("aten.upsample_nearest2d.vec", "aten.upsample_bilinear2d.vec")
def _aten_upsample(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    full = [int(n) for n in ctx.full_shape(x)]
    if len(full) != 4 or not ctx.batched:
        raise ctx.unsupported("only (N, C, H, W) upsampling is supported")
    nearest = "nearest" in str(ctx.node.target)
    size = a[1]
    align = None if nearest else bool(a[2])
    scales = a[2] if nearest else (a[3] if len(a) > 3 else None)
    hw = full[2:]
    if size is not None:
        out = [int(v) for v in size]
        sc: list = [None, None] if scales is None else [float(v) for v in scales]
    else:
        sc = [float(v) for v in scales]  # type: ignore[union-attr]  # not None: ATen gives the scales where it gives no size
        out = [int(math.floor(n * s)) for n, s in zip(hw, sc)]
    mats = {1 + k: torch_matrix(hw[k], out[k], "nearest" if nearest else "linear", align, sc[k]) for k in range(2)}
    return apply_axes(ctx, x, mats)
