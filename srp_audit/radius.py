"""Radius searches of `certify`, batched over samples: the certified radius (regula falsi on the margin bound,
a proof at r covering every smaller ball), the attack radius (the smallest eps with a confirmed counterexample)
and the verdicts at each eps of a sweep, read off both radii."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .errors import SoundnessError

if TYPE_CHECKING:
    from .certify import CertifyOptions


def sweep_verdicts(prove, methods, opt: CertifyOptions, candidates, cert, att_r, clean_bad, verified, eps_full) -> list[list[str]]:
    """Verdicts at every eps of the sweep from one radius search: proved when the certified radius reaches it
    (a proof at r covers every smaller ball), falsified when a counterexample is that close; samples whose
    radius falls within the search tolerance below an eps get a direct proof attempt at it."""
    out = []
    n = cert.shape[0]
    for e in opt.sweep:
        e_t = torch.full_like(cert, float(e))
        ok = candidates & ((cert >= e_t) | (verified & (e_t <= eps_full)))
        near = (candidates & ~ok & (att_r > e_t) & (cert + opt.radius_tol >= e_t)).nonzero().flatten()
        if near.numel():
            p, _, _ = prove(near, e_t[near], methods)
            ok[near[p]] = True
        bad = clean_bad | (att_r <= e_t)
        if (ok & bad).any():
            raise SoundnessError(f"sweep eps {e}: a sample was both proved and falsified")
        out.append(["verified" if ok[i] else "falsified" if bad[i] else "unknown" for i in range(n)])
    return out


def record_counterexamples(att_r: torch.Tensor, ce: torch.Tensor, idx: torch.Tensor, points: torch.Tensor, x: torch.Tensor) -> None:
    """Keep confirmed counterexamples that are closer than the best known ones (distance in float64, exact)."""
    if not idx.numel():
        return
    dist = (points.double() - x[idx].double()).reshape(idx.numel(), -1).abs().amax(dim=1)
    closer = dist < att_r[idx]
    att_r[idx[closer]] = dist[closer]
    ce[idx[closer]] = points[closer]


def certified_radius(prove, candidates, proved, bound, eps, att_r, clean_margin, r_max: float, tol: float) -> torch.Tensor:
    """Largest eps the prover proves, per sample, to `tol`: a bracket [lo, hi] with lo proved (or 0) and hi
    unprovable (not proved, or beyond a counterexample), narrowed by regula falsi on the worst margin bound
    (Illinois variant, steps clamped tol/2 inside the bracket), which usually needs a few steps where
    bisection needs ten. Returns lo: always a proved radius."""
    nan = torch.full_like(eps, torch.nan)
    lo = torch.where(proved, eps, torch.zeros_like(eps))
    f_lo = torch.where(proved, bound, clean_margin)
    hi = torch.where(proved, torch.minimum(att_r, torch.full_like(eps, r_max)), torch.minimum(eps, att_r))
    f_hi = torch.where(~proved & (att_r >= eps), bound, nan)
    # A proof at the cap itself is checked once (the search never evaluates hi).
    top = (candidates & proved & (hi == r_max) & (hi > lo)).nonzero().flatten()
    if top.numel():
        ok, b, _ = prove(top, hi[top])
        lo[top[ok]], f_lo[top[ok]] = hi[top[ok]], b[ok]
        f_hi[top[~ok]] = b[~ok]
    side = torch.zeros_like(eps, dtype=torch.long)  # last end moved: +1 lo, −1 hi
    active = candidates.clone()
    for _ in range(60):
        active &= (hi - lo) > tol
        act = active.nonzero().flatten()
        if not act.numel():
            break
        a_lo, a_hi, fl, fh = lo[act], hi[act], f_lo[act], f_hi[act]
        secant = torch.isfinite(fh) & (fl > fh)
        guess = torch.where(secant, a_lo + (a_hi - a_lo) * fl / (fl - torch.where(secant, fh, fl - 1)), (a_lo + a_hi) / 2)
        guess = torch.minimum(torch.maximum(guess, a_lo + tol / 2), a_hi - tol / 2)
        ok, b, _ = prove(act, guess)
        up, down = act[ok], act[~ok]
        lo[up], f_lo[up] = guess[ok], b[ok]
        hi[down], f_hi[down] = guess[~ok], b[~ok]
        # Illinois: an end that stays put twice has its value halved, so the secant moves it next time.
        f_hi[up[side[up] == 1]] *= 0.5
        f_lo[down[side[down] == -1]] *= 0.5
        side[up], side[down] = 1, -1
    return torch.where(candidates, lo, torch.zeros_like(lo))


def attack_radius_search(attack, att_r, ce, x, candidates, lower, r_max: float, opt: CertifyOptions) -> None:
    """Bisection for the smallest radius with a confirmed counterexample, between `lower` (where nothing can
    be found: a proved radius, or 0) and the best counterexample known (or the cap). Attack failures prove
    nothing; they only steer the search."""
    dev = x.device
    need = candidates & torch.isinf(att_r)
    idx = need.nonzero().flatten()
    if idx.numel():
        ok, pts = attack(idx, torch.full((idx.numel(),), r_max, dtype=torch.float64, device=dev), 1, opt.seed + 1)
        record_counterexamples(att_r, ce, idx[ok], pts[ok], x)
    lo = lower.clone()
    active = candidates & torch.isfinite(att_r)
    it = 0
    while True:
        active &= (att_r - lo) > opt.radius_tol
        act = active.nonzero().flatten()
        if not act.numel():
            break
        it += 1
        mid = (lo[act] + att_r[act]) / 2
        ok, pts = attack(act, mid, 1, opt.seed + 1 + it)
        record_counterexamples(att_r, ce, act[ok], pts[ok], x)
        lo[act[~ok]] = mid[~ok]
