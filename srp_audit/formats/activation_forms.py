"""Activations read as compositions of ops that have rules: Celu (an ELU of x/α, times α), Softsign
(x · 1/(1 + |x|): a product of data, sound though looser than a dedicated rule would be), ThresholdedRelu
(x · [x > α]), Shrink ((x − bias)·[x > λ] + (x + bias)·[x < −λ]) and HardSigmoid (ONNX and ATen: an affine map
clipped to [0, 1]). Each is exact in real arithmetic."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir.reading import Tensor, aten_tensor
from ..kernel.enclosure import Enclosed
from ..kernel.rounding import as_float32
from ..ops.affine import ElementwiseAffine
from ..ops.convex import Elu
from ..ops.power import Reciprocal
from .aten_context import _AtenCtx, aten
from .context import LoaderContext, Value
from .discrete_build import absolute, compare
from .onnx_context import OnnxContext
from .onnx_ops import handles


def _attr(attrs: dict, key: str, default: float) -> np.ndarray:
    """A float attribute as the stored float32 value (a 0-d constant the readers treat exactly)."""
    return np.array(attrs.get(key, default), dtype=np.float32)


@handles("Celu")
def _celu(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    a = _attr(attrs, "alpha", 1.0)
    if not float(a) > 0:
        raise ctx.unsupported(f"Celu with alpha {float(a)} (it must be positive)")
    e = ctx.emit(Elu(1.0), [ctx.mul_or_div(x, a, div=True)], "elu")  # 1/α enclosed where no float holds it
    return [ctx.mul_or_div(e, a, div=False)]


@handles("Softsign")
def _softsign(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    d = ctx.add_or_sub(absolute(ctx, x), np.array(1.0, dtype=np.float32), sub=False)
    return [ctx.product(x, ctx.emit(Reciprocal(), [d], "reciprocal"))]


@handles("ThresholdedRelu")
def _thresholded_relu(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    return [ctx.product(x, compare(ctx, x, _attr(attrs, "alpha", 1.0), "gt"))]


@handles("Shrink")
def _shrink(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    lam, bias = _attr(attrs, "lambd", 0.5), _attr(attrs, "bias", 0.0)
    if not float(lam) >= 0:  # the two branches would overlap (ONNX takes x < −λ first there)
        raise ctx.unsupported(f"Shrink with lambd {float(lam)} (it must be ≥ 0)")
    up = ctx.product(ctx.add_or_sub(x, bias, sub=True), compare(ctx, x, lam, "gt"))
    down = ctx.product(ctx.add_or_sub(x, bias, sub=False), compare(ctx, x, -lam, "lt"))
    return [ctx.add_or_sub(up, down, sub=False)]


def hard_sigmoid(ctx: LoaderContext, x: Tensor, alpha: float | Enclosed, beta: float) -> Tensor:
    """max(0, min(1, αx + β)): an affine map then a clip (ReLUs), exact in real arithmetic (α may be an enclosure:
    torch's hardsigmoid is x/6 + ½)."""
    a = ctx.emit(ElementwiseAffine(alpha, float(beta)), [x], "affine")
    return ctx.clip(a, 0.0, 1.0)


@handles("HardSigmoid")
def _hard_sigmoid(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    return [hard_sigmoid(ctx, ctx.tensor(node.input[0]), attrs.get("alpha", as_float32(0.2)), attrs.get("beta", 0.5))]


@aten("aten.hardsigmoid.default")
def _aten_hard_sigmoid(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    return hard_sigmoid(ctx, aten_tensor(ctx, a[0]), Enclosed.exact(6.0).reciprocal(), 0.5)
