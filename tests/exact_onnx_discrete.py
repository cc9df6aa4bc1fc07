"""Discrete ops of the exact ONNX interpreter: ArgMax/ArgMin, OneHot, Round, Mod and NonZero.

Their results jump, so each is decided on the exact value: an index (ArgMax, NonZero) or an integer (an integer
Mod's input, OneHot's indices) comes out of comparisons that hold for every point of the balls, else `Undecided`
is raised (ExactOnnx.run then re-evaluates at more bits). A real result of a step (Round, a float Mod) is exact
where the step is decided and otherwise the union of the values on both sides of it (an enclosure), as Floor and
Relu are. Exact ties are ties: ArgMax of equal exact values picks the first (or, with select_last_index, the last)
index, Round(2.5) = 2 (half to even), Mod(3, 1.5) = 0.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
from exact_onnx_core import Ctx, Undecided, Unsupported, compare, decided_int, is_real, op, step, step_range, vec
from flint import arb, fmpq

# ---------------------------------------------------------------------------------------------------- ArgMax


def _arg_extreme(row: list, smallest: bool, last: bool) -> int:
    """The index of the first (last) maximum (minimum) of exact numbers, decided for every point of the balls:
    a scan that moves to j only where j is strictly better — each comparison must be decided, so the scan (and
    hence the index) is the same at every point of the balls."""
    order = range(len(row) - 1, -1, -1) if last else range(len(row))
    rel = "lt" if smallest else "gt"
    best = None
    for j in order:
        if best is None:
            best = j
            continue
        better = compare(row[j], row[best], rel)
        if better is None:
            raise Undecided(f"Arg{'Min' if smallest else 'Max'}: entries {best} and {j} ({row[best]}, {row[j]}) overlap")
        if better:
            best = j
    return best


@op("ArgMax", "ArgMin")
def _argmax(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x = ins[0]
    axis = int(attrs.get("axis", 0)) % x.ndim
    keep, last, smallest = bool(attrs.get("keepdims", 1)), bool(attrs.get("select_last_index", 0)), node.op_type == "ArgMin"
    moved = np.moveaxis(ctx.real(x) if is_real(x) else x.astype(object), axis, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    if rows.shape[1] == 0:
        raise Unsupported(f"{node.op_type} over an empty axis")
    out = np.array([_arg_extreme(list(r), smallest, last) for r in rows], dtype=np.int64).reshape(moved.shape[:-1])
    return [np.expand_dims(out, axis) if keep else out]


# ---------------------------------------------------------------------------------------------------- OneHot


def _int_tensor(ctx: Ctx, a: np.ndarray, what: str) -> np.ndarray:
    """An integer-valued input (indices given as floats are truncated towards zero, as a cast to int64 does)."""
    if not is_real(a):
        return a.astype(np.int64)
    flat = [decided_int(v, math.trunc, what) for v in ctx.real(a).reshape(-1)]
    return np.array(flat, dtype=np.int64).reshape(a.shape)


@op("OneHot")
def _one_hot(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    indices, depth_in, values = ins
    idx = _int_tensor(ctx, indices, "OneHot indices")
    depth = decided_int(ctx.real(np.asarray(depth_in).reshape(-1)[:1])[0], math.trunc, "OneHot depth")
    axis = int(attrs.get("axis", -1)) % (idx.ndim + 1)
    idx = np.where(idx < 0, idx + depth, idx)  # negative indices count from the end; out of range: all off
    classes = np.arange(depth).reshape((depth,) + (1,) * (idx.ndim - axis))
    hot = np.expand_dims(idx, axis) == classes
    values = np.asarray(values).reshape(-1)
    if is_real(values):
        off, on = ctx.real(values)
        out = np.empty(hot.shape, dtype=object)
        out[...] = off
        out[hot] = on
        return [out]
    return [np.where(hot, values[1], values[0]).astype(values.dtype)]


# ------------------------------------------------------------------------------------------------- Round, Mod


def _round_half_even(q: Fraction) -> int:
    return round(q)  # Fraction.__round__ rounds half to even, as ONNX Round does


@op("Round")
def _round(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x = ins[0]
    return [vec(lambda v: step(v, _round_half_even), ctx.real(x)) if is_real(x) else x]


def _remainder(x: Any, c: Any, quotient: Any) -> Any:
    """x − c·q for q = quotient(x / c) (trunc: fmod, floor: Python's %), exactly: the union over the integers q may
    be on the balls (each x − c·q encloses the remainders of the points whose quotient is q)."""
    if c == 0:
        raise Unsupported("Mod by zero (undefined)")
    lo, hi = step_range(x / c, quotient)
    if hi - lo > 64:
        raise Undecided(f"Mod: the quotient of {x} / {c} spans {lo}..{hi}")
    out = None
    for q in range(lo, hi + 1):
        r = x - c * q
        out = r if out is None else out.union(r)
    return out


@op("Mod")
def _mod(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    a, b = ins
    fmod = bool(attrs.get("fmod", 0))
    if not (is_real(a) or is_real(b)):
        if np.any(b == 0):
            raise Unsupported("integer Mod by zero (undefined)")
        return [(np.fmod if fmod else np.mod)(a, b)]
    quotient = math.trunc if fmod else math.floor  # fmod: the sign of the dividend; else of the divisor
    return [vec(lambda x, c: _remainder(x, c, quotient), ctx.real(a), ctx.real(b))]


# --------------------------------------------------------------------------------------------------- NonZero


@op("NonZero")
def _nonzero(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x = ins[0]
    if is_real(x):
        def nonzero(v: Any) -> bool:
            eq = compare(v, 0, "eq") if isinstance(v, (arb, fmpq)) else v == 0
            if eq is None:
                raise Undecided(f"NonZero: the ball {v} contains 0")
            return not eq

        x = np.array([nonzero(v) for v in ctx.real(x).reshape(-1)], dtype=bool).reshape(x.shape)
    x = x if x.ndim else x.reshape(1)
    return [np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)]

