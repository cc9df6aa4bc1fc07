"""Convex, non-decreasing activations: Exp and ELU (α ∈ (0, 1]).

IBP: [f(l), f(u)] widened by the library's few-ulp error. CROWN: the chord above — any slope s with the intercept
t = max(f(l) − s·l, f(u) − s·u) (f rounded up) lies above f at both ends, so above it on [l, u] by convexity — and
a tangent below at the midpoint m, whose intercept gives up the derivative's rounding error times the half width:
f(x) ≥ f(m) + f′(m)(x − m) ≥ f(m) + s(x − m) − |f′(m) − s|·|x − m|. Every intercept is then rounded outward.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..ir.node import Node
from . import relax
from .backward import Context
from .interval import Interval
from .rounding import dot_gamma, tiny, unit_roundoff

ULPS = 8  # assumed accuracy of the library's exp and expm1 (they are accurate to about 1 ulp)


class ConvexIncreasing(Node, abstract=True):
    """Rules shared by convex, non-decreasing activations; a subclass gives `f` and its derivative `df`."""

    kind = "activation"
    nonlinear = True
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

    def ibp(self, x: Interval) -> Interval:
        lo, hi = x.bounds()
        return Interval(self._f_out(lo, False), self._f_out(hi, True))

    def lines(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lower slope, lower intercept, upper slope, upper intercept), valid on [l, u] in floating point."""
        ur = unit_roundoff(l.dtype)
        t0 = tiny(l.dtype)
        width = u - l
        flat = width <= 0
        s_up = torch.where(flat, torch.zeros_like(l), (self.f(u) - self.f(l)) / torch.where(flat, torch.ones_like(l), width))
        s_up = torch.nan_to_num(s_up, nan=0.0).clamp(min=0)
        t_up = torch.maximum(self._f_out(l, True) - s_up * l, self._f_out(u, True) - s_up * u)
        t_up = t_up + 4 * ur * (t_up.abs() + s_up * torch.maximum(l.abs(), u.abs())) + t0
        m = (l + u) / 2
        s_lo = self.df(m).clamp(min=0)
        t_lo = self._f_out(m, False) - s_lo * m - 2 * ULPS * ur * s_lo * (width / 2 + m.abs() * ur)
        t_lo = t_lo - 4 * ur * (t_lo.abs() + s_lo * m.abs()) - t0
        return s_lo, t_lo, s_up, t_up

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        ls, li, us, ui = self.lines(*ctx.bounds[ctx.x(name)])
        A_x, const = relax.through_lines(A, ls, li, us, ui)
        return [A_x], const

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        x = ctx.x(name)
        ls, li, us, ui = self.lines(*ctx.bounds[x])
        slope = torch.maximum(ls, us)
        icpt = torch.maximum(li.abs(), ui.abs())
        mag = ctx.mag(x)
        u = unit_roundoff(mag.dtype)
        return ctx.err[x] * slope * (1 + 16 * u) + dot_gamma(math.prod(ctx.shape(name)), mag.dtype) * (slope * mag + icpt + 1)

    def singleprop(self, centres, radii, variant):
        c, v = centres[0], radii[0]
        return 0.5 * (self.f(c + v) - self.f(c - v))


class Exp(ConvexIncreasing):
    """y = e^x."""

    onnx_op = "Exp"
    aten_ops = ("aten.exp.default",)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)

    def df(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


class Elu(ConvexIncreasing):
    """y = x for x > 0, α·(e^x − 1) below (α ∈ (0, 1], where ELU is convex)."""

    onnx_op = "Elu"
    aten_ops = ("aten.elu.default",)

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        a = float(torch.tensor(float(alpha), dtype=torch.float32))
        if not 0.0 < a <= 1.0:
            raise ValueError(f"ELU with alpha {a} (only 0 < alpha ≤ 1, where ELU is convex, is supported)")
        self.alpha = a

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any]) -> "Elu":
        return cls(float(attrs.get("alpha", 1.0)))

    @classmethod
    def from_aten(cls, args: list[Any], kwargs: dict[str, Any]) -> "Elu":
        alpha = float(args[1]) if len(args) > 1 else float(kwargs.get("alpha", 1.0))
        scales = [float(v) for v in args[2:4]] + [float(kwargs.get(k, 1.0)) for k in ("scale", "input_scale") if k in kwargs]
        if any(s != 1.0 for s in scales):
            raise ValueError("ELU with scale or input_scale other than 1 (SELU) is not supported")
        return cls(alpha)

    def onnx_attrs(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def describe(self) -> str:
        return f"alpha {self.alpha:g}"

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(x, self.alpha)

    def df(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, torch.ones_like(x), self.alpha * torch.exp(torch.clamp(x, max=0)))
