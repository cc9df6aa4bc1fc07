"""ONNX and ATen readers of the activation forms that pick among several ops by their arguments (powers by the
exponent, PReLU by its slope tensor, HardSigmoid): each reads its arguments and calls the shared builder in
`nonlinear_build`, so both readers build the same IR."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir.reading import Tensor, aten_const, aten_tensor, aten_weight
from ..kernel.enclosure import Enclosed
from ..kernel.rounding import as_float32
from . import nonlinear_build as build
from .aten_context import _AtenCtx, aten
from .context import Value
from .onnx_context import OnnxContext
from .onnx_ops import handles


def _scalar_exponent(ctx: Any, v: Any) -> float:
    arr = np.asarray(v, dtype=np.float64).reshape(-1)
    if arr.size != 1 or not np.all(arr == arr[0]):
        raise ctx.unsupported("only a single constant exponent is supported")
    return float(arr[0])


# ------------------------------------------------------------------------------------------------------ ONNX


@handles("Pow")
def _pow(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    return [build.power(ctx, x, _scalar_exponent(ctx, ctx.const(node.input[1], "exponent")))]


@handles("PRelu")
def _prelu(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    return [build.prelu(ctx, ctx.tensor(node.input[0]), ctx.weight(node.input[1], "slope"), None)]


@handles("HardSigmoid")
def _hard_sigmoid(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    return [build.hard_sigmoid(ctx, ctx.tensor(node.input[0]), attrs.get("alpha", as_float32(0.2)), attrs.get("beta", 0.5))]


# ------------------------------------------------------------------------------------------------------ ATen


@aten("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor")
def _aten_pow(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    if isinstance(a[1], Tensor):
        raise ctx.unsupported("an exponent computed from the model's data")
    return build.power(ctx, aten_tensor(ctx, a[0]), as_float32(_scalar_exponent(ctx, aten_const(a[1]))))  # torch's float32 scalar


@aten("aten.rsqrt.default")
def _aten_rsqrt(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    return build.power(ctx, aten_tensor(ctx, a[0]), -0.5)


@aten("aten.square.default")
def _aten_square(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    return build.power(ctx, aten_tensor(ctx, a[0]), 2.0)


@aten("aten.prelu.default")
def _aten_prelu(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    w = aten_weight(ctx, a[1])
    channel = ctx.sample_axis(x, 1) if len(ctx.full_shape(x)) > 1 else 0
    return build.prelu(ctx, x, w, channel)


@aten("aten.hardsigmoid.default")
def _aten_hard_sigmoid(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    return build.hard_sigmoid(ctx, aten_tensor(ctx, a[0]), Enclosed.exact(6.0).reciprocal(), 0.5)


