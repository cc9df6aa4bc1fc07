"""Add: the sum of two input-dependent tensors of the same shape (residual connections)."""

from __future__ import annotations

import torch

from ..ir.node import Node, Shape
from ..kernel.backward import Context, zero_const
from ..kernel.interval import Interval, outward


class Add(Node):
    """Sum of two tensors of the same shape (residual connections)."""

    arity = 2
    crown_patches = True

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b

    def out_shape(self, a: Shape, b: Shape) -> Shape:
        if tuple(a) != tuple(b):
            raise ValueError(f"Add needs equal shapes, got {a} and {b}")
        return a

    def ibp(self, a: Interval, b: Interval) -> Interval:
        """[l1 + l2, u1 + u2], each sum rounded outward by a relative 2u (plus an underflow guard)."""
        la, ha = a.bounds()
        lb, hb = b.bounds()
        return outward(la + lb, ha + hb)

    def crown_backward(self, A, ctx: Context, name: str):
        return [A, A], zero_const(A)

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        a, b = ctx.graph.inputs_of[name]
        return ctx.err[a] + ctx.err[b]

    def singleprop(self, centres, radii, variant):
        return radii[0] + radii[1]

    def to_onnx(self, b, name, ins, out) -> None:
        b.add("Add", ins, out)
