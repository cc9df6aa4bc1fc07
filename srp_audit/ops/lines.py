"""The CROWN rules every elementwise activation with per-neuron lines shares: the backward step through its lower
and upper lines, and its rounding allowance. A subclass gives `lines(l, u)` (slopes and intercepts valid on
[l, u] in floating point)."""

from __future__ import annotations

import math

import torch

from ..ir.node import Node
from . import relax
from .backward import Context
from .rounding import dot_gamma, unit_roundoff


class LinesActivation(Node, abstract=True):
    """An elementwise activation bounded by one lower and one upper line per neuron."""

    kind = "activation"
    nonlinear = True
    elementwise = True

    def lines(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lower slope, lower intercept, upper slope, upper intercept), valid on [l, u] in floating point."""
        raise NotImplementedError

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        ls, li, us, ui = ctx.relaxation(name, (ctx.x(name),), self.lines)
        A_x, const = relax.through_lines(A, ls, li, us, ui)
        return [A_x], const

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        """The input's error times the largest slope, plus the products and sums of the step (slopes and
        intercepts are exact numbers once computed; |A_x| ≤ |A|·slope)."""
        x = ctx.x(name)
        ls, li, us, ui = ctx.relaxation(name, (x,), self.lines)
        slope = torch.maximum(ls.abs(), us.abs())
        icpt = torch.maximum(li.abs(), ui.abs())
        mag = ctx.mag(x)
        u = unit_roundoff(mag.dtype)
        return ctx.err[x] * slope * (1 + 16 * u) + dot_gamma(math.prod(ctx.shape(name)), mag.dtype) * (slope * mag + icpt + 1)
