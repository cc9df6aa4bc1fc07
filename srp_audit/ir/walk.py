"""The one graph walker: forward in topological order, backward in reverse, freeing values after their last use.

Every consumer of the IR — the forward pass and the attack, IBP, CROWN's intermediate bounds and its backward
passes, SingleProp, export — runs through these two functions with its own per-node step; none re-implements
the traversal. Values can be anything (tensors, intervals, (centre, radius) pairs, ONNX value names).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol, TypeVar

from .node import Node

INPUT = "input"


class Walkable(Protocol):
    """What the walker reads of a graph (`srp_audit.ir.graph.Graph` is one; it imports this module)."""

    @property
    def order(self) -> Sequence[str]: ...

    @property
    def output(self) -> str: ...

    @property
    def inputs_of(self) -> Mapping[str, Sequence[str]]: ...

    @property
    def last_use(self) -> Mapping[str, int]: ...

    def items(self) -> Iterator[tuple[str, Node, tuple[str, ...]]]: ...

    def node(self, name: str) -> Node: ...

V = TypeVar("V")
C = TypeVar("C")


def walk_forward(
    graph: Walkable,
    x: V,
    step: Callable[[str, Node, list[V]], V],
    *,
    keep: Iterable[str] | bool = (),
    kept: dict[str, V] | None = None,
) -> V:
    """values[INPUT] = x; values[n] = step(n, node, [values of its inputs]) for each node n in order; returns the
    output's value. A value is freed after its last reader unless it is in `keep` (True: every node), in which
    case it is also stored in `kept`."""
    keep_set = set(graph.order) if keep is True else set(keep or ())
    last_use = graph.last_use
    values: dict[str, V] = {INPUT: x}
    for i, (name, node, inputs) in enumerate(graph.items()):
        values[name] = step(name, node, [values[v] for v in inputs])
        if kept is not None and name in keep_set:
            kept[name] = values[name]
        for v in inputs:
            if last_use.get(v) == i:
                values.pop(v, None)
    return values[graph.output]


def walk_backward(
    graph: Walkable,
    pending: dict[str, C],
    step: Callable[[str, Node, C | None], list[C | None] | None],
    merge: Callable[[str, C, C], C],
) -> C | None:
    """Reverse topological order: at node n, step(n, node, coefficient at n or None) returns one coefficient per
    input (None: nothing flows there) or None to skip the node; coefficients reaching the same value v are
    combined with merge(v, held, arriving). `pending` (value id → coefficient) is consumed; returns what reaches
    INPUT."""
    for name in reversed(graph.order):
        outs = step(name, graph.node(name), pending.pop(name, None))
        if outs is None:
            continue
        for value, coeff in zip(graph.inputs_of[name], outs):
            if coeff is not None:
                pending[value] = coeff if value not in pending else merge(value, pending[value], coeff)
    return pending.pop(INPUT, None)
