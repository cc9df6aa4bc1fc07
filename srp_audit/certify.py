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

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .attack import confirm_counterexamples, pgd, violated_in_both
from .bounds import CASCADE_METHODS, BoundMethod, get_method
from .bounds.methods import interval_with_unstable
from .certify_bab import search_undecided
from .certify_options import CertifyOptions
from .device import resolve_device, use_exact_float32
from .errors import SoundnessError, UsageError
from .ir.graph import Graph
from .ir.walk import INPUT
from .memory import default_budget, largest_batch
from .parallel import init_from_env, leaving, run_and_gather, shard
from .prover import Prover
from .radius import attack_radius_search, certified_radius, margin_slope, record_counterexamples, sweep_verdicts
from .slots import one_sample_per_slot
from .spec import NORMS, LinearSpec, ball, check_radius, inner_ball, inside_ball, margin_spec

VERDICTS = ("verified", "falsified", "unknown")


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
        return dict(Counter(s.method for s in self.samples if s.method))  # in order of first appearance


ProgressCallback = Callable[[int, int], None]  # (samples done, total)


def certify(
    graph: Graph,
    x: torch.Tensor,
    y: torch.Tensor,
    options: CertifyOptions,
    progress: ProgressCallback | None = None,
    index_offset: int = 0,
) -> CertifyResult:
    """Certify every sample; `x` (N, *input_shape) in the model's input space, `y` (N,) integer labels.
    `index_offset`: the global index of x[0] (for shards of a larger set)."""
    start = time.perf_counter()
    if options.norm not in NORMS:
        raise UsageError(f"unknown norm {options.norm!r}; choose one of {', '.join(NORMS)}")
    methods, _ = chosen_methods(options.method)  # an unknown method is refused before any work
    for e in (options.eps,) + tuple(options.sweep):
        check_radius(e)
    graph, slot_note = one_sample_per_slot(graph, tuple(x.shape[1:]))
    graph, logits_note = scores_before_final_softmax(graph)
    device = resolve_device(options.device)
    check_class_scores(graph, min(x.shape[0], options.batch_size or (64 if device.type == "cuda" else 256)))
    if device.type == "cuda":
        use_exact_float32()
    native, wide = (graph.copy(dtype=dt, device=device).eval().requires_grad_(False) for dt in (None, torch.float64))
    # (certification never trains; attacks and alpha-CROWN take input/slope gradients only)
    results: list[SampleResult] = []
    notes: list[str] = []
    n = x.shape[0]
    auto = options.batch_size is None
    batch = (64 if device.type == "cuda" else 256) if options.batch_size is None else options.batch_size  # None: auto
    cap, cap_note = largest_batch(graph, [m.name for m in methods], options.memory_budget or default_budget(device),
                                  min(batch, x.shape[0]))
    batch = min(batch, cap)
    notes += [cap_note] if cap_note else []
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
            oom = [i for i, note in enumerate(notes) if note.startswith("out of memory")]
            note = f"out of memory at batch {ceiling}: continued with smaller batches (down to {batch} so far)"
            if oom:
                notes[oom[0]] = note
            else:
                notes.append(note)
            continue
        lo = hi
        if auto and device.type == "cuda" and (ceiling is None or batch * 2 < ceiling) and batch * 2 <= cap:
            batch *= 2
        if progress:
            progress(lo, n)
    early = [note for note in (slot_note, logits_note) if note]
    return CertifyResult(results, options, str(device), time.perf_counter() - start, early + notes)


MARGIN_TABLE_LIMIT = 2 * 1024**3  # bytes: the float64 margins (every class against every other) of one batch


def check_class_scores(graph: Graph, batch: int = 0) -> None:
    """Refuse (`UsageError`), before any work, a model whose output per sample is not a vector of class scores, and
    — given the batch size — one with so many classes that its margin table would not fit `MARGIN_TABLE_LIMIT`."""
    shape = tuple(graph.output_shape)
    if sum(d > 1 for d in shape) > 1:  # unit axes, as in (1, 10), are harmless
        raise UsageError(f"the model's output has shape {shape} per sample, not a vector of class scores; certify needs one "
                         "score per class — flatten the scores in the model, or state the property as VNN-LIB and run "
                         "`srp-audit verify`")
    k = graph.num_classes
    need = 8 * k * (k - 1) * (k + batch)  # the (K, K−1, K) table and a batch's (B, K−1, K) rows, float64
    if batch and need > MARGIN_TABLE_LIMIT:
        fits = 8 * k * (k - 1) * (k + 1) <= MARGIN_TABLE_LIMIT
        hint = "use a smaller --batch-size" if fits else "state the property as VNN-LIB and run `srp-audit verify`"
        raise UsageError(f"the model has {k} classes: certify compares every class with every other, which needs "
                         f"{need / 1024**3:.1f} GiB of margins for a batch of {batch} (the limit is "
                         f"{MARGIN_TABLE_LIMIT // 1024**3} GiB); {hint}")


def scores_before_final_softmax(graph: Graph) -> tuple[Graph, str | None]:
    """A classifier that ends in an op keeping the order of its scores (Softmax) is certified on the scores before
    it: the argmax, and so every verdict and radius, is the same, and the bounds are much tighter. (`verify`
    keeps the op: a VNN-LIB property may be about probabilities.)"""
    stripped: list[str] = []
    while True:
        last = graph.node(graph.output)
        inner = graph.inputs_of[graph.output][0]
        keeps = last.keeps_argmax or (last.keeps_positive_order and inner != INPUT and graph.node(inner).positive_output)
        if not keeps or len(graph.output_shape) != 1 or inner == INPUT:
            break
        stripped.insert(0, last.op)
        graph = graph.rebuilt([(n, node, ins) for n, node, ins in graph.items() if n != graph.output], inner)
    if not stripped:
        return graph, None
    ops_ = " and ".join(stripped)
    note = (f"the model ends in {ops_}: certified the scores before it (which keeps their order, so the "
            "prediction and every verdict are the same)")
    return graph, note


def certify_sharded(graph: Graph, x: torch.Tensor, y: torch.Tensor, options: CertifyOptions,
                    progress: ProgressCallback | None = None) -> CertifyResult | None:
    """`certify` here, or — launched by torchrun — on this rank's shard of whole batches, gathered and merged
    on rank 0 (other ranks return None; a failing rank is named there)."""
    d = init_from_env(options.device)
    if d is None:
        return certify(graph, x, y, options, progress)
    options = replace(options, device=str(d.device))
    start, stop = shard(len(x), options.batch_size or 256, d.rank, d.world)
    t0 = time.perf_counter()
    with leaving(d):
        parts = run_and_gather(d, lambda: certify(graph, x[start:stop], y[start:stop], options, None, start),
                               f"samples {start}–{stop - 1}" if stop > start else "no samples")
    if parts is None:
        return None
    result = merge(parts, time.perf_counter() - t0)
    result.device = f"{d.world} ranks × {d.device.type}"
    return result


def is_out_of_memory(e: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's failure."""
    if isinstance(e, MemoryError) or (torch.cuda.is_available() and isinstance(e, torch.cuda.OutOfMemoryError)):
        return True
    text = str(e).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def merge(parts: list[CertifyResult], wall_time: float) -> CertifyResult:
    """One result from the shards of a distributed run, in sample order."""
    samples = sorted((s for p in parts for s in p.samples), key=lambda s: s.index)
    notes = list(dict.fromkeys(note for p in parts for note in p.notes))  # shards repeat the same notes
    return CertifyResult(samples, parts[0].options, parts[0].device, wall_time, notes)


def _unstable_ibp(wide: Graph, box) -> torch.Tensor:
    """Unstable ReLU neurons per sample under IBP bounds that the scores depend on: the neurons CROWN has to
    refine (a fixed batch's other slots, a transformer's unused tokens do not count)."""
    with torch.no_grad():
        return interval_with_unstable(wide, box)[1]


@dataclass
class _Verdicts:
    """Per-sample state of one batch while it is certified at eps: proofs, bounds, counterexamples."""

    x: torch.Tensor
    eps: torch.Tensor  # (N,) float64, the requested eps
    proved: torch.Tensor
    bound: torch.Tensor
    proved_by: list[str | None]
    unstable: torch.Tensor
    att_r: torch.Tensor  # smallest eps with a confirmed counterexample (inf: none)
    ce: torch.Tensor  # the counterexamples (x where none)
    att_margin: torch.Tensor  # the attack's best margin at eps (NaN: not attacked there); steers the radius search

    @classmethod
    def start(cls, x: torch.Tensor, eps: float, clean_bad: torch.Tensor) -> "_Verdicts":
        n, dev = x.shape[0], x.device
        att_r = torch.full((n,), torch.inf, dtype=torch.float64, device=dev)
        att_r[clean_bad] = 0.0
        return cls(x, torch.full((n,), float(eps), dtype=torch.float64, device=dev), torch.zeros(n, dtype=torch.bool, device=dev),
                   torch.full((n,), -torch.inf, dtype=torch.float64, device=dev), [None] * n,
                   torch.zeros(n, dtype=torch.long, device=dev), att_r, x.clone(),
                   torch.full((n,), torch.nan, dtype=torch.float64, device=dev))

    def prove(self, prover: Prover, sub: torch.Tensor, methods: tuple[BoundMethod, ...], count_unstable: bool = False) -> None:
        """Run `methods` (cheapest first) at eps on the samples `sub`, recording proofs and bounds; with
        `count_unstable`, also the unstable ReLUs per sample under IBP (from the first method's IBP pass if it made
        one, else from a pass of its own)."""
        if not sub.numel():
            return
        p, b, by = prover(sub, self.eps[sub], methods, self.bound[sub], count_unstable)
        if count_unstable:
            counted = prover.ibp_unstable
            self.unstable[sub] = counted if counted is not None else _unstable_ibp(prover.wide, ball(
                prover.x64[sub], self.eps[sub], prover.dom, prover.norm))
        self.proved[sub] |= p
        self.bound[sub] = b
        for j, m in zip(sub.tolist(), by):
            self.proved_by[j] = self.proved_by[j] or m

    def record_attack(self, idx: torch.Tensor, found: torch.Tensor, points: torch.Tensor, margin: torch.Tensor, norm: str) -> None:
        record_counterexamples(self.att_r, self.ce, idx[found], points[found], self.x, norm)
        self.att_margin[idx] = margin

    def falsified_at(self, eps: float, clean_bad: torch.Tensor, domain: tuple[float, float], norm: str) -> torch.Tensor:
        """Misclassified samples, and those whose closest confirmed counterexample lies in the ball of radius eps
        ∩ domain — re-checked there in the ball's norm (`spec.inside_ball`), not only read off the attack radius."""
        near = self.att_r <= eps
        if near.any():
            near &= inside_ball(self.ce, self.x, eps, domain, norm).to(near.device)
        return clean_bad | near


Attack = Callable[[torch.Tensor, torch.Tensor, int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
"""attack(idx, eps, restarts, seed) → (found mask, points, best margins)."""


def _attacker(native: Graph, wide: Graph, x: torch.Tensor, spec: LinearSpec, opt: CertifyOptions) -> Attack:
    """attack(idx, eps, restarts, seed) → (found mask, points, best margins): PGD in the inward-rounded ball,
    every hit re-checked inside the exact ball and confirmed by plain forward passes."""
    dom = opt.domain

    def attack(idx: torch.Tensor, eps: torch.Tensor, restarts: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        box = inner_ball(x[idx], eps, dom, opt.norm)
        sub = spec.select(idx)
        res = pgd(native, box, sub, steps=opt.attack_steps, restarts=restarts, seed=seed, start=x[idx],
                  give_up=opt.attack_early_stop)
        inside = inside_ball(res.points, x[idx], eps, dom, opt.norm)
        ok = confirm_counterexamples(res.points, sub, native, wide, inside & res.found)
        return ok, res.points, res.objective.double()

    return attack


def _sample_results(v: _Verdicts, y: torch.Tensor, pred: torch.Tensor, verified: torch.Tensor, falsified: torch.Tensor,
                    cert: torch.Tensor, sweep: list[list[str]], last_method: str, offset: int) -> list[SampleResult]:
    out = []
    for i in range(len(v.proved_by)):
        verdict = "verified" if verified[i] else "falsified" if falsified[i] else "unknown"
        a = float(v.att_r[i])
        method = v.proved_by[i] or (last_method if verdict == "verified" else None)
        out.append(SampleResult(
            index=offset + i, label=int(y[i]), prediction=int(pred[i]), verdict=verdict, certified_radius=float(cert[i]),
            attack_radius=None if a == float("inf") else a, method=method if verdict == "verified" else None,
            bound=float(v.bound[i]), unstable=int(v.unstable[i]), sweep_verdicts=tuple(s[i] for s in sweep),
            counterexample=v.ce[i].cpu().numpy() if a != float("inf") else None))
    return out


def chosen_methods(method: str) -> tuple[tuple[BoundMethod, ...], tuple[BoundMethod, ...]]:
    """(the methods that prove at eps, those of the radius search) for `--method`: `auto` escalates through the
    whole cascade and searches radii without the `optimised` methods (alpha-CROWN's few-percent gains cost ~20
    CROWN passes per step); a named method does both alone."""
    if method != "auto":
        alone = (get_method(method),)
        return alone, alone
    return CASCADE_METHODS, tuple(m for m in CASCADE_METHODS if not m.optimised)


def _certify_batch(native: Graph, wide: Graph, x: torch.Tensor, y: torch.Tensor, opt: CertifyOptions, offset: int) -> list[SampleResult]:
    dom = opt.domain
    n_in = math.prod(x.shape[1:])
    reach = {"inf": 1.0, "2": math.sqrt(n_in), "1": float(n_in)}[opt.norm]  # the domain's diameter in the norm
    r_max = opt.radius_max if opt.radius_max is not None else (dom[1] - dom[0]) * reach
    spec = margin_spec(y, native.num_classes, torch.float64)
    x64 = x.double()
    with torch.no_grad():  # one clean pass in each precision: the prediction, the margin, and misclassification confirmed
        z_native, z_wide = native.logits(x), wide.logits(x64)
    pred, clean_margin = z_native.argmax(dim=1), spec.worst_bound(spec.values(z_wide))
    clean_bad = violated_in_both(spec, z_native, z_wide)
    candidates = (pred == y) & ~clean_bad
    methods, radius_methods = chosen_methods(opt.method)
    prove = Prover(wide, x64, spec, dom, methods, opt.alpha_iters, clean_margin, opt.norm)
    attack = _attacker(native, wide, x, spec, opt)
    v = _Verdicts.start(x, opt.eps, clean_bad)
    idx = candidates.nonzero().flatten()
    if idx.numel():
        # Cheapest method first, then the attack, then the costlier methods on what is still undecided.
        v.prove(prove, idx, methods[:1], count_unstable=True)
        todo = idx[~v.proved[idx]]
        if todo.numel():
            v.record_attack(todo, *attack(todo, v.eps[todo], opt.attack_restarts, opt.seed), opt.norm)
        v.prove(prove, idx[~v.proved[idx] & torch.isinf(v.att_r[idx])], methods[1:])
        search_undecided(v, native, wide, x64, spec, idx[~v.proved[idx] & torch.isinf(v.att_r[idx])], clean_margin, opt)
    cert = torch.where(v.proved, v.eps, torch.zeros_like(v.eps))
    if opt.radius and idx.numel():
        # The attack radius first: a counterexample at distance d caps the certified radius below d.
        attack_radius_search(attack, v.att_r, v.ce, x, candidates, cert, r_max, opt, clean_margin, v.eps, v.att_margin)

        def search(i: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[str | None]]:
            return prove(i, e, radius_methods)

        slope = margin_slope(wide, x64, spec, dom, opt.norm)
        cert = certified_radius(search, candidates, v.proved, v.bound, v.eps, v.att_r, clean_margin, r_max, opt.radius_tol,
                                prove.salvage, slope)
    verified = candidates & (v.proved | (cert >= v.eps))

    def falsified_at(e: float) -> torch.Tensor:
        return v.falsified_at(e, clean_bad, dom, opt.norm)

    falsified = falsified_at(opt.eps)
    clash = verified & falsified
    if clash.any():
        raise SoundnessError(f"samples {(clash.nonzero().flatten() + offset).tolist()} were both proved and falsified")
    sweep = sweep_verdicts(prove, radius_methods, opt, candidates, cert, v.att_r, falsified_at, verified, v.eps)
    return _sample_results(v, y, pred, verified, falsified, cert, sweep, methods[-1].name, offset)
