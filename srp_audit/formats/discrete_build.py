"""IR for the discrete and piecewise-linear ops both readers meet: comparisons, boolean logic, Where, casts to
integer types, OneHot, Mod by a constant, Abs, elementwise Max/Min and ReduceMax/ReduceMin.

Each is a documented decomposition into IR ops with sound rules, exact in real arithmetic:
- a ⋈ b (>, ≥, <, ≤, =, ≠) → Compare(a − b), the difference an exact IR value;
- Not c → 1 − c; And → c₁·c₂; Or → c₁ + c₂ − c₁c₂; Xor → c₁ + c₂ − 2c₁c₂ (c ∈ {0, 1});
- Where(c, a, b) → c·a + (1 − c)·b (a Product where a or b is data);
- Cast to an integer type → Trunc; to bool → Compare(≠ 0); of a comparison or of an index the type holds → itself;
  of integer data to a type that may not hold it → refused (it wraps around);
- OneHot(i)[…, k, …] → off + (on − off)·[i = k] (also i = k − depth for negative indices);
- Mod(a, c) → a − c·trunc(a/c) (fmod) or a − c·floor(a/c), with 1/c kept as an enclosure;
- |x| → relu(x) + relu(−x); max(a, b) → b + relu(a − b); min(a, b) → a − relu(a − b); ReduceMax → a tree of
  pairwise maxima over halves of the axis.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..ops.affine import Dense, ElementwiseAffine
from ..ops.argmax import ArgMax
from ..ops.compare import Compare
from ..ops.concat import Concat
from ..ops.relu import Relu
from ..ops.select import Select
from ..ops.shape import Reshape
from ..ops.sign import Floor
from ..ops.steps import INT_RANGES, Trunc
from .context import LoaderContext, Tensor, Value


def difference(ctx: LoaderContext, a: Value, b: Value) -> Tensor:
    """a − b with at least one operand data, as an exact IR value."""
    return ctx.add_or_sub(a, b, sub=True)


def compare(ctx: LoaderContext, a: Value, b: Value, rel: str) -> Tensor:
    """[a rel b] as 0/1 for rel in gt, ge, lt, le, eq, ne."""
    if rel in ("lt", "le"):
        a, b, rel = b, a, {"lt": "gt", "le": "ge"}[rel]
    return ctx.emit(Compare(rel), [difference(ctx, a, b)], "compare")


def affine(ctx: LoaderContext, x: Tensor, scale: float | torch.Tensor, shift: float | torch.Tensor) -> Tensor:
    return ctx.emit(ElementwiseAffine(scale, shift), [x], "affine")


def logic(ctx: LoaderContext, op: str, a: Value, b: Value | None = None) -> Tensor:
    """Not/And/Or/Xor of 0/1 values, at least one of them data."""
    if op == "Not":
        assert isinstance(a, Tensor)
        return affine(ctx, a, -1.0, 1.0)
    c, d = (a, b) if isinstance(a, Tensor) else (b, a)  # c the data, d the other
    assert isinstance(c, Tensor) and d is not None
    if isinstance(d, Tensor):
        prod = ctx.product(c, d)
        if op == "And":
            return prod
        total = ctx.add_or_sub(c, d, sub=False)
        times = 1.0 if op == "Or" else 2.0
        return ctx.add_or_sub(total, affine(ctx, prod, times, 0.0), sub=True)
    k = ctx.sample_const(c, np.asarray(d, dtype=np.float64) != 0).to(torch.float64)
    c = ctx.broadcast(c, k)
    if op == "And":  # c·k
        return affine(ctx, c, k, 0.0)
    if op == "Or":  # c(1 − k) + k
        return affine(ctx, c, 1 - k, k)
    return affine(ctx, c, 1 - 2 * k, k)  # Xor: c(1 − 2k) + k


def scaled(ctx: LoaderContext, v: Value, by: Tensor) -> Tensor:
    """v·by for a data 0/1 value `by`: a Product when v is data, else a scale by the stored constant v."""
    if isinstance(v, Tensor):
        return ctx.product(v, by)
    return ctx.mul_or_div(by, v, div=False)


def where(ctx: LoaderContext, cond: Value, a: Value, b: Value) -> Tensor:
    """Where(cond, a, b) with cond 0/1 data, or a constant mask choosing between data."""
    if not isinstance(cond, Tensor):
        mask = np.asarray(cond) != 0
        x = a if isinstance(a, Tensor) else b
        assert isinstance(x, Tensor)
        m = ctx.sample_const(x, mask.astype(np.float64))
        return ctx.add_or_sub(_masked(ctx, a, m), _masked(ctx, b, 1 - m), sub=False)
    notc = affine(ctx, cond, -1.0, 1.0)
    return ctx.add_or_sub(scaled(ctx, a, cond), scaled(ctx, b, notc), sub=False)


def _masked(ctx: LoaderContext, v: Value, m: torch.Tensor) -> Value:
    if isinstance(v, Tensor):
        return affine(ctx, ctx.broadcast(v, m), m, 0.0)
    return np.asarray(v, dtype=np.float64) * m.numpy()  # 0 or the stored value: exact


def cast(ctx: LoaderContext, x: Tensor, target: str, from_integer: bool = False) -> Tensor:
    """A Cast of data to `target` ('float', 'bool' or an integer type of `srp_audit.ops.steps.INT_RANGES`). An integer source
    cast to a type that may not hold it wraps around, which is refused (a float source past the range is
    undefined in ONNX, and Trunc's enclosure covers every value)."""
    if target == "float":
        return x
    if target == "bool":
        return ctx.emit(Compare("ne"), [x], "compare")
    if _small_index(ctx, x, target) or (from_integer and target == "int64"):
        return x
    if from_integer:
        raise ctx.unsupported(f"a cast of integer data to {target}, which may not hold it (it would wrap around)")
    return ctx.emit(Trunc(target), [x], "cast")


def _small_index(ctx: LoaderContext, t: Tensor, target: str) -> bool:
    """Whether `t` is a 0/1 comparison, or an index along an axis short enough for the type `target` to hold: a
    cast then changes nothing. Rounded values may lie past the type's range and keep their Trunc."""
    node, ins = ctx.made.get(t.ir, (None, ()))
    if isinstance(node, ArgMax):
        return ctx.shapes[ins[0]][node.axis] - 1 <= INT_RANGES[target][1]
    return isinstance(node, Compare)


def one_hot(ctx: LoaderContext, idx: Tensor, depth: int, off: float, on: float, axis: int) -> Tensor:
    """OneHot of data indices: a new sample axis `axis` of size `depth` (axis already a sample axis of the output)."""
    shape = tuple(idx.shape)
    out_shape = shape[:axis] + (depth,) + shape[axis:]
    n = math.prod(shape)
    source = np.broadcast_to(np.expand_dims(np.arange(n).reshape(shape), axis), out_shape)
    spread = ctx.emit(Select(source.reshape(-1), out_shape, n), [idx], "onehot")
    k = np.arange(depth, dtype=np.float64).reshape((depth,) + (1,) * (len(shape) - axis))
    ks = np.broadcast_to(k, out_shape)
    hit = ctx.emit(Compare("eq"), [affine(ctx, spread, 1.0, torch.from_numpy(-ks.copy()))], "compare")
    if not isinstance(ctx.made.get(idx.ir, (None,))[0], (ArgMax, Compare)):  # a negative index i means i + depth
        neg = ctx.emit(Compare("eq"), [affine(ctx, spread, 1.0, torch.from_numpy(depth - ks))], "compare")
        hit = ctx.add_or_sub(hit, neg, sub=False)
    if off == 0.0 and on == 1.0:
        return hit
    miss = affine(ctx, hit, -1.0, 1.0)
    return ctx.add_or_sub(affine(ctx, hit, on, 0.0), affine(ctx, miss, off, 0.0), sub=False)


def embedding(ctx: LoaderContext, table: torch.Tensor, idx: Tensor) -> Tensor:
    """table[idx] for data indices (nn.Embedding): Σ_k [idx = k]·table[k], a OneHot then a Dense over it."""
    rows = int(table.shape[0])
    hit = one_hot(ctx, idx, rows, 0.0, 1.0, len(idx.shape))
    rest = tuple(int(n) for n in table.shape[1:])
    w = table.reshape(rows, -1).T.contiguous()
    out = ctx.emit(Dense(w), [hit], "embedding")
    shape = tuple(idx.shape) + rest
    return out if shape == out.shape else ctx.emit(Reshape(shape), [out])


def mod(ctx: LoaderContext, a: Tensor, c: np.ndarray, fmod: bool) -> Tensor:
    """a mod c for a constant divisor: a − c·trunc(a/c) (fmod, the sign of a) or a − c·floor(a/c) (the sign of c)."""
    if np.any(np.asarray(c) == 0):
        raise ctx.unsupported("Mod by zero")
    q = ctx.mul_or_div(a, c, div=True)
    step = ctx.emit(Trunc(None) if fmod else Floor(), [q], "mod")
    whole = ctx.mul_or_div(step, c, div=False)
    return ctx.add_or_sub(ctx.broadcast(a, torch.zeros(whole.shape)), whole, sub=True)


def relu(ctx: LoaderContext, x: Tensor) -> Tensor:
    return ctx.emit(Relu(), [x])


def absolute(ctx: LoaderContext, x: Tensor) -> Tensor:
    """|x| = relu(x) + relu(−x)."""
    return ctx.add_or_sub(relu(ctx, x), relu(ctx, affine(ctx, x, -1.0, 0.0)), sub=False)


def extreme(ctx: LoaderContext, a: Value, b: Value, largest: bool) -> Value:
    """max(a, b) = b + relu(a − b), min(a, b) = a − relu(a − b) (at least one data operand)."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        return np.maximum(a, b) if largest else np.minimum(a, b)  # type: ignore[arg-type]  # stored: only Add/Sub/Mul/Div read a Derived
    r = relu(ctx, difference(ctx, a, b))
    keep = b if largest else a
    if isinstance(keep, Tensor):
        keep = ctx.broadcast(keep, torch.zeros(r.shape))
    return ctx.add_or_sub(keep, r, sub=not largest)


def reduce_extreme(ctx: LoaderContext, x: Tensor, axes: list[int], keepdims: bool, largest: bool) -> Tensor:
    """ReduceMax/ReduceMin over sample axes: halves of each axis combined pairwise until one entry is left."""
    for axis in sorted(axes):
        x = _reduce_axis(ctx, x, axis, largest)
    if not keepdims:
        shape = tuple(n for i, n in enumerate(x.shape) if i not in axes)
        x = x if shape == x.shape else ctx.emit(Reshape(shape), [x])
    return x


def _slice(ctx: LoaderContext, x: Tensor, axis: int, start: int, stop: int) -> Tensor:
    n = math.prod(x.shape)
    idx = np.take(np.arange(n).reshape(x.shape), np.arange(start, stop), axis=axis)
    return ctx.emit(Select(idx.reshape(-1), idx.shape, n), [x], "select")


def _reduce_axis(ctx: LoaderContext, x: Tensor, axis: int, largest: bool) -> Tensor:
    while x.shape[axis] > 1:
        n = x.shape[axis]
        half = n // 2
        pair = extreme(ctx, _slice(ctx, x, axis, 0, half), _slice(ctx, x, axis, half, 2 * half), largest)
        assert isinstance(pair, Tensor)
        if n % 2:  # the odd entry out joins the next round
            rest = _slice(ctx, x, axis, n - 1, n)
            pair = ctx.emit(Concat(axis, 2), [pair, rest], "concat")
        x = pair
    return x
