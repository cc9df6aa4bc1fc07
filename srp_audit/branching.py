"""Which ReLU a branch-and-bound domain splits next, and the bounds of sub-domains from split constraints.

A domain is the input box plus signs fixing some unstable ReLUs active (+1: z ≥ 0) or inactive (−1: z ≤ 0).
`split_context` cuts the root's intermediate bounds by those signs. `branch_scores` ranks a domain's unstable
neurons by the intercept their upper relaxation costs the bound (cheap, from the final pass's coefficients);
`filtered_choice` then bounds both children of each domain's top-k candidates with one CROWN pass (the parent's
optimised α and β, no optimisation: every α ∈ [0, 1] and β ≥ 0 is sound) and picks the candidate whose worse child
is best — filtered smart branching (De Palma et al., 2021). Those children's bounds are sound, so a child they prove
needs no further work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .bounds.alpha import set_parameters, start_parameters
from .bounds.crown import relu_inputs, spec_backward
from .ir.graph import Graph
from .ir.walk import INPUT
from .kernel import relax
from .kernel.backward import Context
from .spec import InputBox, LinearSpec


def split_context(root: Context, splits: dict[str, torch.Tensor], d: int) -> tuple[Context, torch.Tensor]:
    """The root's bounds repeated for D domains, each split pre-activation cut to [0, u] (active) or [l, 0]
    (inactive): (context, empty (D,) — domains whose constraints contradict the root bounds)."""
    empty = torch.zeros(d, dtype=torch.bool, device=root.bounds[INPUT][0].device)
    bounds = {}
    for name, (lo, hi) in root.bounds.items():
        lo, hi = lo.expand((d,) + lo.shape[1:]), hi.expand((d,) + hi.shape[1:])
        s = splits.get(name)
        if s is not None:
            s = s.reshape(lo.shape)
            lo = torch.where(s > 0, lo.clamp(min=0), lo)
            hi = torch.where(s < 0, hi.clamp(max=0), hi)
            empty |= (lo > hi).reshape(d, -1).any(dim=1)
            hi = torch.maximum(hi, lo)  # keep intervals well-formed; empty domains are proved anyway
        bounds[name] = (lo, hi)
    # rounding magnitudes grow with |bounds|; the root's cover the (narrower) cut intervals
    err = {k: v.expand((d,) + v.shape[1:]) for k, v in root.err.items()}
    charge = {k: v.expand((d,) + v.shape[1:]) for k, v in root.charge.items()}
    return Context(root.graph, bounds, err, charge=charge), empty


def branch_scores(ctx: Context, graph: Graph) -> dict[str, torch.Tensor]:
    """Per ReLU layer, a score per neuron: how much its upper relaxation's intercept costs the bound (weighted
    by the backward coefficients recorded in the final pass); 0 for stable or fixed neurons."""
    scores = {}
    for relu, pre in relu_inputs(graph):
        assert ctx.record is not None  # the final pass's coefficients, recorded by `bab._bound_domains`
        A = ctx.record.get(relu)
        lo, hi = ctx.bounds[pre]
        d = lo.shape[0]
        unstable = (lo < 0) & (hi > 0)
        if A is None:
            scores[pre] = torch.zeros_like(lo).reshape(d, -1)
            continue
        _, icpt = relax.relu_upper(lo, hi)
        neg = (-A.clamp(max=0)).sum(dim=1)  # (D, *shape)
        s = (neg * icpt).reshape(d, -1) + 1e-9 * (hi - lo).reshape(d, -1)
        scores[pre] = torch.where(unstable.reshape(d, -1), s, torch.zeros_like(s))
    return scores


@dataclass
class Choice:
    """Per domain: the neuron to split (index into the pre-activations laid end to end) and its two children's
    sound bounds (D, 2, S) — child 0 active, child 1 inactive — with which children are infeasible (D, 2)."""

    neuron: torch.Tensor
    child_lower: torch.Tensor
    child_empty: torch.Tensor
    alpha: dict[str, torch.Tensor] = field(default_factory=dict)  # with keep_parameters: (D, 2, S, *shape) per node
    beta: dict[str, torch.Tensor] = field(default_factory=dict)  # β magnitudes, likewise per split pre-activation


def filtered_choice(root: Context, box: InputBox, spec: LinearSpec, splits: dict[str, torch.Tensor],
                    state: dict[str, torch.Tensor], scores: dict[str, torch.Tensor], k: int, keep_parameters: bool = False) -> Choice:
    """For D domains (`splits` and warm-start `state` rows, `spec` repeated D times, `scores` from
    `branch_scores`), bound both children of each domain's k best-scored neurons and choose, per domain, the
    neuron whose worse child has the highest proof margin (ties: the higher score). `keep_parameters`: also return
    the α and β each chosen child's bound used (what a certificate records)."""
    pres = list(splits)
    flat_scores = torch.cat([scores[p] for p in pres], dim=1)  # (D, N)
    d, n = flat_scores.shape
    k = max(1, min(k, n))
    top_scores, cand = flat_scores.topk(k, dim=1)  # (D, K)
    flat = torch.cat([splits[p].reshape(d, -1) for p in pres], dim=1)  # (D, N) int8
    kids = flat.unsqueeze(1).unsqueeze(1).repeat(1, k, 2, 1)  # (D, K, 2, N)
    signs = torch.tensor([1, -1], dtype=flat.dtype, device=flat.device).view(1, 1, 2, 1).expand(d, k, 2, 1)
    kids.scatter_(3, cand.view(d, k, 1, 1).expand(d, k, 2, 1), signs)
    m = d * k * 2
    kids = kids.reshape(m, n)
    child_splits, at = {}, 0
    for p in pres:
        size = splits[p][0].numel()
        child_splits[p] = kids[:, at:at + size].reshape((m,) + tuple(splits[p].shape[1:]))
        at += size
    spec_m = spec.repeated(m)
    params: dict[str, dict[str, torch.Tensor]] | None = {} if keep_parameters else None
    lower, empty = bound_with_state(root, box, spec_m, child_splits, _repeat_state(state, 2 * k), m, params)
    worst = spec_m.worst_bound(lower).masked_fill(empty, float("inf")).view(d, k, 2)
    # the worse child per candidate, among unstable candidates (score > 0); ties go to the higher score
    pick = worst.min(dim=2).values.masked_fill(top_scores <= 0, -float("inf")).argmax(dim=1)
    rows = torch.arange(d, device=flat.device)
    chosen = {part: {key: v.view((d, k, 2) + v.shape[1:])[rows, pick] for key, v in got.items()} for part, got in (params or {}).items()}
    return Choice(cand[rows, pick], lower.view(d, k, 2, -1)[rows, pick], empty.view(d, k, 2)[rows, pick],
                  chosen.get("alpha", {}), chosen.get("beta", {}))


def bound_with_state(root: Context, box: InputBox, spec: LinearSpec, splits: dict[str, torch.Tensor],
                     state: dict[str, torch.Tensor], d: int, params: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One CROWN pass for D domains with given α and β (`state` keys 'alpha:NODE', 'beta:PRE'; NaN or absent:
    the starting slope, β = 0): (lower (D, S), empty (D,)). `params`, if given, receives the α and β used
    ({"alpha": {node: (D, S, *shape)}, "beta": {pre: (D, S, *shape)}})."""
    ctx, empty = split_context(root, splits, d)
    boxes = InputBox(box.lower.expand((d,) + box.lower.shape[1:]), box.upper.expand((d,) + box.upper.shape[1:]), box.nonneg)
    alphas, betas = start_parameters(ctx, d, spec.C.shape[1], splits, state, box.lower.dtype)
    set_parameters(ctx, alphas, betas)
    if params is not None:
        params["alpha"], params["beta"] = dict(alphas), {k: b for k, (b, _) in betas.items()}
    with torch.no_grad():
        return spec_backward(ctx, spec, boxes), empty


def _repeat_state(state: dict[str, torch.Tensor], times: int) -> dict[str, torch.Tensor]:
    """Each domain's warm-start rows repeated `times` times in place (domain-major), for its children."""
    return {k: v.repeat_interleave(times, dim=0) for k, v in state.items()}
