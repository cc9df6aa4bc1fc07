"""CROWN's last step over an L2/L1 ball ∩ box: the rows A·x minimised over {‖x − c‖_p ≤ eps} ∩ [lo, hi].

`BallParts.dual_norm_bound` is Hölder's bound with the coefficients the box blocks dropped (cheap, used
everywhere); `BallParts.tighten` raises the spec's still-unproved rows to the Lagrangian dual of the intersection
at its best multiplier (`_dual_l1`: a fractional knapsack, `_dual_l2`: a tangent bound) — any multiplier is sound
(weak duality), and every term carries its rounding allowance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..kernel.backward import Coeffs, Context
from ..kernel.patches import Patches
from ..kernel.rounding import dot_gamma, scaled_norm, tiny, unit_roundoff
from ..spec import InputBox, LpBall


@dataclass
class BallParts:
    """Coefficients (N, R, k) and, under them, the ball's centre and the box (N or 1 rows, k) for `_concretise`."""

    a: torch.Tensor
    c: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    eps: torch.Tensor  # (N,)
    q: float

    @classmethod
    def of(cls, A: Coeffs, box: InputBox, b: LpBall, ctx: Context | None) -> "BallParts":
        """The parts of rows A over `box` and its ball `b` (`box.ball`)."""
        c = b.centre.to(box.lower.dtype)
        if isinstance(A, Patches):  # windows: the centre and the box under each row's window
            A = A.masked()  # entries outside the map are padding: zero

            def maps() -> torch.Tensor:
                return torch.cat([c, box.lower, box.upper], dim=1)

            cols = ctx.unfolded("ball", A, (c, box.lower, box.upper), maps) if ctx is not None else A.unfold(maps())
            a = A.data.reshape(A.data.shape[0], A.rows, -1)
            cc, lo, hi = (t.reshape(a.shape) for t in A.pick_parts(cols, 3))
        else:
            n, r = A.shape[:2]
            a = A.reshape(n, r, -1)
            cc, lo, hi = (t.reshape(n, 1, -1) for t in (c, box.lower, box.upper))
        return cls(a, cc, lo, hi, b.eps.to(a.dtype), b.q)

    def centre(self) -> torch.Tensor:
        """A·c rounded down (N, R)."""
        a, c = self.a, self.c
        if c.shape[1] == 1 and a.shape[1] > FEW_ROWS_DOT:
            centre, mag = torch.einsum("nrk,nk->nr", a, c[:, 0]), torch.einsum("nrk,nk->nr", a.abs(), c[:, 0].abs())
        else:
            centre, mag = (a * c).sum(-1), (a.abs() * c.abs()).sum(-1)
        return centre - dot_gamma(a.shape[2], a.dtype) * mag

    def free(self) -> torch.Tensor:
        """A', the coefficients whose decreasing direction the box leaves open (A_i > 0 with lo_i < c_i, A_i < 0
        with hi_i > c_i); the others' terms A_i·(x_i − c_i) are ≥ 0 on the box (a pixel at the domain's edge cannot
        move against the margin)."""
        zero = torch.zeros((), dtype=self.a.dtype, device=self.a.device)
        return torch.where(torch.where(self.a > 0, self.lo < self.c, self.hi > self.c), self.a, zero)

    def dual_norm_bound(self) -> torch.Tensor:
        """A·c − eps·‖A'‖_q ≤ A·x on ball ∩ box (A·(x − c) ≥ A'·(x − c) ≥ −‖A'‖_q·‖x − c‖_p: Hölder), rounded down."""
        dt = self.a.dtype
        g = dot_gamma(self.a.shape[2], dt)
        n, s = scaled_norm(self.free(), self.q)
        rad = self.eps.unsqueeze(1) * (n * (1 + g)) * s
        return _down(self.centre() - rad * (1 + 4 * unit_roundoff(dt)) - tiny(dt))

    def tighten(self, value: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        """`value` raised, on the rows where value + `offset` is still ≤ 0 (where a verdict can change), to the
        Lagrangian dual of min A·x over the ball ∩ box at its best multiplier: what no other bound over that set beats."""
        rows = ((value if offset is None else value + offset) <= 0) & torch.isfinite(value)
        if not bool(rows.any()):
            return value
        n_idx, r_idx = rows.nonzero(as_tuple=True)

        def pick(t: torch.Tensor) -> torch.Tensor:
            return t[n_idx, 0] if t.shape[1] == 1 else t[n_idx, r_idx]

        a, c, lo, hi = self.a[n_idx, r_idx], pick(self.c), pick(self.lo), pick(self.hi)
        sub = BallParts(a.unsqueeze(1), c.unsqueeze(1), lo.unsqueeze(1), hi.unsqueeze(1), self.eps[n_idx], self.q)
        a_free = sub.free()[:, 0]
        l_off, u_off = _down(lo - c), _up(hi - c)  # the box's offsets from the centre, rounded outward
        g = dot_gamma(a.shape[1], a.dtype)
        dual = (_dual_l1 if self.q == math.inf else _dual_l2)(a, a_free, l_off, u_off, sub.eps, g)
        out = value.clone()
        out[n_idx, r_idx] = torch.fmax(value[n_idx, r_idx], _down(sub.centre()[:, 0] + dual - tiny(a.dtype)))
        return out


FEW_ROWS_DOT = 4  # rows up to which `BallParts.centre` multiplies and sums instead of a matrix product


def _down(t: torch.Tensor) -> torch.Tensor:
    """t moved down by 4u of its size: below the exact value of a sum or product rounded once to give t."""
    return t - 4 * unit_roundoff(t.dtype) * t.abs()


def _up(t: torch.Tensor) -> torch.Tensor:
    return t + 4 * unit_roundoff(t.dtype) * t.abs()


def _dual_l1(a, a_free, l_off, u_off, eps, g, top: int = 64) -> torch.Tensor:
    """Rows (M, k): min over ‖δ‖₁ ≤ eps, l ≤ δ ≤ u of a·δ ≥ −λ·eps + Σ_i min(0, (a_i + λ)·u_i, (a_i − λ)·l_i) for
    every λ ≥ 0 (weak duality; the inner minimum of a convex piecewise-linear function sits at a breakpoint). The
    best λ is the |a_i| where the box's room against the margin, summed over the largest |a'_i| first, reaches eps
    (a fractional knapsack), searched among the `top` largest (λ = max|a'| is the dual norm, λ = 0 the box; any λ
    is sound). Rounding: γ of every term."""
    room = torch.where(a > 0, -l_off, u_off)  # how far x_i can move against the margin
    size = a_free.abs()
    k = min(top, a.shape[1])
    largest, where = size.topk(k, dim=1)
    filled = room.gather(1, where).cumsum(1)
    at = (filled < eps.unsqueeze(1)).sum(1, keepdim=True).clamp(max=k - 1)
    lam = largest.gather(1, at)  # (M, 1)
    zero = torch.zeros((), dtype=a.dtype, device=a.device)
    terms = torch.minimum(torch.minimum((a + lam) * u_off, (a - lam) * l_off), zero)
    lam = lam.squeeze(1)
    mag = ((a.abs() + lam.unsqueeze(1)) * torch.maximum(-l_off, u_off)).sum(1) + lam * eps
    return terms.sum(1) - lam * eps - 2 * g * mag


def _dual_l2(a, a_free, l_off, u_off, eps, g, steps: int = 16) -> torch.Tensor:
    """Rows (M, k): min over ‖δ‖₂ ≤ eps, l ≤ δ ≤ u of a·δ ≥ −μ·eps²/2 + Σ_i min over [l_i, u_i] of (a_i·δ_i + μ·δ_i²/2)
    for every μ > 0 (weak duality). Each inner minimum is bounded below by the tangent at d_i = clip(−a_i/μ, l_i, u_i)
    (exact at the true minimiser, a lower bound anywhere: the function is convex), so the choice of μ and the
    rounding of d cost tightness, never soundness. μ: a log-scale bisection for ‖d(μ)‖₂ = eps in [μ₀·1e-4, μ₀], μ₀ =
    ‖a'‖₂/eps the unclipped optimum (where ‖d‖₂ ≤ eps already); the dual is flat at its optimum, so a few steps do."""
    e2 = (eps * eps).unsqueeze(1)
    hi_mu = (torch.linalg.vector_norm(a_free, dim=1, keepdim=True) / eps.unsqueeze(1)).clamp(min=1e-300)
    lo_mu = hi_mu * 1e-4

    def point(mu):
        return torch.minimum(torch.maximum(-a / mu, l_off), u_off)

    for _ in range(steps):
        mid = (lo_mu * hi_mu).sqrt()
        d = point(mid)
        long = (d * d).sum(1, keepdim=True) > e2  # the step is too long: a larger μ
        lo_mu, hi_mu = torch.where(long, mid, lo_mu), torch.where(long, hi_mu, mid)
    mu = hi_mu
    d = point(mu)
    slope = a + mu * d
    zero = torch.zeros((), dtype=a.dtype, device=a.device)
    tangent = a * d + mu * d * d / 2 + torch.minimum(torch.minimum(slope * (l_off - d), slope * (u_off - d)), zero)
    # rounding: of every product and sum, and of the slope itself (a computed slope ŝ = s(1 ± 2u) bends the tangent by
    # |s − ŝ|·|δ − d| ≤ 2u·(|a| + μ|d|)·(|l| + |u| + 2|d|), which this magnitude covers even where s ≈ 0)
    mag = (a.abs() * d.abs() + mu * d * d + (a.abs() + mu * d.abs()) * (l_off.abs() + u_off.abs() + 2 * d.abs())).sum(1)
    mu = mu.squeeze(1)
    return tangent.sum(1) - mu * eps * eps / 2 - 2 * g * (mag + mu * eps * eps)
