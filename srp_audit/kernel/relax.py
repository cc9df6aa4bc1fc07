"""Linear relaxations of activations over a pre-activation interval [l, u], shared by the backward methods.

Each relaxation gives lines  lower_slope·x + lower_icpt ≤ f(x) ≤ upper_slope·x + upper_icpt  for x ∈ [l, u].
They are valid in exact arithmetic; the intercepts of curved functions are widened by an absolute allowance
that covers the floating-point evaluation of f, f′ and the tangent point, so the computed lines are valid too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .backward import split_signs
from .patches import weighted_sum
from .rounding import unit_roundoff


@dataclass
class Lines:
    lower_slope: torch.Tensor
    lower_icpt: torch.Tensor
    upper_slope: torch.Tensor
    upper_icpt: torch.Tensor


def relu_masks(l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(active, dead, unstable) masks."""
    active = l >= 0
    dead = u <= 0
    return active, dead, ~(active | dead)


def relu_upper(l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The chord u(x − l)/(u − l) on unstable neurons, identity on active ones, zero on dead ones.

    Floating point: the slope is rounded up by 2 ulps and the intercept −slope·l by a relative 4 ulps, so the
    computed line stays above relu on [l, u].
    """
    active, dead, unstable = relu_masks(l, u)
    ur = unit_roundoff(l.dtype)
    width = torch.where(unstable, u - l, torch.ones_like(u))
    slope = torch.where(unstable, (u / width) * (1 + 2 * ur), active.to(u.dtype))
    icpt = torch.where(unstable, (-slope * l) * (1 + 4 * ur), torch.zeros_like(u))
    return slope, icpt


def relu_adaptive_lower(l: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """CROWN's lower slope: 1 where u ≥ −l (and on active neurons), else 0. Any slope in [0, 1] is valid."""
    active, dead, unstable = relu_masks(l, u)
    return torch.where(unstable, (u >= -l).to(u.dtype), active.to(u.dtype))


# ---------------------------------------------------------------------------------------- sigmoid and tanh


@dataclass(frozen=True)
class SmoothFn:
    """A smooth S-shaped activation: convex on (−∞, 0], concave on [0, ∞), f(x) = kappa − f(−x)."""

    f: Callable[[torch.Tensor], torch.Tensor]
    df: Callable[[torch.Tensor], torch.Tensor]
    kappa: float
    floor: float
    ceil: float


SIGMOID = SmoothFn(torch.sigmoid, lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x)), 1.0, 0.0, 1.0)
TANH = SmoothFn(torch.tanh, lambda x: 1 - torch.tanh(x) ** 2, 0.0, -1.0, 1.0)
ERF = SmoothFn(torch.erf, lambda x: 2 / math.sqrt(math.pi) * torch.exp(-x * x), 0.0, -1.0, 1.0)

_BISECT_STEPS = 30
_TANGENT_MAX = 40.0


def _upper_line(fn: SmoothFn, l: torch.Tensor, u: torch.Tensor, a: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A line above f on [l, u] (exact arithmetic), before the floating-point allowance. `a` ∈ [0, 1] (alpha-CROWN,
    broadcast against l and u) moves the tangent point over the valid ones: d = l + a·(u − l) on the concave part,
    d = d₀ + a·(max(u, d₀) − d₀) past the bisection's d₀ when crossing 0 (None: the midpoint, and d₀).

    - u ≤ 0 (convex part): the chord through (l, f(l)) and (u, f(u)).
    - otherwise: the tangent at d ≥ max(0, l). If l ≥ 0 (concave part) d is the midpoint. If l < 0 < u, d is
      the smallest point found by bisection whose tangent still passes above (l, f(l)): on [0, ∞) any tangent
      at d ≥ 0 lies above f (concavity); on [l, 0], tangent − f is concave so its minimum is at l or 0, and
      h(d) = f(d) + f′(d)(l − d) − f(l) increases in d > 0, so bisection keeps the end with h ≥ 0.
    """
    fl, fu = fn.f(l), fn.f(u)
    width = (u - l).clamp(min=1e-12)
    chord_slope = (fu - fl) / width
    chord_icpt = fl - chord_slope * l
    mid = (l + u) / 2
    # bisection for the crossing case (run on all entries; only used where l < 0 < u)
    lo = torch.zeros_like(l)
    hi = torch.full_like(l, _TANGENT_MAX)
    for _ in range(_BISECT_STEPS):
        d = (lo + hi) / 2
        ok = fn.f(d) + fn.df(d) * (l - d) - fl >= 0
        hi = torch.where(ok, d, hi)
        lo = torch.where(ok, lo, d)
    if a is None:
        d = torch.where(l >= 0, mid, hi)
    else:  # every tangent at d ≥ d₀ (crossing) or d ∈ [l, u] (concave) passes above f on [l, u]
        d = torch.where(l >= 0, l + a * (u - l), hi + a * (torch.maximum(u, hi) - hi))
    t_slope = fn.df(d)
    t_icpt = fn.f(d) - t_slope * d
    convex = u <= 0
    slope = torch.where(convex, chord_slope, t_slope)
    icpt = torch.where(convex, chord_icpt, t_icpt)
    # If even the largest tangent point failed (absurdly negative l), fall back to the constant f(u).
    failed = (l < 0) & (u > 0) & (fn.f(hi) + fn.df(hi) * (l - hi) - fl < 0)
    slope = torch.where(failed, torch.zeros_like(slope), slope)
    icpt = torch.where(failed, fu, icpt)
    # Degenerate boxes (u ≈ l): the constant f(u) is exact and valid.
    flat = (u - l) <= 1e-9 * (1 + l.abs())
    return torch.where(flat, torch.zeros_like(slope), slope), torch.where(flat, fu, icpt)


def smooth_lines(fn: SmoothFn, l: torch.Tensor, u: torch.Tensor, a_lo: torch.Tensor | None = None,
                 a_up: torch.Tensor | None = None) -> Lines:
    """Sound lower and upper lines of sigmoid/tanh on [l, u]; the lower line mirrors the upper one through
    f(x) = kappa − f(−x). Intercepts widen by 64 ulps of the terms' magnitude (f and its lines are O(1)).
    `a_lo`, `a_up`: alpha-CROWN's tangent positions (`_upper_line`); the default lines at `smooth_params`."""
    us, ui = _upper_line(fn, l, u, a_up)
    ls_, li_ = _upper_line(fn, -u, -l, a_lo)  # upper line of f on [−u, −l], mirrored
    lower_slope, lower_icpt = ls_, fn.kappa - li_
    ur = unit_roundoff(l.dtype) * 64
    mag = l.abs().maximum(u.abs())
    ui = ui + ur * (1 + ui.abs() + us.abs() * mag)
    lower_icpt = lower_icpt - ur * (1 + lower_icpt.abs() + lower_slope.abs() * mag)
    return Lines(lower_slope, lower_icpt, us, ui)


def smooth_params(l: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(N, 2, *shape): the tangent positions (lower line's, upper line's) at which `smooth_lines` gives its
    default lines — the midpoint on a concave part (0.5), the bisection's point when crossing 0 (0)."""
    half, zero = torch.full_like(l, 0.5), torch.zeros_like(l)
    return torch.stack([torch.where(u <= 0, half, zero), torch.where(l >= 0, half, zero)], dim=1)


def through_lines(A: torch.Tensor, lower_slope: torch.Tensor, lower_icpt: torch.Tensor, upper_slope: torch.Tensor,
                  upper_icpt: torch.Tensor, per_row: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN's step through an elementwise relaxation for dense coefficients A (N, R, *shape): the lower line where
    A ≥ 0, the upper line where A < 0. Lines are per sample (N, *shape), or per row (N, R, *shape) with `per_row`
    (alpha-CROWN's). Returns (A_x, constant (N, R))."""
    pos, neg = split_signs(A)
    lift = (lambda t: t) if per_row else (lambda t: t.unsqueeze(1))
    wsum = (lambda B, v: (B * v).flatten(2).sum(-1)) if per_row else weighted_sum
    A_x = pos * lift(lower_slope) + neg * lift(upper_slope)
    lo_ok, up_ok = torch.isfinite(lower_icpt), torch.isfinite(upper_icpt)
    if bool(lo_ok.all()) and bool(up_ok.all()):
        return A_x, wsum(pos, lower_icpt) + wsum(neg, upper_icpt)
    # an unbounded line (f undefined or unbounded on the box) makes every bound that uses it −∞, without 0·∞
    zero = torch.zeros_like(lower_icpt)
    const = wsum(pos, torch.where(lo_ok, lower_icpt, zero)) + wsum(neg, torch.where(up_ok, upper_icpt, zero))
    uses = wsum(pos, (~lo_ok).to(A.dtype)) + wsum(-neg, (~up_ok).to(A.dtype))
    return A_x, torch.where(uses > 0, torch.full_like(const, -float("inf")), const)
