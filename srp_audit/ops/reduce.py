"""Reduce: the sum (or mean) of a sample over some of its axes — ReduceSum, ReduceMean, and the contraction inside
a product of two tensors. Linear: exact in CROWN (coefficients spread back over the reduced axes), two sums in IBP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..ir.node import Node, Shape
from ..ir.reading import AtenReading, OnnxNode, OnnxReading, Tensor, Value, aten_ints, aten_tensor, reads_aten, reads_onnx
from ..kernel.backward import Context, zero_const
from ..kernel.interval import Interval, generic_linear, inflation
from ..kernel.rounding import dot_gamma
from .conv import spatial_input
from .pool import AvgPool2d
from .shape import Reshape


class Reduce(Node):
    """y = scale · Σ over sample `axes` of x (`scale` 1: a sum; 1/count: a mean); reduced axes kept if `keepdims`."""

    kind = "affine"

    def __init__(self, axes: Sequence[int], keepdims: bool, mean: bool = False) -> None:
        super().__init__()
        self.axes = tuple(sorted(int(a) for a in axes))
        self.keepdims = bool(keepdims)
        self.mean = bool(mean)

    def count(self, shape: Shape) -> int:
        return math.prod(shape[a] for a in self.axes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(a + 1 for a in self.axes)
        return x.mean(dim=dims, keepdim=self.keepdims) if self.mean else x.sum(dim=dims, keepdim=self.keepdims)

    def out_shape(self, shape: Shape) -> Shape:
        if not self.axes or any(not 0 <= a < len(shape) for a in self.axes):
            raise ValueError(f"Reduce over axes {self.axes} of shape {shape}")
        return tuple(1 if i in self.axes else n for i, n in enumerate(shape) if self.keepdims or i not in self.axes)

    def describe(self) -> str:
        return f"{'mean' if self.mean else 'sum'} over {self.axes}"

    def ibp(self, x: Interval) -> Interval:
        n = math.prod((x.c if x.c is not None else x.lo).shape[a + 1] for a in self.axes) + 1
        k = inflation(dot_gamma(n, x.dtype), x.dtype)
        return generic_linear(x, n, self, lambda v: self(v) * k, None)

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        in_shape = ctx.shape(ctx.x(name))
        full = tuple(1 if i in self.axes else s for i, s in enumerate(in_shape))
        A_in = A.reshape(A.shape[:2] + full).expand(A.shape[:2] + tuple(in_shape))
        if self.mean:
            A_in = A_in / self.count(in_shape)
        return [A_in], zero_const(A)

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        x = ctx.x(name)
        g = dot_gamma(self.count(ctx.shape(x)) + math.prod(ctx.shape(name)), ctx.mag(x).dtype)
        return self(ctx.err[x]) + g * self(ctx.mag(x))

    def singleprop(self, centres, radii, variant):
        return self(radii[0])

    def to_onnx(self, b, name, ins, out) -> None:
        axes = b.const(f"{name}.axes", np.array([a + 1 for a in self.axes], dtype=np.int64))
        if not self.mean:
            b.add("ReduceSum", [ins[0], axes], out, keepdims=int(self.keepdims))
            return
        total = b.add("ReduceSum", [ins[0], axes], f"{name}.sum", keepdims=int(self.keepdims))
        count = math.prod(b.graph.shapes[b.graph.inputs_of[name][0]][a] for a in self.axes)
        b.add("Div", [total, b.const(f"{name}.count", np.array(count, dtype=np.float32))], out)


# ---- reading: sums and means over axes (global average pooling included), in ONNX and ATen
@reads_onnx("ReduceMean", "ReduceSum")
def _read_onnx_reduce(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    mean = node.op_type == "ReduceMean"
    return [reduce_sum(ctx, node, attrs, x, mean, 18 if mean else 13)]


@reads_onnx("GlobalAveragePool")
def _read_onnx_global_avgpool(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    if ctx.batched and len(x.shape) == 2:  # (N, C, L): the mean over L
        return [ctx.emit(Reduce([1], True, True), [x], "reduce")]
    x = spatial_input(ctx, node)
    return [ctx.emit(AvgPool2d(x.shape[1:], 1), [x], "avgpool")]


def reduce_sum(ctx: OnnxReading, node: OnnxNode, attrs: dict, x: Tensor, mean: bool, since: int) -> Tensor:
    """The sum (or mean) of an ONNX Reduce* node over its axes (an input from opset `since`, else an attribute).
    The mean over both spatial axes of (N, C, H, W) — global average pooling, as torch exports AdaptiveAvgPool2d(1)
    — stays an AvgPool2d (windowed CROWN coefficients)."""
    axes = axes_arg(ctx, node, attrs, since)
    rank = len(ctx.onnx_shape(x))
    keep = bool(attrs.get("keepdims", 1))
    if axes is None:
        if attrs.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(1 if ctx.batched else 0, rank))
    if any(not -rank <= a < rank for a in axes):
        raise ctx.unsupported(f"axes {axes} outside the input's {rank} axes")
    axes = sorted({a % rank for a in axes})  # an axis named twice (1 and −2 of a rank-3 input) is reduced once
    if mean and ctx.batched and rank == 4 and sorted(a % rank for a in axes) == [2, 3]:
        pooled = ctx.emit(AvgPool2d(x.shape[1:], 1), [x], "avgpool")
        return pooled if keep else ctx.emit(Reshape((x.shape[0],)), [pooled])
    return ctx.emit(Reduce([ctx.sample_axis(x, a) for a in axes], keep, mean), [x], "reduce")


def axes_arg(ctx: OnnxReading, node: OnnxNode, attrs: dict, since: int) -> list[int] | None:
    """An ONNX node's `axes`: its second input from opset `since` on, an attribute before; None when absent or empty
    (the spec's "no axes given", whatever the op then does)."""
    if ctx.opset >= since:
        axes = [int(a) for a in ctx.const(node.input[1], "axes").reshape(-1)] if len(node.input) > 1 and node.input[1] else []
    else:
        axes = [int(a) for a in attrs.get("axes", [])]
    return axes or None


@reads_aten("aten.mean.dim")
def _read_aten_mean(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    rank = len(ctx.full_shape(x))
    dims = sorted(d % rank for d in aten_ints(a[1]))
    keep = bool(a[2]) if len(a) > 2 else bool(kw.get("keepdim", False))
    if ctx.batched and rank == 4 and dims == [2, 3]:  # global average pooling keeps its windowed CROWN rule
        pooled = ctx.emit(AvgPool2d(x.shape[1:], 1), [x], "avgpool")
        return pooled if keep else ctx.emit(Reshape((x.shape[0],)), [pooled])
    return ctx.emit(Reduce([ctx.sample_axis(x, d) for d in dims], keep, mean=True), [x], "reduce")


@reads_aten("aten.sum.dim_IntList")
def _read_aten_sum(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    keep = bool(a[2]) if len(a) > 2 else bool(kw.get("keepdim", False))
    return ctx.emit(Reduce([ctx.sample_axis(x, d) for d in aten_ints(a[1])], keep), [x], "reduce")
