"""The tree walk: which part of the input set each leaf must prove the claim on, and what it may assume.

A node is {"leaf": i}, {"relu": tensor, "neuron": j, "children": [z ≥ 0, z ≤ 0]}, {"input": j, "at": v,
"children": [x_j ≤ v, x_j ≥ v]} or {"groups": [one node per spec group]} (docs/certificates.md). Each split's two
children cover its region, so the leaves cover the whole set by construction; under a `groups` node, child g
need only prove group g (the claim is a conjunction over groups). A split or groups node may name a leaf entry
as its `bounds`: those ReLU bounds are verified once on the node's region (an *anchor*) and every node below
starts from them. Each item is handed the box and the split signs of its own path, never those it claims. A
malformed node is a `CertificateError`; a neuron split twice on one path is refused (`Rejected`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .certificate import integer, number
from .errors import CertificateError, Rejected
from .network import Network


@dataclass
class LeafContext:
    """A leaf (or an anchor: `anchor` True) occurrence: its entry's index, its box, its split signs
    {relu: {neuron: ±1}}, a path for messages, the positions of the anchors above it in the walk's list, and the
    spec groups it must prove (None: all)."""

    index: int
    lo: np.ndarray
    hi: np.ndarray
    splits: dict[str, dict[int, int]]
    path: str
    anchors: tuple[int, ...] = ()
    groups: tuple[int, ...] | None = None
    anchor: bool = False


SPLIT_KEYS = ({"relu", "neuron", "children"}, {"input", "at", "children"}, {"groups"})


def walk(tree: Any, lo: np.ndarray, hi: np.ndarray, net: Network, n_leaves: int, n_groups: int, where: str) -> list[LeafContext]:
    """Every anchor and leaf under `tree`, depth first (an anchor before the nodes below it), children in order."""
    out: list[LeafContext] = []
    stack: list[tuple[Any, LeafContext]] = [(tree, LeafContext(-1, lo, hi, {}, "root"))]
    while stack:
        node, at = stack.pop()
        path = at.path
        if not isinstance(node, dict):
            raise CertificateError(f"{where}: tree node at {path} is not a JSON object")
        keys = set(node)
        if keys == {"leaf"}:
            out.append(LeafContext(integer(node["leaf"], f"{where}: leaf index at {path}", 0, n_leaves), at.lo, at.hi,
                                   at.splits, path, at.anchors, at.groups))
            continue
        if keys - {"bounds"} not in SPLIT_KEYS:
            raise CertificateError(f"{where}: tree node at {path} has keys {sorted(keys)}")
        anchors = at.anchors
        if "bounds" in keys:
            i = integer(node["bounds"], f"{where}: bounds index at {path}", 0, n_leaves)
            out.append(LeafContext(i, at.lo, at.hi, at.splits, path, anchors, at.groups, anchor=True))
            anchors = anchors + (len(out) - 1,)
        if "groups" in keys:
            kids = node["groups"]
            if not (isinstance(kids, list) and len(kids) == n_groups):
                raise CertificateError(f"{where}: the groups node at {path} must have one child per spec group ({n_groups})")
            for g in range(n_groups - 1, -1, -1):
                if at.groups is None or g in at.groups:
                    stack.append((kids[g], LeafContext(-1, at.lo, at.hi, at.splits, f"{path}/group {g}", anchors, (g,))))
            continue
        kids = node["children"]
        if not (isinstance(kids, list) and len(kids) == 2):
            raise CertificateError(f"{where}: the split at {path} must have two children")
        if "relu" in keys:
            name = node["relu"]
            if not isinstance(name, str) or name not in net.relus:
                raise CertificateError(f"{where}: split at {path} names {name!r}, not a ReLU output of the model")
            j = integer(node["neuron"], f"{where}: neuron at {path}", 0, net.sizes[name])
            if j in at.splits.get(name, {}):
                raise Rejected(f"{where}: neuron {j} of ReLU {name!r} is split twice on the path {path}")
            for sign, kid, tag in ((-1, kids[1], "≤0"), (1, kids[0], "≥0")):  # pushed last, walked first
                sub = {k: dict(v) for k, v in at.splits.items()}
                sub.setdefault(name, {})[j] = sign
                stack.append((kid, LeafContext(-1, at.lo, at.hi, sub, f"{path}/{name}[{j}]{tag}", anchors, at.groups)))
        else:
            j = integer(node["input"], f"{where}: input index at {path}", 0, at.lo.size)
            v = number(node["at"], f"{where}: split point at {path}")
            hi0, lo1 = at.hi.copy(), at.lo.copy()
            hi0[j], lo1[j] = min(at.hi[j], v), max(at.lo[j], v)
            stack.append((kids[1], LeafContext(-1, lo1, at.hi, at.splits, f"{path}/x[{j}]≥{v!r}", anchors, at.groups)))
            stack.append((kids[0], LeafContext(-1, at.lo, hi0, at.splits, f"{path}/x[{j}]≤{v!r}", anchors, at.groups)))
    return out
