"""Radius searches of `certify`, batched over samples: the certified radius (regula falsi on the margin bound,
a proof at r covering every smaller ball), the attack radius (the smallest eps with a confirmed counterexample)
and the verdicts at each eps of a sweep, read off both radii."""

from __future__ import annotations

import torch

from .certify_options import CertifyOptions
from .errors import SoundnessError
from .spec import distance

PILOT_MIN = 16  # the radius search pilots its first guesses when at least this many samples need one


def sweep_verdicts(prove, methods, opt: CertifyOptions, candidates, cert, att_r, falsified_at, verified, eps_full) -> list[list[str]]:
    """Verdicts at every eps of the sweep from one radius search: proved when the certified radius reaches it
    (a proof at r covers every smaller ball), falsified when `falsified_at(eps)` says a confirmed counterexample
    lies in that ball; samples whose radius falls within the search tolerance below an eps get a direct proof
    attempt at it."""
    out = []
    n = cert.shape[0]
    for e in opt.sweep:
        e_t = torch.full_like(cert, float(e))
        ok = candidates & ((cert >= e_t) | (verified & (e_t <= eps_full)))
        near = (candidates & ~ok & (att_r > e_t) & (cert + opt.radius_tol >= e_t)).nonzero().flatten()
        if near.numel():
            p, _, _ = prove(near, e_t[near], methods)
            ok[near[p]] = True
        bad = falsified_at(float(e))
        if (ok & bad).any():
            raise SoundnessError(f"sweep eps {e}: a sample was both proved and falsified")
        out.append(["verified" if ok[i] else "falsified" if bad[i] else "unknown" for i in range(n)])
    return out


def record_counterexamples(att_r: torch.Tensor, ce: torch.Tensor, idx: torch.Tensor, points: torch.Tensor, x: torch.Tensor,
                           norm: str = "inf") -> None:
    """Keep confirmed counterexamples that are closer than the best known ones: the distance in the ball's own
    norm, rounded up (`spec.distance`: exact for L∞), so that a counterexample at attack radius r lies in every
    ball of radius ≥ r."""
    if not idx.numel():
        return
    dist = distance(points, x[idx], norm).to(att_r.device)
    closer = dist < att_r[idx]
    att_r[idx[closer]] = dist[closer]
    ce[idx[closer]] = points[closer]


def margin_slope(graph, x: torch.Tensor, spec, domain: tuple[float, float], norm: str) -> torch.Tensor:
    """How fast the worst margin falls as the ball grows from x, to first order: the dual norm of its gradient
    (for L∞, coordinates pinned at a domain edge count only in the direction they may move). It only steers
    the certified-radius search; nothing is proved with it. NaN where the gradient is not finite."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        vals = spec.values(graph.logits(xg))
        worst = vals.gather(1, vals.argmin(dim=1, keepdim=True)).sum()
        if not worst.requires_grad:  # an output that does not depend on the input (through differentiable ops)
            return torch.full((x.shape[0],), torch.nan, dtype=x.dtype, device=x.device)
        (grad,) = torch.autograd.grad(worst, xg)
    grad = grad.reshape(x.shape[0], -1)
    if norm == "inf":
        flat = x.detach().reshape(x.shape[0], -1)
        harm = torch.where(flat <= domain[0], (-grad).clamp(min=0), torch.where(flat >= domain[1], grad.clamp(min=0), grad.abs()))
        slope = harm.sum(dim=1)
    else:
        slope = torch.linalg.vector_norm(grad, ord={"2": 2.0, "1": float("inf")}[norm], dim=1)
    return torch.where(torch.isfinite(slope), slope, torch.full_like(slope, torch.nan))


def _exponent(m, d, e_a, f_a, e_b, f_b) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(p, has_a, has_b, r_a, r_b) of the curve f(e) = m − d·e − c·e^p through the points (e_a, f_a) and
    (e_b, f_b): p in [1, 4] where both points fit such a curve, NaN elsewhere."""
    d = torch.nan_to_num(d, nan=0.0)
    r_a, r_b = m - d * e_a - f_a, m - d * e_b - f_b
    has_a, has_b = (e_a > 0) & (r_a > 0), torch.isfinite(f_b) & (r_b > 0) & (e_b > 0)
    both = has_a & has_b & (e_b != e_a)
    ratio = torch.where(both, r_b / torch.where(both, r_a, 1.0), torch.ones_like(m))
    span = torch.where(both, e_b / torch.where(both, e_a, 1.0), torch.full_like(m, 2.0))
    p = torch.where(both, (ratio.log() / span.log()).clamp(1.0, 4.0), torch.full_like(m, torch.nan))
    return p, has_a, has_b, r_a, r_b


def _model_root(m, d, e_a, f_a, e_b, f_b, lo, hi, p0: float = 2.0) -> torch.Tensor:
    """Where f(e) = m − d·e − c·e^p crosses zero in [lo, hi]: a curve from the clean margin m with the margin's
    slope d that falls ever faster, through the evaluated points (e_a, f_a) (e_a > 0) and (e_b, f_b) (finite),
    p fitted when both exist, else p0. NaN where the points do not fit such a curve."""
    p, has_a, has_b, r_a, r_b = _exponent(m, d, e_a, f_a, e_b, f_b)
    d = torch.nan_to_num(d, nan=0.0)
    p = torch.where(torch.isnan(p), torch.full_like(m, p0), p)
    e1 = torch.where(has_b, e_b, e_a)
    r1 = torch.where(has_b, r_b, r_a)
    c = r1 / e1.clamp(min=1e-300) ** p
    a, b = lo.clone(), hi.clone()
    for _ in range(40):
        mid = (a + b) / 2
        above = m - d * mid - c * mid**p > 0
        a, b = torch.where(above, mid, a), torch.where(above, b, mid)
    return torch.where(has_a | has_b, (a + b) / 2, torch.full_like(m, torch.nan))


def _secant(at, hi, f_lo, f_hi, secant, lo) -> torch.Tensor:
    """Regula falsi's guess — where the line through (at, f_lo) and (hi, f_hi) crosses zero — where `secant`
    holds, else the bracket's midpoint."""
    return torch.where(secant, at + (hi - at) * f_lo / torch.where(secant, f_lo - f_hi, 1.0), (lo + hi) / 2)


def _inside(guess, lo, hi, tol: float) -> torch.Tensor:
    """`guess` kept tol/2 inside the bracket (lo, hi), so that every evaluation narrows it by at least that."""
    return torch.minimum(torch.maximum(guess, lo + tol / 2), hi - tol / 2)


def _illinois(f_lo, f_hi, side, up, down) -> None:
    """Illinois: an end that stays put twice has its value halved, so the secant moves it next time. `up`: the
    samples whose lower end just moved, `down`: those whose upper end did; `side` remembers which (in place)."""
    f_hi[up[side[up] == 1]] *= 0.5
    f_lo[down[side[down] == -1]] *= 0.5
    side[up], side[down] = 1, -1


def certified_radius(prove, candidates, proved, bound, eps, att_r, clean_margin, r_max: float, tol: float,
                     salvage=None, slope: torch.Tensor | None = None) -> torch.Tensor:
    """Largest eps the prover proves, per sample, to `tol`: a bracket [lo, hi] with lo proved (or 0) and hi
    unprovable (not proved, or beyond a counterexample). Each guess is the root of a curve through the clean
    margin (with its slope, `slope`) and the latest bounds on either side (`_model_root`), else regula falsi
    (Illinois), else bisection, clamped tol/2 inside the bracket. `salvage(idx, lo, hi)`, when given, returns
    for samples just refuted at hi the largest radius below it that the refuted pass's own linear bound still
    proves (no new pass): a failed guess then narrows the bracket from both ends, so guesses lean tol/4 high.
    Returns lo: always a proved radius."""
    nan = torch.full_like(eps, torch.nan)
    slope = nan if slope is None else slope
    lo = torch.where(proved, eps, torch.zeros_like(eps))
    f_lo = torch.where(proved, bound, clean_margin)
    at = lo.clone()  # where f_lo was measured (the bracket's lo can move past it by salvage)
    hi = torch.where(proved, torch.minimum(att_r, torch.full_like(eps, r_max)), torch.minimum(eps, att_r))
    f_hi = torch.where(~proved & (att_r >= eps), bound, nan)
    # A proof at the cap itself is checked once (the search never evaluates hi).
    top = (candidates & proved & (hi == r_max) & (hi > lo)).nonzero().flatten()
    if top.numel():
        ok, b, _ = prove(top, hi[top])
        lo[top[ok]], f_lo[top[ok]], at[top[ok]] = hi[top[ok]], b[ok], hi[top[ok]]
        f_hi[top[~ok]] = b[~ok]
    lean = tol / 4 if salvage is not None else 0.0
    side = torch.zeros_like(eps, dtype=torch.long)  # last end moved: +1 lo, −1 hi
    active = candidates.clone()
    # A pilot: with many samples whose first guess rests on an assumed exponent, a few go first; the median
    # exponent their two points fit is then every other sample's first guess (p = 2 overshot the CNN fixture's
    # radii by 10–30 %: a wasted pass each, at the largest and costliest radius).
    pilot = active & ((hi - lo) > tol) & ~torch.isfinite(f_hi)
    n_pilot = int(pilot.sum())
    if n_pilot >= PILOT_MIN:
        pilot[pilot.nonzero().flatten()[max(PILOT_MIN // 4, n_pilot // 8):]] = False
    else:
        pilot = None
    p0 = 2.0
    for _ in range(60):
        active &= (hi - lo) > tol
        act = (active if pilot is None else active & pilot).nonzero().flatten()
        if not act.numel():
            if pilot is None:
                break
            pilot = None
            continue
        a_lo, a_hi, a_at, fl, fh = lo[act], hi[act], at[act], f_lo[act], f_hi[act]
        guess = _secant(a_at, a_hi, fl, fh, torch.isfinite(fh) & (fl > fh), a_lo)
        model = _model_root(clean_margin[act], slope[act], a_at, fl, a_hi, fh, a_lo, a_hi, p0)
        guess = _inside(torch.where(torch.isfinite(model), model, guess) + lean, a_lo, a_hi, tol)
        ok, b, _ = prove(act, guess)
        up, down = act[ok], act[~ok]
        lo[up], f_lo[up], at[up] = guess[ok], b[ok], guess[ok]
        hi[down], f_hi[down] = guess[~ok], b[~ok]
        _illinois(f_lo, f_hi, side, up, down)
        if salvage is not None and down.numel():
            lo[down] = torch.maximum(lo[down], salvage(down, lo[down], hi[down]))
        if pilot is not None:
            fitted = _exponent(clean_margin[act], slope[act], at[act], f_lo[act], hi[act], f_hi[act])[0]
            fitted = fitted[torch.isfinite(fitted)]
            p0 = float(fitted.median()) if fitted.numel() >= PILOT_MIN // 4 else p0
            pilot = None
    return torch.where(candidates, lo, torch.zeros_like(lo))


def attack_radius_search(attack, att_r, ce, x, candidates, lower, r_max: float, opt: CertifyOptions,
                         clean_margin: torch.Tensor, eps: torch.Tensor, margin_at_eps: torch.Tensor) -> None:
    """The smallest radius with a confirmed counterexample, to `opt.radius_tol`, between `lower` (where nothing
    can be found: a proved radius, or 0) and the best counterexample known. Samples without one are attacked
    first at 1.25× where the line through the clean margin and the attack's margin at eps (`margin_at_eps`)
    crosses zero, then at the cap. Each later guess is regula falsi (Illinois) on the attack's best margin —
    from the last failed radius (or eps, or the clean margin at 0) to the margin at the closest counterexample —
    with a bisection whenever a guess did not halve the bracket (the margin found is a noisy curve). Attack
    failures prove nothing; they only steer the search."""
    dev = x.device
    tol = opt.radius_tol
    f_hi = torch.full_like(clean_margin, torch.nan)  # the attack's margin at the closest counterexample
    lo = lower.clone()
    line = (margin_at_eps > 0) & (clean_margin > margin_at_eps) & (eps > 0)
    # the secant's lower point: the attack's margin at eps where measured, else the clean margin at 0
    at = torch.where(line, eps, torch.zeros_like(lo))
    f_lo = torch.where(line, margin_at_eps, clean_margin)
    first = torch.where(line, 1.25 * eps * clean_margin / torch.where(line, clean_margin - margin_at_eps, 1.0), torch.inf)
    for stage in ("line", "cap"):
        need = candidates & torch.isinf(att_r)
        if stage == "line":
            need &= (first < r_max) & (first > lo + tol / 2)
        idx = need.nonzero().flatten()
        if not idx.numel():
            continue
        r = first[idx] if stage == "line" else torch.full((idx.numel(),), r_max, dtype=torch.float64, device=dev)
        ok, pts, obj = attack(idx, r, 1, opt.seed + 1)
        record_counterexamples(att_r, ce, idx[ok], pts[ok], x, opt.norm)
        f_hi[idx[ok]] = obj[ok]
        if stage == "line":
            failed = idx[~ok]
            lo[failed], at[failed], f_lo[failed] = r[~ok], r[~ok], obj[~ok]
    side = torch.zeros_like(lo, dtype=torch.long)  # the end the last guess moved: +1 lo, −1 hi
    width = torch.full_like(lo, torch.inf)  # the bracket before the last guess
    active = candidates & torch.isfinite(att_r)
    it = 0
    while True:
        active &= (att_r - lo) > tol
        act = active.nonzero().flatten()
        if not act.numel():
            break
        it += 1
        a_lo, a_hi, a_at, fl, fh = lo[act], att_r[act], at[act], f_lo[act], f_hi[act]
        secant = torch.isfinite(fh) & (fl > 0) & (fh < 0) & ((a_hi - a_lo) <= 0.5 * width[act])
        guess = _inside(_secant(a_at, a_hi, fl, fh, secant, a_lo), a_lo, a_hi, tol)
        width[act] = torch.where(secant, a_hi - a_lo, torch.full_like(a_lo, torch.inf))
        ok, pts, obj = attack(act, guess, 1, opt.seed + 1 + it)
        record_counterexamples(att_r, ce, act[ok], pts[ok], x, opt.norm)
        up, down = act[~ok], act[ok]  # nothing found: the lower end moves up; a counterexample: the upper end down
        lo[up], at[up], f_lo[up] = guess[~ok], guess[~ok], obj[~ok]
        f_hi[down] = obj[ok]
        _illinois(f_lo, f_hi, side, up, down)
