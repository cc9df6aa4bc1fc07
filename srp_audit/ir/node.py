"""The IR node: one op, as a torch module, with its sound rules as methods and its traits as data.

A concrete op (in `srp_audit.ops`) subclasses `Node` and overrides the rule hooks it supports. Drivers
(`srp_audit.bounds`) call the hooks and read the traits; they never test an op's type. A hook left as the base
version means "not supported by this method": calling it raises `BoundMethodError` naming the op, and the op
contract test (`tests/test_op_contract.py`) lists what each op lacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..errors import BoundMethodError

if TYPE_CHECKING:  # rule-side types live in srp_audit.ops; the IR only names them
    from ..ops.interval import Interval

Shape = tuple[int, ...]

# method name → the hook a node must override to support it
RULE_HOOKS: dict[str, str] = {"ibp": "ibp", "crown": "crown_backward", "singleprop": "singleprop"}

OPS: dict[str, type["Node"]] = {}
"""Every concrete op of `srp_audit.ops`, by class name (filled as the op modules are imported)."""


class Node(nn.Module):
    """One op with `arity` inputs and one output, batched on axis 0; `out_shape` maps per-sample shapes."""

    arity: ClassVar[int] = 1
    kind: ClassVar[str] = "structural"  # 'affine', 'activation' or 'structural', for display

    # ---- traits, read by the drivers
    nonlinear: ClassVar[bool] = False
    """CROWN relaxes it over its input's interval, so that input needs (CROWN-refined) intermediate bounds."""
    kinked_at_zero: ClassVar[bool] = False
    """Linear on each side of 0 (the ReLU family): only neurons with l < 0 < u are *unstable* — they alone are
    refined, counted, given optimisable slopes (alpha-CROWN) and split (branch and bound)."""
    crown_patches: ClassVar[bool] = False
    """`crown_backward` accepts `Patches` coefficients (else the driver hands it dense ones)."""
    passes_bounds: ClassVar[bool] = False
    """Each output entry is one input entry times a constant plus a constant (picks, reshapes, scale/shift): CROWN
    bounds of the output follow exactly from the input's, so CROWN refines the (usually smaller) input instead."""
    keeps_argmax: ClassVar[bool] = False
    """Leaves the order of the entries along its axis unchanged (softmax): certify may prove the argmax before it."""
    trainable: ClassVar[bool] = True
    """Has a SingleProp rule; False marks an op that robustify cannot train through (say why in the docstring)."""

    # ---- format mappings as data: one-input ops whose ONNX/ATen forms differ only in attributes
    onnx_op: ClassVar[str | None] = None
    aten_ops: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        """Register concrete ops of the `srp_audit.ops` package (a shared base says `abstract=True`)."""
        super().__init_subclass__(**kwargs)
        if not abstract and cls.__module__.startswith("srp_audit.ops.") and not cls.__name__.startswith("_"):
            OPS[cls.__name__] = cls

    def out_shape(self, *shapes: Shape) -> Shape:
        return shapes[0]

    def describe(self) -> str:
        """A short human summary of the node's configuration (for `inspect` and error messages)."""
        return ""

    @property
    def op(self) -> str:
        return type(self).__name__

    # ---- format hooks (used when `onnx_op` / `aten_ops` are declared)
    @classmethod
    def from_onnx(cls, attrs: dict[str, Any]) -> "Node":
        """The node for an ONNX node of type `onnx_op` with these attributes."""
        return cls()

    @classmethod
    def from_aten(cls, args: list[Any], kwargs: dict[str, Any]) -> "Node":
        """The node for an ATen call of one of `aten_ops`; args[0] is the input tensor."""
        return cls()

    def onnx_attrs(self) -> dict[str, Any]:
        """Attributes written with `onnx_op` on export."""
        return {}

    def to_onnx(self, b: Any, name: str, ins: list[str], out: str) -> None:
        """Emit ONNX nodes computing this node through the export builder `b` (default: one `onnx_op` node)."""
        if self.onnx_op is None:
            raise NotImplementedError(f"no ONNX export for {self.op}")
        b.add(self.onnx_op, ins, out, **self.onnx_attrs())

    # ---- rule hooks (see srp_audit.bounds for the drivers that call them)
    def ibp(self, *xs: "Interval") -> "Interval":
        """A rigorous enclosure of the output given enclosures of the inputs (rounding included)."""
        raise self._unsupported("ibp")

    def ibp_ball(self, ball: Any) -> "Interval | None":
        """Optional, for an op reading the model input directly: an enclosure of the output over an L2/L1 ball
        (`spec.LpBall`), intersected with the box rule's. None: the box rule alone (always sound)."""
        return None

    def crown_backward(self, A: Any, ctx: Any, name: str) -> tuple[list[Any], torch.Tensor]:
        """Move objective coefficients A (N, R, *out) to the inputs: ([A per input], constant (N, R)), such that
        A·out ≥ Σ A_i·in_i + constant over the relaxation (lower bound)."""
        raise self._unsupported("crown")

    def crown_rounding(self, ctx: Any, name: str) -> torch.Tensor:
        """A bound err_y on the floating-point error a backward pass accumulates per unit of |A| at this node."""
        raise self._unsupported("crown")

    def crown_rows(self, idx: torch.Tensor, ctx: Any, name: str) -> tuple[Any, torch.Tensor] | None:
        """Optional: the objectives +y_i then −y_i for flat output indices idx (N, k), as exact coefficients on
        the input and a constant (N, 2k) — lets an affine op's neurons be bounded from its input. None: the
        driver starts from unit coefficients at the node."""
        return None

    def singleprop(self, centres: list[torch.Tensor], radii: list[torch.Tensor], variant: str) -> torch.Tensor:
        """SingleProp's radius of the output (a training signal, not a bound) from the inputs' centres and radii."""
        raise self._unsupported("singleprop")

    def _unsupported(self, method: str) -> BoundMethodError:
        return BoundMethodError(f"bound method '{method}' has no rule for op {self.op}")

    @classmethod
    def supports(cls, method: str) -> bool:
        """Whether the op overrides the hook of `method` ('ibp', 'crown' or 'singleprop')."""
        hook = RULE_HOOKS[method]
        return getattr(cls, hook) is not getattr(Node, hook)
