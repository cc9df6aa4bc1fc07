"""`--select-split`: keep the model that IBP certifies most of a selection set for, not only the last one.

A run's last model is not always its best: a step late in training can trade certified margin for loss. With a
selection set (training data set aside, disjoint from the audit's samples, so the reported figure stays unbiased),
the model is scored at each epoch's end once eps is at its target, and at the end; the one with the most samples
IBP certifies at the target eps is kept (a later one on ties: it has trained longer). IBP is sound, so the score
counts proofs, not SingleProp's estimate; it is a choice between models and proves nothing about the kept one —
the after-audit does that. Scores are in float32, the model's training precision, with IBP's outward rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .bounds.ibp import interval_bounds
from .ir.graph import Graph
from .spec import linf_ball, margin_spec


def eval_batches(graph: Graph, x: torch.Tensor, y: torch.Tensor, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) in batches, with `graph` in eval mode and no gradient while they are used (its mode restored after)."""
    was_training = graph.training
    graph.eval()
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch):
                yield x[i : i + batch], y[i : i + batch]
    finally:
        graph.train(was_training)


def ibp_certified(graph: Graph, x: torch.Tensor, y: torch.Tensor, eps: float, domain: tuple[float, float], batch: int) -> int:
    """How many of (x, y) IBP certifies at eps (every margin's lower bound > 0), the model in eval mode."""
    count = 0
    for xb, yb in eval_batches(graph, x, y, batch):
        lower = interval_bounds(graph, linf_ball(xb, eps, domain), margin_spec(yb, graph.num_classes, xb.dtype)).lower
        count += int((lower > 0).all(dim=1).sum())
    return count


@dataclass(frozen=True)
class Selection:
    """Which model was kept: the step it was saved at and its certified count, beside the last model's."""

    step: int
    certified: int
    last_step: int
    last_certified: int
    n: int
    scored: int  # models scored

    def describe(self) -> str:
        kept = "the last model" if self.step == self.last_step else f"the model of step {self.step}"
        last = "" if self.step == self.last_step else f"; the last model (step {self.last_step}) {self.last_certified}"
        return (f"kept {kept}: IBP certified {self.certified} of {self.n} selection samples{last} "
                f"({self.scored} model{'s' if self.scored != 1 else ''} scored)")


class BestModel:
    """The best model seen so far on the selection set (its state on the CPU), and how it was scored."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, eps: float, domain: tuple[float, float], batch: int) -> None:
        self.x, self.y, self.eps, self.domain, self.batch = x, y, eps, domain, batch
        self.best: tuple[int, int, dict[str, torch.Tensor]] | None = None  # (certified, step, state)
        self.last: tuple[int, int] | None = None  # (step, certified) of the latest model scored
        self.scored = 0

    def score(self, graph: Graph, step: int) -> int:
        """Score `graph` (at `step`); keep a copy of its state when it certifies at least as many as the best."""
        count = ibp_certified(graph, self.x, self.y, self.eps, self.domain, self.batch)
        self.scored += 1
        self.last = (step, count)
        if self.best is None or count >= self.best[0]:
            self.best = (count, step, {k: v.detach().to("cpu", copy=True) for k, v in graph.state_dict().items()})
        return count

    def state(self) -> dict:
        """What a checkpoint keeps, so that a resumed run's models compete with the ones scored before it."""
        best = None if self.best is None else {"certified": self.best[0], "step": self.best[1], "model": self.best[2]}
        return {"best": best, "last": None if self.last is None else list(self.last), "scored": self.scored}

    def restore(self, saved: dict) -> None:
        """Take up the scores a checkpoint kept (`state`)."""
        b = saved["best"]
        self.best = None if b is None else (int(b["certified"]), int(b["step"]), {k: v.to("cpu") for k, v in b["model"].items()})
        self.last = None if saved["last"] is None else (int(saved["last"][0]), int(saved["last"][1]))
        self.scored = int(saved["scored"])

    def finish(self, graph: Graph, step: int) -> Selection:
        """Score the last model (unless an epoch's end just did), then load the best state into `graph` (unchanged
        when the last is the best)."""
        last = self.last[1] if self.last is not None and self.last[0] == step else self.score(graph, step)
        assert self.best is not None  # scored just above
        count, best_step, state = self.best
        if best_step != step:
            graph.load_state_dict(state)
        return Selection(best_step, count, step, last, int(self.x.shape[0]), self.scored)
