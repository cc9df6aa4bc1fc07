"""ONNX and ATen handlers for the ops that need more than a declaration (an exponent, a slope tensor, a
normalisation, a resize): each reads its arguments and calls the shared builder (`nonlinear_build`,
`resize_build`), so both readers build the same IR."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from ..kernel.enclosure import Enclosed
from ..kernel.rounding import as_float32
from . import nonlinear_build as build
from . import resize_build as resize
from .aten_context import Tensor, _AtenCtx, _const, _tensor, _weight, aten
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
    return [build.layer_norm(ctx, x, rank - axis, build.eps_of(attrs.get("epsilon"), 1e-5), gamma, beta)]


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
    return [build.group_norm(ctx, x, groups, build.eps_of(attrs.get("epsilon"), 1e-5), gamma, beta)]


@handles("LogSoftmax")
def _log_softmax(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    rank = len(ctx.onnx_shape(x))
    axis = int(attrs.get("axis", -1 if ctx.opset >= 13 else 1)) % rank
    if ctx.opset < 13 and axis != rank - 1:
        raise ctx.unsupported(f"LogSoftmax over the flattened axes {axis}… (opset {ctx.opset}); re-export with opset ≥ 13")
    return [build.log_softmax(ctx, x, ctx.sample_axis(x, axis))]


@handles("Resize", "Upsample")
def _resize(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    full = [int(n) for n in ctx.full_shape(x)]
    opt = lambda i: ctx.const(node.input[i], "resize argument") if len(node.input) > i and node.input[i] else None  # noqa: E731
    if node.op_type == "Upsample" or ctx.opset < 11:  # scales only; asymmetric coordinates, nearest rounds down
        scales = attrs.get("scales") if "scales" in attrs else opt(1)
        sizes, coord, nearest = None, "asymmetric", "floor"
    else:
        if attrs.get("antialias", 0) or attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch" or "axes" in attrs:
            raise ctx.unsupported("antialias, keep_aspect_ratio_policy and axes are not supported")
        scales, sizes = opt(2), opt(3)
        coord = attrs.get("coordinate_transformation_mode", "half_pixel")
        nearest = attrs.get("nearest_mode", "round_prefer_floor")
    if sizes is not None and np.asarray(sizes).size:
        out = [int(v) for v in np.asarray(sizes).reshape(-1)]
        scale = [Fraction(o, i) for o, i in zip(out, full)]  # the spec's output/input ratio, exactly
    elif scales is not None and np.asarray(scales).size:
        scale = [Fraction(float(v)) for v in np.asarray(scales).reshape(-1)]  # the stored float32 values, exactly
        out = [resize.out_size(i, s) for i, s in zip(full, scale)]
    else:
        raise ctx.unsupported("neither scales nor sizes are given")
    if len(out) != len(full):
        raise ctx.unsupported(f"{len(out)} sizes for a rank-{len(full)} tensor")
    return [resize.onnx_resize(ctx, x, full, out, scale, attrs.get("mode", "nearest"), coord, nearest)]


# ------------------------------------------------------------------------------------------------------ ATen


@aten("aten.upsample_nearest2d.vec", "aten.upsample_bilinear2d.vec")
def _aten_upsample(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = _tensor(ctx, a[0])
    full = [int(n) for n in ctx.full_shape(x)]
    if len(full) != 4 or not ctx.batched:
        raise ctx.unsupported("only (N, C, H, W) upsampling is supported")
    nearest = "nearest" in str(ctx.node.target)
    size = a[1]
    align = None if nearest else bool(a[2])
    scales = a[2] if nearest else (a[3] if len(a) > 3 else None)
    hw = full[2:]
    if size is not None:
        out = [int(v) for v in size]
        sc: list = [None, None] if scales is None else [float(v) for v in scales]
    else:
        sc = [float(v) for v in scales]
        out = [int(math.floor(n * s)) for n, s in zip(hw, sc)]
    mats = {1 + k: resize.torch_matrix(hw[k], out[k], "nearest" if nearest else "linear", align, sc[k]) for k in range(2)}
    return resize.apply_axes(ctx, x, mats)


@aten("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor")
def _aten_pow(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    if isinstance(a[1], Tensor):
        raise ctx.unsupported("an exponent computed from the model's data")
    return build.power(ctx, _tensor(ctx, a[0]), as_float32(_scalar_exponent(ctx, _const(a[1]))))  # torch's float32 scalar


@aten("aten.rsqrt.default")
def _aten_rsqrt(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    return build.power(ctx, _tensor(ctx, a[0]), -0.5)


@aten("aten.square.default")
def _aten_square(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    return build.power(ctx, _tensor(ctx, a[0]), 2.0)


@aten("aten.prelu.default")
def _aten_prelu(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = _tensor(ctx, a[0])
    w = _weight(ctx, a[1])
    channel = ctx.sample_axis(x, 1) if len(ctx.full_shape(x)) > 1 else 0
    return build.prelu(ctx, x, w, channel)


@aten("aten.hardsigmoid.default")
def _aten_hard_sigmoid(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    return build.hard_sigmoid(ctx, _tensor(ctx, a[0]), Enclosed.exact(6.0).reciprocal(), 0.5)


@aten("aten.layer_norm.default", "aten.native_layer_norm.default")
def _aten_layer_norm(ctx: _AtenCtx, a: list, kw: dict):
    x = _tensor(ctx, a[0])
    shape = list(a[1])
    gamma = _weight(ctx, a[2]) if len(a) > 2 and a[2] is not None else None
    beta = _weight(ctx, a[3]) if len(a) > 3 and a[3] is not None else None
    eps = build.eps_of(a[4] if len(a) > 4 else kw.get("eps"), 1e-5)
    y = build.layer_norm(ctx, x, len(shape), eps, gamma, beta)
    return (y, None, None) if "native" in str(ctx.node.target) else y


@aten("aten._log_softmax.default", "aten.log_softmax.int")
def _aten_log_softmax(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = _tensor(ctx, a[0])
    return build.log_softmax(ctx, x, ctx.sample_axis(x, int(a[1])))
