"""Numbers and the op table of the exact ONNX interpreter (tests/exact_onnx.py); imports nothing from srp_audit.

Values are numpy arrays. Reals (every floating-point tensor of the model) are object arrays of python-flint `arb`
balls (or of python-flint `fmpq` rationals in the exact mode used to construct ReLU ties); a stored float constant
stays a float array until arithmetic needs it, then becomes numbers exactly (every float is a dyadic rational).
Integer and boolean tensors (shape arithmetic) stay numpy integer / bool arrays and are computed exactly. A
comparison of reals is three-valued: an object array of True, False or None (undecided: the balls overlap).

Why rigorous balls: the oracle must prove that srp-audit's bounds miss the exact value, so its own result must be
an enclosure of the exact real value of the stored network, never an approximation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from flint import arb, fmpq

Op = Callable[["Ctx", Any, list, dict], list]
OPS: dict[str, Op] = {}


def op(*names: str) -> Callable[[Op], Op]:
    """Register an ONNX op implementation: fn(ctx, node, inputs, attrs) -> list of outputs."""

    def deco(fn: Op) -> Op:
        for n in names:
            OPS[n] = fn
        return fn

    return deco


class Unsupported(NotImplementedError):
    """The interpreter has no exact semantics for this op or attribute combination."""


class Undecided(ArithmeticError):
    """A discrete result (an index, an integer, a tensor's shape) depends on where in a ball the exact value lies:
    the balls are too wide to decide it (ExactOnnx.run re-evaluates at more bits) or the value sits exactly on a
    breakpoint that ball arithmetic cannot prove it is on (two equal irrational values in an ArgMax)."""


@dataclass
class Ctx:
    """Evaluation context: the number system (`exact`: fmpq rationals instead of arb balls) and the opset."""

    opset: int
    exact: bool = False
    cache: dict = field(default_factory=dict)  # id(constant array) -> its numbers (constants are converted once)

    def num(self, v: Any) -> Any:
        """One Python/numpy scalar (int, float, bool) as an exact number of this context."""
        if isinstance(v, (bool, np.bool_)):
            v = int(v)
        if isinstance(v, (np.integer, int)):
            return fmpq(int(v)) if self.exact else arb(int(v))
        if isinstance(v, Fraction):
            return fmpq(v.numerator, v.denominator) if self.exact else arb_of_fraction(v)
        if isinstance(v, fmpq):
            return v if self.exact else arb_of_fraction(exact_value(v))
        if isinstance(v, arb):
            if self.exact:
                raise Unsupported("an arb ball in exact-rational mode")
            return v
        f = float(v)  # float16/32/64 → float64 is exact
        if not math.isfinite(f):
            if self.exact:
                raise Unsupported("a non-finite constant in exact-rational mode")
            return arb.nan() if f != f else (arb.pos_inf() if f > 0 else arb.neg_inf())
        return fmpq(*f.as_integer_ratio()) if self.exact else arb(f)

    def real(self, a: Any) -> np.ndarray:
        """`a` as an object array of numbers (exactly; three-valued booleans: None becomes the interval [0, 1])."""
        a = np.asarray(a) if not isinstance(a, np.ndarray) else a
        if a.dtype == object:
            if a.size and not all(_is_number(v) for v in a.flat):
                return _vectorise(self._bool_num)(a)
            return a
        key = id(a)
        hit = self.cache.get(key)
        if hit is not None and hit[0] is a:
            return hit[1]
        out = _vectorise(self.num)(a) if a.size else np.empty(a.shape, dtype=object)
        out = np.asarray(out, dtype=object).reshape(a.shape)
        if a.size > 64:
            self.cache[key] = (a, out)
        return out

    def _bool_num(self, v: Any) -> Any:
        if v is None:
            return interval(self.num(0), self.num(1))
        return self.num(v) if not _is_number(v) else v

    def zero(self) -> Any:
        return self.num(0)


def _is_number(v: Any) -> bool:
    return isinstance(v, (arb, fmpq))


def _vectorise(f: Callable[..., Any], nin: int = 1) -> Any:
    return np.frompyfunc(f, nin, 1)


def vec(f: Callable[..., Any], *arrays: np.ndarray) -> np.ndarray:
    """f elementwise (with numpy broadcasting) on object arrays; always returns an object ndarray."""
    out = np.frompyfunc(f, len(arrays), 1)(*arrays)
    return np.asarray(out, dtype=object) if isinstance(out, np.ndarray) else _scalar_array(out)


def _scalar_array(v: Any) -> np.ndarray:
    a = np.empty((), dtype=object)
    a[()] = v
    return a


def arb_of_fraction(q: Fraction) -> arb:
    """The rational q as an arb ball (exact when q is dyadic and fits the precision)."""
    return arb(q.numerator) / arb(q.denominator)


def interval(lo: Any, hi: Any) -> Any:
    """A number enclosing [lo, hi] (lo ≤ hi exact points, or rationals when they coincide)."""
    if isinstance(lo, fmpq) and isinstance(hi, fmpq):
        if lo != hi:
            raise Unsupported("an interval in exact-rational mode")
        return lo
    return arb(lo).union(arb(hi))


def piecewise(x: Any, at: int | float, below: Callable[[Any], Any], above: Callable[[Any], Any]) -> Any:
    """f(x) for f = below on (−∞, at], above on [at, ∞); a ball straddling `at` gets the union of both pieces on
    their parts of the ball (rigorous for continuous and for jump pieces alike)."""
    if x <= at:
        return below(x)
    if x >= at:
        return above(x)
    if isinstance(x, fmpq):  # exact comparisons always decide
        raise AssertionError("unreachable")
    a = arb(at)
    return below(interval(x.lower(), a)).union(above(interval(a, x.upper())))


def step_range(x: Any, f: Callable[[Fraction], int]) -> tuple[int, int]:
    """(f(lo), f(hi)) for a monotone non-decreasing integer step function f (floor, ceil, trunc, round half to
    even) over the number x: every point of the ball maps into that range (one value where the step is decided)."""
    if isinstance(x, fmpq):
        v = f(exact_value(x))
        return v, v
    x = arb(x)
    if not x.is_finite():
        raise Undecided(f"an integer step of a non-finite ball {x}")
    return f(exact_value(x.lower())), f(exact_value(x.upper()))


def step(x: Any, f: Callable[[Fraction], int]) -> Any:
    """f(x) as a number for a monotone integer step function f: exact where decided, else the interval of the
    values f takes on the ball (a rigorous enclosure)."""
    lo, hi = step_range(x, f)
    if isinstance(x, fmpq):
        return fmpq(lo)
    return arb(lo) if lo == hi else interval(arb(lo), arb(hi))


def decided_int(x: Any, f: Callable[[Fraction], int], what: str) -> int:
    """f(x) as a Python int (for an integer tensor), or Undecided where the ball spans a step of f."""
    lo, hi = step_range(x, f)
    if lo != hi:
        raise Undecided(f"{what}: the ball {x} spans the values {lo}..{hi}")
    return lo


def max2(a: Any, b: Any) -> Any:
    """max(a, b) rigorously (None is an absent value: max-pooling padding)."""
    if a is None:
        return b
    if b is None:
        return a
    if a >= b:
        return a
    if b >= a:
        return b
    lo = a.lower() if a.lower() >= b.lower() else b.lower()
    hi = a.upper() if a.upper() >= b.upper() else b.upper()
    return interval(lo, hi)


def min2(a: Any, b: Any) -> Any:
    """min(a, b) rigorously."""
    return -max2(-a, -b)


def compare(a: Any, b: Any, rel: str) -> bool | None:
    """a rel b for numbers: True / False where decided for every point of the balls, None otherwise."""
    if rel == "eq":
        if isinstance(a, fmpq) and isinstance(b, fmpq):
            return a == b
        if a == b:  # arb: both exact and equal
            return True
        return False if not arb(a).overlaps(arb(b)) else None
    if rel == "lt":
        yes, no = a < b, a >= b
    elif rel == "le":
        yes, no = a <= b, a > b
    elif rel == "gt":
        yes, no = a > b, a <= b
    else:
        yes, no = a >= b, a < b
    return True if yes else (False if no else None)


def exact_value(x: Any) -> Fraction:
    """The exact rational value of a number that is a point (an exact ball), for shape-like uses of reals."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, fmpq):
        return Fraction(int(x.p), int(x.q))
    if isinstance(x, arb):
        if not x.is_exact():
            raise Unsupported(f"a real used as a shape or scale is not exact: {x}")
        m, e = x.mid().man_exp()
        return Fraction(int(m)) * (Fraction(2) ** int(e))
    if isinstance(x, (np.floating, float)):
        return Fraction(float(x))
    return Fraction(int(x))


def fractions_of(a: np.ndarray) -> list[Fraction]:
    """Exact rationals of a constant tensor (floats, ints, or exact numbers)."""
    return [exact_value(v) for v in np.asarray(a).reshape(-1).tolist()]


def ints_of(a: Any) -> list[int]:
    """An integer-valued tensor (shape, axes, indices) as Python ints."""
    a = np.asarray(a)
    if a.dtype == object or a.dtype.kind == "f":
        out = []
        for q in fractions_of(a):
            if q.denominator != 1:
                raise Unsupported(f"an integer argument is not an integer: {q}")
            out.append(int(q))
        return out
    return [int(v) for v in a.reshape(-1)]


def is_real(a: np.ndarray) -> bool:
    return a.dtype == object or a.dtype.kind == "f"
