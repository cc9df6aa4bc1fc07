"""Every operator of the IR, one module per op family; importing this package registers them all.

An op module holds, side by side, the node (shape inference, forward), its traits, its sound rules for every
bound method (IBP, CROWN backward and rounding, SingleProp) and its format mappings (see `srp_audit.ir.node`).
Modules are discovered, not listed: adding an op is adding a module (and one sampling-test case).
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
