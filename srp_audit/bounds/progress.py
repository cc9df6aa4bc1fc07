"""Progress of a long bound computation (CROWN's layer-by-layer refinement) for whoever displays it: the fraction
of the pass's estimated work done, sent to the sink the caller installed with `reporting` (none by default)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ..ir.graph import Graph

Sink = Callable[[float], None]
_sink: ContextVar[Sink | None] = ContextVar("bound_progress", default=None)


@contextmanager
def reporting(sink: Sink | None) -> Iterator[None]:
    """Send the bound passes run inside the block their progress (a fraction in [0, 1]) through `sink`."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


class WorkMeter:
    """Estimated work of refining `targets` in graph order: a layer's neurons times its depth (each row's backward
    pass crosses every layer before it, so later layers cost more), reported as each one is done."""

    def __init__(self, graph: Graph, targets: list[str]) -> None:
        self.sink = _sink.get()
        position = {name: i + 1 for i, name in enumerate(graph.order)}
        self.weight = {t: math.prod(graph.shapes[t]) * position[t] for t in targets}
        self.total = float(sum(self.weight.values())) or 1.0
        self.done = 0.0

    def finished(self, target: str) -> None:
        if self.sink is not None and target in self.weight:
            self.done += self.weight[target]
            self.sink(min(1.0, self.done / self.total))
