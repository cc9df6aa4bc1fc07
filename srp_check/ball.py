"""An L2 or L1 input ball: the bound of rows A·x over {‖x − c‖_p ≤ eps} ∩ [lo, hi] at the end of a backward pass.

A·x = A·c + A·δ with δ = x − c in [l, u] ⊇ [lo − c, hi − c] ∪ {0} (rounded outward: a superset, so sound); each
row takes the better of two lower bounds of min A·δ over ‖δ‖_p ≤ eps, δ ∈ [l, u] (`backward` adds the box's):

* Hölder with the coefficients the box settles dropped: A' keeps A_i where the box leaves δ_i room against the
  row (A_i > 0 with lo_i < c_i, A_i < 0 with hi_i > c_i); every other A_i·δ_i is ≥ 0, so A·δ ≥ −eps·‖A'‖_q (q = 2
  for L2, ∞ for L1). ‖A'‖_∞ is an exact max; Σ A'_i² (n non-negative products) is bounded above by `ub`; IEEE √
  is correctly rounded, so the next float above it bounds the exact root; the product with eps is rounded up.
* The Lagrangian dual at a multiplier the checker picks (any is sound: weak duality). L1, λ ≥ 0 (srp-audit's
  fractional-knapsack choice): A·δ ≥ −λ·eps + Σ_i min(0, (A_i + λ)·u_i, (A_i − λ)·l_i), the minima over [l_i, u_i]
  of the convex piecewise-linear A_i·δ_i + λ|δ_i|. L2, μ > 0 (bisected for ‖d‖₂ = eps): A·δ ≥ −μ·eps²/2 +
  Σ_i min over [l_i, u_i] of f_i(δ) = A_i·δ + μ·δ²/2, each ≥ the tangent at the float d_i = clip(−A_i/μ, l_i, u_i),
  f_i(d_i) + min(s_i·(l_i − d_i), s_i·(u_i − d_i)), s_i = A_i + μ·d_i (convexity: valid at any d_i, exact at the
  true minimiser). Each term has a few roundings, then a sum of n + 1: charged γ_{n+8}·(Σ_i the magnitudes of the
  term's parts + λ·eps or μ·eps²) plus 8n·η for underflow.

fl(A·c) is charged γ_n·Σ|A_i·c_i| + n·η (`product_charge`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fp import ETA, accumulate, add_up, down, gamma, product_charge, ub, up


@dataclass(frozen=True)
class Ball:
    """{x : ‖x − centre‖_p ≤ eps}; `q` the dual exponent (2 for p = 2, inf for p = 1)."""

    centre: np.ndarray
    eps: float
    q: float


def input_ball(s: dict) -> Ball | None:
    """The ball of a validated input set (None for a box or an L∞ ball: the box is the whole set)."""
    if s["type"] != "robustness" or s["norm"] == "inf":
        return None
    return Ball(s["x"], s["eps"], 2.0 if s["norm"] == "2" else np.inf)


def _low(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.nan_to_num(down(pair[0] - pair[1]), nan=-np.inf)


def best(*pairs: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the (val, err) pair with the largest lower bound val − err (each is sound)."""
    pick = np.argmax(np.stack([_low(p) for p in pairs]), axis=0)
    return np.choose(pick, [p[0] for p in pairs]), np.choose(pick, [p[1] for p in pairs])


def _holder(A: np.ndarray, ball: Ball, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if ball.q == 2.0:
        norm = up(np.sqrt(ub(np.einsum("rj,rj->r", free, free), free.shape[1])))
    else:
        norm = np.abs(free).max(axis=1, initial=0.0)
    return np.zeros(A.shape[0]), up(ball.eps * norm)


def _dual_l1(A: np.ndarray, eps: float, free: np.ndarray, l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = np.abs(free)
    order = np.argsort(-size, axis=1)
    room = np.take_along_axis(np.maximum(np.where(A > 0, -l, u), 0.0), order, axis=1).cumsum(axis=1)
    at = np.minimum((room < eps).sum(axis=1), A.shape[1] - 1)
    lam = np.take_along_axis(size, np.take_along_axis(order, at[:, None], axis=1), axis=1)  # (R, 1)
    terms = np.minimum(np.minimum((A + lam) * u, (A - lam) * l), 0.0)
    lam = lam[:, 0]
    mag = ((np.abs(A) + lam[:, None]) * np.maximum(np.abs(l), np.abs(u))).sum(axis=1) + lam * eps
    return terms.sum(axis=1) - lam * eps, mag


def _dual_l2(A: np.ndarray, eps: float, free: np.ndarray, l: np.ndarray, u: np.ndarray, steps: int = 16) -> tuple[np.ndarray, np.ndarray]:
    neg = -A

    def point(mu: np.ndarray) -> np.ndarray:  # any d is sound
        return np.minimum(np.maximum(neg * (1.0 / mu), l), u)

    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # eps = 0 or A = 0: a NaN bound, not taken
        hi = np.maximum(np.sqrt(np.einsum("rj,rj->r", free, free)) / eps, 1e-300)[:, None]
        lo = hi * 1e-4
        for _ in range(steps):
            mid = np.sqrt(lo * hi)
            d = point(mid)
            long = np.einsum("rj,rj->r", d, d)[:, None] > eps * eps
            lo, hi = np.where(long, mid, lo), np.where(long, hi, mid)
        d = point(hi)
    mu = hi
    s = A + mu * d
    tangent = A * d + mu * d * d / 2 + np.minimum(s * (l - d), s * (u - d))
    mag = (np.abs(A * d) + mu * d * d + (np.abs(A) + mu * np.abs(d)) * (np.abs(l) + np.abs(u) + 2 * np.abs(d))).sum(axis=1)
    mu = mu[:, 0]
    return tangent.sum(axis=1) - mu * eps * eps / 2, mag + mu * eps * eps


def ball_bound(A: np.ndarray, ball: Ball, lo: np.ndarray, hi: np.ndarray, val: np.ndarray,
               err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add a lower bound of A·x over the ball ∩ [lo, hi] to the rows (val, err), rigorously (module docstring)."""
    c, n = ball.centre, ball.centre.size
    free = np.where(np.where(A > 0, lo < c, hi > c), A, 0.0)
    l, u = np.minimum(down(lo - c), 0.0), np.maximum(up(hi - c), 0.0)
    dual, mag = (_dual_l2 if ball.q == 2.0 else _dual_l1)(A, ball.eps, free, l, u)
    charge = add_up(up(gamma(n + 8) * ub(mag, n + 1)), up(8 * n * ETA))
    off, off_err = best(_holder(A, ball, free), (dual, np.where(np.isfinite(charge), charge, np.inf)))
    err = add_up(err, product_charge(np.abs(A), np.abs(c), n, 1.0), off_err)
    val, err = accumulate(val, err, A @ c)
    return accumulate(val, err, off)
