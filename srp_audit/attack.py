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
) -> AttackResult:
    """Projected steepest descent on the spec objective over the box (∩ its L2/L1 ball: normalised-gradient or
    sparse steps, projections onto the ball), with random restarts.

    `start` (optional) is tried as the first starting point (e.g. the clean input); later restarts start
    uniformly at random in the box. Past `deadline` (a `time.perf_counter()` time) it stops stepping and returns
    the best points so far. Runs in the graph's dtype on the graph's device.
    """
    dt, dev = graph.dtype, graph.device
    lo, hi = box.lower.to(dev, dt), box.upper.to(dev, dt)
    width = hi - lo
    ball = box.ball.to(dt, dev) if box.ball is not None else None
    project = (lambda z: torch.minimum(torch.maximum(z, lo), hi)) if ball is None else (lambda z: _into_ball(z, lo, hi, ball))
    spec = spec.to(dt, dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    best_x = lo + width / 2 if start is None else project(start.to(dev, dt))
    with torch.no_grad():
        best_obj = spec.objective(spec.values(graph.logits(best_x)))
    if ball is None:
        step_size = 2.5 * width / 2 / max(steps, 1)
    else:
        step_size = (2.5 * ball.eps.to(dt) / max(steps, 1)).reshape((-1,) + (1,) * (lo.dim() - 1))
    was_training = graph.training
    graph.eval()
    req = [p.requires_grad for p in graph.parameters()]
    for p in graph.parameters():
        p.requires_grad_(False)
    try:
        for restart in range(restarts):
            if restart and _past(deadline):
                break
            if restart == 0 and start is not None:
                x = best_x.clone()
            else:
                x = project(lo + width * torch.rand(lo.shape, generator=gen, device=dev, dtype=dt))
            for _ in range(steps):
                if _past(deadline):
                    break
                with torch.enable_grad():  # callers may run under no_grad; the attack needs input gradients
                    x.requires_grad_(True)
                    obj = spec.objective(spec.values(graph.logits(x)))
                    (grad,) = torch.autograd.grad(obj.sum(), x)
                with torch.no_grad():
                    better = obj.detach() < best_obj
                    best_obj = torch.where(better, obj.detach(), best_obj)
                    best_x = torch.where(_rows(better, x), x.detach(), best_x)
                    movable = ((grad > 0) & (x > lo)) | ((grad < 0) & (x < hi))  # the box does not stop the step
                    x = project(x.detach() - step_size * _direction(grad * movable, ball))
            with torch.no_grad():
                obj = spec.objective(spec.values(graph.logits(x)))
                better = obj < best_obj
                best_obj = torch.where(better, obj, best_obj)
                best_x = torch.where(_rows(better, x), x, best_x)
    finally:
        for p, r in zip(graph.parameters(), req):
            p.requires_grad_(r)
        graph.train(was_training)
    return AttackResult(best_x.detach(), best_obj, best_obj <= 0)


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
        native = spec.to(graph_native.dtype, graph_native.device)
        p = points.to(graph_native.device, graph_native.dtype)
        bad_native = native.violated(native.values(graph_native.logits(p)))
        wide = spec.to(torch.float64, graph_f64.device)
        bad_f64 = wide.violated(wide.values(graph_f64.logits(p.to(graph_f64.device, torch.float64))))
    return inside.to(bad_native.device) & bad_native & bad_f64.to(bad_native.device)
