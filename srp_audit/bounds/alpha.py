"""alpha-CROWN and beta-CROWN's optimisation: the free parameters of each op's relaxation (α ∈ [0, 1]: the lower
slopes of unstable ReLU-family neurons, tangent points of convex, concave and S-shaped activations, the slopes of
the other smooth ones — `Node.alpha_start`) and the Lagrange multipliers of split constraints (β ≥ 0), improved by
projected Adam on the final backward pass. Every iterate's bound is sound, so stopping early (deadline) or keeping
the best seen is sound too."""

from __future__ import annotations

import math
import time

import torch

from ..ir.graph import Graph
from ..kernel.backward import Context
from ..ops.pool import MaxPool2d
from ..spec import InputBox, LinearSpec
from .context import graph_of
from .crown import (
    DEFAULT_BUDGET,
    CrownResult,
    Widen,
    crown_bounds,
    refine_targets,
    relu_inputs,
    selected_rows,
    spec_backward,
    unstable_count,
)


def optimise_slopes(ctx: Context, spec: LinearSpec, box: InputBox, start: torch.Tensor, iters: int, lr: float,
                    split_signs: dict[str, torch.Tensor] | None = None, deadline: float | None = None,
                    state: dict[str, torch.Tensor] | None = None, search: Graph | None = None, pools: bool = True) -> torch.Tensor:
    """Maximise the final pass's lower bounds over the ReLU lower slopes α ∈ [0, 1] (alpha-CROWN) and, for
    split constraints s·z ≥ 0 (`split_signs`: +1, −1 or 0 per pre-activation neuron), Lagrange multipliers
    β ≥ 0 (beta-CROWN): on the sub-domain f ≥ f − Σ β·s·z, so every (α, β) in range gives a sound bound.
    Returns the best bound seen per row, never below `start`; stops early past `deadline` (perf_counter),
    which is sound because every iterate's bound is. `state` (warm start, e.g. a branch-and-bound parent's): its
    entries (keys 'alpha:NODE' and 'beta:PRE', shaped like the parameters) start the optimisation where present,
    and on return it holds the parameters of each row's best bound — any α ∈ [0, 1], β ≥ 0 is sound, so the
    start only steers the search. `search`: a lower-precision copy of the graph (float32) to run the iterations
    in; the parameters of each row's best search bound are then bounded once in `ctx`'s own precision, which
    alone is returned — the search's values are never taken for bounds. `pools`: also optimise the max-pools'
    lower lines (a proof certificate records ReLU slopes only, and its checker bounds a max-pool by CROWN's rule:
    proofs meant for a certificate leave them out)."""
    graph = graph_of(ctx)
    ctx = _constants(ctx)
    work, wspec, wbox = ctx, spec, box
    if search is not None:
        work = _lowered(ctx, search)
        wspec, wbox = spec.to(search.dtype), box.to(search.dtype)
    alphas, betas = start_parameters(work, spec.C.shape[0], spec.C.shape[1], split_signs or {}, state or {}, wbox.lower.dtype, pools)
    params = [v.requires_grad_(True) for v in list(alphas.values()) + [b for b, _ in betas.values()]]
    best = start.clone()
    if not params or iters <= 0:
        return best
    kept = None if state is None and search is None else {
        **{"alpha:" + k: v.detach().clone() for k, v in alphas.items()},
        **{"beta:" + k: b.detach().clone() for k, (b, _) in betas.items()}}
    seen = best.to(wbox.lower.dtype)  # best bound of the search so far, in its precision
    opt = torch.optim.Adam(params, lr=lr, fused=True)
    models = [graph] if work.graph is graph else [graph, graph_of(work)]
    frozen = [p for g in models for p in g.parameters() if p.requires_grad]
    for p in frozen:  # only the slopes and multipliers are optimised; no gradients into the model
        p.requires_grad_(False)

    def bound() -> torch.Tensor:
        set_parameters(work, alphas, betas)
        return spec_backward(work, wspec, wbox)

    try:
        for _ in range(iters):
            if deadline is not None and time.perf_counter() > deadline:
                break
            with torch.enable_grad():
                lb = bound()
                moved = _gradient_up(lb, opt)
            with torch.no_grad():
                if kept is not None:
                    _keep_best(kept, alphas, betas, lb > seen)
                seen = torch.maximum(seen, lb.detach())
            if not moved:  # no parameter reaches the bound (say, a ReLU the output does not use): nothing to optimise
                break
            opt.step()  # `bound` projects the parameters before using them
        else:
            with torch.no_grad():
                lb = bound()
                if kept is not None:
                    _keep_best(kept, alphas, betas, lb > seen)
                seen = torch.maximum(seen, lb)
        with torch.no_grad():
            if search is not None:  # the only bound returned: the kept parameters, bounded in ctx's precision
                assert kept is not None  # kept whenever there is a search
                set_parameters(ctx, {k: kept["alpha:" + k].to(box.lower.dtype) for k in alphas},
                               {k: (kept["beta:" + k].to(box.lower.dtype), sg.to(box.lower.dtype)) for k, (_, sg) in betas.items()})
                best = torch.maximum(best, spec_backward(ctx, spec, box))
            else:
                best = torch.maximum(best, seen)
            if state is not None and kept is not None:  # (kept whenever there is a state)
                state.clear()
                state.update(kept)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return best


def _gradient_up(lb: torch.Tensor, opt: torch.optim.Optimizer) -> bool:
    """The gradient of the bounds' sum into the optimiser's parameters; False when no parameter reaches them."""
    if not lb.requires_grad:
        return False
    opt.zero_grad()
    (-lb.sum()).backward()
    return True


def _constants(ctx: Context) -> Context:
    """ctx with detached bounds and magnitudes (constants for the optimisation); when none needed detaching, the
    same tensors, so the relaxations already computed on them are reused."""
    tensors = [t for b in ctx.bounds.values() for t in b] + list(ctx.err.values()) + list(ctx.charge.values())
    if not any(t.requires_grad for t in tensors):
        return Context(ctx.graph, dict(ctx.bounds), dict(ctx.err), relaxed=ctx.relaxed, origin=ctx.origin,
                       charge=dict(ctx.charge))
    return Context(ctx.graph, {k: (lo.detach(), hi.detach()) for k, (lo, hi) in ctx.bounds.items()},
                   {k: v.detach() for k, v in ctx.err.items()}, charge={k: v.detach() for k, v in ctx.charge.items()})


def _lowered(ctx: Context, search: Graph) -> Context:
    """A steer-only context on the search graph: ctx's bounds and the relaxations computed on them, in the search's
    precision (converted, not recomputed)."""
    dt = search.dtype
    low = {id(t): t.to(dt) for b in ctx.bounds.values() for t in b}
    work = Context(search, {k: (low[id(lo)], low[id(hi)]) for k, (lo, hi) in ctx.bounds.items()}, steer_only=True)
    for key, (sources, values) in ctx.relaxed.items():
        if all(id(t) in low for t in sources):
            work.relaxed[key] = (tuple(low[id(t)] for t in sources),
                                 tuple(v.to(dt) if v.is_floating_point() else v for v in values))
    return work


def start_parameters(ctx: Context, n: int, rows: int, split_signs: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
                     dtype: torch.dtype, pools: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The starting α of every op with free relaxation parameters (`Node.alpha_start`) and β = 0 with its signs
    for every pre-activation with a split, each overridden by `state` ('alpha:NODE', 'beta:PRE') where that holds
    a value (NaN: none for that domain). n samples (domains), `rows` spec rows each."""
    graph = graph_of(ctx)
    alphas: dict[str, torch.Tensor] = {}
    for name in graph.order:  # every op with free relaxation parameters: ReLU lower slopes, tangent points, slopes
        node = graph.node(name)
        if node.nonlinear and len(graph.inputs_of[name]) == 1 and (pools or not isinstance(node, MaxPool2d)):
            init = node.alpha_start(*ctx.bounds[graph.inputs_of[name][0]], rows)
            if init is not None:
                warm = state.get("alpha:" + name)
                if warm is not None:
                    warm = warm.to(init.dtype)
                    init = torch.where(torch.isnan(warm), init, warm)
                alphas[name] = init
    betas: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for pre, sign in split_signs.items():
        sign = sign.to(dtype).reshape((n, 1) + graph.shapes[pre])
        if bool((sign != 0).any()):
            init = torch.zeros((n, rows) + graph.shapes[pre], dtype=dtype, device=sign.device)
            warm = state.get("beta:" + pre)
            if warm is not None:
                init = torch.nan_to_num(init + warm.to(dtype), nan=0.0)
            betas[pre] = (init, sign)
    return alphas, betas


def set_parameters(ctx: Context, alphas: dict[str, torch.Tensor], betas: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Project α onto [0, 1] and β onto β ≥ 0, in place, and put α and the split constraints' coefficients −β·s into
    the context: every such value gives a sound bound. In place, outside autograd: a clamp in the optimised
    expression cost 4× a product with its gradient, and the values it would pass are the projected ones."""
    with torch.no_grad():
        for v in alphas.values():
            v.clamp_(0, 1)
        for b, _ in betas.values():
            b.clamp_(min=0)
    ctx.alpha = dict(alphas)
    ctx.beta = {k: b * -sg for k, (b, sg) in betas.items()}


def _keep_best(kept: dict[str, torch.Tensor], alphas: dict[str, torch.Tensor],
               betas: dict[str, tuple[torch.Tensor, torch.Tensor]], better: torch.Tensor) -> None:
    """Copy the current parameters (projected by `set_parameters`) into `kept` for the (sample, row) pairs whose
    bound improved."""
    for k, v in alphas.items():
        m = better.reshape(better.shape + (1,) * (v.dim() - 2))
        kept["alpha:" + k] = torch.where(m, v.detach(), kept["alpha:" + k])
    for k, (b, _) in betas.items():
        m = better.reshape(better.shape + (1,) * (b.dim() - 2))
        kept["beta:" + k] = torch.where(m, b.detach(), kept["beta:" + k])


def _fully_connected_targets(graph: Graph) -> list[str]:
    """CROWN's refinement targets that are flat (fully connected layers), not first layers, read only by
    ReLU-family ops (their bounds feed nothing but those relaxations), and with only flat ReLUs before them (on
    the CNN fixture, optimising its dense layer's bounds through the convolutions took 200 s instead of 22 s per
    64 samples for at most 6e-4), in topological order."""
    targets = refine_targets(graph)
    flat_relus = {r for r, x in relu_inputs(graph) if len(graph.shapes[x]) == 1}
    return [n for n in graph.order if n in targets and len(graph.shapes[n]) == 1 and not graph.first_layer(n)
            and all(graph.node(c).kinked_at_zero for c in graph.consumers(n))
            and all(r in flat_relus for r, _ in relu_inputs(graph) if r in graph.ancestors(n))]


def optimise_intermediate(ctx: Context, box: InputBox, iters: int, lr: float, deadline: float | None = None,
                          budget: int = 4 * DEFAULT_BUDGET, search: Graph | None = None, widen: Widen | None = None,
                          record: dict | None = None, pools: bool = True) -> Context:
    """alpha-CROWN on the intermediate bounds of fully connected layers, layer by layer: the lower and upper
    bound of each unstable neuron is a spec (±e_i) on the subgraph ending there, its own slopes optimised by
    `optimise_slopes`; later layers start from the tightened bounds. Every iterate is sound, so the bounds
    only tighten. Samples are chunked so that one slope tensor stays under `budget` elements. `search`: a
    lower-precision copy of the graph to optimise in (see `optimise_slopes`). `widen` as in `intermediate_bounds`,
    applied to each target's new bounds before later targets use them; `record` (one sample only) receives, per
    target, (its optimised neurons (k,), {ReLU node: the slopes (2, k, *shape) of their lower and upper bounds}):
    what a certificate needs to re-derive them. `pools` as in `optimise_slopes`."""
    graph = graph_of(ctx)
    out = Context(graph, dict(ctx.bounds), dict(ctx.err), charge=dict(ctx.charge))
    for t in _fully_connected_targets(graph):
        if record is not None:  # a certificate re-derives t from the bounds claimed before it: CROWN's bounds from the
            # earlier, looser ones are not always re-derivable from the tightened ones (slopes flip), so recompute them
            out.bounds[t] = _fresh_crown(out, _subgraph(graph, graph.ancestors(t), t), box, t, widen)
        lo, hi = out.bounds[t]
        idx, valid = selected_rows((lo < 0) & (hi > 0))
        n, k = idx.shape
        if k == 0:
            continue
        keep = graph.ancestors(t)
        sub = _subgraph(graph, keep, t)
        sub_search = None if search is None else _subgraph(search, keep, t)
        width = 2 * k * max([math.prod(graph.shapes[r]) for r, _ in relu_inputs(sub)] + [1])
        step = max(1, budget // width)
        new_lo, new_hi = lo.gather(1, idx), hi.gather(1, idx)
        kept: list[dict[str, torch.Tensor]] = []
        for s0 in range(0, n, step):
            rows = slice(s0, min(n, s0 + step))
            i = idx[rows]
            C = torch.zeros(i.shape + (lo.shape[1],), dtype=lo.dtype, device=lo.device)
            C.scatter_(2, i.unsqueeze(2), 1.0)
            C = torch.cat([C, -C], dim=1)
            spec = LinearSpec(C, torch.zeros(C.shape[:2], dtype=lo.dtype, device=lo.device), [list(range(2 * k))])
            start = torch.cat([new_lo[rows], -new_hi[rows]], dim=1)
            sub_ctx = Context(sub, {v: (b[0][rows], b[1][rows]) for v, b in out.bounds.items()},
                              {v: e[rows] for v, e in out.err.items()}, charge={v: e[rows] for v, e in out.charge.items()})
            state: dict[str, torch.Tensor] | None = {} if record is not None else None
            best = optimise_slopes(sub_ctx, spec, box.select(rows), start, iters, lr, deadline=deadline, search=sub_search,
                                   state=state, pools=pools)
            new_lo[rows], new_hi[rows] = best[:, :k], -best[:, k:]
            kept.append(state or {})
        cur_lo, cur_hi = lo.gather(1, idx), hi.gather(1, idx)
        out.bounds[t] = (lo.scatter(1, idx, torch.where(valid, torch.maximum(cur_lo, new_lo), cur_lo)),
                         hi.scatter(1, idx, torch.where(valid, torch.minimum(cur_hi, new_hi), cur_hi)))
        if widen is not None:
            out.bounds[t] = widen(t, *out.bounds[t]) or out.bounds[t]
        if record is not None and n == 1 and kept[0]:
            v = valid[0]
            record[t] = (idx[0][v], {key[6:]: a[0].reshape((2, k) + a.shape[2:])[:, v] for key, a in kept[0].items()
                                     if key.startswith("alpha:")})
    return out


def _fresh_crown(ctx: Context, sub: Graph, box: InputBox, t: str, widen: Widen | None) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN's bounds of every neuron of the flat node t (the output of `sub`) over ctx's current bounds, widened."""
    lo = ctx.bounds[t][0]
    m = lo.shape[1]
    eye = torch.eye(m, dtype=lo.dtype, device=lo.device)
    C = torch.cat([eye, -eye]).expand(lo.shape[0], 2 * m, m)
    spec = LinearSpec(C, torch.zeros(C.shape[:2], dtype=lo.dtype, device=lo.device), [list(range(2 * m))])
    with torch.no_grad():
        b = spec_backward(Context(sub, dict(ctx.bounds), dict(ctx.err), charge=dict(ctx.charge)), spec, box)
    new = (b[:, :m].reshape(lo.shape), -b[:, m:].reshape(lo.shape))
    return (widen(t, *new) or new) if widen is not None else new


def _subgraph(graph: Graph, keep: set[str], output: str) -> Graph:
    """The nodes of `graph` in `keep` (an output's ancestors), ending at `output`."""
    return Graph(graph.input_shape, [(v, graph.node(v), graph.inputs_of[v]) for v in graph.order if v in keep], output)


def alpha_crown_bounds(graph: Graph, box: InputBox, spec: LinearSpec, iters: int = 20, lr: float = 0.5,
                       budget: int = DEFAULT_BUDGET, base: CrownResult | None = None,
                       deadline: float | None = None) -> CrownResult:
    """alpha-CROWN: CROWN's intermediate bounds, then the ReLU lower slopes of the final pass optimised per
    sample and spec row by projected Adam; the best bound seen per row is kept (never looser than CROWN).
    `base`: a CROWN result for the same samples and box, to reuse instead of recomputing."""
    base = base or crown_bounds(graph, box, spec, "crown", budget)
    if iters <= 0:
        return base
    ctx = optimise_intermediate(base.ctx, box, iters, lr, deadline)
    best = optimise_slopes(ctx, spec, box, base.lower, iters, lr, deadline=deadline)
    return CrownResult(best, unstable_count(ctx), ctx)
