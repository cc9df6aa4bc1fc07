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
from .bounds import CASCADE, CrownResult, get_method, interval_bounds
from .device import resolve_device, use_exact_float32
from .ir.graph import Graph
from .ir.nodes import Relu
from .spec import LinearSpec, inner_linf_ball, inside_linf_ball, linf_ball, margin_spec

VERDICTS = ("verified", "falsified", "unknown")


class SoundnessError(RuntimeError):
    """A sample was both proved and falsified: a bug in a bound rule. Never caught."""


@dataclass
class CertifyOptions:
    eps: float
    method: str = "auto"  # a name in bounds.METHODS, or "auto" (escalate through bounds.CASCADE)
    alpha_iters: int = 20
    domain: tuple[float, float] = (0.0, 1.0)
    radius: bool = True  # search the certified and attack radii
    radius_tol: float = 1e-3
    radius_max: float | None = None  # default: the domain's width
    attack_steps: int = 30
    attack_restarts: int = 2
    batch_size: int | None = 256  # None: auto (grow on a GPU until memory runs out, then back off)
    seed: int = 0
    device: str = "auto"
    sweep: tuple[float, ...] = ()  # more radii to report verdicts at, from the same radius search


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
    unstable: int = 0  # unstable ReLU neurons under IBP bounds at eps (what makes CROWN expensive)
    sweep_verdicts: tuple[str, ...] = ()  # the verdict at each eps of options.sweep
    counterexample: np.ndarray | None = field(default=None, repr=False)


@dataclass
class CertifyResult:
    samples: list[SampleResult]
    options: CertifyOptions
    device: str
    wall_time: float
    notes: list[str] = field(default_factory=list)  # things the user should know (e.g. batch halved after OOM)

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

    def mean_unstable(self) -> float:
        return float(np.mean([s.unstable for s in self.samples])) if self.samples else 0.0

    def sweep(self) -> list[dict]:
        """Per eps of options.sweep: counts of each verdict and the certified accuracy."""
        rows = []
        for j, e in enumerate(self.options.sweep):
            verdicts = [s.sweep_verdicts[j] for s in self.samples]
            n = max(self.n, 1)
            rows.append({"eps": e, "verified": verdicts.count("verified"), "falsified": verdicts.count("falsified"),
                         "unknown": verdicts.count("unknown"), "certified_accuracy": verdicts.count("verified") / n})
        return rows

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
    index_offset: int = 0,
) -> CertifyResult:
    """Certify every sample; `x` (N, *input_shape) in the model's input space, `y` (N,) integer labels.
    `index_offset`: the global index of x[0] (for shards of a larger set)."""
    start = time.perf_counter()
    device = resolve_device(options.device)
    if device.type == "cuda":
        use_exact_float32()
    native = graph.copy(device=device).eval()
    wide = graph.copy(dtype=torch.float64, device=device).eval()
    for g in (native, wide):
        g.requires_grad_(False)  # certification never trains; attacks and alpha-CROWN take input/slope gradients only
    results: list[SampleResult] = []
    notes: list[str] = []
    n = x.shape[0]
    auto = options.batch_size is None
    batch = (64 if device.type == "cuda" else 256) if auto else options.batch_size
    ceiling = None  # the smallest batch that ran out of memory (auto grows towards it, then stays below)
    lo = 0
    while lo < n:
        hi = min(n, lo + batch)
        xb = x[lo:hi].to(device=device, dtype=native.dtype)
        yb = y[lo:hi].to(device=device, dtype=torch.long)
        try:
            results += _certify_batch(native, wide, xb, yb, options, offset=index_offset + lo)
        except (RuntimeError, MemoryError) as e:
            if not is_out_of_memory(e) or batch == 1:
                raise
            ceiling = batch
            batch = max(1, batch // 2)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if not notes:
                notes.append(f"out of memory at batch {ceiling}: continued with smaller batches (down to {batch} so far)")
            else:
                notes[0] = f"out of memory at batch {ceiling}: continued with smaller batches (down to {batch} so far)"
            continue
        lo = hi
        if auto and device.type == "cuda" and (ceiling is None or batch * 2 < ceiling):
            batch *= 2
        if progress:
            progress(lo, n)
    return CertifyResult(results, options, str(device), time.perf_counter() - start, notes)


def is_out_of_memory(e: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's failure."""
    if isinstance(e, MemoryError) or (torch.cuda.is_available() and isinstance(e, torch.cuda.OutOfMemoryError)):
        return True
    text = str(e).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def merge(parts: list[CertifyResult], wall_time: float) -> CertifyResult:
    """One result from the shards of a distributed run, in sample order."""
    samples = sorted((s for p in parts for s in p.samples), key=lambda s: s.index)
    notes = [f"{note}" for p in parts for note in p.notes]
    return CertifyResult(samples, parts[0].options, parts[0].device, wall_time, notes)


class _Prover:
    """Runs the sound method(s) on a subset of samples at per-sample eps. With several methods (`auto`) it
    escalates: each method only sees the samples the cheaper ones left unproved; alpha-CROWN only those whose
    CROWN bound came within half the clean margin of a proof (elsewhere it would not close the gap)."""

    def __init__(self, wide: Graph, x64: torch.Tensor, spec: LinearSpec, dom: tuple[float, float],
                 methods: tuple[str, ...], alpha_iters: int, clean_margin: torch.Tensor) -> None:
        self.wide, self.x64, self.spec, self.dom = wide, x64, spec, dom
        self.methods, self.alpha_iters, self.clean_margin = methods, alpha_iters, clean_margin

    def __call__(self, idx: torch.Tensor, eps: torch.Tensor, methods: tuple[str, ...] | None = None,
                 prior: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str | None]]:
        """(proved, best worst-margin bound, method that proved each) for samples `idx`."""
        methods = methods or self.methods
        proved = torch.zeros(idx.numel(), dtype=torch.bool, device=idx.device)
        bound = torch.full((idx.numel(),), -torch.inf, dtype=torch.float64, device=idx.device) if prior is None else prior.clone()
        by: list[str | None] = [None] * idx.numel()
        todo = torch.arange(idx.numel(), device=idx.device)
        crown_state: tuple[torch.Tensor, CrownResult] | None = None  # (positions, CROWN result) for alpha
        for name in methods:
            if not todo.numel():
                break
            extra: dict = {}
            if name == "alpha-crown":
                if len(methods) > 1:
                    todo = todo[bound[todo] >= -0.5 * self.clean_margin[idx[todo]]]
                    if not todo.numel():
                        break
                if crown_state is not None:  # reuse CROWN's intermediate bounds for these samples
                    where = {int(p): i for i, p in enumerate(crown_state[0].tolist())}
                    rows = torch.tensor([where[int(p)] for p in todo.tolist()], device=idx.device)
                    base = crown_state[1]
                    extra["crown"] = CrownResult(base.lower[rows], base.unstable[rows], base.ctx.select(rows))
            sub = idx[todo]
            box = linf_ball(self.x64[sub], eps[todo], self.dom)
            with torch.no_grad():
                res = get_method(name)(self.wide, box, self.spec.select(sub), alpha_iters=self.alpha_iters, **extra)
            if name == "crown" and res.crown is not None:
                crown_state = (todo, res.crown)
            worst = self.spec.select(sub).worst_bound(res.lower)
            bound[todo] = torch.maximum(bound[todo], worst)
            ok = worst > 0
            proved[todo[ok]] = True
            for i in todo[ok].tolist():
                by[i] = name
            todo = todo[~ok]
        return proved, bound, by


def _unstable_ibp(wide: Graph, box) -> torch.Tensor:
    """Unstable ReLU neurons per sample under IBP bounds: the neurons CROWN has to refine."""
    pre = [wide.inputs_of[n][0] for n in wide.order if isinstance(wide.node(n), Relu)]
    with torch.no_grad():
        res = interval_bounds(wide, box, keep=pre)
    total = torch.zeros(box.n, dtype=torch.long, device=box.lower.device)
    for name in pre:
        lo, hi = res.nodes[name].bounds()
        total += ((lo < 0) & (hi > 0)).reshape(box.n, -1).sum(dim=1)
    return total


def _certify_batch(native: Graph, wide: Graph, x: torch.Tensor, y: torch.Tensor, opt: CertifyOptions, offset: int) -> list[SampleResult]:
    n, dev = x.shape[0], x.device
    k = native.num_classes
    dom = opt.domain
    r_max = opt.radius_max if opt.radius_max is not None else dom[1] - dom[0]
    spec = margin_spec(y, k, torch.float64)
    x64 = x.double()
    with torch.no_grad():
        pred = native.logits(x).argmax(dim=1)
        clean_margin = spec.worst_bound(spec.values(wide.logits(x64)))
    clean_bad = confirm_counterexamples(x, spec, native, wide, torch.ones(n, dtype=torch.bool, device=dev))
    candidates = (pred == y) & ~clean_bad
    methods = CASCADE if opt.method == "auto" else (opt.method,)
    prove = _Prover(wide, x64, spec, dom, methods, opt.alpha_iters, clean_margin)
    # `auto` searches radii without alpha-CROWN: its few-percent gains cost ~20 CROWN passes per step.
    radius_methods = tuple(m for m in methods if m != "alpha-crown") if opt.method == "auto" else methods

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
    proved_by: list[str | None] = [None] * n
    unstable = torch.zeros(n, dtype=torch.long, device=dev)
    idx = candidates.nonzero().flatten()
    att_r = torch.full((n,), torch.inf, dtype=torch.float64, device=dev)
    ce = x.clone()
    att_r[clean_bad] = 0.0

    def _prove_at_eps(sub: torch.Tensor, methods: tuple[str, ...]) -> None:
        if not sub.numel():
            return
        p, b, by = prove(sub, eps_full[sub], methods, bound[sub])
        proved[sub] |= p
        bound[sub] = b
        for j, m in zip(sub.tolist(), by):
            proved_by[j] = proved_by[j] or m

    if idx.numel():
        unstable[idx] = _unstable_ibp(wide, linf_ball(x64[idx], eps_full[idx], dom))
        # Cheapest method first, then the attack, then the costlier methods on what is still undecided.
        _prove_at_eps(idx, methods[:1])
        todo = idx[~proved[idx]]
        if todo.numel():
            ok, pts = attack(todo, eps_full[todo], opt.attack_restarts, opt.seed)
            _record(att_r, ce, todo[ok], pts[ok], x)
        undecided = idx[~proved[idx] & torch.isinf(att_r[idx])]
        _prove_at_eps(undecided, methods[1:])

    cert = torch.where(proved, eps_full, torch.zeros_like(eps_full))
    if opt.radius and idx.numel():
        # The attack radius first: a counterexample at distance d caps the certified radius below d.
        _attack_radius_search(attack, att_r, ce, x, candidates, cert, r_max, opt)
        search = lambda i, e: prove(i, e, radius_methods)  # noqa: E731
        cert = _certified_radius(search, candidates, proved, bound, eps_full, att_r, clean_margin, r_max, opt.radius_tol)
    verified = candidates & (proved | (cert >= eps_full))

    falsified = clean_bad | (att_r <= eps_full)
    clash = verified & falsified
    if clash.any():
        raise SoundnessError(f"samples {(clash.nonzero().flatten() + offset).tolist()} were both proved and falsified")
    sweep = _sweep_verdicts(prove, radius_methods, opt, candidates, cert, att_r, clean_bad, verified, eps_full)

    out = []
    for i in range(n):
        verdict = "verified" if verified[i] else "falsified" if falsified[i] else "unknown"
        a = float(att_r[i])
        method = proved_by[i] or (methods[-1] if verdict == "verified" else None)
        out.append(
            SampleResult(
                index=offset + i,
                label=int(y[i]),
                prediction=int(pred[i]),
                verdict=verdict,
                certified_radius=float(cert[i]),
                attack_radius=None if a == float("inf") else a,
                method=method if verdict == "verified" else None,
                bound=float(bound[i]),
                unstable=int(unstable[i]),
                sweep_verdicts=tuple(v[i] for v in sweep),
                counterexample=ce[i].cpu().numpy() if a != float("inf") else None,
            )
        )
    return out


def _sweep_verdicts(prove, methods, opt: CertifyOptions, candidates, cert, att_r, clean_bad, verified, eps_full) -> list[list[str]]:
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


def _record(att_r: torch.Tensor, ce: torch.Tensor, idx: torch.Tensor, points: torch.Tensor, x: torch.Tensor) -> None:
    """Keep confirmed counterexamples that are closer than the best known ones (distance in float64, exact)."""
    if not idx.numel():
        return
    dist = (points.double() - x[idx].double()).reshape(idx.numel(), -1).abs().amax(dim=1)
    closer = dist < att_r[idx]
    att_r[idx[closer]] = dist[closer]
    ce[idx[closer]] = points[closer]


def _certified_radius(prove, candidates, proved, bound, eps, att_r, clean_margin, r_max: float, tol: float) -> torch.Tensor:
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


def _attack_radius_search(attack, att_r, ce, x, candidates, lower, r_max: float, opt: CertifyOptions) -> None:
    """Bisection for the smallest radius with a confirmed counterexample, between `lower` (where nothing can
    be found: a proved radius, or 0) and the best counterexample known (or the cap). Attack failures prove
    nothing; they only steer the search."""
    dev = x.device
    need = candidates & torch.isinf(att_r)
    idx = need.nonzero().flatten()
    if idx.numel():
        ok, pts = attack(idx, torch.full((idx.numel(),), r_max, dtype=torch.float64, device=dev), 1, opt.seed + 1)
        _record(att_r, ce, idx[ok], pts[ok], x)
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
        _record(att_r, ce, act[ok], pts[ok], x)
        lo[act[~ok]] = mid[~ok]
