"""PGD falsification: search the input set for a point that violates the property.

The attack is an upper-bound tool: it never proves anything. Every point it returns is re-checked by
`confirm_counterexamples` with plain forward passes in the model's own precision and in float64, and must lie
inside the exact input set, before anyone may call it a counterexample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .ir.graph import Graph
from .spec import InputBox, LinearSpec


@dataclass
class AttackResult:
    """Best point found per sample, its objective (≤ 0 means violated) and whether it violates."""

    points: torch.Tensor
    objective: torch.Tensor
    found: torch.Tensor


STALL_CHECK = 5  # steps between two checks of a row's progress
STALL_AFTER = 5  # no row is given up before this many steps
STEP_SHARE = 2.5  # the step is this many times the radius over the steps
STALL_HEADROOM = 2.0  # a row is given up when even this many times its recent progress would not reach 0


def pgd(
    graph: Graph,
    box: InputBox,
    spec: LinearSpec,
    *,
    steps: int = 30,
    restarts: int = 1,
    seed: int = 0,
    start: torch.Tensor | None = None,
    deadline: float | None = None,
    give_up: bool = False,
) -> AttackResult:
    """Projected steepest descent on the spec objective over the box (∩ its L2/L1 ball: normalised-gradient or
    sparse steps, projections onto the ball), with random restarts.

    `start` (optional) is tried as the first starting point (e.g. the clean input); later restarts start
    uniformly at random in the box. A row stops once it is broken. With `give_up` a restart also drops a row
    beyond STALL_HEADROOM times its first-order reach (after its first gradient) or whose objective, falling at
    STALL_HEADROOM times its rate since the last check, would still be above 0 after the steps left; a later
    restart takes only the rows STALL_HEADROOM times the largest fall of one restart so far could break, and each
    restart's first step also tries the first-order model's minimiser over the set (the box's corner for L∞),
    going on from it where it is lower. So a sample the attack cannot break costs a few steps, not all, and a
    nearly linear one is settled in one. Past `deadline` (a `time.perf_counter()` time) it
    stops stepping and returns the best points so far. Runs in the graph's dtype on the graph's device.
    """
    dt, dev = graph.dtype, graph.device
    lo, hi = box.lower.to(dev, dt), box.upper.to(dev, dt)
    width = hi - lo
    box = InputBox(lo, hi, box.nonneg, box.ball.to(dt, dev) if box.ball is not None else None)
    spec = spec.to(dt, dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    best_x = lo + width / 2 if start is None else _projector(box)(start.to(dev, dt))
    with torch.no_grad():
        best_obj = spec.objective(spec.values(graph.logits(best_x)))
    if box.ball is None:
        step_size = STEP_SHARE * width / 2 / max(steps, 1)
    else:
        step_size = (STEP_SHARE * box.ball.eps.to(dt) / max(steps, 1)).reshape((-1,) + (1,) * (lo.dim() - 1)).expand_as(lo)
    was_training = graph.training
    graph.eval()
    req = [p.requires_grad for p in graph.parameters()]
    for p in graph.parameters():
        p.requires_grad_(False)
    reach = torch.full_like(best_obj, torch.inf)  # per row, the largest fall of the objective in one restart so far
    try:
        for restart in range(restarts):
            if restart and _past(deadline):
                break
            if restart == 0 and start is not None:
                x = best_x.clone()
            else:  # drawn for every row, so the random stream does not depend on which rows are left
                x = _projector(box)(lo + width * torch.rand(lo.shape, generator=gen, device=dev, dtype=dt))
            live = best_obj > 0  # rows not broken yet; with give_up, only those a restart's fall could break
            act = (live & (best_obj <= STALL_HEADROOM * reach) if give_up else live).nonzero().flatten()
            if not act.numel():
                break
            pts, obj, first = _descend(graph, box.select(act), spec.select(act), x[act], step_size[act], steps, deadline,
                                       give_up)
            fall = (first - obj).clamp(min=0)
            reach[act] = torch.where(torch.isinf(reach[act]), fall, torch.maximum(reach[act], fall))
            better = obj < best_obj[act]
            best_obj[act] = torch.where(better, obj, best_obj[act])
            best_x[act] = torch.where(_rows(better, pts), pts, best_x[act])
    finally:
        for p, r in zip(graph.parameters(), req):
            p.requires_grad_(r)
        graph.train(was_training)
    return AttackResult(best_x.detach(), best_obj, best_obj <= 0)


def _projector(box: InputBox):
    lo, hi, ball = box.lower, box.upper, box.ball
    if ball is None:
        return lambda z: torch.minimum(torch.maximum(z, lo), hi)
    return lambda z: _into_ball(z, lo, hi, ball)


def _descend(graph: Graph, box: InputBox, spec: LinearSpec, x: torch.Tensor, step_size: torch.Tensor, steps: int,
             deadline: float | None, give_up: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One restart from x: the best point and objective of each row's trajectory, and its objective at x. Rows
    that are broken (or, with `give_up`, stalled: see `pgd`) leave the batch, so the remaining steps cost only
    what is left."""
    n = x.shape[0]
    best_x, best_obj = x.clone(), torch.full((n,), torch.inf, dtype=x.dtype, device=x.device)
    act = torch.arange(n, device=x.device)  # rows still stepping; b, xs, ... below are theirs
    b, xs, project, sp, s = box, x, _projector(box), spec, step_size
    checkpoint = best_obj.clone()  # each row's best at the last progress check (from step 1 with give_up, else 0)
    checked = 1 if give_up else 0  # the step of that check
    first = best_obj  # the objective at x: set at step 0 below
    for t in range(steps + 1):
        if t == steps or _past(deadline):
            with torch.no_grad():
                obj = sp.objective(sp.values(graph.logits(xs)))
            _keep_best(best_x, best_obj, act, xs, obj)
            if t == 0:
                first = obj.clone()
            break
        with torch.enable_grad():  # callers may run under no_grad; the attack needs input gradients
            xs.requires_grad_(True)
            obj = sp.objective(sp.values(graph.logits(xs)))
            (grad,) = torch.autograd.grad(obj.sum(), xs)
        with torch.no_grad():
            _keep_best(best_x, best_obj, act, xs.detach(), obj.detach())
            if t == 0:
                first = obj.detach().clone()
            if t == checked:
                checkpoint = best_obj.clone()
            movable = ((grad > 0) & (xs > b.lower)) | ((grad < 0) & (xs < b.upper))  # the box does not stop the step
            step = _direction(grad * movable, b.ball)
            here, xs = xs.detach(), project(xs.detach() - s * step)
            going = None
            if t == 0 and give_up:
                going = _probe(graph, b, sp, here, xs, obj.detach(), grad * movable, s * (2 * steps / STEP_SHARE),
                               (best_x, best_obj, act))
            elif t >= STALL_AFTER and t % STALL_CHECK == 0:
                now = best_obj[act]
                rate = (checkpoint[act] - now).clamp(min=0) / (t - checked)
                going = now > 0
                if give_up:
                    going &= now <= STALL_HEADROOM * rate * (steps - t)
                checkpoint[act] = now
                checked = t
            if going is not None:
                if not going.all():
                    keep = going.nonzero().flatten()
                    act, xs, s = act[keep], xs[keep], s[keep]
                    b, sp = b.select(keep), sp.select(keep)
                    project = _projector(b)
                    if not act.numel():
                        break
    return best_x, best_obj, first


def _probe(graph: Graph, box: InputBox, spec: LinearSpec, x: torch.Tensor, nxt: torch.Tensor, obj: torch.Tensor,
           grad: torch.Tensor, reach: torch.Tensor, best: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """`give_up`'s first step: which rows go on. A row whose objective exceeds STALL_HEADROOM times its first-order
    reach ‖∇‖₁·width leaves. The others try the linear model's minimiser over the set (a step of `reach`): where
    the model is nearly linear on the set, small steps take a dozen to get there. Each goes on from it (written into
    `nxt`, the next point) where it is lower, and leaves when it is broken there (kept in `best`)."""
    span = (grad.abs() * (box.upper - box.lower)).flatten(1).sum(dim=1)
    going = obj <= STALL_HEADROOM * span
    near = going.nonzero().flatten()
    if near.numel():
        sub = spec.select(near)
        far = _linear_minimiser(box.select(near), x[near], grad[near], reach[near])
        far_obj = sub.objective(sub.values(graph.logits(far)))
        best_x, best_obj, act = best
        _keep_best(best_x, best_obj, act[near], far, far_obj)
        nxt[near] = torch.where(_rows(far_obj < obj[near], far), far, nxt[near])
        going[near] &= far_obj > 0
    return going


def _linear_minimiser(box: InputBox, x: torch.Tensor, grad: torch.Tensor, reach: torch.Tensor) -> torch.Tensor:
    """Where the first-order model at x is lowest in the set (approximately for L2): the box's corner for L∞, a step
    of `reach` (twice the radius) along −∇ projected for L2, and for L1 the radius spent greedily on the entries of
    largest |∇|, each moved as far as the box lets it."""
    if box.ball is None or box.ball.p != 1.0:
        return _projector(box)(x - reach * _direction(grad, box.ball))
    flat, g = x.flatten(1), grad.flatten(1)
    room = torch.where(g > 0, flat - box.lower.flatten(1), box.upper.flatten(1) - flat).clamp(min=0)
    budget = box.ball.eps.to(x.dtype).reshape(-1, 1) - (flat - box.ball.centre.flatten(1)).abs().sum(dim=1, keepdim=True)
    order = g.abs().argsort(dim=1, descending=True)
    room_sorted = room.gather(1, order)
    spent_before = room_sorted.cumsum(1) - room_sorted
    move = torch.minimum(room_sorted, (budget.clamp(min=0) - spent_before).clamp(min=0))
    moved = flat - g.sign() * torch.zeros_like(flat).scatter(1, order, move)
    return _projector(box)(moved.reshape(x.shape))


def _keep_best(best_x: torch.Tensor, best_obj: torch.Tensor, act: torch.Tensor, x: torch.Tensor, obj: torch.Tensor) -> None:
    better = obj < best_obj[act]
    best_obj[act] = torch.where(better, obj, best_obj[act])
    best_x[act] = torch.where(_rows(better, x), x, best_x[act])


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() > deadline


def _direction(grad: torch.Tensor, ball) -> torch.Tensor:
    """The steepest unit step for the norm: sign(g) for L∞, g/‖g‖₂ for L2, and for L1 the signs of the largest
    1 % of the entries (at least one), spread to unit L1 norm. (Entries the box stops arrive as 0.)"""
    if ball is None:
        return grad.sign()
    flat = grad.reshape(grad.shape[0], -1)
    if ball.p == 2.0:
        return (flat / flat.norm(dim=1, keepdim=True).clamp(min=1e-30)).reshape(grad.shape)
    k = max(1, flat.shape[1] // 100)
    top = flat.abs().topk(k, dim=1).indices
    step = torch.zeros_like(flat).scatter_(1, top, flat.gather(1, top).sign() / k)
    return step.reshape(grad.shape)


def _into_ball(z: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, ball) -> torch.Tensor:
    """Project onto the L2/L1 ball (the L1 projection of Duchi et al., 2008), then clip to the box. Computed in
    float64 onto a radius shrunk by the rounding to z's dtype (‖error‖_p ≤ u·‖c + d‖_p), so the rounded point is
    still inside; clipping moves each entry towards the centre's (inside the box), so it stays in the ball."""
    c = ball.centre.double()
    d = (z.double() - c).reshape(z.shape[0], -1)
    u = torch.finfo(z.dtype).eps
    eps = ball.eps.double().unsqueeze(1)
    eps = eps - 2 * u * (torch.linalg.vector_norm(c.reshape(z.shape[0], -1), ord=ball.p, dim=1, keepdim=True) + eps)
    eps = eps.clamp(min=0)
    if ball.p == 2.0:
        d = d * torch.clamp(eps / d.norm(dim=1, keepdim=True).clamp(min=1e-300), max=1.0)
    else:
        v = d.abs()
        srt = v.sort(dim=1, descending=True).values
        css = srt.cumsum(1) - eps
        j = torch.arange(1, srt.shape[1] + 1, device=z.device, dtype=torch.float64)
        rho = ((srt - css / j) > 0).sum(1, keepdim=True).clamp(min=1)
        theta = (css.gather(1, rho - 1) / rho).clamp(min=0)
        d = torch.where(v.sum(1, keepdim=True) > eps, d.sign() * (v - theta).clamp(min=0), d)
    out = (c + d.reshape(z.shape)).to(z.dtype)
    return torch.minimum(torch.maximum(out, lo), hi)


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape((-1,) + (1,) * (like.dim() - 1))


def confirm_counterexamples(
    points: torch.Tensor,
    spec: LinearSpec,
    graph_native: Graph,
    graph_f64: Graph,
    inside: torch.Tensor,
) -> torch.Tensor:
    """A point is a counterexample when it lies in the exact input set (`inside`) and violates the property
    under a plain forward pass both in the model's own precision and in float64."""
    with torch.no_grad():
        p = points.to(graph_native.device, graph_native.dtype)
        z_native = graph_native.logits(p)
        z_f64 = graph_f64.logits(p.to(graph_f64.device, torch.float64))
    return inside.to(z_native.device) & violated_in_both(spec, z_native, z_f64)


def violated_in_both(spec: LinearSpec, z_native: torch.Tensor, z_f64: torch.Tensor) -> torch.Tensor:
    """Per sample, whether the property fails on both the model's own logits `z_native` and the float64 ones `z_f64`
    of the same points (`confirm_counterexamples` without the forward passes, for a caller that has the logits)."""
    native, wide = spec.to(z_native.dtype, z_native.device), spec.to(torch.float64, z_f64.device)
    return native.violated(native.values(z_native)) & wide.violated(wide.values(z_f64)).to(z_native.device)
