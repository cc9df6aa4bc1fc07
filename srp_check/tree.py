"""The tree walk: which part of the input set each leaf must prove the claim on.

A node is {"leaf": i}, {"relu": tensor, "neuron": j, "children": [z ≥ 0, z ≤ 0]} or {"input": j, "at": v,
"children": [x_j ≤ v, x_j ≥ v]} (docs/certificates.md). Each split's two children cover its region, so the
leaves cover the whole set by construction; each leaf is handed the box and the ReLU split signs of its own
path, never those it claims. A malformed node is a `CertificateError`; a neuron split twice on one path is
refused (`Rejected`): the format gives no meaning to it. Leaves the tree never reaches are not used.
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
    """A leaf occurrence: its index, its box, its split signs {relu: {neuron: ±1}} and a path for messages."""

    index: int
    lo: np.ndarray
    hi: np.ndarray
    splits: dict[str, dict[int, int]]
    path: str


def walk(tree: Any, lo: np.ndarray, hi: np.ndarray, net: Network, n_leaves: int, where: str) -> list[LeafContext]:
    """Every leaf under `tree` with its part of the box [lo, hi], depth first, children in order."""
    out: list[LeafContext] = []
    stack: list[tuple[Any, np.ndarray, np.ndarray, dict[str, dict[int, int]], str]] = [(tree, lo, hi, {}, "root")]
    while stack:
        node, lo, hi, splits, path = stack.pop()
        if not isinstance(node, dict):
            raise CertificateError(f"{where}: tree node at {path} is not a JSON object")
        keys = set(node)
        if keys == {"leaf"}:
            out.append(LeafContext(integer(node["leaf"], f"{where}: leaf index at {path}", 0, n_leaves), lo, hi, splits, path))
            continue
        if keys not in ({"relu", "neuron", "children"}, {"input", "at", "children"}):
            raise CertificateError(f"{where}: tree node at {path} has keys {sorted(keys)}")
        kids = node["children"]
        if not (isinstance(kids, list) and len(kids) == 2):
            raise CertificateError(f"{where}: the split at {path} must have two children")
        if keys == {"relu", "neuron", "children"}:
            name = node["relu"]
            if not isinstance(name, str) or name not in net.relus:
                raise CertificateError(f"{where}: split at {path} names {name!r}, not a ReLU output of the model")
            j = integer(node["neuron"], f"{where}: neuron at {path}", 0, net.sizes[name])
            if j in splits.get(name, {}):
                raise Rejected(f"{where}: neuron {j} of ReLU {name!r} is split twice on the path {path}")
            for sign, kid, tag in ((-1, kids[1], "≤0"), (1, kids[0], "≥0")):  # pushed last, walked first
                sub = {k: dict(v) for k, v in splits.items()}
                sub.setdefault(name, {})[j] = sign
                stack.append((kid, lo, hi, sub, f"{path}/{name}[{j}]{tag}"))
        else:
            j = integer(node["input"], f"{where}: input index at {path}", 0, lo.size)
            v = number(node["at"], f"{where}: split point at {path}")
            hi0, lo1 = hi.copy(), lo.copy()
            hi0[j], lo1[j] = min(hi[j], v), max(lo[j], v)
            stack.append((kids[1], lo1, hi, splits, f"{path}/x[{j}]≥{v!r}"))
            stack.append((kids[0], lo, hi0, splits, f"{path}/x[{j}]≤{v!r}"))
    return out
