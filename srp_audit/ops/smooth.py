"""S-shaped activations: Sigmoid, Tanh and Erf (convex below 0, concave above, f(x) = κ − f(−x)).

IBP uses monotonicity (the library functions' few-ulp error is widened away); CROWN uses the tangent/chord
lines of `relax.smooth_lines`, sound in floating point.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from ..ir.node import Node
from ..kernel import relax
from ..kernel.backward import Context, dense, per_row, split_signs
from ..kernel.interval import Interval, widen_transcendental
from ..kernel.patches import Patches, flat_sum
from ..kernel.rounding import dot_gamma, unit_roundoff


class SShaped(Node, abstract=True):
    """Shared rules of the S-shaped activations; a subclass names its function in `shape_fn`."""

    kind = "activation"
    nonlinear = True
    elementwise = True
    ibp_exact = True  # monotone
    crown_patches = True
    shape_fn: ClassVar[relax.SmoothFn]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shape_fn.f(x)

    def ibp(self, x: Interval) -> Interval:
        lo, hi = x.bounds()
        fn = self.shape_fn
        return widen_transcendental(fn.f(lo), fn.f(hi), fn.floor, fn.ceil)

    def alpha_start(self, lo: torch.Tensor, hi: torch.Tensor, rows: int) -> torch.Tensor | None:
        return per_row(relax.smooth_params(lo, hi), rows)

    def crown_backward(self, A, ctx: Context, name: str):
        a = ctx.alpha.get(name)
        if a is not None:  # alpha-CROWN: tangent points per spec row
            l, u = (t.unsqueeze(1) for t in ctx.bounds[ctx.x(name)])
            lines = relax.smooth_lines(self.shape_fn, l, u, a[:, :, 0], a[:, :, 1])
            A_x, const = relax.through_lines(dense(A), lines.lower_slope, lines.lower_icpt, lines.upper_slope,
                                             lines.upper_icpt, per_row=True)
            return [A_x], const

        def make(l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
            lines = relax.smooth_lines(self.shape_fn, l, u)
            return lines.lower_slope, lines.lower_icpt, lines.upper_slope, lines.upper_icpt

        ls, li, us, ui = ctx.relaxation(name, (ctx.x(name),), make)
        if isinstance(A, Patches):
            maps = A.windows(torch.cat([ls, li, us, ui], 1))
            ls_, li_w, us_w, ui_w = maps.split(A.data.shape[2], dim=2)
            pos, neg = split_signs(A.data)
            return [A.with_data(pos * ls_ + neg * us_w, clean=True)], flat_sum(pos * li_w + neg * ui_w)
        A_x, const = relax.through_lines(A, ls, li, us, ui)
        return [A_x], const

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        x = ctx.x(name)
        mag = ctx.mag(x)
        u = unit_roundoff(mag.dtype)
        k = self.max_slope()  # every line's slope (default or alpha-CROWN's tangents) is at most sup f′
        return k * ctx.err[x] * (1 + 16 * u) + dot_gamma(math.prod(ctx.shape(name)), mag.dtype) * (k * mag + 2)

    def max_slope(self) -> float:
        """max(1, sup f′ = f′(0)), inflated by 1e-6 for rounding: 1 for sigmoid and tanh, 2/√π for erf."""
        return max(1.0, float(self.shape_fn.df(torch.zeros((), dtype=torch.float64)))) * (1 + 1e-6)

    def singleprop(self, centres, radii, variant):
        c, v = centres[0], radii[0]
        return 0.5 * (self.shape_fn.f(c + v) - self.shape_fn.f(c - v))


class Sigmoid(SShaped):
    """y = 1 / (1 + e^(−x))."""

    positive_output = True
    shape_fn = relax.SIGMOID
    onnx_op = "Sigmoid"
    aten_ops = ("aten.sigmoid.default",)


class Tanh(SShaped):
    """y = tanh(x)."""

    shape_fn = relax.TANH
    onnx_op = "Tanh"
    aten_ops = ("aten.tanh.default",)


class Erf(SShaped):
    """y = erf(x) (inside GELU as the TorchScript exporter writes it)."""

    shape_fn = relax.ERF
    onnx_op = "Erf"
    aten_ops = ("aten.erf.default",)
