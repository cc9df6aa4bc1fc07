"""Simplification passes: each returns an equivalent, smaller graph.

- `drop_identities`: remove Identity nodes (the loader maps Dropout to Identity).
- `merge_elementwise_affine`: collapse chains of constant scale/shift (Sub → Div normalisation) into one node.
- `fold_affine_into_previous`: fold per-channel scale/shift into the preceding Dense/Conv2d.
- `fold_affine_into_next`: fold a shift-free scale into the following Dense/Conv2d.

`simplify` runs them all. Every rewrite is exact in real arithmetic *and* in the stored numbers: a fold happens only
when the folded weights are exactly the products and sums they stand for (a batch-norm's derived scale, or a shift
entering a bias through a dot product, would be rounded, so those nodes stay and keep their enclosures).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..ir.graph import INPUT, Graph
from ..ir.node import Node
from ..kernel.enclosure import Enclosed
from ..ops.affine import Dense, ElementwiseAffine
from ..ops.conv import Conv2d
from ..ops.shape import Identity, Reshape

NodeList = list[tuple[str, Node, tuple[str, ...]]]


def _nodes(g: Graph) -> NodeList:
    return [(name, node, inputs) for name, node, inputs in g.items()]


def _rename_input(nodes: NodeList, old: str, new: str) -> NodeList:
    return [(n, node, tuple(new if i == old else i for i in ins)) for n, node, ins in nodes]


def _remove(g: Graph, name: str, replacement: str) -> Graph:
    """Drop node `name`, making its consumers (and the output) read `replacement` instead."""
    nodes = [(n, node, ins) for n, node, ins in _nodes(g) if n != name]
    nodes = _rename_input(nodes, name, replacement)
    output = replacement if g.output == name else g.output
    if output == INPUT:  # a graph must end in a node: keep the identity
        return g
    return g.rebuilt(nodes, output)


def drop_identities(g: Graph) -> Graph:
    changed = True
    while changed:
        changed = False
        for name, node, ins in g.items():
            if type(node) is Identity:
                new = _remove(g, name, ins[0])
                if new is not g:
                    g, changed = new, True
                    break
    return g


def _constants(node: ElementwiseAffine) -> tuple[torch.Tensor, torch.Tensor]:
    """The node's (scale, shift) buffers."""
    return node.scale, node.shift


def _single_consumer(g: Graph, name: str) -> str | None:
    cons = g.consumers(name)
    return cons[0] if len(cons) == 1 and name != g.output else None


def merge_elementwise_affine(g: Graph) -> Graph:
    """a·(s1·x + t1)... : two consecutive ElementwiseAffine nodes become one."""

    def merged(g: Graph, name: str, node: ElementwiseAffine) -> tuple[str, Node] | None:
        nxt = _single_consumer(g, name)
        second = None if nxt is None else g.node(nxt)
        if nxt is None or not isinstance(second, ElementwiseAffine):
            return None
        (s1, t1), (s2, t2) = node.enclosures(), second.enclosures()
        return nxt, ElementwiseAffine(s1 * s2, t1 * s2 + t2).to(_constants(node)[0].dtype)  # products enclosed, not rounded

    return _absorb_affines(g, merged)


def _absorb_affines(g: Graph, absorb: Callable[[Graph, str, ElementwiseAffine], tuple[str, Node] | None]) -> Graph:
    """Until none applies: an ElementwiseAffine node for which `absorb` gives (a later node, its replacement) is
    removed, that node replaced, and what read the affine node reads the affine node's input instead."""
    changed = True
    while changed:
        changed = False
        for name, node, ins in g.items():
            if not isinstance(node, ElementwiseAffine):
                continue
            found = absorb(g, name, node)
            if found is None:
                continue
            nxt, new = found
            nodes = [(n, new if n == nxt else nd, i) for n, nd, i in _nodes(g) if n != name]
            g = g.rebuilt(_rename_input(nodes, name, ins[0]))
            changed = True
            break
    return g


def _per_channel(t: torch.Tensor, channels: int, sample_rank: int, channel_axis: int) -> torch.Tensor | None:
    """`t` as a vector of `channels` values if it only varies along `channel_axis` of the sample, else None."""
    shape = [1] * sample_rank
    shape[channel_axis] = channels
    try:
        full = torch.broadcast_to(t, tuple(shape))
    except RuntimeError:
        return None
    if tuple(np.broadcast_shapes(tuple(t.shape), tuple(shape))) != tuple(shape):
        return None
    return full.reshape(channels).clone()


def fold_affine_into_previous(g: Graph) -> Graph:
    """Dense/Conv2d followed by a per-output-channel scale/shift (batch-norm) becomes one layer."""
    changed = True
    while changed:
        changed = False
        for name, node, ins in g.items():
            if not isinstance(node, ElementwiseAffine) or ins[0] == INPUT:
                continue
            prev = g.node(ins[0])
            if _single_consumer(g, ins[0]) != name:
                continue
            shape = g.shapes[ins[0]]
            if isinstance(prev, Dense):
                axis, out = len(shape) - 1, prev.weight.shape[0]
            elif isinstance(prev, Conv2d):
                axis, out = 0, prev.weight.shape[0]
            else:
                continue
            node_scale, node_shift = _constants(node)
            scale = _per_channel(node_scale, out, len(shape), axis)
            shift = _per_channel(node_shift, out, len(shape), axis)
            if scale is None or shift is None or node.constant_rads(torch.float64) != (None, None):
                continue  # a derived scale (batch-norm's γ/√(var + ε)) is no float: its node keeps the enclosure
            with torch.no_grad():
                view = (-1,) + (1,) * (prev.weight.dim() - 1)
                w = _exactly(Enclosed.exact(prev.weight) * scale.double().view(view), prev.weight.dtype)
                b = _exactly(Enclosed.exact(prev.bias) * scale.double() + shift.double(), prev.bias.dtype)
                if w is None or b is None:
                    continue
                folded = _with_weights(prev, w, b)
            nodes = []
            for n, nd, i in _nodes(g):
                if n == name:
                    continue
                nodes.append((n, folded, i) if n == ins[0] else (n, nd, i))
            nodes = _rename_input(nodes, name, ins[0])
            g = g.rebuilt(nodes, ins[0] if g.output == name else g.output)
            changed = True
            break
    return g


def _exactly(value: Enclosed, dtype: torch.dtype) -> torch.Tensor | None:
    """`value` in `dtype` if it is an exact number that `dtype` holds exactly, else None (the fold is skipped: a
    folded layer must compute the stored model's function, not a rounded one)."""
    if not value.is_exact:
        return None
    out = value.mid.to(dtype)
    return out if torch.equal(out.to(torch.float64), value.mid) else None


def _with_weights(layer: Node, weight: torch.Tensor, bias: torch.Tensor) -> Node:
    if isinstance(layer, Dense):
        return Dense(weight, bias)
    assert isinstance(layer, Conv2d)
    return Conv2d(weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)


def _next_layer(g: Graph, name: str) -> tuple[str, Node, str | None] | None:
    """The single consumer of value `name`, looked for through one Reshape: (its id, its node, the Reshape's id or
    None); None where a value on the way has several consumers (or is the output)."""
    nxt = _single_consumer(g, name)
    if nxt is None:
        return None
    reshape = None
    target = g.node(nxt)
    if isinstance(target, Reshape):
        reshape = nxt
        nxt = _single_consumer(g, nxt)
        if nxt is None:
            return None
        target = g.node(nxt)
    return nxt, target, reshape


def _scaled_layer(g: Graph, name: str, node: ElementwiseAffine, target: Node, reshape: str | None) -> Node | None:
    """`target` (a Dense, or a Conv2d read without a Reshape) with the shift-free scale of `node` (the value `name`)
    folded into its weights; None where the fold would not be exact, or `target` is neither."""
    node_scale, node_shift = _constants(node)
    in_shape = g.shapes[name]
    if bool(node_shift.any()) or node.constant_rads(torch.float64) != (None, None):
        return None  # the shift would enter the bias through a rounded dot product; derived scales stay enclosed
    scale = torch.broadcast_to(node_scale, in_shape).double()
    with torch.no_grad():
        if isinstance(target, Dense):
            feat = g.shapes[reshape] if reshape else in_shape
            if len(feat) != 1:
                return None  # Dense over a non-final axis of a higher-rank sample: leave it
            w = _exactly(Enclosed.exact(target.weight) * scale.reshape(-1), target.weight.dtype)
            if w is None:
                return None
            return Dense(w, target.bias)
        if isinstance(target, Conv2d) and reshape is None:
            s_c = _per_channel(node_scale, in_shape[0], 3, 0)
            if s_c is None or target.groups != 1:
                return None
            w = _exactly(Enclosed.exact(target.weight) * s_c.double().view(1, -1, 1, 1), target.weight.dtype)
            if w is None:
                return None
            return Conv2d(w, target.bias, target.stride, target.padding, target.dilation, target.groups)
    return None


def fold_affine_into_next(g: Graph) -> Graph:
    """Scale/shift feeding (optionally through a Reshape) a Dense, or a Conv2d where padding allows, is folded in.

    For a padded convolution the fold is exact only when the shift is zero (padding inserts zeros *after* the
    shift), so such cases are left alone.
    """

    def folded(g: Graph, name: str, node: ElementwiseAffine) -> tuple[str, Node] | None:
        found = _next_layer(g, name)
        if found is None:
            return None
        nxt, target, reshape = found
        layer = _scaled_layer(g, name, node, target, reshape)
        return None if layer is None else (nxt, layer)

    return _absorb_affines(g, folded)


def prune_dead(g: Graph) -> Graph:
    """Drop nodes the output does not depend on (dead branches left by exporters)."""
    live = {g.output}
    for name in reversed(g.order):
        if name in live:
            live.update(g.inputs_of[name])
    if len(live - {INPUT}) == len(g.order):
        return g
    return g.rebuilt([(n, node, ins) for n, node, ins in g.items() if n in live])


def simplify(g: Graph) -> Graph:
    """Run every pass to a fixed point; the result computes the same function."""
    g = drop_identities(g)
    g = merge_elementwise_affine(g)
    g = fold_affine_into_previous(g)
    g = fold_affine_into_next(g)
    return g
