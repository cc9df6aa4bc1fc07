"""The ONNX op table: one handler per ONNX op type that needs more than a declaration.

Ops whose ONNX form is one node with attributes declare it on the op (`onnx_op`, `from_onnx`); the reader maps
those without an entry here. A handler reads its inputs through the load context (constants vs tensors, the
batch-axis rules) and emits IR nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .. import ops
from ..errors import ModelLoadError
from ..ir.registry import registrar
from ..kernel.enclosure import Enclosed
from ..kernel.rounding import as_float32
from .context import Tensor, Value, stored_tensor
from .discrete_build import absolute, reduce_extreme
from .onnx_context import OnnxContext

Handler = Callable[[OnnxContext, Any, dict], list[Value]]
HANDLERS: dict[str, Handler] = {}

handles = registrar(HANDLERS)  # @handles("Gemm", ...)


@handles("Constant")
def _constant(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    for key, conv in (
        ("value", lambda v: np.asarray(v)),
        ("value_float", lambda v: np.asarray(v, dtype=np.float32)),
        ("value_floats", lambda v: np.asarray(v, dtype=np.float32)),
        ("value_int", lambda v: np.asarray(v, dtype=np.int64)),
        ("value_ints", lambda v: np.asarray(v, dtype=np.int64)),
    ):
        if key in attrs:
            return [conv(attrs[key])]
    raise ctx.unsupported("only dense tensor/float/int constants are supported")


@handles("Identity", "Dropout")
def _identity(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    training = len(node.input) > 2 and node.input[2] and bool(np.asarray(ctx.get(node.input[2])).reshape(-1)[:1].all())
    if training or (len(node.output) > 1 and node.output[1]) or attrs.get("is_test", 1) == 0:
        raise ctx.unsupported("dropout in training mode (random, so no single function to verify): export the model "
                              "after calling model.eval()")
    return [ctx.get(node.input[0])]  # type: ignore[list-item]


@handles("Shape")
def _shape(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    v = ctx.get(node.input[0])
    shape = np.asarray(v.shape if isinstance(v, np.ndarray) else ctx.onnx_shape(v), dtype=np.int64)
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return [shape[start:end]]


@handles("Neg")
def _neg(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    return [ctx.emit(ops.ElementwiseAffine(-1.0, 0.0), [ctx.tensor(node.input[0])], "neg")]


def _scaled(w: torch.Tensor, factor: float) -> torch.Tensor:
    """α·W for Gemm's α (a float32 attribute): exact in float64, kept in float32 only where that holds it exactly."""
    if float(factor) == 1.0:
        return w
    product = Enclosed.exact(w) * float(factor)
    if not product.is_exact:
        raise ModelLoadError(f"Gemm's alpha/beta {factor} times a float64 weight is not a float64 number; fold it into the weights")
    return stored_tensor(product.mid.numpy())


@handles("Gemm")
def _gemm(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    a = ctx.tensor(node.input[0])
    if attrs.get("transA", 0):
        raise ctx.unsupported("transA=1 on the model's data is not supported")
    if len(ctx.onnx_shape(a)) != 2:
        raise ctx.unsupported(f"Gemm needs a 2-D input, got shape {ctx.onnx_shape(a)}")
    b = ctx.weight(node.input[1], "weight")
    w = b.T if not attrs.get("transB", 0) else b  # w: [out, in]
    w = _scaled(w, attrs.get("alpha", 1.0))
    out = w.shape[0]
    bias = None
    if len(node.input) > 2 and node.input[2]:
        c = _scaled(ctx.weight(node.input[2], "bias"), attrs.get("beta", 1.0))
        if c.numel() not in (1, out):
            raise ctx.unsupported(f"bias of shape {tuple(c.shape)} does not broadcast to {out} outputs")
        bias = c.reshape(-1).expand(out).clone()
    return [ctx.emit(ops.Dense(w.contiguous(), bias), [a], "dense")]


@handles("MatMul")
def _matmul(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    a, b = ctx.get(node.input[0]), ctx.get(node.input[1])
    if isinstance(a, Tensor) and isinstance(b, np.ndarray):
        w = ctx.weight(node.input[1], "weight")
        if w.dim() == 1:  # x @ v: a dot product over the last axis
            t = ctx.emit(ops.Dense(w.reshape(1, -1)), [a], "dense")
            return [ctx.emit(ops.Reshape(t.shape[:-1] or (1,)), [t])] if t.shape[:-1] else [t]
        if w.dim() != 2:
            raise ctx.unsupported(f"a weight of rank {w.dim()} is not supported")
        return [ctx.emit(ops.Dense(w.T.contiguous()), [a], "dense")]
    if isinstance(a, np.ndarray) and isinstance(b, Tensor):
        w = ctx.weight(node.input[0], "weight")
        if w.dim() == 2 and not ctx.batched and len(b.shape) == 1:  # W @ x on an unbatched vector
            return [ctx.emit(ops.Dense(w.contiguous()), [b], "dense")]
        if w.dim() == 2 and len(b.shape) >= 2:  # W @ X = (Xᵀ Wᵀ)ᵀ over the last two sample axes
            swap = tuple(range(len(b.shape) - 2)) + (len(b.shape) - 1, len(b.shape) - 2)
            xt = ctx.emit(ops.Transpose(swap), [b])
            return [ctx.emit(ops.Transpose(swap), [ctx.emit(ops.Dense(w.contiguous()), [xt], "dense")])]
        raise ctx.unsupported("constant @ data needs a matrix constant and data with two sample axes (or an unbatched vector)")
    return [ctx.matmul(a, b)]  # type: ignore[arg-type]


def _conv_pads(ctx: OnnxContext, attrs: dict, in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
               dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        p = list(attrs.get("pads", [0, 0, 0, 0]))
        if len(p) != 4:
            raise ctx.unsupported("only 2-D spatial padding is supported")
        return (p[0], p[1], p[2], p[3])
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for n, k, s, d in zip(in_hw, kernel, stride, dilation):
            out = -(-n // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return (pads[0][0], pads[1][0], pads[0][1], pads[1][1])
    raise ctx.unsupported(f"auto_pad={auto!r}")


def _spatial_input(ctx: OnnxContext, node: Any) -> Tensor:
    x = ctx.tensor(node.input[0])
    if not ctx.batched or len(x.shape) != 3:
        raise ctx.unsupported(f"only 2-D (N, C, H, W) inputs are supported, got {ctx.onnx_shape(x)}")
    return x


@handles("Conv")
def _conv(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    w = ctx.weight(node.input[1], "weight")
    if ctx.batched and len(x.shape) == 2 and w.dim() == 3:  # Conv1d: a 2-D convolution over a height of 1
        return [_conv1d(ctx, node, attrs, x, w)]
    x = _spatial_input(ctx, node)
    if w.dim() != 4:
        raise ctx.unsupported("only 2-D convolutions are supported")
    b = ctx.weight(node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
    stride = tuple(attrs.get("strides", [1, 1]))
    dilation = tuple(attrs.get("dilations", [1, 1]))
    pads = _conv_pads(ctx, attrs, x.shape[1:], tuple(w.shape[2:]), stride, dilation)
    return [ctx.emit(ops.Conv2d(w, b, stride, pads, dilation, int(attrs.get("group", 1))), [x], "conv")]


def _conv1d(ctx: OnnxContext, node: Any, attrs: dict, x: Tensor, w: Any) -> Tensor:
    """(N, C, L) convolutions become (N, C, 1, L) ones with a 1×k kernel, between two reshapes: exact."""
    b = ctx.weight(node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
    one = lambda key, default: [1] + list(attrs.get(key, [default]))  # noqa: E731
    attrs2 = {**attrs, "strides": one("strides", 1), "dilations": one("dilations", 1), "kernel_shape": [1, w.shape[2]]}
    if "pads" in attrs:
        p = list(attrs["pads"])
        attrs2["pads"] = [0, p[0], 0, p[1]]
    c, length = x.shape
    x2 = ctx.emit(ops.Reshape((c, 1, length)), [x])
    w2 = w.unsqueeze(2)
    pads = _conv_pads(ctx, attrs2, (1, length), (1, w.shape[2]), tuple(attrs2["strides"]), tuple(attrs2["dilations"]))
    y = ctx.emit(ops.Conv2d(w2, b, attrs2["strides"], pads, attrs2["dilations"], int(attrs.get("group", 1))), [x2], "conv")
    return ctx.emit(ops.Reshape((y.shape[0], y.shape[2])), [y])


@handles("BatchNormalization")
def _batchnorm(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    if attrs.get("training_mode", 0):
        raise ctx.unsupported("training_mode=1; export the model in eval mode")
    if len(node.output) > 1 and any(node.output[1:]):
        raise ctx.unsupported("running-statistics outputs (training mode) are not supported")
    x = ctx.tensor(node.input[0])
    gamma = ctx.weight(node.input[1], "scale")
    beta = ctx.weight(node.input[2], "bias")
    mean = ctx.weight(node.input[3], "mean")
    var = ctx.weight(node.input[4], "var")
    return [ctx.emit(ops.BatchNorm(mean, var, gamma, beta, float(attrs.get("epsilon", as_float32(1e-5))), len(x.shape)), [x], "batchnorm")]


def _pool_common(ctx: OnnxContext, node: Any, attrs: dict, x: Tensor) -> tuple:
    if len(node.output) > 1 and node.output[1]:
        raise ctx.unsupported("the indices output is not supported")
    kernel = tuple(attrs["kernel_shape"])
    if len(kernel) != 2:
        raise ctx.unsupported("only 2-D pooling is supported")
    stride = tuple(attrs.get("strides", [1, 1]))
    dilation = tuple(attrs.get("dilations", [1, 1]))
    pads = _conv_pads(ctx, attrs, x.shape[1:], kernel, stride, dilation)
    return kernel, stride, pads, dilation, bool(attrs.get("ceil_mode", 0))


def _pool_1d_as_2d(pool: Callable[[OnnxContext, Any, dict, Tensor], Tensor]) -> Callable[[OnnxContext, Any, dict], list[Value]]:
    """A 2-D pooling handler that also reads (N, C, L) pooling as (N, C, 1, L) with a 1×k window, between two
    reshapes (exact)."""
    def handler(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
        x = ctx.tensor(node.input[0])
        if not (ctx.batched and len(x.shape) == 2 and len(attrs.get("kernel_shape", ())) == 1):
            return [pool(ctx, node, attrs, _spatial_input(ctx, node))]
        one = {key: [1 if key != "pads" else 0] + list(attrs[key]) for key in ("kernel_shape", "strides", "dilations") if key in attrs}
        if "pads" in attrs:
            one["pads"] = [0, int(attrs["pads"][0]), 0, int(attrs["pads"][1])]
        c, length = x.shape
        y = pool(ctx, node, {**attrs, **one}, ctx.emit(ops.Reshape((c, 1, length)), [x]))
        return [ctx.emit(ops.Reshape((y.shape[0], y.shape[2])), [y])]
    return handler


@handles("MaxPool")
@_pool_1d_as_2d
def _maxpool(ctx: OnnxContext, node: Any, attrs: dict, x: Tensor) -> Tensor:
    kernel, stride, pads, dilation, ceil = _pool_common(ctx, node, attrs, x)
    if ceil and (pads[0] != pads[2] or pads[1] != pads[3]):
        raise ctx.unsupported("ceil_mode with asymmetric padding")
    return ctx.emit(ops.MaxPool2d(kernel, stride, pads, dilation, ceil), [x], "maxpool")


@handles("AveragePool")
@_pool_1d_as_2d
def _avgpool(ctx: OnnxContext, node: Any, attrs: dict, x: Tensor) -> Tensor:
    kernel, stride, pads, dilation, ceil = _pool_common(ctx, node, attrs, x)
    if dilation != (1, 1):
        raise ctx.unsupported("dilated average pooling")
    include = bool(attrs.get("count_include_pad", 0))
    if ceil and any(pads):
        raise ctx.unsupported("ceil_mode together with padding")
    try:
        pool = ops.AvgPool2d(kernel, stride, pads, include, ceil)
    except ValueError as e:
        raise ctx.unsupported(str(e)) from None
    return ctx.emit(pool, [x], "avgpool")


@handles("GlobalAveragePool")
def _global_avgpool(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    if ctx.batched and len(x.shape) == 2:  # (N, C, L): the mean over L
        return [ctx.emit(ops.Reduce([1], True, True), [x], "reduce")]
    x = _spatial_input(ctx, node)
    return [ctx.emit(ops.AvgPool2d(x.shape[1:], 1), [x], "avgpool")]


_BEFORE_SUM = {"ReduceSumSquare": "square", "ReduceL2": "square", "ReduceL1": "abs", "ReduceLogSumExp": "exp"}
_AFTER_SUM = {"ReduceL2": ops.Sqrt, "ReduceLogSumExp": ops.Log}


@handles("ReduceMean", "ReduceSum", *_BEFORE_SUM)
def _reduce(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    """A sum or mean over sample axes (ReduceSumSquare, ReduceL1, ReduceL2 and ReduceLogSumExp as a sum of x², |x|
    or eˣ, then √ or log). The mean over both spatial axes of (N, C, H, W) — global average pooling, as torch
    exports AdaptiveAvgPool2d(1) — stays an AvgPool2d (windowed CROWN coefficients)."""
    x = ctx.tensor(node.input[0])
    before = _BEFORE_SUM.get(node.op_type)
    if before is not None:
        x = {"square": lambda: ctx.emit(ops.Power(2.0), [x], "pow"), "abs": lambda: absolute(ctx, x),
             "exp": lambda: ctx.emit(ops.Exp(), [x], "exp")}[before]()
        summed = _reduce_sum(ctx, node, attrs, x, False, 18)
        after = _AFTER_SUM.get(node.op_type)
        return [summed if after is None else ctx.emit(after(), [summed])]
    return [_reduce_sum(ctx, node, attrs, x, node.op_type == "ReduceMean", 18 if node.op_type == "ReduceMean" else 13)]


def _reduce_sum(ctx: OnnxContext, node: Any, attrs: dict, x: Tensor, mean: bool, since: int) -> Tensor:
    axes = _axes_arg(ctx, node, attrs, since)
    rank = len(ctx.onnx_shape(x))
    keep = bool(attrs.get("keepdims", 1))
    if axes is None:
        if attrs.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(1 if ctx.batched else 0, rank))
    if mean and ctx.batched and rank == 4 and sorted(a % rank for a in axes) == [2, 3]:
        pooled = ctx.emit(ops.AvgPool2d(x.shape[1:], 1), [x], "avgpool")
        return pooled if keep else ctx.emit(ops.Reshape((x.shape[0],)), [pooled])
    return ctx.emit(ops.Reduce([ctx.sample_axis(x, a) for a in axes], keep, mean), [x], "reduce")


@handles("Sum", "Mean")
def _sum_mean(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    """The elementwise sum (or mean, the sum times an enclosure of 1/n) of any number of inputs, some data."""
    ins = [ctx.get(i) for i in node.input]
    total = next(v for v in ins if isinstance(v, Tensor))
    first = ins.index(total)
    for v in ins[:first] + ins[first + 1:]:
        total = ctx.add_or_sub(total, v, sub=False)  # type: ignore[arg-type]
    return [ctx.mul_or_div(total, np.float32(len(ins)), div=True) if node.op_type == "Mean" and len(ins) > 1 else total]


@handles("GlobalMaxPool")
def _global_maxpool(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    if ctx.batched and len(x.shape) == 2:  # (N, C, L): the max over L
        return [reduce_extreme(ctx, x, [1], True, True)]
    x = _spatial_input(ctx, node)
    return [reduce_extreme(ctx, x, [1, 2], True, True)]


def _axes_arg(ctx: OnnxContext, node: Any, attrs: dict, since: int) -> list[int] | None:
    if ctx.opset >= since:
        return [int(a) for a in ctx.const(node.input[1], "axes").reshape(-1)] if len(node.input) > 1 and node.input[1] else None
    return list(attrs["axes"]) if "axes" in attrs else None


@handles("Add", "Sub")
def _add_sub(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    return [ctx.add_or_sub(ctx.get(node.input[0]), ctx.get(node.input[1]), node.op_type == "Sub")]  # type: ignore[arg-type]


@handles("Mul", "Div")
def _mul_div(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    return [ctx.mul_or_div(ctx.get(node.input[0]), ctx.get(node.input[1]), node.op_type == "Div")]  # type: ignore[arg-type]


@handles("ConvTranspose")
def _conv_transpose(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = _spatial_input(ctx, node)
    w = ctx.weight(node.input[1], "weight")
    if w.dim() != 4:
        raise ctx.unsupported("only 2-D transposed convolutions are supported")
    b = ctx.weight(node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
    stride = tuple(attrs.get("strides", [1, 1]))
    dilation = tuple(attrs.get("dilations", [1, 1]))
    out_pad = list(attrs.get("output_padding", [0, 0]))
    group = int(attrs.get("group", 1))
    kh, kw = w.shape[2:]
    full = [(n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip(x.shape[1:], stride, dilation, (kh, kw))]
    if "output_shape" in attrs:  # pads follow from the requested size (SAME_UPPER convention unless SAME_LOWER)
        want = list(attrs["output_shape"])[-2:]
        totals = [f + op - o for f, op, o in zip(full, out_pad, want)]
        lower = attrs.get("auto_pad", "NOTSET") == "SAME_LOWER"
        pads = [(t - t // 2 if lower else t // 2) for t in totals] + [(t // 2 if lower else t - t // 2) for t in totals]
    elif attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        totals = [f + op - n * s for f, op, n, s in zip(full, out_pad, x.shape[1:], stride)]
        lower = attrs["auto_pad"] == "SAME_LOWER"
        pads = [(t - t // 2 if lower else t // 2) for t in totals] + [(t // 2 if lower else t - t // 2) for t in totals]
    else:
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4 or any(p < 0 for p in pads):
        raise ctx.unsupported(f"pads {pads} (only 2-D, non-negative)")
    node_ = ops.ConvTranspose2d(w, b, stride, (pads[0], pads[1], pads[2], pads[3]), out_pad, dilation, group)
    return [ctx.emit(node_, [x], "convT")]


@handles("Softmax")
def _softmax(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    rank = len(ctx.onnx_shape(x))
    axis = int(attrs.get("axis", -1 if ctx.opset >= 13 else 1)) % rank
    if ctx.opset < 13 and axis != rank - 1:  # before opset 13, Softmax flattened every axis from `axis` on
        raise ctx.unsupported(f"Softmax over the flattened axes {axis}… (opset {ctx.opset}); re-export with opset ≥ 13")
    return [ctx.emit(ops.Softmax(ctx.sample_axis(x, axis)), [x], "softmax")]


@handles("Clip")
def _clip(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    """clip(x, a, b) = a + relu(x − a) − relu(x − b) (a < b), built from existing ops, so ReLU's rules, slopes and
    splits serve ReLU6 and friends; one-sided clips are one ReLU (exact in real arithmetic)."""
    x = ctx.tensor(node.input[0])
    if ctx.opset >= 11:
        bound = lambda i: float(ctx.const(node.input[i], "bound").reshape(-1)[0]) if len(node.input) > i and node.input[i] else None  # noqa: E731
        lo, hi = bound(1), bound(2)
    else:
        lo, hi = attrs.get("min"), attrs.get("max")
    return [ctx.clip(x, lo, hi)]
