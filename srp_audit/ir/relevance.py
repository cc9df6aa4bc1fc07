"""Which entries of each value the graph's output depends on: a vision transformer classifies from its class
token alone, so everything after attention matters for one token of five (or of 197), yet CROWN would refine
every token. Computed once per graph by one backward walk over the ops' `relevant_inputs` rules; a superset is
always safe (it only decides which neurons are worth a refinement pass: the rest keep their IBP bounds, which
reach the output with coefficient zero)."""

from __future__ import annotations

import weakref

import torch

from .graph import Graph
from .walk import INPUT, walk_backward

_CACHE: "weakref.WeakKeyDictionary[Graph, dict[str, torch.Tensor]]" = weakref.WeakKeyDictionary()


def relevant_entries(graph: Graph) -> dict[str, torch.Tensor]:
    """Per value (the input and every node), a bool mask (1, *shape) on the CPU: the entries some output entry
    depends on. Cached per graph (a graph's structure never changes after construction)."""
    known = _CACHE.get(graph)
    if known is not None:
        return known
    masks: dict[str, torch.Tensor] = {}

    def step(name: str, node, mask: torch.Tensor | None) -> list[torch.Tensor | None] | None:
        masks[name] = mask if mask is not None else torch.zeros((1,) + graph.shapes[name], dtype=torch.bool)
        if mask is None or not bool(mask.any()):
            return None
        return list(node.relevant_inputs(mask, [graph.shapes[i] for i in graph.inputs_of[name]]))

    top = {graph.output: torch.ones((1,) + graph.output_shape, dtype=torch.bool)}
    reached = walk_backward(graph, top, step, lambda _, a, b: torch.logical_or(a, b))
    masks[INPUT] = reached if reached is not None else torch.zeros((1,) + graph.input_shape, dtype=torch.bool)
    _CACHE[graph] = masks
    return masks
