"""LayerNormalization, InstanceNormalization and GroupNormalization (ONNX) and layer_norm (ATen): read as the
decomposition they are — a mean over the normalised axes subtracted, divided by √(variance + ε), then the
per-channel scale and shift — built from ops that have rules (Reduce, Product, Sqrt, Reciprocal, affine)."""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

import numpy as np
import torch

from ..errors import ModelLoadError
from ..ir.reading import Tensor, aten_tensor, aten_weight
from ..ops.add import Add
from ..ops.affine import ElementwiseAffine
from ..ops.power import Power
from ..ops.reduce import Reduce
from ..ops.shape import Reshape
from .aten_context import _AtenCtx, aten
from .context import LoaderContext, Value
from .onnx_context import OnnxContext
from .onnx_ops import handles


def layer_norm(ctx: LoaderContext, x: Tensor, n_axes: int, eps: float, gamma: torch.Tensor | None,
               beta: torch.Tensor | None) -> Tensor:
    """(x − mean)/√(var + ε)·γ + β over the last `n_axes` sample axes, as mean (Reduce), centring (Add of a
    broadcast), square (Power 2), variance (Reduce), 1/√(var + ε) (Power −½) and a bilinear Product; every piece
    has its own sound rules (the decomposition auto_LiRPA also uses)."""
    rank = len(x.shape)
    if not 1 <= n_axes <= rank:
        raise ctx.unsupported(f"normalising over {n_axes} axes of a rank-{rank} sample")
    axes = tuple(range(rank - n_axes, rank))
    mean = ctx.emit(Reduce(axes, keepdims=True, mean=True), [x], "reduce")
    neg = ctx.emit(ElementwiseAffine(-1.0, 0.0), [ctx.broadcast(mean, torch.zeros(x.shape))], "neg")
    centred = ctx.emit(Add(), [x, neg], "add")
    sq = ctx.emit(Power(2.0), [centred], "pow")
    var = ctx.emit(Reduce(axes, keepdims=True, mean=True), [sq], "reduce")
    shifted = ctx.emit(ElementwiseAffine(1.0, float(np.float32(eps))), [var], "affine")
    inv = ctx.emit(Power(-0.5), [shifted], "pow")
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
    return ctx.emit(ElementwiseAffine(g, b), [y], "affine")


def group_norm(ctx: LoaderContext, x: Tensor, groups: int, eps: float, gamma: torch.Tensor, beta: torch.Tensor) -> Tensor:
    """GroupNorm (InstanceNorm: one group per channel) of an (N, C, …) sample: each group of channels reshaped to a
    row and normalised as a layer norm, reshaped back, then scaled and shifted per channel (γ, β of shape (C,))."""
    c, rest = x.shape[0], x.shape[1:]
    if groups < 1 or c % groups:
        raise ctx.unsupported(f"{c} channels do not split into {groups} groups")
    rows = ctx.emit(Reshape((groups, math.prod(x.shape) // groups)), [x])
    y = ctx.emit(Reshape(tuple(x.shape)), [layer_norm(ctx, rows, 1, eps, None, None)])
    per_channel = (c,) + (1,) * len(rest)
    return scale_shift(ctx, y, gamma.reshape(per_channel), beta.reshape(per_channel))


def eps_of(v: SupportsFloat | None, default: float) -> float:
    f = float(v) if v is not None else default
    if not (f >= 0 and math.isfinite(f)):
        raise ModelLoadError(f"normalisation epsilon {f} (must be finite and ≥ 0)")
    return f


# ---- reading: the ONNX normalisations and ATen's layer_norm
@handles("LayerNormalization")
def _layer_norm(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    if len(node.output) > 1 and any(node.output[1:]):
        raise ctx.unsupported("the Mean and InvStdDev outputs are not supported")
    x = ctx.tensor(node.input[0])
    rank = len(ctx.onnx_shape(x))
    axis = int(attrs.get("axis", -1)) % rank
    if ctx.batched and axis == 0:
        raise ctx.unsupported("normalising across the batch axis")
    gamma = ctx.weight(node.input[1], "scale")
    beta = ctx.weight(node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
    return [layer_norm(ctx, x, rank - axis, eps_of(attrs.get("epsilon"), 1e-5), gamma, beta)]


@handles("InstanceNormalization", "GroupNormalization")
def _group_norm(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    """Normalisation over each sample's spatial axes, per channel (Instance) or per group of channels (Group)."""
    x = ctx.tensor(node.input[0])
    if not ctx.batched or len(x.shape) < 2:
        raise ctx.unsupported("it needs (N, C, D1, …) data with a batch axis")
    c = x.shape[0]
    groups = c if node.op_type == "InstanceNormalization" else int(attrs["num_groups"])
    if groups < 1 or c % groups:
        raise ctx.unsupported(f"{c} channels do not split into {groups} groups")
    gamma, beta = ctx.weight(node.input[1], "scale").reshape(-1), ctx.weight(node.input[2], "bias").reshape(-1)
    if gamma.numel() == groups != c:  # opset 18's GroupNormalization: one scale and bias per group
        gamma, beta = gamma.repeat_interleave(c // groups), beta.repeat_interleave(c // groups)
    if gamma.numel() != c or beta.numel() != c:
        raise ctx.unsupported(f"scale and bias need {c} entries (one per channel)")
    return [group_norm(ctx, x, groups, eps_of(attrs.get("epsilon"), 1e-5), gamma, beta)]


@aten("aten.layer_norm.default", "aten.native_layer_norm.default")
def _aten_layer_norm(ctx: _AtenCtx, a: list, kw: dict):
    x = aten_tensor(ctx, a[0])
    shape = list(a[1])
    gamma = aten_weight(ctx, a[2]) if len(a) > 2 and a[2] is not None else None
    beta = aten_weight(ctx, a[3]) if len(a) > 3 and a[3] is not None else None
    eps = eps_of(a[4] if len(a) > 4 else kw.get("eps"), 1e-5)
    y = layer_norm(ctx, x, len(shape), eps, gamma, beta)
    return (y, None, None) if "native" in str(ctx.node.target) else y
