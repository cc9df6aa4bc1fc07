"""ONNX → IR: parse the protobuf with `onnx` and map each node onto IR nodes.

Values are either *constants* (numpy arrays: initializers, Constant nodes, folded shape arithmetic) or
*tensors* (input-dependent, living in the IR). Tensors carry their per-sample shape; when the original model
has a leading batch axis, ONNX axis k maps to sample axis k − 1 and the batch is fixed to 1 while folding shape
arithmetic. Each ONNX op has one handler in `HANDLERS`; anything else fails with the node, op and opset named.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ..errors import ModelLoadError, UnsupportedOpError
from ..ir import nodes as ir
from ..ir.graph import INPUT, Graph, GraphMeta
from .onnx_const import FOLDERS, attributes, fold

MIN_OPSET, MAX_OPSET = 7, 23
BATCH = 1  # the batch size assumed while folding shape arithmetic


@dataclass
class Tensor:
    """An input-dependent value: the IR value id and its per-sample shape."""

    ir: str
    shape: tuple[int, ...]


Value = Tensor | np.ndarray


class _Ctx:
    """State of one load: values by ONNX name, the IR nodes emitted so far, and the model's conventions."""

    def __init__(self, opset: int, batched: bool) -> None:
        self.opset = opset
        self.batched = batched
        self.values: dict[str, Value] = {}
        self.nodes: list[tuple[str, ir.Node, tuple[str, ...]]] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.origin: dict[str, str] = {}
        self._count: dict[str, int] = {}
        self.onnx_node: Any = None

    # ---------------------------------------------------------------- errors and naming

    @property
    def node_name(self) -> str:
        n = self.onnx_node
        return n.name or (n.output[0] if n.output else "?")

    def unsupported(self, reason: str) -> UnsupportedOpError:
        return UnsupportedOpError(self.node_name, self.onnx_node.op_type, self.opset, reason)

    def emit(self, node: ir.Node, inputs: list[Tensor], tag: str | None = None) -> Tensor:
        """Append an IR node reading `inputs`; returns the new tensor."""
        tag = tag or type(node).__name__.lower()
        k = self._count.get(tag, 0)
        self._count[tag] = k + 1
        name = f"{tag}_{k}"
        try:
            shape = tuple(node.out_shape(*(t.shape for t in inputs)))
        except ValueError as e:
            raise self.unsupported(str(e)) from None
        self.nodes.append((name, node, tuple(t.ir for t in inputs)))
        self.origin[name] = f"{self.node_name}: {self.onnx_node.op_type}"
        return Tensor(name, shape)

    # ---------------------------------------------------------------- value access

    def get(self, name: str) -> Value | None:
        if name == "":
            return None
        if name not in self.values:
            raise ModelLoadError(f"node '{self.node_name}' reads '{name}', which nothing defines")
        return self.values[name]

    def tensor(self, name: str) -> Tensor:
        v = self.get(name)
        if not isinstance(v, Tensor):
            raise self.unsupported(f"input '{name}' was expected to depend on the model input")
        return v

    def const(self, name: str, what: str = "input") -> np.ndarray:
        v = self.get(name)
        if not isinstance(v, np.ndarray):
            raise self.unsupported(f"{what} '{name}' must be a constant (initializer), not computed from the input")
        return v

    def weight(self, name: str, what: str) -> torch.Tensor:
        """A float constant used as a weight: must be finite."""
        arr = self.const(name, what)
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float32)
        if not np.all(np.isfinite(arr)):
            raise ModelLoadError(
                f"{what} '{name}' of node '{self.node_name}' ({self.onnx_node.op_type}) contains NaN or inf; "
                "the model's weights are corrupt"
            )
        return torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))

    # ---------------------------------------------------------------- axis conventions

    def onnx_shape(self, t: Tensor) -> tuple[int, ...]:
        return ((BATCH,) if self.batched else ()) + t.shape

    def sample_axis(self, t: Tensor, axis: int) -> int:
        """Map an ONNX axis of tensor `t` to its sample axis; the batch axis itself cannot be addressed."""
        rank = len(self.onnx_shape(t))
        if not -rank <= axis < rank:
            raise self.unsupported(f"axis {axis} out of range for rank {rank}")
        axis %= rank
        if self.batched:
            if axis == 0:
                raise self.unsupported("operating along the batch axis is not supported")
            return axis - 1
        return axis

    def sample_const(self, t: Tensor, c: np.ndarray) -> torch.Tensor:
        """A constant broadcast against tensor `t` in ONNX space, re-expressed against the sample."""
        c = np.asarray(c, dtype=np.float32)
        while c.ndim > len(t.shape):
            if c.shape[0] != 1:
                raise self.unsupported(f"constant of shape {c.shape} broadcasts along the batch axis")
            c = c[0]
        if not np.all(np.isfinite(c)):
            raise ModelLoadError(f"constant of node '{self.node_name}' ({self.onnx_node.op_type}) contains NaN or inf")
        return torch.from_numpy(np.array(c, dtype=np.float32, copy=True))

    def reshape_to(self, t: Tensor, onnx_shape: list[int]) -> Tensor:
        """Reshape `t` to a fully resolved ONNX-space shape, keeping the batch axis first."""
        if self.batched:
            if not onnx_shape or onnx_shape[0] != BATCH or math.prod(onnx_shape[1:]) != math.prod(t.shape):
                raise self.unsupported(
                    f"reshaping {tuple(self.onnx_shape(t))} to {tuple(onnx_shape)} mixes the batch axis into the sample"
                )
            target = tuple(onnx_shape[1:])
        else:
            target = tuple(onnx_shape)
        if target == t.shape:
            return t
        return self.emit(ir.Reshape(target), [t])


Handler = Callable[[_Ctx, Any, dict], list[Value]]
HANDLERS: dict[str, Handler] = {}


def handles(*ops: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for op in ops:
            HANDLERS[op] = fn
        return fn

    return deco


def supported_ops() -> list[str]:
    """ONNX ops the loader maps onto the IR (others are accepted only when they fold to constants)."""
    return sorted(HANDLERS)


# ============================================================================ handlers


@handles("Constant")
def _constant(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
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
def _identity(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    if len(node.output) > 1 and node.output[1]:
        raise ctx.unsupported("the dropout mask output is not supported")
    return [ctx.get(node.input[0])]  # type: ignore[list-item]


@handles("Cast")
def _cast(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    t = ctx.tensor(node.input[0])
    if attrs.get("to") not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
        raise ctx.unsupported("casting the model's data to a non-float type")
    return [t]


@handles("CastLike")
def _cast_like(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    """Cast to the type of the second input; the model's data is always float here."""
    v = ctx.get(node.input[0])
    if isinstance(v, np.ndarray):
        return [v.astype(np.float32)]  # the target is the (float) model data
    return [v]


@handles("Shape")
def _shape(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    v = ctx.get(node.input[0])
    shape = np.asarray(v.shape if isinstance(v, np.ndarray) else ctx.onnx_shape(v), dtype=np.int64)
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return [shape[start:end]]


@handles("Relu", "Sigmoid", "Tanh")
def _activation(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    cls = {"Relu": ir.Relu, "Sigmoid": ir.Sigmoid, "Tanh": ir.Tanh}[node.op_type]
    return [ctx.emit(cls(), [ctx.tensor(node.input[0])])]


@handles("Neg")
def _neg(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    return [ctx.emit(ir.ElementwiseAffine(-1.0, 0.0), [ctx.tensor(node.input[0])], "neg")]


@handles("Gemm")
def _gemm(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    a = ctx.tensor(node.input[0])
    if attrs.get("transA", 0):
        raise ctx.unsupported("transA=1 on the model's data is not supported")
    if len(ctx.onnx_shape(a)) != 2:
        raise ctx.unsupported(f"Gemm needs a 2-D input, got shape {ctx.onnx_shape(a)}")
    b = ctx.weight(node.input[1], "weight")
    w = b.T if not attrs.get("transB", 0) else b  # w: [out, in]
    w = w * float(attrs.get("alpha", 1.0))
    out = w.shape[0]
    bias = None
    if len(node.input) > 2 and node.input[2]:
        c = ctx.weight(node.input[2], "bias") * float(attrs.get("beta", 1.0))
        if c.numel() not in (1, out):
            raise ctx.unsupported(f"bias of shape {tuple(c.shape)} does not broadcast to {out} outputs")
        bias = c.reshape(-1).expand(out).clone()
    return [ctx.emit(ir.Dense(w.contiguous(), bias), [a], "dense")]


@handles("MatMul")
def _matmul(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    a, b = ctx.get(node.input[0]), ctx.get(node.input[1])
    if isinstance(a, Tensor) and isinstance(b, np.ndarray):
        w = ctx.weight(node.input[1], "weight")
        if w.dim() == 1:  # x @ v: a dot product over the last axis
            t = ctx.emit(ir.Dense(w.reshape(1, -1)), [a], "dense")
            return [ctx.emit(ir.Reshape(t.shape[:-1] or (1,)), [t])] if t.shape[:-1] else [t]
        if w.dim() != 2:
            raise ctx.unsupported(f"a weight of rank {w.dim()} is not supported")
        return [ctx.emit(ir.Dense(w.T.contiguous()), [a], "dense")]
    if isinstance(a, np.ndarray) and isinstance(b, Tensor):
        w = ctx.weight(node.input[0], "weight")
        if w.dim() == 2 and not ctx.batched and len(b.shape) == 1:  # W @ x on an unbatched vector
            return [ctx.emit(ir.Dense(w.contiguous()), [b], "dense")]
        raise ctx.unsupported("constant @ data is supported only for an unbatched vector input")
    raise ctx.unsupported("both operands depend on the input (a bilinear product)")


def _conv_pads(ctx: _Ctx, attrs: dict, in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
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


def _spatial_input(ctx: _Ctx, node: Any) -> Tensor:
    x = ctx.tensor(node.input[0])
    if not ctx.batched or len(x.shape) != 3:
        raise ctx.unsupported(f"only 2-D (N, C, H, W) inputs are supported, got {ctx.onnx_shape(x)}")
    return x


@handles("Conv")
def _conv(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    x = _spatial_input(ctx, node)
    w = ctx.weight(node.input[1], "weight")
    if w.dim() != 4:
        raise ctx.unsupported("only 2-D convolutions are supported")
    b = ctx.weight(node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
    stride = tuple(attrs.get("strides", [1, 1]))
    dilation = tuple(attrs.get("dilations", [1, 1]))
    pads = _conv_pads(ctx, attrs, x.shape[1:], tuple(w.shape[2:]), stride, dilation)
    return [ctx.emit(ir.Conv2d(w, b, stride, pads, dilation, int(attrs.get("group", 1))), [x], "conv")]


@handles("BatchNormalization")
def _batchnorm(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    if attrs.get("training_mode", 0):
        raise ctx.unsupported("training_mode=1; export the model in eval mode")
    if len(node.output) > 1 and any(node.output[1:]):
        raise ctx.unsupported("running-statistics outputs (training mode) are not supported")
    x = ctx.tensor(node.input[0])
    gamma = ctx.weight(node.input[1], "scale")
    beta = ctx.weight(node.input[2], "bias")
    mean = ctx.weight(node.input[3], "mean")
    var = ctx.weight(node.input[4], "var")
    return [ctx.emit(ir.BatchNorm(mean, var, gamma, beta, float(attrs.get("epsilon", 1e-5)), len(x.shape)), [x], "batchnorm")]


def _pool_common(ctx: _Ctx, node: Any, attrs: dict, x: Tensor) -> tuple:
    if len(node.output) > 1 and node.output[1]:
        raise ctx.unsupported("the indices output is not supported")
    kernel = tuple(attrs["kernel_shape"])
    if len(kernel) != 2:
        raise ctx.unsupported("only 2-D pooling is supported")
    stride = tuple(attrs.get("strides", [1, 1]))
    dilation = tuple(attrs.get("dilations", [1, 1]))
    pads = _conv_pads(ctx, attrs, x.shape[1:], kernel, stride, dilation)
    return kernel, stride, pads, dilation, bool(attrs.get("ceil_mode", 0))


@handles("MaxPool")
def _maxpool(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    x = _spatial_input(ctx, node)
    kernel, stride, pads, dilation, ceil = _pool_common(ctx, node, attrs, x)
    if ceil and (pads[0] != pads[2] or pads[1] != pads[3]):
        raise ctx.unsupported("ceil_mode with asymmetric padding")
    return [ctx.emit(ir.MaxPool2d(kernel, stride, pads, dilation, ceil), [x], "maxpool")]


@handles("AveragePool")
def _avgpool(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    x = _spatial_input(ctx, node)
    kernel, stride, pads, dilation, ceil = _pool_common(ctx, node, attrs, x)
    if dilation != (1, 1):
        raise ctx.unsupported("dilated average pooling")
    include = bool(attrs.get("count_include_pad", 0))
    if ceil and any(pads):
        raise ctx.unsupported("ceil_mode together with padding")
    try:
        pool = ir.AvgPool2d(kernel, stride, pads, include, ceil)
    except ValueError as e:
        raise ctx.unsupported(str(e)) from None
    return [ctx.emit(pool, [x], "avgpool")]


@handles("GlobalAveragePool")
def _global_avgpool(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    x = _spatial_input(ctx, node)
    return [ctx.emit(ir.AvgPool2d(x.shape[1:], 1), [x], "avgpool")]


@handles("ReduceMean")
def _reduce_mean(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    """Mean over both spatial axes (global average pooling, as torch exports AdaptiveAvgPool2d(1))."""
    x = ctx.tensor(node.input[0])
    axes = _axes_arg(ctx, node, attrs, 18)
    rank = len(ctx.onnx_shape(x))
    if not ctx.batched or rank != 4 or axes is None or sorted(a % rank for a in axes) != [2, 3]:
        raise ctx.unsupported("only the mean over the two spatial axes of an (N, C, H, W) tensor is supported")
    pooled = ctx.emit(ir.AvgPool2d(x.shape[1:], 1), [x], "avgpool")
    if attrs.get("keepdims", 1):
        return [pooled]
    return [ctx.emit(ir.Reshape((x.shape[0],)), [pooled])]


@handles("Flatten")
def _flatten(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    shape = list(ctx.onnx_shape(x))
    axis = int(attrs.get("axis", 1))
    axis = axis % (len(shape) + 1) if axis < 0 else axis
    out = [math.prod(shape[:axis]), math.prod(shape[axis:])]
    if ctx.batched and axis == 0:
        raise ctx.unsupported("Flatten(axis=0) merges the batch axis into the sample")
    return [ctx.reshape_to(x, out)]


@handles("Reshape")
def _reshape(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    target = [int(s) for s in ctx.const(node.input[1], "target shape").reshape(-1)]
    shape_in = list(ctx.onnx_shape(x))
    allowzero = int(attrs.get("allowzero", 0))
    out = []
    for i, s in enumerate(target):
        if s == 0 and not allowzero:
            if i >= len(shape_in):
                raise ctx.unsupported(f"target {target} copies a dimension the input does not have")
            out.append(shape_in[i])
        else:
            out.append(s)
    if 0 in out:
        raise ctx.unsupported(f"target shape {target} has a zero-sized dimension")
    if out.count(-1) > 1:
        raise ctx.unsupported(f"target shape {target} has more than one -1")
    if -1 in out:
        known = math.prod(s for s in out if s != -1)
        total = math.prod(shape_in)
        if known == 0 or total % known:
            raise ctx.unsupported(f"cannot reshape {tuple(shape_in)} to {target}")
        out[out.index(-1)] = total // known
    return [ctx.reshape_to(x, out)]


def _axes_arg(ctx: _Ctx, node: Any, attrs: dict, since: int) -> list[int] | None:
    if ctx.opset >= since:
        return [int(a) for a in ctx.const(node.input[1], "axes").reshape(-1)] if len(node.input) > 1 and node.input[1] else None
    return list(attrs["axes"]) if "axes" in attrs else None


@handles("Squeeze")
def _squeeze(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    shape = list(ctx.onnx_shape(x))
    axes = _axes_arg(ctx, node, attrs, 13)
    if axes is None:  # squeeze every size-1 sample axis; the batch axis stays
        keep = [s for i, s in enumerate(shape) if s != 1 or (ctx.batched and i == 0)]
    else:
        drop = {a % len(shape) for a in axes}
        if ctx.batched and 0 in drop:
            raise ctx.unsupported("squeezing the batch axis")
        if any(shape[a] != 1 for a in drop):
            raise ctx.unsupported(f"squeezing axes {axes} of shape {tuple(shape)}, which are not of size 1")
        keep = [s for i, s in enumerate(shape) if i not in drop]
    return [ctx.reshape_to(x, keep)]


@handles("Unsqueeze")
def _unsqueeze(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    shape = list(ctx.onnx_shape(x))
    axes = _axes_arg(ctx, node, attrs, 13) or []
    rank = len(shape) + len(axes)
    for a in sorted(a % rank for a in axes):
        if ctx.batched and a == 0:
            raise ctx.unsupported("inserting an axis before the batch axis")
        shape.insert(a, 1)
    return [ctx.reshape_to(x, shape)]


@handles("Transpose")
def _transpose(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    rank = len(ctx.onnx_shape(x))
    perm = [int(p) for p in attrs.get("perm", list(reversed(range(rank))))]
    if ctx.batched:
        if perm[0] != 0:
            raise ctx.unsupported(f"perm {perm} moves the batch axis")
        perm = [p - 1 for p in perm[1:]]
    if perm == list(range(len(perm))):
        return [x]
    return [ctx.emit(ir.Transpose(perm), [x])]


@handles("Pad")
def _pad(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    mode = attrs.get("mode", "constant")
    if mode != "constant":
        raise ctx.unsupported(f"mode={mode!r}; only constant padding is supported")
    rank = len(ctx.onnx_shape(x))
    if ctx.opset >= 11:
        pads = [int(p) for p in ctx.const(node.input[1], "pads").reshape(-1)]
        value = ctx.const(node.input[2], "constant_value").reshape(-1) if len(node.input) > 2 and node.input[2] else [0.0]
        value = float(value[0]) if len(value) else 0.0
        axes = (
            [int(a) % rank for a in ctx.const(node.input[3], "axes").reshape(-1)]
            if len(node.input) > 3 and node.input[3]
            else list(range(rank))
        )
    else:
        pads, value, axes = list(attrs["pads"]), float(attrs.get("value", 0.0)), list(range(rank))
    n = len(axes)
    if len(pads) != 2 * n:
        raise ctx.unsupported(f"{len(pads)} pad values for {n} axes")
    full = [(0, 0)] * rank
    for i, a in enumerate(axes):
        full[a] = (pads[i], pads[i + n])
    if any(p < 0 for pair in full for p in pair):
        raise ctx.unsupported("negative pads (cropping) are not supported")
    if ctx.batched:
        if full[0] != (0, 0):
            raise ctx.unsupported("padding the batch axis")
        full = full[1:]
    if all(p == (0, 0) for p in full):
        return [x]
    return [ctx.emit(ir.Pad(full, value), [x])]


def _binary_operands(ctx: _Ctx, node: Any) -> tuple[Value, Value]:
    return ctx.get(node.input[0]), ctx.get(node.input[1])  # type: ignore[return-value]


@handles("Add", "Sub")
def _add_sub(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    a, b = _binary_operands(ctx, node)
    sub = node.op_type == "Sub"
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if a.shape != b.shape:
            raise ctx.unsupported(f"operands of shapes {ctx.onnx_shape(a)} and {ctx.onnx_shape(b)} broadcast")
        if sub:
            b = ctx.emit(ir.ElementwiseAffine(-1.0, 0.0), [b], "neg")
        return [ctx.emit(ir.Add(), [a, b])]
    if isinstance(a, Tensor):
        c = ctx.sample_const(a, b)  # type: ignore[arg-type]
        return [ctx.emit(ir.ElementwiseAffine(1.0, -c if sub else c), [a], "affine")]
    c = ctx.sample_const(b, a)  # type: ignore[arg-type]
    return [ctx.emit(ir.ElementwiseAffine(-1.0 if sub else 1.0, c), [b], "affine")]  # type: ignore[list-item]


@handles("Mul", "Div")
def _mul_div(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    a, b = _binary_operands(ctx, node)
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        raise ctx.unsupported("both operands depend on the input (a bilinear product)")
    if node.op_type == "Div":
        if not isinstance(a, Tensor):
            raise ctx.unsupported("dividing a constant by the model's data (a reciprocal) is not supported")
        c = ctx.sample_const(a, b)  # type: ignore[arg-type]
        if bool((c == 0).any()):
            raise ModelLoadError(f"node '{ctx.node_name}' (Div) divides by zero")
        return [ctx.emit(ir.ElementwiseAffine(1.0 / c, 0.0), [a], "affine")]
    x, c = (a, b) if isinstance(a, Tensor) else (b, a)
    return [ctx.emit(ir.ElementwiseAffine(ctx.sample_const(x, c), 0.0), [x], "affine")]  # type: ignore[arg-type]


# ============================================================================ driver


def _read_model(path: str) -> onnx.ModelProto:
    if not os.path.exists(path):
        raise ModelLoadError(f"model file '{path}' does not exist")
    if os.path.isdir(path):
        raise ModelLoadError(f"'{path}' is a directory, not a model file")
    if os.path.getsize(path) == 0:
        raise ModelLoadError(f"model file '{path}' is empty")
    try:
        model = onnx.load(path)
    except FileNotFoundError as e:
        raise ModelLoadError(f"'{path}' refers to external data that is missing: {e.filename or e}") from None
    except Exception as e:  # protobuf DecodeError, truncated files, wrong format
        raise ModelLoadError(f"'{path}' is not a readable ONNX model ({type(e).__name__}: {str(e)[:120]})") from None
    if not model.graph.node:
        raise ModelLoadError(f"'{path}' holds no graph nodes; is it really an ONNX model?")
    return model


def _declared_shape(vi: Any) -> list[int | str]:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?") for d in vi.type.tensor_type.shape.dim]


def load_onnx(path: str) -> Graph:
    """Read an ONNX file into the IR (unsimplified); raises `ModelLoadError` with a one-line reason."""
    model = _read_model(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise ModelLoadError(f"'{path}' declares no default-domain opset")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelLoadError(f"'{path}' uses opset {opset}; supported opsets are {MIN_OPSET}–{MAX_OPSET}")
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelLoadError(f"'{path}' has {len(inputs)} data inputs ({[i.name for i in inputs]}); exactly one is supported")
    if len(g.output) != 1:
        raise ModelLoadError(f"'{path}' has {len(g.output)} outputs; exactly one is supported")
    declared = _declared_shape(inputs[0])
    if not declared:
        raise ModelLoadError(f"input '{inputs[0].name}' of '{path}' has no declared shape")
    batched = len(declared) >= 2
    if batched and isinstance(declared[0], int) and declared[0] != 1:
        raise ModelLoadError(
            f"input '{inputs[0].name}' has a fixed batch size of {declared[0]}; export the model with batch 1 or a dynamic batch axis"
        )
    sample = declared[1:] if batched else declared
    if any(not isinstance(d, int) for d in sample):
        raise ModelLoadError(f"input '{inputs[0].name}' has symbolic sample dimensions {declared}; a fixed sample shape is needed")

    ctx = _Ctx(opset, batched)
    ctx.values[inputs[0].name] = Tensor(INPUT, tuple(int(d) for d in sample))
    for name, t in inits.items():
        try:
            ctx.values[name] = numpy_helper.to_array(t)
        except Exception as e:
            raise ModelLoadError(f"initializer '{name}' of '{path}' cannot be read ({e})") from None

    for node in g.node:
        ctx.onnx_node = node
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(ctx.node_name, f"{node.domain}.{node.op_type}", opset, "custom-domain operators are not supported")
        attrs = attributes(node)
        ins = [ctx.get(i) for i in node.input]
        if node.op_type != "Shape" and node.op_type in FOLDERS and all(i is None or isinstance(i, np.ndarray) for i in ins) and ins:
            try:
                outs: list[Value] = fold(node.op_type, ins, attrs, opset)  # type: ignore[arg-type]
            except Exception as e:
                raise ctx.unsupported(f"cannot evaluate on constants ({e})") from None
        elif node.op_type in HANDLERS:
            outs = HANDLERS[node.op_type](ctx, node, attrs)
        elif node.op_type in FOLDERS:
            raise ctx.unsupported("supported only on constants (shape arithmetic), not on the model's data")
        else:
            raise ctx.unsupported("this operator is not supported")
        for name, v in zip(node.output, outs):
            if name:
                ctx.values[name] = v

    out_name = g.output[0].name
    out = ctx.values.get(out_name)
    if not isinstance(out, Tensor):
        raise ModelLoadError(f"output '{out_name}' of '{path}' does not depend on the model input")
    if out.ir == INPUT:
        ctx.onnx_node = g.node[-1]
        out = ctx.emit(ir.Identity(), [out])
    meta = GraphMeta(
        source=str(path),
        input_name=inputs[0].name,
        output_name=out_name,
        batched=batched,
        original_input_shape=tuple(declared),
        origin=ctx.origin,
    )
    return _prune(Graph(tuple(int(d) for d in sample), ctx.nodes, out.ir, meta))


def _prune(g: Graph) -> Graph:
    """Drop nodes the output does not depend on (dead branches left by the exporter)."""
    live = {g.output}
    for name in reversed(g.order):
        if name in live:
            live.update(g.inputs_of[name])
    if len(live - {INPUT}) == len(g.order):
        return g
    return g.rebuilt([(n, node, ins) for n, node, ins in g.items() if n in live])
