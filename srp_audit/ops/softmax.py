"""Softmax over one sample axis. Classifiers often end with it; `certify` then proves the argmax on the logits
before it (softmax keeps their order) and says so, while `verify` keeps it, since a property may be about
probabilities.

IBP: y_i = 1 / (1 + Σ_{j≠i} exp(x_j − x_i)) is decreasing in every x_j (j ≠ i) and increasing in x_i, so the
interval bounds come from the opposite corners; exp's few-ulp error is widened away and the results clamped to
[0, 1]. CROWN relaxes it by those constant bounds (slope 0): sound, and tight where IBP is.
"""

from __future__ import annotations

import math

import torch

from ..ir.node import Node, Shape
from .backward import Context, split_signs
from .interval import Interval
from .patches import weighted_sum
from .rounding import dot_gamma, tiny, unit_roundoff


class Softmax(Node):
    """y = softmax(x) over one sample axis."""

    kind = "activation"
    nonlinear = True
    constant_relaxation = True
    keeps_argmax = True
    onnx_op = "Softmax"

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = int(axis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=self.axis + 1)

    def out_shape(self, shape: Shape) -> Shape:
        if not 0 <= self.axis < len(shape):
            raise ValueError(f"Softmax axis {self.axis} does not exist in shape {shape}")
        return shape

    def describe(self) -> str:
        return f"axis {self.axis}"

    def relevant_inputs(self, mask: torch.Tensor, shapes: list[Shape]) -> list[torch.Tensor]:
        """An output entry reads its whole slice along the axis."""
        return [mask.any(dim=self.axis + 1, keepdim=True).expand(mask.shape).clone()]

    def onnx_attrs(self) -> dict:
        return {"axis": self.axis + 1}

    def bounds(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rigorous lower and upper bounds of softmax over the box [lo, hi] (same shape):
        min y_i = e^{l_i} / (e^{l_i} + Σ_{j≠i} e^{u_j}), max y_i = e^{u_i} / (e^{u_i} + Σ_{j≠i} e^{l_j}). The sums over
        j ≠ i are computed as dot products with a 0/1 matrix — never as a total minus one term, which cancels
        catastrophically — and every exp, sum and quotient is rounded outward by its own allowance."""
        d = self.axis + 1
        u = unit_roundoff(lo.dtype)
        m = hi.amax(dim=d, keepdim=True)  # a shift against overflow; it cancels in exact arithmetic

        def exp_range(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            e = torch.exp(a)
            rel = a.abs() * (1.01 * u) + 4 * u  # the rounding of a = x − m, and of exp itself
            return e * (1 - rel), e * (1 + rel)

        el, _ = exp_range(lo - m)
        _, eu = exp_range(hi - m)
        n = lo.shape[d]
        others = (torch.ones(n, n, dtype=lo.dtype, device=lo.device) - torch.eye(n, dtype=lo.dtype, device=lo.device))
        g = dot_gamma(n, lo.dtype)
        excl = lambda e: (e.movedim(d, -1) @ others).movedim(-1, d)  # noqa: E731  Σ_{j≠i} e_j, terms ≥ 0
        s_hi = excl(eu) * (1 + g)
        s_lo = excl(el) * (1 - g)
        low = el / (el + s_hi) * (1 - 4 * u) - tiny(lo.dtype)
        high = eu / (eu + s_lo) * (1 + 4 * u) + tiny(lo.dtype)
        return torch.nan_to_num(low, nan=0.0).clamp(0, 1), torch.nan_to_num(high, nan=1.0).clamp(0, 1)

    def ibp(self, x: Interval) -> Interval:
        return Interval(*self.bounds(*x.bounds()), nonneg=True)

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        low, high = ctx.relaxation(name, (ctx.x(name),), self.bounds)
        pos, neg = split_signs(A)
        return [torch.zeros_like(A)], weighted_sum(pos, low) + weighted_sum(neg, high)

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        """Slope 0: nothing propagates from the input; the constant's sum rounds (values in [0, 1])."""
        x = ctx.x(name)
        return torch.full_like(ctx.err[x], dot_gamma(math.prod(ctx.shape(name)), ctx.err[x].dtype))

    def singleprop(self, centres, radii, variant):
        low, high = self.bounds(centres[0] - radii[0], centres[0] + radii[0])
        return 0.5 * (high - low)
