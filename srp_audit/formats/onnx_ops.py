"""The ONNX op table: one handler per ONNX op type that needs more than a declaration.

Ops whose ONNX form is one node with attributes declare it on the op (`onnx_op`, `from_onnx`); the reader maps
those without an entry here. A handler reads its inputs through the load context (constants vs tensors, the
batch-axis rules) and emits IR nodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir.reading import ONNX_READERS, reads_onnx, spatial_input
from ..ops.convex import Exp
from ..ops.power import Log, Power, Sqrt
from ..ops.reduce import reduce_sum
from .context import Tensor, Value
from .discrete_build import absolute, reduce_extreme
from .onnx_context import OnnxContext

HANDLERS = ONNX_READERS  # every ONNX reader, the op modules' and the loader's forms
handles = reads_onnx  # @handles("Gemm", ...)


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


@handles("Shape")
def _shape(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    v = ctx.get(node.input[0])
    # v is data, or a Derived constant, whose `shape` onnx_shape reads as it reads data's
    shape = np.asarray(v.shape if isinstance(v, np.ndarray) else ctx.onnx_shape(v), dtype=np.int64)  # type: ignore[arg-type]  # data, or a Derived
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return [shape[start:end]]


_BEFORE_SUM = {"ReduceSumSquare": "square", "ReduceL2": "square", "ReduceL1": "abs", "ReduceLogSumExp": "exp"}
_AFTER_SUM = {"ReduceL2": Sqrt, "ReduceLogSumExp": Log}


@handles(*_BEFORE_SUM)
def _reduce_of(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    """ReduceSumSquare, ReduceL1, ReduceL2 and ReduceLogSumExp: a sum of x², |x| or eˣ, then √ or log."""
    x = ctx.tensor(node.input[0])
    before = _BEFORE_SUM[node.op_type]
    x = {"square": lambda: ctx.emit(Power(2.0), [x], "pow"), "abs": lambda: absolute(ctx, x),
         "exp": lambda: ctx.emit(Exp(), [x], "exp")}[before]()
    summed = reduce_sum(ctx, node, attrs, x, False, 18)
    after = _AFTER_SUM.get(node.op_type)
    return [summed if after is None else ctx.emit(after(), [summed])]


@handles("Sum", "Mean")
def _sum_mean(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    """The elementwise sum (or mean, the sum times an enclosure of 1/n) of any number of inputs, some data."""
    ins = [ctx.get(i) for i in node.input]
    total = next(v for v in ins if isinstance(v, Tensor))
    first = ins.index(total)
    for v in ins[:first] + ins[first + 1:]:
        total = ctx.add_or_sub(total, v, sub=False)  # type: ignore[arg-type]  # get() is None only for an omitted optional input
    return [ctx.mul_or_div(total, np.asarray(np.float32(len(ins))), div=True) if node.op_type == "Mean" and len(ins) > 1 else total]


@handles("GlobalMaxPool")
def _global_maxpool(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    if ctx.batched and len(x.shape) == 2:  # (N, C, L): the max over L
        return [reduce_extreme(ctx, x, [1], True, True)]
    x = spatial_input(ctx, node)
    return [reduce_extreme(ctx, x, [1, 2], True, True)]


@handles("Add", "Sub")
def _add_sub(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    a, b = ctx.get(node.input[0]), ctx.get(node.input[1])
    return [ctx.add_or_sub(a, b, node.op_type == "Sub")]  # type: ignore[arg-type]  # both inputs are required: get() gives no None


@handles("Mul", "Div")
def _mul_div(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    a, b = ctx.get(node.input[0]), ctx.get(node.input[1])
    return [ctx.mul_or_div(a, b, node.op_type == "Div")]  # type: ignore[arg-type]  # both inputs are required: get() gives no None


@handles("Clip")
def _clip(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    """clip(x, a, b) = a + relu(x − a) − relu(x − b) (a < b), built from existing ops, so ReLU's rules, slopes and
    splits serve ReLU6 and friends; one-sided clips are one ReLU (exact in real arithmetic)."""
    x = ctx.tensor(node.input[0])
    if ctx.opset >= 11:
        def bound(i: int) -> float | None:
            return float(ctx.const(node.input[i], "bound").reshape(-1)[0]) if len(node.input) > i and node.input[i] else None

        lo, hi = bound(1), bound(2)
    else:
        lo, hi = attrs.get("min"), attrs.get("max")
    return [ctx.clip(x, lo, hi)]
