"""IR for the nonlinear forms that both readers (ONNX and ATen) meet: powers, PReLU and HardSigmoid. Each builder
emits existing ops through the load context, so the two readers agree by construction.
"""

from __future__ import annotations

import torch

from ..kernel.enclosure import Enclosed
from ..ops.affine import ElementwiseAffine
from ..ops.power import OddPower, Power, Reciprocal, Sqrt
from ..ops.relu import PRelu
from .context import LoaderContext, Tensor


def power(ctx: LoaderContext, x: Tensor, p: float) -> Tensor:
    """x^p for a constant exponent (the model's own value): 1 → x itself, 0 → the constant 1, odd integers ≥ 3 →
    OddPower, else Power."""
    p = float(p)
    if p == 1.0:
        return x
    if p == 0.0:
        return ctx.emit(ElementwiseAffine(0.0, 1.0), [x], "affine")
    if p == int(p) and p >= 3 and int(p) % 2 == 1:
        return ctx.emit(OddPower(int(p)), [x], "pow")
    if p == -1.0:
        return ctx.emit(Reciprocal(), [x], "reciprocal")
    if p == 0.5:
        return ctx.emit(Sqrt(), [x], "sqrt")
    return ctx.emit(Power(p), [x], "pow")


def prelu(ctx: LoaderContext, x: Tensor, slope: torch.Tensor, channel_axis: int | None) -> Tensor:
    """PRelu with a constant slope: ONNX broadcasts it numpy-style (ONNX) or, in torch, along the channel axis."""
    s = slope.reshape(-1) if channel_axis is not None else slope
    if channel_axis is not None and s.numel() > 1:
        shape = [1] * len(x.shape)
        shape[channel_axis] = s.numel()
        s = s.reshape(shape)
    elif channel_axis is not None:
        s = s.reshape(())
    else:
        s = ctx.sample_const(x, s.numpy())
    x = ctx.broadcast(x, s)
    return ctx.emit(PRelu(s), [x], "prelu")


def hard_sigmoid(ctx: LoaderContext, x: Tensor, alpha: float | Enclosed, beta: float) -> Tensor:
    """max(0, min(1, αx + β)): an affine map then a clip (ReLUs), exact in real arithmetic (α may be an enclosure:
    torch's hardsigmoid is x/6 + ½)."""
    a = ctx.emit(ElementwiseAffine(alpha, float(beta)), [x], "affine")
    return ctx.clip(a, 0.0, 1.0)


