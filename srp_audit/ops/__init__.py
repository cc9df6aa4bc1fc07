"""Every operator of the IR, one module per op family; importing this package registers them all.

An op module holds, side by side, the node (shape inference, forward), its traits, its sound rules for every
bound method (IBP, CROWN backward and rounding, SingleProp) and its format mappings (see `srp_audit.ir.node`).
Modules are discovered, not listed: adding an op is adding a module (and one sampling-test case). The arithmetic
the rules are written in is `srp_audit.kernel`; graph rewrites are `srp_audit.passes`.

Which base class a new op takes — the first that fits:

- An elementwise function of one input given by a formula, with known kinks and bounds on f″ between them
  (Silu, GELU, Sin, Atan): `scalar.ScalarActivation`. It needs only f, its kinks and bounds on f″; IBP, CROWN lines,
  alpha-CROWN tangents and the rounding allowance all follow (`increasing` or `valley` make IBP exact).
- Convex or concave on its whole domain (Exp, ELU, powers, log, 1/x, √x): `convex.Curved` (or
  `convex.ConvexIncreasing`): a chord above, a tangent below, domain ends handled.
- S-shaped, convex below 0 and concave above with f(x) = κ − f(−x) (Sigmoid, Tanh, Erf): `smooth.SShaped`.
- A monotone integer-valued step (Ceil, Round, a Cast to int): `steps._Step`, bounded by its two parallel lines.
- Any other elementwise activation with its own per-neuron lines (Compare, Floor, RoundToFloat):
  `lines.LinesActivation`, giving `lines(l, u)` and optionally alpha-CROWN's line family.
- Anything else (linear maps, ReLU's family with its own slopes, pools, shape moves, products): `Node` itself
  (`srp_audit.ir.node`), with each rule written out; `shape._MovesValues` for ops that only move values.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..ir.node import OPS, Node

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

globals().update(OPS)  # srp_audit.ops.Dense, srp_audit.ops.Relu, …

ALL_OPS: tuple[type[Node], ...] = tuple(OPS.values())


def by_onnx_op() -> dict[str, type[Node]]:
    """ONNX op type → the op declaring it in `onnx_op` (ops mapped by declaration alone)."""
    return {cls.onnx_op: cls for cls in ALL_OPS if cls.onnx_op}


def by_aten_op() -> dict[str, type[Node]]:
    """ATen target → the op declaring it in `aten_ops`."""
    return {target: cls for cls in ALL_OPS for target in cls.aten_ops}


__all__ = ["ALL_OPS", "Node", "by_onnx_op", "by_aten_op", *OPS]
