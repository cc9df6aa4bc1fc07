"""Sound rules for any piecewise-smooth scalar activation from two facts about it: where its kinks are and
bounds on its second derivative between them.

Lines (CROWN): the slope is the chord's, s = (f(u) − f(l))/(u − l) — any slope is valid, since the intercepts
are computed for the slope actually used. On a grid l = x₀ < … < x_K = u that contains every kink inside,
g = f − s·x satisfies, on each segment [a, b] of width h with c_lo ≤ f″ ≤ c_hi there,

    max g ≤ max(g(a), g(b)) + max(0, −c_lo)·h²/8,     min g ≥ min(g(a), g(b)) − max(0, c_hi)·h²/8

(g minus its chord is a function vanishing at both ends whose second derivative is bounded, compared with the
parabola (c/2)(x − a)(x − b)). The intercepts are the largest and smallest of these, widened by the function's
evaluation error and the rounding of g. With the chord slope the upper line of a convex piece is exact.

IBP: exact for monotone functions and for a single valley (decreasing, then increasing); else the grid bound
with s = 0. A subclass gives `f`, `curvature(l, u)`, and optionally `kinks`, `increasing` or `valley`.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from ..kernel.interval import Interval, valid_ends
from ..kernel.rounding import tiny, unit_roundoff
from .lines import LinesActivation

GRID = 16  # segments per neuron; the curvature allowance shrinks as 1/GRID²
ULPS = 16  # assumed error of the library's function, in units of roundoff of (|f| + |x| + 1)
VALLEY_SLACK = 1e-3  # a box within this (relative) distance of a valley's abscissa is bounded below by its m


def _grid(l: torch.Tensor, u: torch.Tensor, kinks: tuple[float, ...]) -> torch.Tensor:
    """Points (…, GRID + 1 + len(kinks)) from l to u, ascending, with every kink inside (l, u) among them."""
    t = torch.linspace(0, 1, GRID + 1, dtype=l.dtype, device=l.device)
    pts = l.unsqueeze(-1) + (u - l).unsqueeze(-1) * t
    pts[..., 0], pts[..., -1] = l, u
    if kinks:
        k = torch.tensor(kinks, dtype=l.dtype, device=l.device)
        pts = torch.cat([pts, torch.minimum(torch.maximum(k, l.unsqueeze(-1)), u.unsqueeze(-1))], -1)
    return torch.sort(pts, dim=-1).values


def _no_nan(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A NaN bound (f undefined somewhere in the box, or ∞ − ∞ where f overflowed) becomes the infinite one: always
    sound, never a proof. Infinite bounds stay infinite (nan_to_num's default would turn an upper +∞ into the
    largest float, below an exact value past it), and a lower +∞ or upper −∞ (a value that overflowed, whose exact
    size is unknown) becomes infinite the other way."""
    return valid_ends(lo, hi)


class ScalarActivation(LinesActivation, abstract=True):
    """An elementwise activation bounded by the grid rule above; subclasses give f and its curvature."""

    kinks: tuple[float, ...] = ()
    increasing: ClassVar[bool] = False
    """f is non-decreasing everywhere: IBP is [f(l), f(u)]."""

    @property
    def ibp_exact(self) -> bool:  # type: ignore[override]  # Node's ClassVar flag, a property of the instance here
        """Monotone or a single valley: `range` is exact; else it is the (looser) grid bound."""
        return self.increasing or self.valley() is not None

    def f(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def curvature(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_lo, c_hi) with c_lo ≤ f″ ≤ c_hi on [l, u] away from the kinks (exact arithmetic)."""
        raise NotImplementedError

    def valley(self) -> tuple[float, float] | None:
        """(x*, m) where f decreases on (−∞, x*] and increases on [x*, ∞) and m ≤ f(x*); None if no such."""
        return None

    def err(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """An upper bound on |computed f(x) − f(x)|."""
        return ULPS * unit_roundoff(x.dtype) * (y.abs() + x.abs() + 1) + tiny(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)

    # ------------------------------------------------------------------------------------------------ IBP
    def ibp(self, x: Interval) -> Interval:
        lo, hi = x.bounds()
        return Interval(*self.range(lo, hi))

    def range(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rigorous [min f, max f] over [l, u]."""
        fl, fu = self.f(l), self.f(u)
        el, eu = self.err(l, fl), self.err(u, fu)
        if self.increasing:
            return _no_nan(fl - el, fu + eu)
        v = self.valley()
        if v is not None:
            x_star, m = v
            hi = torch.maximum(fl + el, fu + eu)
            lo = torch.minimum(fl - el, fu - eu)
            slack = VALLEY_SLACK * (1 + abs(x_star))  # x* need only be known to this accuracy
            inside = (l <= x_star + slack) & (u >= x_star - slack)
            return _no_nan(torch.where(inside, torch.clamp(lo, max=m), lo), hi)
        return self._grid_bounds(l, u, torch.zeros_like(l))

    # ---------------------------------------------------------------------------------------------- CROWN
    def _grid_bounds(self, l: torch.Tensor, u: torch.Tensor, s: torch.Tensor,
                     s_up: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rigorous (min of f(x) − s·x, max of f(x) − s_up·x) over [l, u] (finite l ≤ u; s_up defaults to s), from one
        evaluation of f on the grid."""
        ur = unit_roundoff(l.dtype)
        pts = _grid(l, u, tuple(self.kinks))
        y = self.f(pts)
        h2 = (pts[..., 1:] - pts[..., :-1]) ** 2 / 8 * (1 + 8 * ur)
        c_lo, c_hi = self.curvature(l, u)
        up = (-c_lo).clamp(min=0).unsqueeze(-1) * h2
        dn = c_hi.clamp(min=0).unsqueeze(-1) * h2
        err, bend = self.err(pts, y), 4 * ur * torch.maximum(up, dn).amax(-1)

        def shifted(slope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            sx = slope.unsqueeze(-1) * pts
            return y - sx, (err + 4 * ur * (y.abs() + sx.abs())).amax(-1) + bend

        g, allow = shifted(s)
        g_up, allow_up = (g, allow) if s_up is None else shifted(s_up)
        hi = (torch.maximum(g_up[..., :-1], g_up[..., 1:]) + up).amax(-1) + allow_up
        lo = (torch.minimum(g[..., :-1], g[..., 1:]) - dn).amin(-1) - allow
        t = tiny(l.dtype)
        return _no_nan(lo - 4 * ur * lo.abs() - t, hi + 4 * ur * hi.abs() + t)

    @staticmethod
    def _finite_box(l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(finite, l, u with unbounded entries set to 0): the grid rules run on the finite part only."""
        finite = torch.isfinite(l) & torch.isfinite(u)
        return finite, torch.where(finite, l, torch.zeros_like(l)), torch.where(finite, u, torch.zeros_like(u))

    # ------------------------------------------------------------------------------ alpha-CROWN's family
    def _secant_range(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(smallest, largest secant slope over the grid's segments, finite) on [l, u]: the range alpha-CROWN's
        slopes move in (any slope is sound — its intercepts are computed for it — this range only keeps them
        sensible); 0 where the box is unbounded."""
        finite, lf, uf = self._finite_box(l, u)
        pts = _grid(lf, uf, tuple(self.kinks))
        y = self.f(pts)
        dx = pts[..., 1:] - pts[..., :-1]
        sec = (y[..., 1:] - y[..., :-1]) / torch.where(dx > 0, dx, torch.ones_like(dx))
        valid = (dx > 0) & torch.isfinite(sec)
        s_min = torch.where(valid, sec, math.inf).amin(-1)
        s_max = torch.where(valid, sec, -math.inf).amax(-1)
        some = finite & valid.any(-1)  # a point box has no segment: slope 0
        zero = torch.zeros_like(l)
        return torch.where(some, s_min, zero), torch.where(some, s_max, zero), finite

    def line_params(self, l: torch.Tensor, u: torch.Tensor) -> torch.Tensor | None:
        """Both lines' slopes as positions in the secant range, starting at the chord's."""
        s_min, s_max, _ = self._secant_range(l, u)
        chord = self.lines(l, u)[0]
        span = s_max - s_min
        a = torch.where(span > 0, (chord - s_min) / torch.where(span > 0, span, torch.ones_like(span)), torch.full_like(span, 0.5))
        a = a.clamp(0, 1)
        return torch.stack([a, a], dim=1)

    def lines_with(self, l: torch.Tensor, u: torch.Tensor, a_lo: torch.Tensor, a_up: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Slopes s = s_min + a·(s_max − s_min), each line's intercept from the grid bound of f − s·x (sound for any
        slope); unbounded boxes keep the constant lines at the IBP range."""
        s_min, s_max, finite = self._secant_range(l, u)
        _, lf, uf = self._finite_box(l, u)

        def inside(a: torch.Tensor) -> torch.Tensor:  # never past slope_cap
            return torch.minimum(torch.maximum(s_min + a * (s_max - s_min), s_min), s_max)

        s_lo, s_up = inside(a_lo), inside(a_up)
        shape = np.broadcast_shapes(s_lo.shape, lf.shape)
        lf, uf = lf.expand(shape), uf.expand(shape)
        lo, hi = self._grid_bounds(lf, uf, s_lo.expand(shape), s_up.expand(shape))
        if not bool(finite.all()):
            rlo, rhi = self.range(l, u)
            zero = torch.zeros_like(lo)
            s_lo, s_up = torch.where(finite, s_lo, zero), torch.where(finite, s_up, zero)
            lo, hi = torch.where(finite, lo, rlo), torch.where(finite, hi, rhi)
        return s_lo.expand(shape), lo, s_up.expand(shape), hi

    def slope_cap(self, l: torch.Tensor, u: torch.Tensor) -> torch.Tensor | None:
        s_min, s_max, _ = self._secant_range(l, u)
        return torch.maximum(s_min.abs(), s_max.abs())

    def lines(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lower slope, lower intercept, upper slope, upper intercept), valid on [l, u] in floating point.
        Unbounded inputs get constant lines at the IBP range (possibly infinite)."""
        finite, lf, uf = self._finite_box(l, u)
        width = uf - lf
        wide = width > 0
        s = torch.where(wide, (self.f(uf) - self.f(lf)) / torch.where(wide, width, torch.ones_like(width)), torch.zeros_like(width))
        s = torch.where(torch.isfinite(s), s, torch.zeros_like(s))
        lo, hi = self._grid_bounds(lf, uf, s)
        if not bool(finite.all()):
            rlo, rhi = self.range(l, u)
            s = torch.where(finite, s, torch.zeros_like(s))
            lo, hi = torch.where(finite, lo, rlo), torch.where(finite, hi, rhi)
        return s, lo, s, hi

    def singleprop(self, centres, radii, variant):
        c, v = centres[0], radii[0]
        lo, hi = self.range(c - v, c + v)
        return 0.5 * (hi - lo)
