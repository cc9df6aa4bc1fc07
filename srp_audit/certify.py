"""Per-sample verdicts and certified radii.

For each sample (x, y) and radius eps:
- `verified`: a sound bound method proves every margin f_y − f_j positive over the ball ∩ domain;
- `falsified`: a point of the ball that another class reaches (non-strictly) was found and re-checked by plain
  forward passes (misclassified samples are falsified by x itself, at radius 0);
- `unknown`: neither.
The certified radius is the largest eps the method proves (bisection, batched over samples; a proof at r covers
every smaller ball). The attack radius is the smallest eps at which a confirmed counterexample was found.
All bound arithmetic runs in float64 with outward rounding; attacks run in the model's own precision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .attack import confirm_counterexamples, pgd
from .bounds import get_method
from .device import resolve_device, use_exact_float32
from .ir.graph import Graph
from .spec import LinearSpec, inner_linf_ball, inside_linf_ball, linf_ball, margin_spec

VERDICTS = ("verified", "falsified", "unknown")


class SoundnessError(RuntimeError):
    """A sample was both proved and falsified: a bug in a bound rule. Never caught."""


@dataclass
class CertifyOptions:
    eps: float
    method: str = "ibp"
    domain: tuple[float, float] = (0.0, 1.0)
    radius: bool = True  # search the certified and attack radii
    radius_tol: float = 1e-3
    radius_max: float | None = None  # default: the domain's width
    attack_steps: int = 30
    attack_restarts: int = 2
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"


@dataclass
class SampleResult:
    index: int
    label: int
    prediction: int
    verdict: str
    certified_radius: float
    attack_radius: float | None
    method: str | None  # which method proved it (None unless verified)
    bound: float  # worst margin lower bound at eps (> 0 iff proved at eps); -inf when not bounded
    counterexample: np.ndarray | None = field(default=None, repr=False)


@dataclass
class CertifyResult:
    samples: list[SampleResult]
    options: CertifyOptions
    device: str
    wall_time: float

    @property
    def n(self) -> int:
        return len(self.samples)

    def count(self, verdict: str) -> int:
        return sum(s.verdict == verdict for s in self.samples)

    @property
    def clean_accuracy(self) -> float:
        return sum(s.prediction == s.label for s in self.samples) / max(self.n, 1)

    @property
    def certified_accuracy(self) -> float:
        return self.count("verified") / max(self.n, 1)

    def radii(self) -> np.ndarray:
        return np.array([s.certified_radius for s in self.samples], dtype=np.float64)

    def method_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.samples:
            if s.method:
                out[s.method] = out.get(s.method, 0) + 1
        return out


Progress = Callable[[int, int], None]


def certify(
    graph: Graph,
    x: torch.Tensor,
    y: torch.Tensor,
    options: CertifyOptions,
    progress: Progress | None = None,
) -> CertifyResult:
    """Certify every sample; `x` (N, *input_shape) in the model's input space, `y` (N,) integer labels."""
    start = time.perf_counter()
    device = resolve_device(options.device)
    if device.type == "cuda":
        use_exact_float32()
    native = graph.copy(device=device).eval()
    wide = graph.copy(dtype=torch.float64, device=device).eval()
    results: list[SampleResult] = []
    n = x.shape[0]
    for lo in range(0, n, options.batch_size):
        hi = min(n, lo + options.batch_size)
        xb = x[lo:hi].to(device=device, dtype=native.dtype)
        yb = y[lo:hi].to(device=device, dtype=torch.long)
        results += _certify_batch(native, wide, xb, yb, options, offset=lo)
        if progress:
            progress(hi, n)
    return CertifyResult(results, options, str(device), time.perf_counter() - start)


def _certify_batch(native: Graph, wide: Graph, x: torch.Tensor, y: torch.Tensor, opt: CertifyOptions, offset: int) -> list[SampleResult]:
    n, dev = x.shape[0], x.device
    k = native.num_classes
    method = get_method(opt.method)
    dom = opt.domain
    r_max = opt.radius_max if opt.radius_max is not None else dom[1] - dom[0]
    spec = margin_spec(y, k, torch.float64)
    x64 = x.double()
    with torch.no_grad():
        pred = native.logits(x).argmax(dim=1)
    clean_bad = confirm_counterexamples(x, spec, native, wide, torch.ones(n, dtype=torch.bool, device=dev))
    candidates = (pred == y) & ~clean_bad

    def prove(idx: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            lb = method(wide, linf_ball(x64[idx], eps, dom), spec.select(idx))
        return spec.select(idx).proved(lb), spec.select(idx).worst_bound(lb)

    def attack(idx: torch.Tensor, eps: torch.Tensor, restarts: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Confirmed counterexamples at per-sample eps: (found mask, points)."""
        box = inner_linf_ball(x[idx], eps, dom)
        sub = spec.select(idx)
        res = pgd(native, box, sub, steps=opt.attack_steps, restarts=restarts, seed=seed, start=x[idx])
        inside = inside_linf_ball(res.points, x[idx], eps, dom)
        ok = confirm_counterexamples(res.points, sub, native, wide, inside & res.found)
        return ok, res.points

    eps_full = torch.full((n,), float(opt.eps), dtype=torch.float64, device=dev)
    proved = torch.zeros(n, dtype=torch.bool, device=dev)
    bound = torch.full((n,), -torch.inf, dtype=torch.float64, device=dev)
    idx = candidates.nonzero().flatten()
    if idx.numel():
        p, b = prove(idx, eps_full[idx])
        proved[idx], bound[idx] = p, b

    # Certified radius: bisection on [lo, hi], lo always proved (or 0), hi never proved (or the cap).
    cert = torch.zeros(n, dtype=torch.float64, device=dev)
    if opt.radius and idx.numel():
        lo = torch.where(proved, eps_full, torch.zeros_like(eps_full))
        hi = torch.where(proved, torch.full_like(eps_full, r_max), eps_full)
        # A proof at the cap itself needs checking once: bisection never evaluates hi.
        top = idx[proved[idx]]
        if top.numel():
            p_top, _ = prove(top, hi[top])
            lo[top[p_top]] = hi[top[p_top]]
        active = candidates.clone()
        while True:
            active &= (hi - lo) > opt.radius_tol
            act = active.nonzero().flatten()
            if not act.numel():
                break
            mid = (lo[act] + hi[act]) / 2
            ok, _ = prove(act, mid)
            lo[act[ok]] = mid[ok]
            hi[act[~ok]] = mid[~ok]
        cert = torch.where(candidates, lo, cert)
    cert = torch.where(proved, torch.maximum(cert, eps_full), cert)
    verified = candidates & (proved | (cert >= eps_full))

    # Falsification at eps (only where nothing was proved), then the attack radius.
    att_r = torch.full((n,), torch.inf, dtype=torch.float64, device=dev)
    ce = x.clone()
    att_r[clean_bad] = 0.0
    todo = (candidates & ~verified).nonzero().flatten()
    if todo.numel():
        ok, pts = attack(todo, eps_full[todo], opt.attack_restarts, opt.seed)
        _record(att_r, ce, todo[ok], pts[ok], x)
    if opt.radius and idx.numel():
        _attack_radius_search(attack, att_r, ce, x, candidates, cert, r_max, opt)
    falsified = clean_bad | (att_r <= eps_full)
    clash = verified & falsified
    if clash.any():
        raise SoundnessError(f"samples {(clash.nonzero().flatten() + offset).tolist()} were both proved and falsified")

    out = []
    for i in range(n):
        verdict = "verified" if verified[i] else "falsified" if falsified[i] else "unknown"
        a = float(att_r[i])
        out.append(
            SampleResult(
                index=offset + i,
                label=int(y[i]),
                prediction=int(pred[i]),
                verdict=verdict,
                certified_radius=float(cert[i]),
                attack_radius=None if a == float("inf") else a,
                method=opt.method if verdict == "verified" else None,
                bound=float(bound[i]),
                counterexample=ce[i].cpu().numpy() if a != float("inf") else None,
            )
        )
    return out


def _record(att_r: torch.Tensor, ce: torch.Tensor, idx: torch.Tensor, points: torch.Tensor, x: torch.Tensor) -> None:
    """Keep confirmed counterexamples that are closer than the best known ones (distance in float64, exact)."""
    if not idx.numel():
        return
    dist = (points.double() - x[idx].double()).reshape(idx.numel(), -1).abs().amax(dim=1)
    closer = dist < att_r[idx]
    att_r[idx[closer]] = dist[closer]
    ce[idx[closer]] = points[closer]


def _attack_radius_search(attack, att_r, ce, x, candidates, cert, r_max: float, opt: CertifyOptions) -> None:
    """Bisection for the smallest radius with a confirmed counterexample, between the certified radius and the
    best counterexample known (or the cap). Attack failures prove nothing; they only steer the search."""
    n, dev = x.shape[0], x.device
    need = candidates & torch.isinf(att_r)
    idx = need.nonzero().flatten()
    if idx.numel():
        ok, pts = attack(idx, torch.full((idx.numel(),), r_max, dtype=torch.float64, device=dev), 1, opt.seed + 1)
        _record(att_r, ce, idx[ok], pts[ok], x)
    lo = cert.clone()
    active = candidates & torch.isfinite(att_r)
    it = 0
    while True:
        hi = att_r
        active &= (hi - lo) > opt.radius_tol
        act = active.nonzero().flatten()
        if not act.numel():
            break
        it += 1
        mid = (lo[act] + hi[act]) / 2
        ok, pts = attack(act, mid, 1, opt.seed + 1 + it)
        _record(att_r, ce, act[ok], pts[ok], x)
        lo[act[~ok]] = mid[~ok]
