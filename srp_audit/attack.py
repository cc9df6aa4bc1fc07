"""PGD falsification: search the input set for a point that violates the property.

The attack is an upper-bound tool: it never proves anything. Every point it returns is re-checked by
`confirm_counterexamples` with plain forward passes in the model's own precision and in float64, and must lie
inside the exact input set, before anyone may call it a counterexample.
"""

from __future__ import annotations

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
) -> AttackResult:
    """Projected sign-gradient descent on the spec objective over the box, with random restarts.

    `start` (optional) is tried as the first starting point (e.g. the clean input); later restarts start
    uniformly at random in the box. Runs in the graph's dtype on the graph's device.
    """
    dt, dev = graph.dtype, graph.device
    lo, hi = box.lower.to(dev, dt), box.upper.to(dev, dt)
    width = hi - lo
    spec = spec.to(dt, dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    best_x = lo + width / 2 if start is None else start.to(dev, dt).clamp(lo, hi)
    with torch.no_grad():
        best_obj = spec.objective(spec.values(graph.logits(best_x)))
    step_size = 2.5 * width / 2 / max(steps, 1)
    was_training = graph.training
    graph.eval()
    req = [p.requires_grad for p in graph.parameters()]
    for p in graph.parameters():
        p.requires_grad_(False)
    try:
        for restart in range(restarts):
            if restart == 0 and start is not None:
                x = best_x.clone()
            else:
                x = lo + width * torch.rand(lo.shape, generator=gen, device=dev, dtype=dt)
            for _ in range(steps):
                with torch.enable_grad():  # callers may run under no_grad; the attack needs input gradients
                    x.requires_grad_(True)
                    obj = spec.objective(spec.values(graph.logits(x)))
                    (grad,) = torch.autograd.grad(obj.sum(), x)
                with torch.no_grad():
                    better = obj.detach() < best_obj
                    best_obj = torch.where(better, obj.detach(), best_obj)
                    best_x = torch.where(_rows(better, x), x.detach(), best_x)
                    x = torch.minimum(torch.maximum(x.detach() - step_size * grad.sign(), lo), hi)
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
