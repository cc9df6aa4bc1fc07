"""ONNX → IR: parse the protobuf with `onnx` and map each node onto IR nodes.

Values are either *constants* (numpy arrays: initializers, Constant nodes, folded shape arithmetic) or
*tensors* (input-dependent, living in the IR). Tensors carry their per-sample shape; when the original model
has a leading batch axis, ONNX axis k maps to sample axis k − 1 and the batch is fixed to 1 while folding shape
arithmetic. Each ONNX op has one handler in `HANDLERS`; anything else fails with the node, op and opset named.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelLoadError, UnsupportedOpError
from ..ir import nodes as ir
from ..ir.graph import INPUT, Graph, GraphMeta
from ..ir.passes import prune_dead
from ..ir.registry import registrar
from .context import LoaderContext, Tensor, Value, input_is_batched
from .onnx_const import FOLDERS, attributes, fold

MIN_OPSET, MAX_OPSET = 7, 23


class _Ctx(LoaderContext):
    """An ONNX load: nodes are named by their ONNX name (or first output) and op type, versioned by the opset."""

    def __init__(self, opset: int, batched: bool) -> None:
        super().__init__(batched)
        self.opset = opset
        self.onnx_node: Any = None

    @property
    def node_name(self) -> str:
        n = self.onnx_node
        return n.name or (n.output[0] if n.output else "?")

    @property
    def op_name(self) -> str:
        return self.onnx_node.op_type

    @property
    def version(self) -> int:
        return self.opset

    def onnx_shape(self, t: Tensor) -> tuple[int, ...]:
        return self.full_shape(t)


Handler = Callable[[_Ctx, Any, dict], list[Value]]
HANDLERS: dict[str, Handler] = {}


handles = registrar(HANDLERS)  # @handles("Gemm", ...)


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


@handles("Add", "Sub")
def _add_sub(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    return [ctx.add_or_sub(ctx.get(node.input[0]), ctx.get(node.input[1]), node.op_type == "Sub")]  # type: ignore[arg-type]


@handles("Mul", "Div")
def _mul_div(ctx: _Ctx, node: Any, attrs: dict) -> list[Value]:
    return [ctx.mul_or_div(ctx.get(node.input[0]), ctx.get(node.input[1]), node.op_type == "Div")]  # type: ignore[arg-type]


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
    batched = input_is_batched(declared)
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
    return prune_dead(Graph(tuple(int(d) for d in sample), ctx.nodes, out.ir, meta))
