"""How a model's inputs are read: with a leading batch axis, or whole with the batch fixed to 1 (when an op moves
or mixes the batch axis), and the per-sample shapes that follow."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import ModelLoadError, UnsupportedOpError
from ..ir.graph import Graph
from .context import BATCH


def batch_modes(declared: list[list[Any]], what: str) -> list[bool]:
    """How to read inputs with these declared shapes, in order of preference: True = with a leading batch axis
    (rank ≥ 2, batch dynamic or 1), False = the whole declared tensor is the sample, a dynamic batch fixed to 1
    (rank-1 inputs, VNN-COMP's tiny tests, and fixed batches > 1, which VNN-COMP's pensieve_small_parallel means as
    one sample, or leading sizes that differ: a (1, 4) image beside a (2, 2) mask). A batch of 1 or a dynamic one
    is read batched first, then whole if an op moves the batch axis (a sequence-first transformer layer) or
    computes shapes from it."""
    ranks = {len(d) >= 2 for d in declared}
    if ranks == {True}:
        if any(isinstance(d[0], int) and d[0] != 1 for d in declared):
            return [False]  # a leading size above 1 (a fixed batch, or an input such as a (2, 2) mask) is data
        return [True, False]
    return [False]


def read_in_modes(modes: list[bool], read: Callable[[bool], Graph]) -> Graph:
    """`read(batched)` for the first mode that reads (ml4acopf's ops only make sense on the whole (1, n) tensor); a
    whole read after a batched one failed says why in the graph's `meta.note`. When none reads, the first error."""
    first: UnsupportedOpError | None = None
    for batched in modes:
        try:
            graph = read(batched)
        except UnsupportedOpError as e:
            first = first or e
            continue
        if first is not None and not batched:
            graph.meta = replace(graph.meta, note=f"read with the batch axis fixed to 1 (results hold for the model run on one "
                                                  f"sample at a time): node '{first.node}' ({first.op}) moves or mixes the batch axis")
        return graph
    assert first is not None, "no batch mode to read in"
    raise first


def sample_shapes(declared: list[list[Any]], batched: bool, what: str) -> list[tuple[int, ...]]:
    """Per-sample shapes of the inputs; a symbolic sample dimension is a `ModelLoadError` naming `what`."""
    shapes = []
    for d in declared:
        if batched and len(d) < 2:
            raise ModelLoadError(f"{what} mix batched and unbatched inputs ({declared})")
        sample = d[1:] if batched else ([BATCH, *d[1:]] if len(d) >= 2 and not isinstance(d[0], int) else d)
        if any(not isinstance(n, int) for n in sample):
            raise ModelLoadError(f"{what} has symbolic sample dimensions {d}; a fixed sample shape is needed")
        shapes.append(tuple(int(n) for n in sample))
    return shapes
