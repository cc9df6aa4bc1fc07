"""Which nodes CROWN refines: the inputs of nonlinear ops, redirected through ops that only pass bounds on, less
those whose CROWN pass cannot beat IBP."""

from __future__ import annotations

from ..ir.graph import Graph
from ..ir.walk import INPUT


def refine_targets(graph: Graph) -> set[str]:
    """The nodes CROWN refines: the inputs of nonlinear ops — except that an input whose op only passes bounds
    through (a pick, reshape or scale/shift: `Node.passes_bounds`) and that feeds a relaxation over all its
    entries (not only the unstable neurons of a ReLU) is replaced by its own inputs, recursively: refining the
    source once gives the same bounds, which IBP then carries forward exactly (attention's broadcast copies of
    Q and K are 5× their source on the tiny ViT). Targets whose pass cannot improve on IBP are dropped
    (`settled`)."""
    targets: set[str] = set()

    def want(name: str, redirect: bool) -> None:
        if name == INPUT:
            return
        node = graph.node(name)
        if redirect and node.passes_bounds:
            for i in graph.inputs_of[name]:
                want(i, True)
        else:
            targets.add(name)

    for n in graph.order:
        node = graph.node(n)
        if node.nonlinear:
            for i in graph.inputs_of[n]:
                want(i, not node.kinked_at_zero)
    return {t for t in targets if not settled(graph, t, targets)}


def settled(graph: Graph, target: str, targets: set[str]) -> bool:
    """A CROWN pass from `target` cannot beat its IBP bounds: its op is bounded by constants in CROWN
    (`Node.constant_relaxation`: softmax, whose pass returns IBP's bounds), or it is an elementwise op with an exact
    IBP range (`Node.ibp_exact`) whose input is CROWN-tight on every entry — CROWN through its relaxation goes back
    exactly as the input's own pass did, so its value is a relaxation line at the input's bound, never above the
    op's range over those bounds (the rsqrt of a LayerNorm's variance, a sigmoid of a refined pre-activation)."""
    node = graph.node(target)
    return node.constant_relaxation or (node.ibp_exact and all(_crown_tight(graph, x, targets) for x in graph.inputs_of[target]))


def _crown_tight(graph: Graph, v: str, targets: set[str]) -> bool:
    """v's bounds will be as tight as a CROWN pass on each of its entries would make them."""
    if v == INPUT or graph.first_layer(v) or graph.node(v).constant_relaxation:
        return True
    if v in targets and not all(graph.node(c).kinked_at_zero for c in graph.consumers(v)):
        return True  # refined on every (relevant) entry
    node, ins = graph.node(v), graph.inputs_of[v]
    return (node.passes_bounds or node.ibp_exact) and all(_crown_tight(graph, i, targets) for i in ins)
