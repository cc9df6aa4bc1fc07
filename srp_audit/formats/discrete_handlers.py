"""ONNX and ATen handlers of the discrete ops (comparisons, logic, Where, integer casts, ArgMax, OneHot, Mod) and of
Abs, Max/Min and ReduceMax/ReduceMin: each reads its arguments and calls `discrete_build`, so both readers build
the same IR. torch's Softplus threshold (Where(β·x > t, x, softplus(β·x)/β)) is recognised and read as Softplus."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import onnx

from ..ir.reading import Tensor, aten_ints, aten_tensor, aten_value, aten_weight
from ..ops.activations import Softplus
from ..ops.affine import ElementwiseAffine
from ..ops.float_round import RoundToFloat
from ..ops.steps import Trunc
from . import discrete_build as build
from .aten_context import _AtenCtx, aten
from .context import Value
from .onnx_context import OnnxContext
from .onnx_ops import handles

ONNX_INT_TYPES = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 12: "uint32", 13: "uint64", 9: "bool"}
ONNX_FLOAT_TYPES = (1, 11)  # float, double: exact carriers of the model's float32/float64 values
ONNX_NARROW_FLOATS = {10: "float16", 16: "bfloat16"}
_RELATIONS = {"Greater": "gt", "GreaterOrEqual": "ge", "Less": "lt", "LessOrEqual": "le", "Equal": "eq"}


def _data(ctx: Any, *values: Value | None) -> None:
    if not any(isinstance(v, Tensor) for v in values):
        raise ctx.unsupported("none of its inputs depends on the model input")


# ------------------------------------------------------------------------------------------------------ ONNX


@handles(*_RELATIONS)
def _compare(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    a, b = ctx.get(node.input[0]), ctx.get(node.input[1])
    _data(ctx, a, b)
    rel = _RELATIONS[node.op_type]
    out = build.compare(ctx, a, b, rel)  # type: ignore[arg-type]  # required inputs: get() gives no None
    if isinstance(a, Tensor) and isinstance(b, np.ndarray) and b.size == 1:
        ctx.comparisons[out.ir] = (a, rel, float(b.reshape(-1)[0]))
    return [out]


@handles("Not", "And", "Or", "Xor")
def _logic(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    ins = [ctx.get(i) for i in node.input]
    _data(ctx, *ins)
    return [build.logic(ctx, node.op_type, *ins)]  # type: ignore[arg-type]  # required inputs: get() gives no None


@handles("Cast")
def _cast(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    t = ctx.tensor(node.input[0])
    return [_cast_to(ctx, t, node.input[0], attrs.get("to"))]


def _cast_to(ctx: OnnxContext, t: Tensor, source: str, to: Any) -> Tensor:
    """Data `t` (the ONNX value `source`) cast to the ONNX data type `to`."""
    if to in ONNX_NARROW_FLOATS:
        return ctx.emit(RoundToFloat(ONNX_NARROW_FLOATS[to]), [t], "round")
    if to == onnx.TensorProto.FLOAT and source in ctx.double_names:
        return ctx.emit(RoundToFloat("float32"), [t], "round")
    if to == onnx.TensorProto.FLOAT and ctx.double_names and (source not in ctx.types or not ctx.types_consistent):
        raise ctx.unsupported(f"a cast to float of '{source}', whose type ONNX type inference cannot establish in a model "
                              "with float64 values (float64 data would be rounded); check the model's declared types")
    if to in ONNX_FLOAT_TYPES:
        return t
    if to in ONNX_INT_TYPES:
        return build.cast(ctx, t, ONNX_INT_TYPES[to], from_integer=source in ctx.integer_names)
    raise ctx.unsupported(f"casting the model's data to ONNX type {to} (only float, double, float16, bfloat16, integer "
                          "and bool casts are read)")


@handles("CastLike")
def _cast_like(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    """A cast to the type of the second input (its ONNX type, by type inference; float when unknown)."""
    v, like = ctx.get(node.input[0]), ctx.get(node.input[1])
    to = onnx.helper.np_dtype_to_tensor_dtype(like.dtype) if isinstance(like, np.ndarray) else ctx.types.get(node.input[1])
    if to is None:
        raise ctx.unsupported(f"the type of '{node.input[1]}' is unknown to ONNX type inference, so the cast cannot be read")
    if isinstance(v, np.ndarray):  # a constant cast to the type of data (or of a constant): that type, not float32's
        return [v.astype(onnx.helper.tensor_dtype_to_np_dtype(to))]
    return [_cast_to(ctx, ctx.tensor(node.input[0]), node.input[0], to)]


def _scalar_scale(node: Any) -> tuple[float, float] | None:
    """(factor, rad) of a Mul or Div by one constant (an ElementwiseAffine with a scalar scale and no shift): the
    float64 factor and how far the exact one may lie from it (a Div's 1/c is enclosed); else None."""
    if isinstance(node, ElementwiseAffine) and node.scale.numel() == 1 and not bool(node.shift.any()):
        s, _ = node.enclosures()
        return float(s.mid.reshape(-1)[0]), float(s.rad.reshape(-1)[0])
    return None


def _undoes(inv: tuple[float, float], beta: tuple[float, float]) -> bool:
    """Whether the factor `inv` is 1/β to within 4 float64 ulps (checked exactly): Softplus(β)'s rules evaluate
    softplus(β·x)/β with an allowance of 16 ulps, which covers that gap; a rounded float32 1/β is not accepted."""
    (i, i_rad), (b, b_rad) = inv, beta
    if b_rad != 0 or b <= 0:
        return False
    gap = abs(Fraction(i) * Fraction(b) - 1) + Fraction(i_rad) * Fraction(b)
    return gap <= 4 * Fraction(2) ** -53


def _softplus_threshold(ctx: OnnxContext, c: Any, a: Any, b: Any) -> Tensor | None:
    """torch's Softplus with its threshold as the dynamo exporter writes it: Where(x > t, x, Softplus(x)), and with
    β ≠ 1, Where(β·x > t, x, Softplus(β·x) / β); None when the Where is something else."""
    seen = ctx.comparisons.get(c.ir) if isinstance(c, Tensor) else None
    if seen is None or seen[1] != "gt" or not isinstance(a, Tensor) or not isinstance(b, Tensor):
        return None
    data, _, value = seen
    made = ctx.made
    if data.ir == a.ir:  # β = 1
        sp, ins = made.get(b.ir, (None, ()))
        if isinstance(sp, Softplus) and sp.beta == 1.0 and ins == (a.ir,):
            return ctx.emit(Softplus(1.0, value), [a], "softplus")
    scaled, scaled_ins = made.get(data.ir, (None, ()))
    div, div_ins = made.get(b.ir, (None, ()))
    sp, sp_ins = made.get(div_ins[0], (None, ())) if len(div_ins) == 1 else (None, ())
    beta, inv = _scalar_scale(scaled), _scalar_scale(div)
    if (beta is not None and inv is not None and scaled_ins == (a.ir,) and isinstance(sp, Softplus)
            and sp.beta == 1.0 and sp_ins == (data.ir,) and _undoes(inv, beta)):
        return ctx.emit(Softplus(beta[0], value), [a], "softplus")
    return None


@handles("Where")
def _where(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    c, a, b = (ctx.get(i) for i in node.input)
    _data(ctx, c, a, b)
    softplus = _softplus_threshold(ctx, c, a, b)
    return [softplus if softplus is not None else build.where(ctx, c, a, b)]  # type: ignore[arg-type]  # required inputs: get() gives no None


@handles("OneHot")
def _one_hot(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    idx = ctx.tensor(node.input[0])
    if node.input[0] not in ctx.integer_names:  # float indices are cast to int64 first (truncated)
        idx = ctx.emit(Trunc("int64"), [idx], "cast")
    depth = np.asarray(ctx.const(node.input[1], "depth")).reshape(-1)
    values = np.asarray(ctx.const(node.input[2], "values"), dtype=np.float64).reshape(-1)
    if depth.size != 1 or values.size != 2:
        raise ctx.unsupported("OneHot needs one depth and two values (off, on)")
    rank = len(ctx.full_shape(idx)) + 1
    axis = int(attrs.get("axis", -1))
    axis = axis + rank if axis < 0 else axis
    if ctx.batched and axis == 0:
        raise ctx.unsupported("OneHot inserting its axis before the batch axis")
    sample_axis = axis - 1 if ctx.batched else axis
    return [build.one_hot(ctx, idx, int(depth[0]), float(values[0]), float(values[1]), sample_axis)]


@handles("Mod")
def _mod(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    a = ctx.tensor(node.input[0])
    c = ctx.const(node.input[1], "divisor")
    return [build.mod(ctx, a, c, bool(attrs.get("fmod", 0)))]  # fmod = 0 (integers): the sign of the divisor


@handles("Abs")
def _abs(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    return [build.absolute(ctx, ctx.tensor(node.input[0]))]


@handles("Max", "Min")
def _max_min(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    ins = [ctx.get(i) for i in node.input]
    _data(ctx, *ins)
    out = ins[0]
    for v in ins[1:]:
        out = build.extreme(ctx, out, v, node.op_type == "Max")  # type: ignore[arg-type]  # required inputs: get() gives no None
    if not isinstance(out, Tensor):
        raise ctx.unsupported("none of its inputs depends on the model input")
    return [out]


@handles("ReduceMax", "ReduceMin")
def _reduce_max(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    axes = attrs.get("axes")
    if len(node.input) > 1 and node.input[1]:
        axes = [int(v) for v in ctx.const(node.input[1], "axes").reshape(-1)]
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(len(ctx.full_shape(x))))  # every axis: the batch axis too (refused below when batched)
    sample = [ctx.sample_axis(x, int(a)) for a in axes]
    return [build.reduce_extreme(ctx, x, sample, bool(attrs.get("keepdims", 1)), node.op_type == "ReduceMax")]


# ------------------------------------------------------------------------------------------------------ ATen

_ATEN_RELATIONS = {"gt": "gt", "ge": "ge", "lt": "lt", "le": "le", "eq": "eq", "ne": "ne"}


@aten(*(f"aten.{r}.{kind}" for r in _ATEN_RELATIONS for kind in ("Tensor", "Scalar")))
def _aten_compare(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x, y = aten_value(a[0]), aten_value(a[1])
    _data(ctx, x, y)
    rel = str(ctx.node.target).split(".")[1]
    out = build.compare(ctx, x, y, rel)
    if isinstance(x, Tensor) and isinstance(y, np.ndarray) and y.size == 1:
        ctx.comparisons[out.ir] = (x, rel, float(y.reshape(-1)[0]))
    return out


@aten("aten.logical_not.default", "aten.bitwise_not.default")
def _aten_not(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    return build.logic(ctx, "Not", aten_tensor(ctx, a[0]))


@aten("aten.logical_and.default", "aten.logical_or.default", "aten.logical_xor.default", "aten.bitwise_and.Tensor",
      "aten.bitwise_or.Tensor", "aten.bitwise_xor.Tensor")
def _aten_logic(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    name = str(ctx.node.target).split(".")[1].split("_")[1]
    x, y = aten_value(a[0]), aten_value(a[1])
    _data(ctx, x, y)
    return build.logic(ctx, name.capitalize(), x, y)


@aten("aten.where.self", "aten.where.ScalarOther", "aten.where.ScalarSelf", "aten.where.Scalar")
def _aten_where(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    c, x, y = (aten_value(v) for v in a[:3])
    _data(ctx, c, x, y)
    return build.where(ctx, c, x, y)


@aten("aten.abs.default")
def _aten_abs(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    return build.absolute(ctx, aten_tensor(ctx, a[0]))


@aten("aten.maximum.default", "aten.minimum.default")
def _aten_extreme(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x, y = aten_value(a[0]), aten_value(a[1])
    _data(ctx, x, y)
    return build.extreme(ctx, x, y, "maximum" in str(ctx.node.target))  # type: ignore[return-value]  # data: _data checked one is


@aten("aten.amax.default", "aten.amin.default")
def _aten_amax(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    dims = aten_ints(a[1]) if len(a) > 1 else []
    dims = dims or list(range(len(ctx.full_shape(x))))  # every axis: the batch axis too (refused when batched)
    keep = bool(a[2] if len(a) > 2 else kw.get("keepdim", False))
    return build.reduce_extreme(ctx, x, [ctx.sample_axis(x, d) for d in dims], keep, "amax" in str(ctx.node.target))


@aten("aten.remainder.Scalar", "aten.remainder.Tensor", "aten.fmod.Scalar", "aten.fmod.Tensor")
def _aten_mod(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x, c = aten_tensor(ctx, a[0]), aten_value(a[1])
    if isinstance(c, Tensor):
        raise ctx.unsupported("a remainder by the model's data (only by constants)")
    return build.mod(ctx, x, np.asarray(c, dtype=np.float64), "fmod" in str(ctx.node.target))


@aten("aten.one_hot.default")
def _aten_one_hot(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    idx = aten_tensor(ctx, a[0])
    depth = int(a[1] if len(a) > 1 else kw.get("num_classes", -1))
    if depth < 0:
        raise ctx.unsupported("one_hot without num_classes (the class count must be fixed)")
    return build.one_hot(ctx, idx, depth, 0.0, 1.0, len(idx.shape))


@aten("aten._assert_tensor_metadata.default")
def _aten_assert(ctx: _AtenCtx, a: list, kw: dict) -> None:
    """A dtype/shape assertion torch.export leaves beside a cast: no value, nothing to compute."""
    return None


@aten("aten.embedding.default")
def _aten_embedding(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    idx = aten_tensor(ctx, a[1])
    return build.embedding(ctx, aten_weight(ctx, a[0]), idx)
