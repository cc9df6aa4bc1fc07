"""Constant folding for ONNX nodes whose inputs are all known (shape arithmetic, Constant chains).

Exporters emit Shape → Gather → Unsqueeze → Concat → Reshape chains to compute target shapes; with the batch
axis fixed to 1 these evaluate to constants here, so the loader only ever sees a constant target shape. Float
arithmetic on constants is exact or enclosed: a result no float holds (1/3, 8^−½) becomes a `Derived` constant
that keeps its rigorous enclosure, never a rounded copy.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, cast

import numpy as np
import torch
from onnx import TensorProto, helper

from ..ir.registry import registrar
from ..kernel.enclosure import Enclosed
from .context import Derived

Folded = np.ndarray | Derived
"""A folded constant: stored (an array), or derived from stored ones and kept as an enclosure."""

Folder = Callable[[list[Folded | None], dict[str, Any], int], list[Folded]]

FOLDERS: dict[str, Folder] = {}


folds = registrar(cast(dict[Hashable, Any], FOLDERS))  # @folds("Shape", ...); cast: registrar's table is typed loosely (dict is invariant)


_NP_TYPES: dict[int, type] = {
    TensorProto.FLOAT: np.float32,
    TensorProto.DOUBLE: np.float64,
    TensorProto.FLOAT16: np.float16,
    TensorProto.INT64: np.int64,
    TensorProto.INT32: np.int32,
    TensorProto.INT16: np.int16,
    TensorProto.INT8: np.int8,
    TensorProto.UINT8: np.uint8,
    TensorProto.BOOL: np.bool_,
}


def _axes(inputs: list, attrs: dict, opset: int, input_index: int, since: int) -> list[int] | None:
    if opset >= since:
        if len(inputs) > input_index and inputs[input_index] is not None:
            return [int(a) for a in np.asarray(inputs[input_index]).reshape(-1)]
        return None
    return list(attrs["axes"]) if "axes" in attrs else None


@folds("Identity")
def _identity(inputs, attrs, opset):
    return [inputs[0]]


@folds("Cast")
def _cast(inputs, attrs, opset):
    to = int(attrs["to"])
    if to not in _NP_TYPES:
        raise ValueError(f"cast to type {to} is not supported")
    return [np.asarray(inputs[0]).astype(_NP_TYPES[to])]



def enclosure(v: Folded) -> Enclosed:
    """A folded constant's exact value, enclosed (a stored float array is exact)."""
    if isinstance(v, Derived):
        return v.value
    return Enclosed.exact(torch.from_numpy(np.array(v, dtype=np.float64)))


def _exact_or_derived(out: np.ndarray, exact: Enclosed) -> Folded:
    """`out` when it is the exact value of its expression, else the enclosure as a `Derived` constant."""
    got = torch.from_numpy(np.array(out, dtype=np.float64))
    if exact.is_exact and torch.equal(torch.broadcast_to(exact.mid, got.shape), got):
        return out
    return Derived(exact)


@folds("Add", "Sub", "Mul", "Div")
def _arith(inputs, attrs, opset):
    op = attrs["__op"]
    if any(isinstance(i, Derived) for i in inputs):
        return [Derived(_exact_arith(op, *inputs))]
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    out = _ARITH[op](a, b)
    if np.issubdtype(out.dtype, np.floating):
        return [_exact_or_derived(out, _exact_arith(op, a, b))]
    return [out]


def _exact_arith(op: str, a: Folded, b: Folded) -> Enclosed:
    """The exact result of a float Add/Sub/Mul/Div of constants, enclosed (exact where representable)."""
    x, y = enclosure(a), enclosure(b)
    return {"Add": lambda: x + y, "Sub": lambda: x - y, "Mul": lambda: x * y, "Div": lambda: x * y.reciprocal()}[op]()


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return np.trunc(a / b).astype(a.dtype)  # ONNX integer division truncates
    return (a / b).astype(np.result_type(a, b))


_ARITH: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _div}


@folds("Pow")
def _pow(inputs, attrs, opset):
    base, b = inputs[0], np.asarray(inputs[1])
    exps = np.unique(np.asarray(b, dtype=np.float64))
    if exps.size != 1 or not float(2 * exps[0]).is_integer() or not -64 <= exps[0] <= 64:
        raise ValueError("Pow of constants is folded only for one integer or half-integer exponent up to 64 (exactly)")
    e = float(exps[0])
    if not isinstance(base, Derived) and np.issubdtype(np.asarray(base).dtype, np.integer):
        return [_integer_pow(np.asarray(base), e)]
    x = enclosure(base)
    exact = Enclosed.exact(torch.ones(x.mid.shape, dtype=torch.float64))
    for _ in range(int(abs(e))):
        exact = exact * x
    if not e.is_integer():
        exact = exact * x.sqrt()
    if e < 0:
        exact = exact.reciprocal()
    if isinstance(base, Derived):
        return [Derived(exact)]
    a = np.asarray(base)
    out = np.power(a.astype(np.float64), e).astype(a.dtype)
    return [_exact_or_derived(out, exact)]


def _integer_pow(a: np.ndarray, e: float) -> np.ndarray:
    """ONNX's Pow of an integer base has the base's type: exact for a non-negative integer exponent (in Python's
    integers, refused past the type's range); other exponents are refused."""
    if not e.is_integer() or e < 0:
        raise ValueError(f"Pow of integer constants with exponent {e:g} (only non-negative integer exponents are folded)")
    info = np.iinfo(a.dtype)
    values = [int(v) ** int(e) for v in a.reshape(-1).tolist()]
    if any(not info.min <= v <= info.max for v in values):
        raise ValueError(f"Pow of integer constants overflows {a.dtype}")
    return np.array(values, dtype=a.dtype).reshape(a.shape)


@folds("Neg")
def _neg(inputs, attrs, opset):
    return [Derived(-inputs[0].value) if isinstance(inputs[0], Derived) else -np.asarray(inputs[0])]


@folds("Sqrt")
def _sqrt(inputs, attrs, opset):
    exact = enclosure(inputs[0]).sqrt()
    if isinstance(inputs[0], Derived):
        return [Derived(exact)]
    return [_exact_or_derived(np.sqrt(np.asarray(inputs[0])), exact)]


@folds("Reshape")
def _reshape(inputs, attrs, opset):
    data, shape = np.asarray(inputs[0]), [int(s) for s in np.asarray(inputs[1]).reshape(-1)]
    allowzero = int(attrs.get("allowzero", 0))
    out = [data.shape[i] if (s == 0 and not allowzero) else s for i, s in enumerate(shape)]
    return [data.reshape(out)]


@folds("Unsqueeze")
def _unsqueeze(inputs, attrs, opset):
    data = np.asarray(inputs[0])
    axes = _axes(inputs, attrs, opset, 1, 13) or []
    rank = data.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        data = np.expand_dims(data, a)
    return [data]


@folds("Squeeze")
def _squeeze(inputs, attrs, opset):
    data = np.asarray(inputs[0])
    axes = _axes(inputs, attrs, opset, 1, 13)
    return [np.squeeze(data) if axes is None else np.squeeze(data, axis=tuple(a % data.ndim for a in axes))]


@folds("Concat")
def _concat(inputs, attrs, opset):
    return [np.concatenate([np.asarray(i) for i in inputs], axis=int(attrs.get("axis", 0)))]


@folds("Gather")
def _gather(inputs, attrs, opset):
    data, idx = np.asarray(inputs[0]), np.asarray(inputs[1])
    return [np.take(data, idx, axis=int(attrs.get("axis", 0)))]


@folds("Slice")
def _slice(inputs, attrs, opset):
    data = np.asarray(inputs[0])
    if opset >= 10:
        starts = np.asarray(inputs[1]).reshape(-1)
        ends = np.asarray(inputs[2]).reshape(-1)
        axes = np.asarray(inputs[3]).reshape(-1) if len(inputs) > 3 and inputs[3] is not None else range(len(starts))
        steps = np.asarray(inputs[4]).reshape(-1) if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    else:
        starts, ends = attrs["starts"], attrs["ends"]
        axes, steps = attrs.get("axes", range(len(starts))), [1] * len(starts)
    for s, e, a, st in zip(starts, ends, axes, steps):
        axis = int(a) % data.ndim
        data = np.take(data, _slice_indices(int(s), int(e), int(st), data.shape[axis]), axis=axis)
    return [data]


def _slice_indices(start: int, end: int, step: int, dim: int) -> np.ndarray:
    """The indices ONNX's Slice takes on an axis of length `dim`: negative start and end count from the end, then
    both are clamped — to [0, dim] for a positive step, and for a negative one the start to [0, dim − 1] and the
    end to [−1, dim − 1] (−1: past the first entry). Not Python's slice, which clamps a negative step's start
    below −dim to an empty result where ONNX takes the first entry."""
    if step == 0:
        raise ValueError("Slice with step 0")
    start, end = (v + dim if v < 0 else v for v in (start, end))
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return np.arange(start, end, step, dtype=np.int64)


@folds("ConstantOfShape")
def _constant_of_shape(inputs, attrs, opset):
    value = attrs.get("value")
    fill = np.asarray(value).reshape(-1)[0] if value is not None else np.float32(0)
    return [np.full([int(s) for s in np.asarray(inputs[0]).reshape(-1)], fill, dtype=np.asarray(fill).dtype)]


@folds("Transpose")
def _transpose(inputs, attrs, opset):
    data = np.asarray(inputs[0])
    return [np.transpose(data, attrs.get("perm"))]


@folds("Flatten")
def _flatten(inputs, attrs, opset):
    data = np.asarray(inputs[0])
    axis = int(attrs.get("axis", 1))
    axis = (axis + data.ndim if axis < 0 else axis) if data.ndim else 0  # a negative axis counts from the back
    return [data.reshape(int(np.prod(data.shape[:axis])), -1)]


@folds("Range")
def _range(inputs, attrs, opset):
    start, limit, delta = (np.asarray(i).item() for i in inputs)
    return [np.arange(start, limit, delta, dtype=np.asarray(inputs[0]).dtype)]


@folds("Expand")
def _expand(inputs, attrs, opset):
    data, shape = np.asarray(inputs[0]), [int(s) for s in np.asarray(inputs[1]).reshape(-1)]
    return [data * np.ones(shape, dtype=data.dtype)]  # ONNX Expand broadcasts both ways


@folds("Split")
def _split(inputs, attrs, opset):
    data = np.asarray(inputs[0])
    axis = int(attrs.get("axis", 0)) % data.ndim
    if opset >= 13:
        sizes = [int(s) for s in np.asarray(inputs[1]).reshape(-1)] if len(inputs) > 1 and inputs[1] is not None else None
    else:
        sizes = list(attrs["split"]) if "split" in attrs else None
    if sizes is None:
        parts = int(attrs.get("num_outputs", attrs.get("__outputs", 1)))
        size = -(-data.shape[axis] // parts)
        sizes = [min(size, data.shape[axis] - i * size) for i in range(parts)]
    return np.split(data, np.cumsum(sizes)[:-1], axis=axis)


@folds("Tile")
def _tile(inputs, attrs, opset):
    return [np.tile(np.asarray(inputs[0]), [int(r) for r in np.asarray(inputs[1]).reshape(-1)])]


@folds("Sign")
def _sign(inputs, attrs, opset):
    return [np.sign(np.asarray(inputs[0]))]


@folds("CastLike")
def _cast_like(inputs, attrs, opset):
    return [np.asarray(inputs[0]).astype(np.asarray(inputs[1]).dtype)]


@folds("Relu")
def _relu(inputs, attrs, opset):
    return [np.maximum(np.asarray(inputs[0]), 0)]


_COMPARE = {"Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
            "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor}


@folds(*_COMPARE)
def _compare(inputs, attrs, opset):
    """Comparisons in shape computations (Expand's −1 handling: Equal → Where)."""
    return [_COMPARE[attrs["__op"]](np.asarray(inputs[0]), np.asarray(inputs[1]))]


@folds("Not")
def _not(inputs, attrs, opset):
    return [np.logical_not(np.asarray(inputs[0]))]


@folds("Where")
def _where(inputs, attrs, opset):
    return [np.where(np.asarray(inputs[0]).astype(bool), np.asarray(inputs[1]), np.asarray(inputs[2]))]


_ENCLOSED_OPS = {"Add", "Sub", "Mul", "Div", "Pow", "Neg", "Sqrt"}  # compute on enclosures
_SHAPE_OPS = {"Identity", "Cast", "CastLike", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Expand", "Transpose"}


def _cast_derived(v: Derived, to: type | None) -> Folded:
    """A derived constant cast to `to`: the identity for float32 and float64 (in exact arithmetic); for an integer
    type the truncation, and for bool the test ≠ 0, where every value of the enclosure gives the same result;
    anything else (float16's rounding, an enclosure across an integer) is refused."""
    if to in (np.float32, np.float64):
        return v
    mid, rad = v.value.mid.numpy(), v.value.rad.numpy()
    lo = np.nextafter(mid - rad, -np.inf)  # outward: mid ± rad rounds
    hi = np.nextafter(mid + rad, np.inf)
    if to is np.bool_ and bool(np.all((lo > 0) | (hi < 0))):
        return np.ones(mid.shape, dtype=np.bool_)
    if to is not None and to is not np.bool_ and np.issubdtype(to, np.integer):
        t_lo, t_hi = np.trunc(lo), np.trunc(hi)
        info = np.iinfo(to)
        if np.array_equal(t_lo, t_hi) and bool(np.all((t_lo >= info.min) & (t_lo <= info.max))):
            return np.asarray(t_lo.astype(to))
    raise ValueError(f"a cast to {getattr(to, '__name__', to)} of a constant that no float holds exactly (derived from "
                     "others, like 1/3) is not supported")


def fold(op: str, inputs: list[Folded | None], attrs: dict[str, Any], opset: int) -> list[Folded]:
    """Evaluate `op` on constant inputs; raises KeyError when `op` has no folder. A `Derived` input goes through
    arithmetic on enclosures and through shape-only ops (applied to its centre and radius alike; a cast, see
    `_cast_derived`); any other op on it is refused."""
    attrs = {**attrs, "__op": op}
    derived = inputs[0] if inputs and isinstance(inputs[0], Derived) else None
    if any(isinstance(i, Derived) for i in inputs) and op not in _ENCLOSED_OPS:
        if derived is None or op not in _SHAPE_OPS or any(isinstance(i, Derived) for i in inputs[1:]):
            raise ValueError(f"{op} of a constant that no float holds exactly (derived from others, like 1/3) is not supported")
        if op in ("Cast", "CastLike"):
            return [_cast_derived(derived, _NP_TYPES.get(int(attrs["to"])) if op == "Cast" else np.asarray(inputs[1]).dtype.type)]
        mid = FOLDERS[op]([derived.value.mid.numpy(), *inputs[1:]], attrs, opset)[0]
        rad = FOLDERS[op]([derived.value.rad.numpy(), *inputs[1:]], attrs, opset)[0]
        return [Derived(Enclosed(torch.from_numpy(np.array(mid)), torch.from_numpy(np.array(rad))))]
    return [v if isinstance(v, Derived) else np.asarray(v) for v in FOLDERS[op](inputs, attrs, opset)]


def attributes(node: Any) -> dict[str, Any]:
    """A node's attributes as plain Python values (strings decoded, tensors as numpy arrays)."""
    from onnx import numpy_helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type == a.TENSOR:
            out[a.name] = numpy_helper.to_array(a.t)
            continue
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode("utf-8", "replace") for s in v]
        out[a.name] = v
    return out
