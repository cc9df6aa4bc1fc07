"""Shape, indexing and type ops of the exact ONNX interpreter: numpy's own machinery moves the (object or integer)
arrays, so these ops are exact by construction. Casts between floating-point types are the identity on reals
(srp-audit certifies the network as a function of real numbers); a cast to an integer type truncates towards zero
where every point of the ball truncates alike (else Undecided: more bits) and refuses a value out of the type's range.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
from exact_onnx_core import Ctx, Unsupported, compare, decided_int, exact_value, ints_of, is_real, op, vec
from exact_onnx_nn import crop_or_pad
from flint import arb, fmpq
from onnx import TensorProto, helper, numpy_helper


@op("Identity", "Dropout")
def _identity(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    return [ins[0]] + [np.ones(ins[0].shape, dtype=bool)] * (len(node.output) - 1)


@op("Constant")
def _constant(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    if "value" in attrs:
        return [numpy_helper.to_array(attrs["value"])]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return [np.array(attrs[key], dtype=dtype)]
    raise Unsupported(f"Constant with {sorted(attrs)}")


@op("Shape")
def _shape(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    s = np.array(ins[0].shape, dtype=np.int64)
    return [s[attrs.get("start", 0):attrs.get("end", len(s))]]


@op("Size")
def _size(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    return [np.array(ins[0].size, dtype=np.int64)]


@op("ConstantOfShape")
def _constant_of_shape(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    value = numpy_helper.to_array(attrs["value"]).reshape(-1) if "value" in attrs else np.zeros(1, dtype=np.float32)
    return [np.full(ints_of(ins[0]), value[0], dtype=value.dtype)]


@op("Range")
def _range(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    if not any(is_real(a) for a in ins):
        start, limit, delta = (int(np.asarray(a).reshape(())) for a in ins)
        return [np.arange(start, limit, delta, dtype=np.result_type(*ins))]
    start, limit, delta = (exact_value(ctx.real(a).reshape(()).item()) for a in ins)
    n = max(math.ceil((limit - start) / delta), 0)
    return [np.array([ctx.num(start + i * delta) for i in range(n)] + [None], dtype=object)[:-1]]


_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}


def _half_of(q: Fraction) -> Fraction:
    """q rounded to nearest float16, ties to even, decided exactly (numpy's float64 → float16 may round twice)."""
    if abs(q) >= 65520:  # past float16's largest value by half an ulp or more: ±∞, outside the reals
        raise Unsupported(f"Cast of {float(q):.6g} to float16 overflows")
    c = np.float16(float(q))
    cands = [np.nextafter(c, np.float16(-np.inf)), c, np.nextafter(c, np.float16(np.inf))]
    best = min(cands, key=lambda f: (abs(Fraction(float(f)) - q), int(np.array(f).view(np.uint16)) & 1))
    return Fraction(float(best))


def _to_half(v: Any) -> Any:
    """A real rounded to float16: every point of the ball rounds to one of its ends' roundings (rounding is
    monotone), so the result encloses the two."""
    if not isinstance(v, arb):
        return fmpq(*_half_of(exact_value(v)).as_integer_ratio())
    lo, hi = _half_of(exact_value(v.lower())), _half_of(exact_value(v.upper()))
    return arb(float(lo)) if lo == hi else arb(float(lo)).union(arb(float(hi)))


def _cast(ctx: Ctx, x: np.ndarray, to: int) -> np.ndarray:
    if to == TensorProto.FLOAT16:
        return vec(_to_half, ctx.real(x) if (x.dtype == object or x.dtype.kind in "iub") else x)
    if to in _FLOAT_TYPES:
        return ctx.real(x) if (x.dtype == object or x.dtype.kind in "iub") else x
    target = helper.tensor_dtype_to_np_dtype(to)
    if to == TensorProto.BOOL:
        if not is_real(x):
            return x.astype(bool)
        nonzero = vec(lambda v: None if compare(v, 0, "eq") is None else not compare(v, 0, "eq"), ctx.real(x))
        return nonzero if any(v is None for v in nonzero.flat) else nonzero.astype(bool)
    if not is_real(x):
        return x.astype(target)
    # real → integer: truncation towards zero, decided for every point of the ball; ONNX leaves a truncated value
    # outside the target type undefined (onnxruntime wraps or saturates), so that is refused
    info = np.iinfo(target)
    out = []
    for v in ctx.real(x).reshape(-1):
        t = decided_int(v, math.trunc, f"Cast to {np.dtype(target).name}")
        if not info.min <= t <= info.max:
            raise Unsupported(f"Cast of {t} to {np.dtype(target).name} (out of its range: undefined in ONNX)")
        out.append(t)
    return np.array(out, dtype=target).reshape(x.shape)


@op("Cast")
def _cast_op(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    return [_cast(ctx, ins[0], int(attrs["to"]))]


@op("CastLike")
def _cast_like(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    like = ins[1]
    if is_real(like):
        return [ctx.real(ins[0]) if not is_real(ins[0]) else ins[0]]
    return [_cast(ctx, ins[0], helper.np_dtype_to_tensor_dtype(like.dtype))]


@op("Reshape")
def _reshape(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x = ins[0]
    shape = ins[1] if len(ins) > 1 else attrs["shape"]
    shape = ints_of(shape)
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [x.reshape(shape)]


@op("Flatten")
def _flatten(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x = ins[0]
    axis = attrs.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return [x.reshape((math.prod(x.shape[:axis]), -1))]


@op("Transpose")
def _transpose(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    perm = attrs.get("perm")
    return [np.transpose(ins[0], perm)]


def _axes_arg(ctx: Ctx, ins: list, attrs: dict, since: int = 13) -> list[int] | None:
    if ctx.opset >= since:
        return ints_of(ins[1]) if len(ins) > 1 and ins[1] is not None else None
    return list(attrs["axes"]) if "axes" in attrs else None


@op("Squeeze")
def _squeeze(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    axes = _axes_arg(ctx, ins, attrs)
    x = ins[0]
    return [np.squeeze(x) if axes is None else np.squeeze(x, tuple(a % x.ndim for a in axes))]


@op("Unsqueeze")
def _unsqueeze(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    axes = _axes_arg(ctx, ins, attrs)
    x = ins[0]
    rank = x.ndim + len(axes)
    return [np.expand_dims(x, tuple(sorted(a % rank for a in axes)))]


def _same_kind(ctx: Ctx, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Arrays to concatenate or select between: all reals as numbers when any is real."""
    if any(a.dtype == object for a in arrays):
        return [ctx.real(a) for a in arrays]
    return arrays


@op("Concat")
def _concat(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    arrays = _same_kind(ctx, [a for a in ins if a is not None])
    return [np.concatenate(arrays, axis=attrs["axis"])]


@op("Split")
def _split(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x = ins[0]
    axis = attrs.get("axis", 0) % x.ndim
    if ctx.opset >= 13:
        split = ints_of(ins[1]) if len(ins) > 1 and ins[1] is not None else None
    else:
        split = list(attrs["split"]) if "split" in attrs else None
    n = len(node.output)
    if split is None:
        size = x.shape[axis]
        if "num_outputs" in attrs:
            step = -(-size // n)
            split = [min(step, size - i * step) for i in range(n)]
        else:
            split = [size // n] * n
    cuts = np.cumsum(split)[:-1]
    return list(np.split(x, cuts, axis=axis))


def _slice_bounds(start: int, end: int, step: int, dim: int) -> slice:
    """ONNX Slice clamping (negative indices count from the end) as a Python slice."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        return slice(start, end, step)
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return slice(start, None if end < 0 else end, step)


@op("Slice")
def _slice(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x = ins[0]
    if ctx.opset >= 10:
        starts, ends = ints_of(ins[1]), ints_of(ins[2])
        axes = ints_of(ins[3]) if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
        steps = ints_of(ins[4]) if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    else:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    idx = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        idx[a % x.ndim] = _slice_bounds(s, e, st, x.shape[a % x.ndim])
    return [x[tuple(idx)]]


@op("Gather")
def _gather(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x, ind = ins
    axis = attrs.get("axis", 0) % x.ndim
    ind = np.asarray(ints_of(ind), dtype=np.int64).reshape(np.asarray(ind).shape)
    return [np.take(x, np.where(ind < 0, ind + x.shape[axis], ind), axis=axis)]


@op("GatherElements")
def _gather_elements(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    """out[i] = x[i with its axis entry replaced by ind[i]], over the index's own shape (no broadcasting)."""
    x, ind = ins
    axis = attrs.get("axis", 0) % x.ndim
    out = np.empty(ind.shape, dtype=x.dtype)
    for i in np.ndindex(*ind.shape):
        j = int(ind[i])
        out[i] = x[i[:axis] + (j + x.shape[axis] if j < 0 else j,) + i[axis + 1:]]
    return [out]


@op("Expand")
def _expand(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x = ins[0]
    shape = np.broadcast_shapes(x.shape, tuple(ints_of(ins[1])))
    return [np.array(np.broadcast_to(x, shape))]


@op("Tile")
def _tile(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    return [np.tile(ins[0], ints_of(ins[1]))]


@op("Pad")
def _pad(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x = ins[0]
    if ctx.opset >= 11:
        pads = ints_of(ins[1])
        value = ins[2] if len(ins) > 2 and ins[2] is not None and np.asarray(ins[2]).size else None
        axes = ints_of(ins[3]) if len(ins) > 3 and ins[3] is not None else list(range(x.ndim))
    else:
        pads, value, axes = list(attrs["pads"]), np.float32(attrs.get("value", 0.0)), list(range(x.ndim))
    k = len(axes)
    begin, end = [0] * x.ndim, [0] * x.ndim
    for i, a in enumerate(axes):
        begin[a % x.ndim], end[a % x.ndim] = pads[i], pads[k + i]
    mode = attrs.get("mode", "constant")
    real = is_real(x)
    xr = ctx.real(x) if real else x
    xr = crop_or_pad(xr, [max(-b, 0) for b in begin], [max(-e, 0) for e in end], None)  # negative pads crop
    grow = [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)]
    if mode == "constant":
        fill = (ctx.num(np.asarray(value).reshape(-1)[0]) if value is not None else ctx.zero()) if real else \
            (np.asarray(value).reshape(-1)[0] if value is not None else 0)
        out = crop_or_pad(xr, [-b for b, _ in grow], [-e for _, e in grow], fill)
        return [out if real else out.astype(x.dtype)]
    return [np.pad(xr, grow, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])]


@op("DepthToSpace")
def _depth_to_space(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    """y[n, c, h, w] read entry by entry from the spec's formula (DCR: the block offset is the channel's high part)."""
    x, k = ins[0], int(attrs["blocksize"])
    n, c, h, w = x.shape
    crd = attrs.get("mode", b"DCR") in (b"CRD", "CRD")
    y = np.empty((n, c // (k * k), h * k, w * k), dtype=x.dtype)
    for i in np.ndindex(*y.shape):
        b, ch, r, q = i
        off = (r % k) * k + q % k
        y[i] = x[b, ch * k * k + off if crd else off * (c // (k * k)) + ch, r // k, q // k]
    return [y]


@op("SpaceToDepth")
def _space_to_depth(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x, k = ins[0], int(attrs["blocksize"])
    n, c, h, w = x.shape
    y = np.empty((n, c * k * k, h // k, w // k), dtype=x.dtype)
    for i in np.ndindex(*y.shape):
        b, ch, r, q = i
        off, src = divmod(ch, c)
        y[i] = x[b, src, r * k + off // k, q * k + off % k]
    return [y]


@op("GatherND")
def _gather_nd(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x, ind = ins[0], np.asarray(ints_of(ins[1]), dtype=np.int64).reshape(np.asarray(ins[1]).shape)
    bd, depth = int(attrs.get("batch_dims", 0)), ind.shape[-1]
    out = np.empty(ind.shape[:-1] + x.shape[bd + depth:], dtype=x.dtype)
    for i in np.ndindex(*ind.shape[:-1]):
        pos = tuple(int(v) + (x.shape[bd + j] if v < 0 else 0) for j, v in enumerate(ind[i]))
        out[i] = x[i[:bd] + pos]
    return [out]


@op("CumSum")
def _cumsum(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    """Running sums along the axis, added one entry at a time (exact on exact entries)."""
    x = ins[0]
    axis = ints_of(ins[1])[0] % x.ndim
    moved = np.moveaxis(x, axis, -1)
    y = np.empty(moved.shape, dtype=moved.dtype)
    order = range(moved.shape[-1] - 1, -1, -1) if attrs.get("reverse", 0) else range(moved.shape[-1])
    for lead in np.ndindex(*moved.shape[:-1]):
        total = None
        for j in order:
            v = moved[lead + (j,)]
            nxt = v if total is None else total + v
            y[lead + (j,)] = (v - v if total is None else total) if attrs.get("exclusive", 0) else nxt
            total = nxt
    return [np.moveaxis(y, -1, axis)]


@op("Einsum")
def _einsum(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    """numpy's einsum on exact entries (object arrays: every product and sum is exact)."""
    eq = attrs["equation"].decode() if isinstance(attrs["equation"], bytes) else attrs["equation"]
    return [np.einsum(eq, *[ctx.real(a) for a in ins])]
