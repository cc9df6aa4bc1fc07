"""The sound side of `certify`'s searches: run the bound method(s) on a subset of samples at per-sample eps
(escalating through the cascade), and salvage a refuted linear pass's bound at smaller radii."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .bounds import BoundMethod, CrownResult, as_methods
from .bounds.crown import Bounds, refine_targets, spec_form
from .ir.graph import Graph
from .spec import LinearSpec, ball


class Prover:
    """Runs the sound method(s) on a subset of samples at per-sample eps. With several methods (`auto`) it
    escalates: each method only sees the samples the cheaper ones left unproved; an `optimised` one (alpha-CROWN)
    only those whose bound so far came within half the clean margin of a proof (elsewhere it would not close the
    gap). Methods are given as `BoundMethod`s or by name."""

    def __init__(self, wide: Graph, x64: torch.Tensor, spec: LinearSpec, dom: tuple[float, float],
                 methods: Sequence[BoundMethod | str], alpha_iters: int, clean_margin: torch.Tensor, norm: str = "inf") -> None:
        self.wide, self.x64, self.spec, self.dom, self.norm = wide, x64, spec, dom, norm
        self.methods, self.alpha_iters, self.clean_margin = as_methods(methods), alpha_iters, clean_margin
        self.last: tuple[torch.Tensor, CrownResult, torch.Tensor] | None = None  # the last call's last salvageable
        # pass: (sample ids, its result, the eps it ran at)
        self.ibp_unstable: torch.Tensor | None = None  # what the last call's count_unstable found (`__call__`)
        self.refuted: dict[int, tuple[float, Bounds]] = {}  # per sample: the smallest eps a method that refines its
        # intermediate bounds (CROWN) refuted, those bounds (they hold on every smaller ball around the sample)

    def __call__(self, idx: torch.Tensor, eps: torch.Tensor, methods: Sequence[BoundMethod | str] | None = None,
                 prior: torch.Tensor | None = None, count_unstable: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[str | None]]:
        """(proved, best worst-margin bound, name of the method that proved each) for samples `idx`. With
        `count_unstable`, `ibp_unstable` is left with the unstable ReLUs per sample under IBP when the first method's
        own IBP pass gave them (else None)."""
        self.ibp_unstable = None
        methods = as_methods(methods) if methods is not None else self.methods  # () runs none
        proved = torch.zeros(idx.numel(), dtype=torch.bool, device=idx.device)
        bound = torch.full((idx.numel(),), -torch.inf, dtype=torch.float64, device=idx.device) if prior is None else prior.clone()
        by: list[str | None] = [None] * idx.numel()
        todo = torch.arange(idx.numel(), device=idx.device)
        self.last = None
        reused = {m.reuses for m in methods if m.reuses is not None}
        kept: dict[BoundMethod, tuple[torch.Tensor, CrownResult]] = {}  # (positions, result) of methods reused later
        for method in methods:
            if method.optimised and len(methods) > 1:
                todo = todo[bound[todo] >= -0.5 * self.clean_margin[idx[todo]]]
            if not todo.numel():
                break
            sub = idx[todo]
            box = ball(self.x64[sub], eps[todo], self.dom, self.norm)
            extra: dict = {}
            if method.reuses in kept:  # start from its result for these samples
                extra["base"] = _rows(*kept[method.reuses], todo)
            if method.takes_prior:
                extra["prior"] = self._prior(sub, eps[todo])
            count = count_unstable and todo.numel() == idx.numel()  # the first method, on every sample
            with torch.no_grad():
                res = method.bounds(self.wide, box, self.spec.select(sub), alpha_iters=self.alpha_iters,
                                    count_unstable=count, **extra)
            if count:
                self.ibp_unstable = res.ibp_unstable
            worst = self.spec.select(sub).worst_bound(res.lower)
            bound[todo] = torch.maximum(bound[todo], worst)
            ok = worst > 0
            if res.crown is not None:
                self._keep(method, res.crown, todo, sub, eps[todo], ~ok, kept if method in reused else None)
            proved[todo[ok]] = True
            for i in todo[ok].tolist():
                by[i] = method.name
            todo = todo[~ok]
        return proved, bound, by

    def _keep(self, method: BoundMethod, res: CrownResult, todo: torch.Tensor, sub: torch.Tensor, eps: torch.Tensor,
              refuted: torch.Tensor, kept: dict[BoundMethod, tuple[torch.Tensor, CrownResult]] | None) -> None:
        """Keep what later passes reuse of `method`'s linear result: its state for a method that `reuses` it (in
        `kept`), its pass for `salvage`, its refined intermediate bounds of the `refuted` samples."""
        if kept is not None:
            kept[method] = (todo, res)
        if method.salvageable:
            self.last = (sub, res, eps)
        if method.refines_intermediates:
            self._remember(sub, eps, refuted, res)

    def _remember(self, sub: torch.Tensor, eps: torch.Tensor, refuted: torch.Tensor, res: CrownResult) -> None:
        """Keep the refined intermediate bounds of each sample refuted at an eps smaller than any before."""
        graph = self.wide
        targets = [n for n in refine_targets(graph) if not graph.first_layer(n)]
        for j in refuted.nonzero().flatten().tolist():
            s, e = int(sub[j]), float(eps[j])
            if s not in self.refuted or e < self.refuted[s][0]:
                self.refuted[s] = (e, {t: (res.ctx.bounds[t][0][j].clone(), res.ctx.bounds[t][1][j].clone()) for t in targets})

    def _prior(self, sub: torch.Tensor, eps: torch.Tensor) -> Bounds | None:
        """Bounds that hold on each sample's ball at `eps`: those kept from a refuted pass over a ball at least as
        large around the same centre (±∞ for samples without one); None when no sample has any."""
        have = [j for j, s in enumerate(sub.tolist()) if s in self.refuted and self.refuted[s][0] >= float(eps[j])]
        if not have:
            return None
        out: Bounds = {}
        for t, (lo, _) in self.refuted[int(sub[have[0]])][1].items():
            plo = torch.full((sub.numel(),) + tuple(lo.shape), -torch.inf, dtype=lo.dtype, device=lo.device)
            phi = torch.full_like(plo, torch.inf)
            for j in have:
                plo[j], phi[j] = self.refuted[int(sub[j])][1][t]
            out[t] = (plo, phi)
        return out

    def salvage(self, idx: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """For samples the last call refuted with a `salvageable` method (CROWN, CROWN-IBP): the largest radius in [lo, hi)
        — and below the eps that pass ran at — its linear bound still proves (bisected to 1/64 of the bracket; lo
        where none). The pass's intermediate bounds hold for every smaller ball, so this is a proof without
        another pass; above its eps they prove nothing, hence the cap."""
        out = lo.clone()
        if self.last is None:
            return out
        have, res, ran_at = self.last
        where = {int(s): i for i, s in enumerate(have.tolist())}
        keep = [j for j, s in enumerate(idx.tolist()) if s in where]
        if not keep:
            return out
        pick = torch.tensor(keep, device=idx.device)
        sub = idx[pick]
        rows = torch.tensor([where[int(s)] for s in sub.tolist()], device=idx.device)
        spec = self.spec.select(sub)
        with torch.no_grad():
            form = spec_form(res.ctx.select(rows), spec)
            a, b = lo[pick].clone(), torch.minimum(hi[pick], ran_at[rows])
            for _ in range(6):
                mid = (a + b) / 2
                ok = spec.worst_bound(form.lower(ball(self.x64[sub], mid, self.dom, self.norm))) > 0
                a, b = torch.where(ok, mid, a), torch.where(ok, b, mid)
        out[pick] = a
        return out


def _rows(positions: torch.Tensor, res: CrownResult, todo: torch.Tensor) -> CrownResult:
    """The rows of `res` (computed for the samples at `positions`) of the samples at `todo`, a subset of them."""
    where = {int(p): i for i, p in enumerate(positions.tolist())}
    rows = torch.tensor([where[int(p)] for p in todo.tolist()], device=todo.device)
    return CrownResult(res.lower[rows], res.unstable[rows], res.ctx.select(rows))
