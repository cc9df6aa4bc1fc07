"""Steps: Sign (binarised networks: −1 below 0, 0 at 0, 1 above, as ONNX and torch define it) and Floor.

IBP is exact (monotone). CROWN bounds a straddling step with one of two lines each side — a constant, or the
line through the jump's far corner (lower: through (0, −1) and (u, 1); upper: through (l, −1) and (0, 1)) —
whichever encloses less area; slopes are rounded down, so every computed line stays on its side of the step.
"""

from __future__ import annotations

import math

import torch

from ..ir.node import Node
from ..kernel import relax
from ..kernel.backward import Context
from ..kernel.interval import Interval
from ..kernel.rounding import dot_gamma, unit_roundoff
from .lines import LinesActivation


def sign_lines(l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lower slope, lower intercept, upper slope, upper intercept): s·x + t ≤ sign(x) (resp. ≥) on [l, u]."""
    ur = unit_roundoff(l.dtype)
    one = torch.ones_like(l)
    lower_icpt = torch.sign(l)  # the constant lines are exact: sign(l) below, sign(u) above
    upper_icpt = torch.sign(u)
    straddle = (l < 0) & (u > 0)
    lo_slope = torch.where(straddle & (u > -l), (2 / torch.where(straddle, u, one)) * (1 - 2 * ur), torch.zeros_like(l))
    up_slope = torch.where(straddle & (-l >= u), (2 / torch.where(straddle, -l, one)) * (1 - 2 * ur), torch.zeros_like(l))
    lower_icpt = torch.where(lo_slope > 0, -one, lower_icpt)
    upper_icpt = torch.where(up_slope > 0, one, upper_icpt)
    return lo_slope, lower_icpt, up_slope, upper_icpt


class Sign(Node):
    """y = sign(x) ∈ {−1, 0, 1} (the step of binarised networks)."""

    kind = "activation"
    nonlinear = True
    elementwise = True
    ibp_exact = True
    onnx_op = "Sign"
    aten_ops = ("aten.sign.default",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x)

    def ibp(self, x: Interval) -> Interval:
        lo, hi = x.bounds()
        return Interval(torch.sign(lo), torch.sign(hi))  # exact: sign is monotone and its values are exact

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        ls, li, us, ui = ctx.relaxation(name, (ctx.x(name),), sign_lines)
        A_x, const = relax.through_lines(A, ls, li, us, ui)
        return [A_x], const

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        """As the S-shaped activations': products with slopes that may exceed 1 (2/u), plus the intercepts (|t| ≤ 1)."""
        x = ctx.x(name)
        l, u = ctx.bounds[x]
        mag = ctx.mag(x)
        ls, _, us, _ = sign_lines(l, u)
        slope = torch.maximum(ls, us).clamp(min=1.0)
        uu = unit_roundoff(mag.dtype)
        return ctx.err[x] * slope * (1 + 16 * uu) + dot_gamma(math.prod(ctx.shape(name)), mag.dtype) * (slope * mag + 2)

    def singleprop(self, centres, radii, variant):
        c, v = centres[0], radii[0]
        return 0.5 * (torch.sign(c + v) - torch.sign(c - v))


def floor_lines(l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x − 1 < floor(x) ≤ x, or the constant floor(l) where the box holds no integer step (floor is exact in
    floating point, and the lines' slopes and intercepts are exact numbers)."""
    same = torch.floor(l) == torch.floor(u)
    one, zero = torch.ones_like(l), torch.zeros_like(l)
    slope = torch.where(same, zero, one)
    return slope, torch.where(same, torch.floor(l), -one), slope, torch.where(same, torch.floor(l), zero)


class Floor(LinesActivation):
    """y = ⌊x⌋ (range reduction inside some models, e.g. VNN-COMP's ml4acopf)."""

    ibp_exact = True
    onnx_op = "Floor"
    aten_ops = ("aten.floor.default",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x)

    def ibp(self, x: Interval) -> Interval:
        lo, hi = x.bounds()
        return Interval(torch.floor(lo), torch.floor(hi))  # exact: monotone, and floor of a float is a float

    def lines(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return floor_lines(l, u)

    def singleprop(self, centres, radii, variant):
        """Half the output's range over [c − v, c + v] (like Sign's: its gradient is zero almost everywhere)."""
        c, v = centres[0], radii[0]
        return 0.5 * (torch.floor(c + v) - torch.floor(c - v))
