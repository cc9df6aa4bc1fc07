"""The CROWN rules every elementwise activation with per-neuron lines shares: the backward step through its lower
and upper lines, and its rounding allowance. A subclass gives `lines(l, u)` (slopes and intercepts valid on
[l, u] in floating point) and, for alpha-CROWN, optionally a family of valid lines indexed by free parameters in
[0, 1] (`line_params`, `lines_with`: tangent points, or slopes with their own intercepts) and the largest slope
magnitude any of them takes (`slope_cap`), which the rounding allowance covers."""

from __future__ import annotations

import math

import torch

from ..ir.node import Node
from ..kernel import relax
from ..kernel.backward import Context, dense, per_row
from ..kernel.rounding import dot_gamma, unit_roundoff


class LinesActivation(Node, abstract=True):
    """An elementwise activation bounded by one lower and one upper line per neuron."""

    kind = "activation"
    nonlinear = True
    elementwise = True

    def lines(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lower slope, lower intercept, upper slope, upper intercept), valid on [l, u] in floating point."""
        raise NotImplementedError

    def line_params(self, l: torch.Tensor, u: torch.Tensor) -> torch.Tensor | None:
        """Optional (alpha-CROWN): parameters in [0, 1], shape (N, 2, *shape) — lower line's, upper line's — for
        which `lines_with` gives `lines`' lines (or lines as good); None: no family of lines to optimise."""
        return None

    def lines_with(self, l: torch.Tensor, u: torch.Tensor, a_lo: torch.Tensor, a_up: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Lines valid on [l, u] in floating point for any parameters in [0, 1] (broadcast against l and u), with
        slopes of magnitude at most `slope_cap(l, u)`."""
        raise NotImplementedError

    def slope_cap(self, l: torch.Tensor, u: torch.Tensor) -> torch.Tensor | None:
        """The largest slope magnitude of any line `lines_with` gives on [l, u] (None: no family)."""
        return None

    def alpha_start(self, lo: torch.Tensor, hi: torch.Tensor, rows: int) -> torch.Tensor | None:
        a = self.line_params(lo, hi)
        if a is None:
            return None
        return per_row(a, rows)

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        a = ctx.alpha.get(name)
        if a is not None:  # alpha-CROWN: lines per spec row
            l, u = (t.unsqueeze(1) for t in ctx.bounds[ctx.x(name)])
            ls, li, us, ui = self.lines_with(l, u, a[:, :, 0], a[:, :, 1])
            A_x, const = relax.through_lines(dense(A), ls, li, us, ui, per_row=True)
            return [A_x], const
        ls, li, us, ui = ctx.relaxation(name, (ctx.x(name),), self.lines)
        A_x, const = relax.through_lines(A, ls, li, us, ui)
        return [A_x], const

    def _cap(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor]:
        """`slope_cap` as a tensor (0 without a line family): a relaxation every sample subset can slice."""
        cap = self.slope_cap(l, u)
        return (torch.zeros_like(l) if cap is None else cap,)

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        """The input's error times the largest slope, plus the products and sums of the step (slopes and
        intercepts are exact numbers once computed; |A_x| ≤ |A|·slope)."""
        x = ctx.x(name)
        ls, li, us, ui = ctx.relaxation(name, (x,), self.lines)
        slope = torch.maximum(ls.abs(), us.abs())
        cap = ctx.relaxation(name + " slope cap", (x,), self._cap)[0]
        slope = torch.maximum(slope, cap)  # alpha-CROWN's lines may be steeper than the default ones
        icpt = torch.maximum(li.abs(), ui.abs())
        mag = ctx.mag(x)
        u = unit_roundoff(mag.dtype)
        return ctx.err[x] * slope * (1 + 16 * u) + dot_gamma(math.prod(ctx.shape(name)), mag.dtype) * (slope * mag + icpt + 1)
