"""Recognise activations that exporters write as a product of a tensor with a function of itself, so they get
their own (much tighter) rules instead of a bilinear relaxation:

- x · σ(x)                     → Silu    (ONNX has no SiLU op; both torch exporters write Sigmoid + Mul)
- x · a(1 + erf(c·x))          → Gelu    (the TorchScript exporter's Div/Erf/Add/Mul form; constants kept exactly)
- x · tanh(softplus(x))        → Mish    (before ONNX's Mish op)
- x · x                        → Power 2
- x · xⁿ (integer n ≥ 2)       → xⁿ⁺¹    (Power or OddPower: the cube in TorchScript's tanh-GELU, x·x·x chains)

Each rewrite is exact in real arithmetic; the product's other input stays if something else reads it.
"""

from __future__ import annotations

import torch

from ..ir.graph import INPUT, Graph
from ..ir.node import Node
from ..ops.activations import Gelu, Mish, Silu, Softplus
from ..ops.affine import ElementwiseAffine
from ..ops.power import OddPower, Power
from ..ops.product import Product
from ..ops.smooth import Erf, Sigmoid, Tanh


def _scalar(t: torch.Tensor) -> float | None:
    flat = t.reshape(-1)
    return float(flat[0]) if flat.numel() and bool((flat == flat[0]).all()) else None


_INNER_RAD = 4 * 2.0 ** -53
"""How far (relative) GELU's inner factor may lie from the float64 the fused op uses: x/1.4142135 (a division by a
stored float) is enclosed within 1 ulp; its effect on a·x·(1 + erf(c·x)) is at most 0.21·a·(rad/c)·c, far inside the
16 ulps of (|f| + |x| + 1) that GELU's rules allow for evaluating f."""


def _near_exact(node: ElementwiseAffine, relative: float) -> bool:
    """The node's float64 constants are exact, or within `relative` (times their magnitude) of the exact ones."""
    s, t = node.enclosures()
    return bool((s.rad <= relative * s.mid.abs()).all()) and t.is_exact


def _producer(g: Graph, value: str | None) -> tuple[Node | None, str | None]:
    """The node computing `value` and its first input; (None, None) for the graph input, or for no value (the
    missing input of a previous call's producer)."""
    if value is None or value == INPUT:
        return None, None
    return g.node(value), g.inputs_of[value][0] if g.inputs_of[value] else None


def _fused(g: Graph, x: str, other: str) -> Node | None:
    """The activation f with x · other = f(x), if `other` is one of the forms above computed from x."""
    if other == x:
        return Power(2.0)
    node, src = _producer(g, other)
    if isinstance(node, (Power, OddPower)) and src == x and float(node.exponent).is_integer() and node.exponent >= 2:
        n = int(node.exponent) + 1
        return OddPower(n) if n % 2 else Power(float(n))
    if isinstance(node, Sigmoid) and src == x:
        return Silu()
    if isinstance(node, Tanh):
        inner, src2 = _producer(g, src)
        # torch's threshold shortcut (softplus(x) = x past it) moves x·tanh(·) by at most 4x·e^(−3t): below Mish's
        # rounding allowance from the default t = 20 on, not at a lower one (t = 3: 1.4e-3 at x = 3.25)
        if isinstance(inner, Softplus) and src2 == x and inner.beta == 1.0 and inner.threshold >= 20.0:
            return Mish()
    if isinstance(node, ElementwiseAffine) and _near_exact(node, 0.0):  # a·erf(·) + a
        a, b = (_scalar(e.mid) for e in node.enclosures())
        erf, src2 = _producer(g, src)
        if a is not None and a == b and a > 0 and isinstance(erf, Erf):
            lin, src3 = _producer(g, src2)
            if isinstance(lin, ElementwiseAffine) and src3 == x and _near_exact(lin, _INNER_RAD):
                c, zero = (_scalar(e.mid) for e in lin.enclosures())
                if c is not None and c > 0 and zero == 0.0:
                    return Gelu("none", a, c)
    return None


def fuse_self_products(g: Graph) -> Graph:
    """Replace every Product x · h(x) of the forms above by the activation it computes."""
    nodes: list[tuple[str, Node, tuple[str, ...]]] = []
    changed = False
    for name, node, ins in g.items():
        if isinstance(node, Product):
            a, b = ins
            f = _fused(g, a, b) or _fused(g, b, a)
            if f is not None:
                src = a if _fused(g, a, b) is not None else b
                nodes.append((name, f, (src,)))
                changed = True
                continue
        nodes.append((name, node, ins))
    return fuse_self_products(g.rebuilt(nodes)) if changed else g  # again: x·(x·x) needs x·x fused first

