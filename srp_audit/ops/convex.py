"""Convex or concave activations (the base of Exp, ELU, and the powers and logarithm of `power.py`).

IBP: [f(l), f(u)] (or the valley, or reversed) widened by the library's few-ulp error. CROWN: the chord above — any slope s with the intercept
t = max(f(l) − s·l, f(u) − s·u) (f rounded up) lies above f at both ends, so above it on [l, u] by convexity — and
a tangent below at the midpoint m, whose intercept gives up the derivative's rounding error times the half width:
f(x) ≥ f(m) + f′(m)(x − m) ≥ f(m) + s(x − m) − |f′(m) − s|·|x − m|. Every intercept is then rounded outward.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..ir.node import Node
from ..kernel.interval import Interval
from ..kernel.rounding import as_float32, tiny, unit_roundoff
from .activations import ScaledElu
from .lines import LinesActivation

ULPS = 8  # assumed accuracy of the library's exp, expm1, log, sqrt and pow (they are accurate to about 1 ulp)


class Curved(LinesActivation, abstract=True):
    """An activation that is convex (`sign` +1) or concave (−1) on its domain [domain_lo, ∞) (open when
    `domain_open`), monotone (`monotone` ±1) or with its minimum at `valley_at` (0). A subclass gives `f` and `df`.
    A box reaching outside the domain gets infinite bounds: the model is undefined (NaN) there."""

    ibp_exact = True  # monotone or one valley: `range`
    # class defaults a node may set for itself (Power's follow its exponent), so not ClassVars
    sign: int = 1
    monotone: int = 1
    valley_at: float = 0.0
    domain_lo: float = -math.inf
    domain_open: bool = False

    def f(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def df(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)

    def _f_out(self, x: torch.Tensor, up: bool) -> torch.Tensor:
        y = self.f(x)
        e = ULPS * unit_roundoff(x.dtype) * y.abs() + tiny(x.dtype)
        return y + e if up else y - e

    def _in_domain(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(valid, l, u with boxes outside the domain replaced by a safe point inside it): the line formulas run on
        valid boxes only."""
        valid = self._valid(l, u)
        safe = torch.full_like(l, max(self.domain_lo, 0.0) + 1.0)
        return valid, torch.where(valid, l, safe), torch.where(valid, u, safe)

    def _valid(self, l: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        inside = l > self.domain_lo if self.domain_open else l >= self.domain_lo
        return inside & torch.isfinite(l) & torch.isfinite(u)

    def range(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rigorous [min f, max f] over [l, u]; infinite where [l, u] leaves the domain."""
        if self.monotone > 0:
            lo, hi = self._f_out(l, False), self._f_out(u, True)
        elif self.monotone < 0:
            lo, hi = self._f_out(u, False), self._f_out(l, True)
        else:  # convex with its minimum at valley_at
            v = self.valley_at
            lo = torch.minimum(self._f_out(l, False), self._f_out(u, False))
            at_v = self._f_out(torch.full_like(l, v), False)
            lo = torch.where((l <= v) & (u >= v), torch.minimum(lo, at_v), lo)
            hi = torch.maximum(self._f_out(l, True), self._f_out(u, True))
        ok = (l > self.domain_lo if self.domain_open else l >= self.domain_lo) & ~torch.isnan(lo) & ~torch.isnan(hi)
        return torch.where(ok, lo, torch.full_like(lo, -math.inf)), torch.where(ok, hi, torch.full_like(hi, math.inf))

    def ibp(self, x: Interval) -> Interval:
        return Interval(*self.range(*x.bounds()))

    def _convex_lines(self, l: torch.Tensor, u: torch.Tensor,
                      t: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Lines of g = sign·f (convex) on [l, u]: the chord above, the tangent at t (default the midpoint) below."""
        sg = self.sign

        def g(x: torch.Tensor) -> torch.Tensor:
            return sg * self.f(x)

        def g_out(x: torch.Tensor, up: bool) -> torch.Tensor:
            return sg * self._f_out(x, up if sg > 0 else not up)

        ur, t0 = unit_roundoff(l.dtype), tiny(l.dtype)
        width = u - l
        flat = width <= 0
        s_up = torch.where(flat, torch.zeros_like(l), (g(u) - g(l)) / torch.where(flat, torch.ones_like(l), width))
        s_up = torch.nan_to_num(s_up, nan=0.0, posinf=0.0, neginf=0.0)
        t_up = torch.maximum(g_out(l, True) - s_up * l, g_out(u, True) - s_up * u)
        t_up = t_up + 4 * ur * (t_up.abs() + s_up.abs() * torch.maximum(l.abs(), u.abs())) + t0
        m = (l + u) / 2 if t is None else t
        reach = width / 2 if t is None else torch.maximum(t - l, u - t)  # the farthest x from the tangent point
        s_lo = sg * self.df(m)
        # the slope's rounding, relative, and 4·tiny absolute: a slope below the normal range may come out 0 (1/x²
        # at x = 5e159, where x² overflows), and the line then errs by up to that times the reach
        t_lo = g_out(m, False) - s_lo * m - 2 * ULPS * ur * s_lo.abs() * (reach + m.abs() * ur) - 4 * t0 * reach
        t_lo = t_lo - 4 * ur * (t_lo.abs() + s_lo.abs() * m.abs()) - t0
        return s_lo, t_lo, s_up, t_up

    def lines(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lower slope, lower intercept, upper slope, upper intercept), valid on [l, u] in floating point."""
        return self._lines(l, u, None)

    TANGENT_MARGIN: ClassVar[float] = 0.05
    """alpha-CROWN's tangent points stay this fraction of the width inside [l, u] (slopes stay finite at a domain
    edge such as √x at 0)."""

    def _tangent_points(self, l: torch.Tensor, u: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        k = self.TANGENT_MARGIN
        return l + (u - l) * (k + (1 - 2 * k) * a)

    def line_params(self, l: torch.Tensor, u: torch.Tensor) -> torch.Tensor | None:
        """The tangent line's point as a position in [l, u] (the other line is the chord): the midpoint first."""
        return torch.full((l.shape[0], 2) + tuple(l.shape[1:]), 0.5, dtype=l.dtype, device=l.device)

    def lines_with(self, l: torch.Tensor, u: torch.Tensor, a_lo: torch.Tensor, a_up: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The tangent at l + (u − l)·(0.05 + 0.9·a) (a_lo's for a convex function, a_up's for a concave one)."""
        return self._lines(l, u, a_lo if self.sign > 0 else a_up)

    def slope_cap(self, l: torch.Tensor, u: torch.Tensor) -> torch.Tensor | None:
        """g′ is monotone, so tangent slopes lie between its values at the family's extreme points (inflated by
        1e-3 for the derivative's own rounding; infinite at a domain edge's point box, which makes the allowance
        and every bound through it infinite); 0 where the box leaves the domain (constant lines there)."""
        valid, lf, uf = self._in_domain(l, u)
        ends = self._tangent_points(lf, uf, torch.zeros_like(lf)), self._tangent_points(lf, uf, torch.ones_like(lf))
        cap = torch.maximum(self.df(ends[0]).abs(), self.df(ends[1]).abs()) * (1 + 1e-3)
        return torch.where(valid, cap.nan_to_num(nan=math.inf), torch.zeros_like(cap))

    def _lines(self, l: torch.Tensor, u: torch.Tensor,
               a: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        valid, lf, uf = self._in_domain(l, u)
        ls, li, us, ui = self._convex_lines(lf, uf, None if a is None else self._tangent_points(lf, uf, a))
        if self.sign < 0:
            ls, li, us, ui = -us, -ui, -ls, -li
        # outside the domain, or where f overflows (an infinite slope would make 0·∞ in the coefficients): the
        # constant lines at the IBP range (possibly infinite, which through_lines turns into an infinite bound)
        ok_lo = valid & torch.isfinite(ls) & ~torch.isnan(li)
        ok_up = valid & torch.isfinite(us) & ~torch.isnan(ui)
        if not bool(ok_lo.all() and ok_up.all()):
            rlo, rhi = self.range(l, u)
            zero = torch.zeros_like(ls)
            ls, us = torch.where(ok_lo, ls, zero), torch.where(ok_up, us, zero)
            li, ui = torch.where(ok_lo, li, rlo), torch.where(ok_up, ui, rhi)
        return ls, li, us, ui

    def singleprop(self, centres, radii, variant):
        c, v = centres[0], radii[0]
        return 0.5 * (self.f(c + v) - self.f(c - v)).abs()


class ConvexIncreasing(Curved, abstract=True):
    """Convex and non-decreasing on the whole line (Exp, ELU)."""


class Exp(ConvexIncreasing):
    """y = e^x."""

    positive_output = True
    onnx_op = "Exp"
    aten_ops = ("aten.exp.default",)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)

    def df(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


class Elu(ConvexIncreasing):
    """y = x for x > 0, α·(e^x − 1) below (α ∈ (0, 1], where ELU is convex; the readers map other ELUs and SELU
    to `ScaledElu`)."""

    onnx_op = "Elu"
    aten_ops = ("aten.elu.default",)

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        a = as_float32(alpha)
        if not 0.0 < a <= 1.0:
            raise ValueError(f"ELU with alpha {a} (only 0 < alpha ≤ 1, where ELU is convex, is supported)")
        self.alpha = a

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any]) -> Node:
        return cls.of(float(attrs.get("alpha", 1.0)))

    @classmethod
    def of(cls, alpha: float, scale: float = 1.0) -> Node:
        """ELU where it is convex (this op), else — α > 1, or a scale (SELU) — the grid-ruled `ScaledElu`."""
        if 0.0 < as_float32(alpha) <= 1.0 and scale == 1.0:
            return cls(alpha)
        return ScaledElu(alpha, scale)

    @classmethod
    def from_aten(cls, args: list[Any], kwargs: dict[str, Any]) -> Node:
        alpha = float(args[1]) if len(args) > 1 else float(kwargs.get("alpha", 1.0))
        scale = float(args[2]) if len(args) > 2 else float(kwargs.get("scale", 1.0))
        input_scale = float(args[3]) if len(args) > 3 else float(kwargs.get("input_scale", 1.0))
        if input_scale != 1.0:
            raise ValueError("ELU with an input_scale other than 1 (CELU) is not supported")
        return cls.of(alpha, scale)

    def onnx_attrs(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def describe(self) -> str:
        return f"alpha {self.alpha:g}"

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(x, self.alpha)

    def df(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, torch.ones_like(x), self.alpha * torch.exp(torch.clamp(x, max=0)))
