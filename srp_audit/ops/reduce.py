"""Reduce: the sum (or mean) of a sample over some of its axes — ReduceSum, ReduceMean, and the contraction inside
a product of two tensors. Linear: exact in CROWN (coefficients spread back over the reduced axes), two sums in IBP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..ir.node import Node, Shape
from ..kernel.backward import Context, zero_const
from ..kernel.interval import Interval, generic_linear, inflation
from ..kernel.rounding import dot_gamma


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
