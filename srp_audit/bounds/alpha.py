"""alpha-CROWN and beta-CROWN's optimisation: the lower slopes of unstable ReLU-family neurons (α ∈ [0, 1]) and
the Lagrange multipliers of split constraints (β ≥ 0) improved by projected Adam on the final backward pass.
Every iterate's bound is sound, so stopping early (deadline) or keeping the best seen is sound too."""

from __future__ import annotations

import time

import torch

from ..ir.graph import Graph
from ..ops import relax
from ..ops.backward import Context
from ..spec import InputBox, LinearSpec
from .crown import DEFAULT_BUDGET, CrownResult, crown_bounds, relu_inputs, spec_backward


def optimise_slopes(ctx: Context, spec: LinearSpec, box: InputBox, start: torch.Tensor, iters: int, lr: float,
                    split_signs: dict[str, torch.Tensor] | None = None, deadline: float | None = None) -> torch.Tensor:
    """Maximise the final pass's lower bounds over the ReLU lower slopes α ∈ [0, 1] (alpha-CROWN) and, for
    split constraints s·z ≥ 0 (`split_signs`: +1, −1 or 0 per pre-activation neuron), Lagrange multipliers
    β ≥ 0 (beta-CROWN): on the sub-domain f ≥ f − Σ β·s·z, so every (α, β) in range gives a sound bound.
    Returns the best bound seen per row, never below `start`; stops early past `deadline` (perf_counter),
    which is sound because every iterate's bound is."""
    graph = ctx.graph
    n, s = spec.C.shape[:2]
    ctx = Context(graph, {k: (lo.detach(), hi.detach()) for k, (lo, hi) in ctx.bounds.items()},
                  {k: v.detach() for k, v in ctx.err.items()})  # constants for the optimisation
    alphas: dict[str, torch.Tensor] = {}
    for name, pre in relu_inputs(graph):
        lo, hi = ctx.bounds[pre]
        if ((lo < 0) & (hi > 0)).any():
            init = relax.relu_adaptive_lower(lo, hi).unsqueeze(1).expand((n, s) + tuple(lo.shape[1:]))
            alphas[name] = init.clone().requires_grad_(True)
    betas: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for pre, sign in (split_signs or {}).items():
        sign = sign.to(box.lower.dtype).reshape((n, 1) + graph.shapes[pre])
        if bool((sign != 0).any()):
            betas[pre] = (torch.zeros((n, s) + graph.shapes[pre], dtype=box.lower.dtype, device=box.lower.device).requires_grad_(True), sign)
    params = list(alphas.values()) + [b for b, _ in betas.values()]
    best = start.clone()
    if not params or iters <= 0:
        return best
    opt = torch.optim.Adam(params, lr=lr)
    frozen = [p for p in graph.parameters() if p.requires_grad]
    for p in frozen:  # only the slopes and multipliers are optimised; no gradients into the model
        p.requires_grad_(False)

    def bound() -> torch.Tensor:
        ctx.alpha = {k: v.clamp(0, 1) for k, v in alphas.items()}
        ctx.beta = {k: -b.clamp(min=0) * sg for k, (b, sg) in betas.items()}
        return spec_backward(ctx, spec, box)

    try:
        for _ in range(iters):
            if deadline is not None and time.perf_counter() > deadline:
                return best
            with torch.enable_grad():
                lb = bound()
                opt.zero_grad()
                (-lb.sum()).backward()
            opt.step()
            with torch.no_grad():
                for v in alphas.values():
                    v.clamp_(0, 1)
                for b, _ in betas.values():
                    b.clamp_(min=0)
                best = torch.maximum(best, lb.detach())
        with torch.no_grad():
            best = torch.maximum(best, bound())
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return best


def alpha_crown_bounds(graph: Graph, box: InputBox, spec: LinearSpec, iters: int = 20, lr: float = 0.1,
                       budget: int = DEFAULT_BUDGET, base: CrownResult | None = None,
                       deadline: float | None = None) -> CrownResult:
    """alpha-CROWN: CROWN's intermediate bounds, then the ReLU lower slopes of the final pass optimised per
    sample and spec row by projected Adam; the best bound seen per row is kept (never looser than CROWN).
    `base`: a CROWN result for the same samples and box, to reuse instead of recomputing."""
    base = base or crown_bounds(graph, box, spec, "crown", budget)
    if iters <= 0:
        return base
    best = optimise_slopes(base.ctx, spec, box, base.lower, iters, lr, deadline=deadline)
    return CrownResult(best, base.unstable, base.ctx)
