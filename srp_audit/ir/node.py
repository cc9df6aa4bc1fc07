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
    from ..kernel.interval import Interval

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
    zero_below_zero: ClassVar[bool] = False
    """0 on every input ≤ 0 (ReLU): a neuron whose upper bound is ≤ 0 is exactly 0 whatever its lower bound, so
    CROWN skips the lower-bound pass of the neurons its upper-bound pass shows dead."""
    crown_patches: ClassVar[bool] = False
    """`crown_backward` accepts `Patches` coefficients (else the driver hands it dense ones)."""
    crown_checkpoint: ClassVar[bool] = False
    """A weighted sum with signed weights (dense, convolution): its rounding is charged on the coefficients each
    backward pass computes at it instead of carried forward through |W| (which loses the cancellation of signed
    coefficients: on deep networks that bound grew about 6× per layer)."""
    passes_bounds: ClassVar[bool] = False
    """Each output entry is one input entry times a constant plus a constant (picks, reshapes, scale/shift): CROWN
    bounds of the output follow exactly from the input's, so CROWN refines the (usually smaller) input instead."""
    elementwise: ClassVar[bool] = False
    """Each output entry depends only on the input entries at the same place (inputs of the output's shape)."""
    ibp_exact: ClassVar[bool] = False
    """Elementwise, and IBP's enclosure is its exact range over the input's interval (up to rounding): monotone
    ops and single valleys. CROWN then never improves on IBP from CROWN-tight input bounds, so it skips them."""
    constant_relaxation: ClassVar[bool] = False
    """CROWN bounds it by constants, its IBP enclosure over the input's bounds: a CROWN pass from its output gives
    IBP's bounds back, so CROWN never refines it."""
    keeps_argmax: ClassVar[bool] = False
    """Leaves the order of the entries along its axis unchanged (softmax): certify may prove the argmax before it."""
    keeps_positive_order: ClassVar[bool] = False
    """Strictly increasing on positive inputs only (log): certify may prove the argmax before it only where its input
    is a `positive_output` op's."""
    positive_output: ClassVar[bool] = False
    """Every output entry is > 0 in exact arithmetic (softmax, exp, sigmoid)."""
    trainable: ClassVar[bool] = True
    """Has a SingleProp rule; False marks an op that robustify cannot train through (say why in the docstring)."""

    # ---- format mappings as data: one-input ops whose ONNX/ATen forms differ only in attributes
    onnx_op: ClassVar[str | None] = None
    """The ONNX op type it is read from (by `from_onnx`) and written as (by `to_onnx`)."""
    aten_ops: ClassVar[tuple[str, ...]] = ()
    """ATen targets it is read from (by `from_aten`)."""
    onnx_writes: ClassVar[str | None] = None
    """The ONNX op type `to_onnx` writes for an op read by a reader of its module (`srp_audit.ir.reading`)."""

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        """Register concrete ops of the `srp_audit.ops` package (a shared base says `abstract=True`)."""
        super().__init_subclass__(**kwargs)
        if not abstract and cls.__module__.startswith("srp_audit.ops.") and not cls.__name__.startswith("_"):
            OPS[cls.__name__] = cls

    def out_shape(self, *shapes: Any) -> Shape:
        """The per-sample output shape from the inputs' (one `Shape` each). Typed `Any` so that an op may name its
        inputs (`def out_shape(self, shape)`): mypy accepts any parameters overriding `*args: Any`."""
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
        op_type = self.onnx_op or self.onnx_writes
        if op_type is None:
            raise NotImplementedError(f"no ONNX export for {self.op}")
        b.add(op_type, ins, out, **self.onnx_attrs())

    # ---- rule hooks (see srp_audit.bounds for the drivers that call them)
    def ibp(self, *xs: Any) -> "Interval":
        """A rigorous enclosure of the output given enclosures of the inputs (one `Interval` each; typed `Any`, as
        in `out_shape`, so that an op may name its inputs), rounding included."""
        raise self._unsupported("ibp")

    def ibp_ball(self, ball: Any) -> "Interval | None":
        """Optional, for an op whose input lies in an L2/L1 ball (`spec.LpBall`: the model input's, or its image
        through `ball_image` ops): an enclosure of the output over the ball, intersected with the box rule's by
        the driver. None: the box rule alone (always sound)."""
        return None

    def ball_image(self, ball: Any) -> Any:
        """Optional, for a one-input op that only moves, copies or drops entries (reshape, transpose, pick, pad):
        an L2/L1 ball (`spec.LpBall`) that contains the output whenever the input lies in `ball` — its centre the
        op applied exactly to the ball's centre, its radius rounded up. Lets the IBP driver hand the input ball on
        to the first op with an `ibp_ball` rule. None: the ball stops here (always sound)."""
        return None

    def crown_backward(self, A: Any, ctx: Any, name: str) -> tuple[list[Any], torch.Tensor]:
        """Move objective coefficients A (N, R, *out) to the inputs: ([A per input], constant (N, R)), such that
        A·out ≥ Σ A_i·in_i + constant over the relaxation (lower bound)."""
        raise self._unsupported("crown")

    def crown_rounding(self, ctx: Any, name: str) -> torch.Tensor:
        """A bound err_y on the floating-point error a backward pass accumulates per unit of |A| at this node."""
        raise self._unsupported("crown")

    def crown_rows(self, idx: torch.Tensor, ctx: Any, name: str, signs: tuple[int, ...]) -> tuple[Any, torch.Tensor] | None:
        """Optional: the objectives s·y_i for flat output indices idx (N, k), s in `signs` (+1: lower bounds,
        −1: upper bounds; rows grouped by sign), as exact coefficients on the input and a constant
        (N, len(signs)·k) — lets an affine op's neurons be bounded from its input. None: the driver starts from
        unit coefficients at the node."""
        return None

    def relevant_inputs(self, mask: torch.Tensor, shapes: list[Shape]) -> list[torch.Tensor]:
        """Which input entries the output entries where `mask` (1, *out) holds depend on, per input (1, *shape).
        A superset is always safe: it only decides which neurons CROWN spends refinement passes on. Elementwise
        ops pass the mask on; other nonlinear ops depend on every input entry unless they say better; affine and
        structural ops on the support of their vector-Jacobian product (exact for a linear map: any point does)."""
        if self.elementwise:
            return [mask.clone() for _ in shapes]
        if not self.nonlinear:
            support = _linear_support(self, mask, shapes)
            if support is not None:
                return support
        return [torch.full((1,) + tuple(s), bool(mask.any())) for s in shapes]

    def alpha_start(self, lo: torch.Tensor, hi: torch.Tensor, rows: int) -> torch.Tensor | None:
        """Optional (alpha-CROWN): the free parameters of this op's relaxation, in [0, 1], per sample, spec row and
        neuron — (N, rows, …) — starting at CROWN's default lines, given its input's bounds; its `crown_backward`
        reads them from ctx.alpha under its name, and every value in [0, 1] must give a sound relaxation. None:
        nothing to optimise."""
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


def _linear_support(node: Node, mask: torch.Tensor, shapes: list[Shape]) -> list[torch.Tensor] | None:
    """The entries of each input with a nonzero vector-Jacobian product against a random positive vector on
    `mask` (a linear map's structure: a weight that is exactly zero is no dependence); None where the op's
    forward cannot be differentiated."""
    like = next((t for t in list(node.parameters()) + list(node.buffers()) if t.is_floating_point()), None)
    dtype, device = (like.dtype, like.device) if like is not None else (torch.float64, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn((1,) + tuple(s), generator=gen, dtype=torch.float64).to(device, dtype).requires_grad_(True)
          for s in shapes]
    try:
        with torch.enable_grad():
            y = node(*xs)
            v = (torch.rand(y.shape, generator=gen, dtype=torch.float64) + 0.5).to(device, y.dtype) * mask.to(device)
            # ⟨y, v⟩'s gradient is the product with v; a scalar output spares autograd's first-call import of its
            # symbolic-shape machinery (0.3–0.45 s of a process), which `grad_outputs` triggers
            grads = torch.autograd.grad((y * v).sum(), xs, allow_unused=True)
    except (RuntimeError, TypeError, ValueError):
        return None
    return [torch.zeros((1,) + tuple(s), dtype=torch.bool) if g is None else (g != 0).cpu() for g, s in zip(grads, shapes)]
