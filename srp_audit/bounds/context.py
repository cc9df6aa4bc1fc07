"""The bound drivers' side of a CROWN `Context`: the whole graph it was built on."""

from __future__ import annotations

from typing import cast

from ..ir.graph import Graph
from ..kernel.backward import Context


def graph_of(ctx: Context) -> Graph:
    """The graph of `ctx`. The kernel types `Context.graph` as the `GraphView` its rules read (it sits below the IR);
    every context the drivers build (`crown`, `alpha`, `branching`, and `Context.select` of those) holds a `Graph`."""
    return cast(Graph, ctx.graph)
