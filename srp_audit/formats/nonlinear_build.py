"""IR for the nonlinear ops that both readers (ONNX and ATen) meet in several forms: powers,
PReLU, HardSigmoid, LayerNorm and LogSoftmax. Each builder emits existing ops through the load context, so the
two readers agree by construction.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import ops
from ..errors import ModelLoadError
from ..kernel.enclosure import Enclosed
from .context import LoaderContext, Tensor


def power(ctx: LoaderContext, x: Tensor, p: float) -> Tensor:
    """x^p for a constant exponent (the model's own value): 1 → x itself, 0 → the constant 1, odd integers ≥ 3 →
    OddPower, else Power."""
    p = float(p)
    if p == 1.0:
        return x
    if p == 0.0:
        return ctx.emit(ops.ElementwiseAffine(0.0, 1.0), [x], "affine")
    if p == int(p) and p >= 3 and int(p) % 2 == 1:
        return ctx.emit(ops.OddPower(int(p)), [x], "pow")
    if p == -1.0:
        return ctx.emit(ops.Reciprocal(), [x], "reciprocal")
    if p == 0.5:
        return ctx.emit(ops.Sqrt(), [x], "sqrt")
    return ctx.emit(ops.Power(p), [x], "pow")


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
    return ctx.emit(ops.PRelu(s), [x], "prelu")


def hard_sigmoid(ctx: LoaderContext, x: Tensor, alpha: float | Enclosed, beta: float) -> Tensor:
    """max(0, min(1, αx + β)): an affine map then a clip (ReLUs), exact in real arithmetic (α may be an enclosure:
    torch's hardsigmoid is x/6 + ½)."""
    a = ctx.emit(ops.ElementwiseAffine(alpha, float(beta)), [x], "affine")
    return ctx.clip(a, 0.0, 1.0)


def layer_norm(ctx: LoaderContext, x: Tensor, n_axes: int, eps: float, gamma: torch.Tensor | None,
               beta: torch.Tensor | None) -> Tensor:
    """(x − mean)/√(var + ε)·γ + β over the last `n_axes` sample axes, as mean (Reduce), centring (Add of a
    broadcast), square (Power 2), variance (Reduce), 1/√(var + ε) (Power −½) and a bilinear Product; every piece
    has its own sound rules (the decomposition auto_LiRPA also uses)."""
    rank = len(x.shape)
    if not 1 <= n_axes <= rank:
        raise ctx.unsupported(f"normalising over {n_axes} axes of a rank-{rank} sample")
    axes = tuple(range(rank - n_axes, rank))
    mean = ctx.emit(ops.Reduce(axes, keepdims=True, mean=True), [x], "reduce")
    neg = ctx.emit(ops.ElementwiseAffine(-1.0, 0.0), [ctx.broadcast(mean, torch.zeros(x.shape))], "neg")
    centred = ctx.emit(ops.Add(), [x, neg], "add")
    sq = ctx.emit(ops.Power(2.0), [centred], "pow")
    var = ctx.emit(ops.Reduce(axes, keepdims=True, mean=True), [sq], "reduce")
    shifted = ctx.emit(ops.ElementwiseAffine(1.0, float(np.float32(eps))), [var], "affine")
    inv = ctx.emit(ops.Power(-0.5), [shifted], "pow")
    y = ctx.product(centred, inv)
    return scale_shift(ctx, y, gamma, beta)


def scale_shift(ctx: LoaderContext, y: Tensor, gamma: torch.Tensor | None, beta: torch.Tensor | None) -> Tensor:
    """y·γ + β with stored constants that broadcast against the sample (none: y itself)."""
    if gamma is None and beta is None:
        return y
    g = gamma if gamma is not None else torch.ones(())
    b = beta if beta is not None else torch.zeros(())
    g, b = ctx.sample_const(y, g.numpy()), ctx.sample_const(y, b.numpy())
    y = ctx.broadcast(y, g + b)
    return ctx.emit(ops.ElementwiseAffine(g, b), [y], "affine")


def group_norm(ctx: LoaderContext, x: Tensor, groups: int, eps: float, gamma: torch.Tensor, beta: torch.Tensor) -> Tensor:
    """GroupNorm (InstanceNorm: one group per channel) of an (N, C, …) sample: each group of channels reshaped to a
    row and normalised as a layer norm, reshaped back, then scaled and shifted per channel (γ, β of shape (C,))."""
    c, rest = x.shape[0], x.shape[1:]
    if groups < 1 or c % groups:
        raise ctx.unsupported(f"{c} channels do not split into {groups} groups")
    rows = ctx.emit(ops.Reshape((groups, math.prod(x.shape) // groups)), [x])
    y = ctx.emit(ops.Reshape(tuple(x.shape)), [layer_norm(ctx, rows, 1, eps, None, None)])
    per_channel = (c,) + (1,) * len(rest)
    return scale_shift(ctx, y, gamma.reshape(per_channel), beta.reshape(per_channel))


def log_softmax(ctx: LoaderContext, x: Tensor, axis: int) -> Tensor:
    """log(softmax(x)) as its own op (exact forward at any logit spread, bounds that never lose the ≤ 0);
    `certify` strips a final one as it does a final Softmax (argmax unchanged)."""
    if not 0 <= axis < len(x.shape):
        raise ModelLoadError(f"LogSoftmax over axis {axis} of a rank-{len(x.shape)} sample")
    return ctx.emit(ops.LogSoftmax(axis), [x], "logsoftmax")


def eps_of(v: object, default: float) -> float:
    f = float(v) if v is not None else default
    if not (f >= 0 and math.isfinite(f)):
        raise ModelLoadError(f"normalisation epsilon {f} (must be finite and ≥ 0)")
    return f
