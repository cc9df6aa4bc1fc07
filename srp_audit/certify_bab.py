"""`certify --method auto`'s last stage: ReLU branch and bound on the samples the bound cascade and the attack left
undecided, where the relaxation nearly proves them.

A sample qualifies when its best bound falls short of 0 by less than its clean margin (past that the search rarely
ends within budget: measured on the fixture CNN at eps 0.1, the undecided samples of a robust model fell short by
2–70 % of their margin and were mostly proved in under 20 domains, those of a natural model by a median 216 %).
Each search is capped by `bab_domains` domains and `bab_time` seconds (a bound pass under way finishes first), and
bounds at most as many domains at once as the batch has samples (what the memory budget let in). A proof is branch and bound's (`bab.relu_bab`:
every domain's bound is sound), and a counterexample it finds is confirmed like the attack's, inside the exact ball
by plain forward passes in the model's precision and in float64.
"""

from __future__ import annotations

import time

import torch

from .attack import confirm_counterexamples
from .bab import relu_bab
from .bounds.crown import relu_inputs
from .certify_options import CertifyOptions
from .ir.graph import Graph
from .radius import record_counterexamples
from .spec import LinearSpec, ball, inside_ball

BAB_METHOD = "bab-relu"  # the name a sample proved here reports as its method


def bab_applies(graph: Graph, opt: CertifyOptions) -> bool:
    """Whether the stage runs: on `auto`, with a domain budget, over an L∞ ball, for a network with ReLUs to split."""
    return opt.method == "auto" and opt.bab_domains > 0 and opt.bab_time > 0 and opt.norm == "inf" and bool(relu_inputs(graph))


def close_enough(bound: torch.Tensor, clean_margin: torch.Tensor) -> torch.Tensor:
    """The samples whose bound misses 0 by less than their clean margin (both (N,) float64)."""
    return (bound < 0) & (bound >= -clean_margin) & (clean_margin > 0)


def search_undecided(v, native: Graph, wide: Graph, x64: torch.Tensor, spec: LinearSpec, todo: torch.Tensor,
                     clean_margin: torch.Tensor, opt: CertifyOptions) -> None:
    """Branch and bound on each sample of `todo` (indices into the batch) that is `close_enough`, recording into
    the batch's verdicts `v` (`certify._Verdicts`): a proof marks it proved by BAB_METHOD with the least bound of
    its proved domains; a confirmed counterexample is recorded as the attack's are. Nothing when `bab_applies` does not."""
    if not todo.numel() or not bab_applies(wide, opt):
        return
    todo = todo[close_enough(v.bound[todo], clean_margin[todo])]
    domains_at_once = max(1, v.x.shape[0])  # as many domains per bound pass as samples fit in this batch's memory
    for i in todo.tolist():
        eps = float(v.eps[i])
        centre = x64[i : i + 1]
        one = spec.select(torch.tensor([i], device=spec.C.device))

        def confirmed(p: torch.Tensor, one=one, eps=eps, i=i) -> bool:  # the point as the report will hold it
            p = p.to(device=v.x.device, dtype=v.x.dtype)
            inside = inside_ball(p, v.x[i : i + 1], eps, opt.domain, opt.norm)
            return bool(confirm_counterexamples(p, one, native, wide, inside).all())

        res = relu_bab(wide, ball(centre, eps, opt.domain, opt.norm), one, time.perf_counter() + opt.bab_time,
                       batch=domains_at_once, check=confirmed, max_domains=opt.bab_domains)
        if res.status == "unsat":
            v.proved[i] = True
            v.bound[i] = res.lower
            v.proved_by[i] = BAB_METHOD
        elif res.status == "sat" and res.counterexample is not None:
            point = res.counterexample.to(device=v.x.device, dtype=v.x.dtype)
            record_counterexamples(v.att_r, v.ce, torch.tensor([i], device=v.x.device), point, v.x, opt.norm)
