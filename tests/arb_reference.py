"""Rigorous reference values for the soundness tests at extreme scales: the exact value of a function at float64
points, enclosed by python-flint's ball arithmetic (arb) and rounded outward to float64.

A float64 evaluation of exp, sigmoid or a dot product is itself rounded, and at the edges (underflow to subnormals,
overflow past 1.8e308, arguments near 1e15) its error is anything but a few ulps, so it cannot say whether a bound
that is off by a hair is unsound. Here each exact value v is known two ways:
- a closed enclosure lo ≤ v ≤ hi: an arb ball rounded outward to float64 (a value past the float64 range becomes
  [max, ∞]; a ball arb cannot compute — exp(1e100) — gives [−∞, ∞]);
- an open bracket sa < v < sb from what is known of the function (tanh(x) ∈ (−1, 1), 0 < silu(x) < x for x > 0,
  exp(x) > max for x ≥ 709.79), which decides bounds that sit exactly on an asymptote the ball cannot separate
  from v (tanh(−1e5) = −1 + 1e-86859).
A lower bound b is valid for certain when b ≤ lo or b ≤ sa, invalid when b > hi or b ≥ sb; in between (the exact
value and the bound within an ulp of each other) the ball is recomputed at 4000 bits and compared with b exactly,
and a bound that is still undecided counts as a failure. Functions undefined at a point (log 0, √−1) give NaN
enclosures; the tests then demand infinite bounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from flint import arb, ctx

PREC = 160  # bits of the first evaluation; a ball is then ~1e-48 wide relative to its value
PREC_FINE = 4000  # bits of the second look at a value within an ulp of a bound

Ball = arb | None  # None: the function is undefined there
End = arb | float  # an end of an open bracket: an exact arb number or a float (±∞ allowed)
ScalarFn = Callable[[arb], Ball]
Bracket = Callable[[arb], tuple[End, End]]


def with_prec(bits: int, fn: Callable[[], object]) -> object:
    """fn() evaluated with `bits` of working precision (restored afterwards)."""
    old = ctx.prec
    ctx.prec = bits
    try:
        return fn()
    finally:
        ctx.prec = old


def down(x: arb) -> float:
    """The largest float64 ≤ the exact point x (a value below −max gives −∞, above max gives max)."""
    d = float(x)
    if d == math.inf or (math.isfinite(d) and arb(d) > x):
        d = math.nextafter(d, -math.inf)
    return d


def up(x: arb) -> float:
    """The smallest float64 ≥ the exact point x."""
    d = float(x)
    if d == -math.inf or (math.isfinite(d) and arb(d) < x):
        d = math.nextafter(d, math.inf)
    return d


def enclose(ball: Ball) -> tuple[float, float]:
    """(lo, hi) float64 with lo ≤ every point of the ball ≤ hi; (NaN, NaN) where undefined (None); (−∞, ∞) for a
    ball arb could not compute (infinite or NaN)."""
    if ball is None:
        return math.nan, math.nan
    if not ball.is_finite():
        return -math.inf, math.inf
    return down(ball.lower()), up(ball.upper())


def open_ends(ends: tuple[End, End] | None) -> tuple[float, float]:
    """An exact open bracket (a, b) as floats (sa, sb) with sa ≤ a and b ≤ sb, so still sa < v < sb."""
    if ends is None:
        return -math.inf, math.inf
    a, b = ends
    sa = a if isinstance(a, float) else down(a.lower())
    sb = b if isinstance(b, float) else up(b.upper())
    return sa, sb


# ------------------------------------------------------------------------------------------ reference values


@dataclass
class Enclosure:
    """Closed enclosures [lo, hi] and open brackets (sa, sb) of exact values, and how to recompute any one of them
    as a ball at another precision (`ball(flat index, bits)`) for the close calls."""

    lo: np.ndarray
    hi: np.ndarray
    sa: np.ndarray
    sb: np.ndarray
    ball: Callable[[int, int], Ball] = field(repr=False)

    def take(self, index: np.ndarray, shape: tuple[int, ...], ball: Callable[[int, int], Ball]) -> "Enclosure":
        """Entries gathered by a flat `index` into `shape` (the ball callback mapped by the caller)."""
        return Enclosure(*(a.reshape(-1)[index].reshape(shape) for a in (self.lo, self.hi, self.sa, self.sb)), ball)


def elementwise(fn: ScalarFn | None, values: np.ndarray, bracket: Bracket | None = None, params: np.ndarray | None = None,
                fn_param: Callable[[arb, float], Ball] | None = None) -> Enclosure:
    """fn at every entry of `values` (float64, any shape), each distinct value evaluated once, with its open
    bracket; with `params` (same shape), fn_param(x, param) instead (a per-channel slope)."""
    flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    keys = np.zeros_like(flat) if params is None else np.broadcast_to(params, values.shape).astype(np.float64).reshape(-1)
    pairs = np.stack([keys, flat], axis=1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    call = (lambda x, k: fn(x)) if fn_param is None else fn_param
    out = np.empty((4, len(uniq)))
    for i, (k, v) in enumerate(uniq):
        x = arb(float(v))
        out[0, i], out[1, i] = enclose(with_prec(PREC, lambda x=x, k=k: call(x, float(k))))
        out[2, i], out[3, i] = open_ends(with_prec(PREC, lambda x=x: bracket(x)) if bracket is not None else None)

    def ball(i: int, bits: int) -> Ball:
        k, v = pairs[i]
        return with_prec(bits, lambda: call(arb(float(v)), float(k)))

    shape = values.shape
    return Enclosure(*(a[inverse].reshape(shape) for a in out), ball)


def pointwise(fn: Callable[[list[arb]], list[Ball]], points: np.ndarray, n_out: int,
              bracket: tuple[float, float] | None = None) -> Enclosure:
    """fn of each point's flat entries (points (P, n_in)), giving n_out outputs per point: (P, n_out); `bracket`: an
    open range every output lies in."""
    flat = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, points.shape[-1])
    lo, hi = np.empty((len(flat), n_out)), np.empty((len(flat), n_out))
    for p, row in enumerate(flat):
        outs = with_prec(PREC, lambda row=row: fn([arb(float(v)) for v in row]))
        for j, b in enumerate(outs):
            lo[p, j], hi[p, j] = enclose(b)
    sa, sb = bracket if bracket is not None else (-math.inf, math.inf)

    def ball(i: int, bits: int) -> Ball:
        p, j = divmod(i, n_out)
        return with_prec(bits, lambda: fn([arb(float(v)) for v in flat[p]])[j])

    return Enclosure(lo, hi, np.full_like(lo, sa), np.full_like(lo, sb), ball)


def exact(values: np.ndarray) -> Enclosure:
    """Values a float64 evaluation gives exactly (moves, picks, max, padding constants): their own interval."""
    v = np.ascontiguousarray(values, dtype=np.float64)
    flat = v.reshape(-1)
    return Enclosure(v, v, np.full_like(v, -math.inf), np.full_like(v, math.inf), lambda i, bits: arb(float(flat[i])))


Coef = Fraction | Callable[[], arb]  # an exact rational, or a real number computed as a ball at the current precision


def coef_ball(c: Coef) -> arb:
    """The coefficient as an arb ball (exact for a rational with a power-of-two denominator)."""
    return arb(c.numerator) / c.denominator if isinstance(c, Fraction) else c()


def coef_float(c: Coef) -> float:
    """The coefficient's nearest float (for signs and magnitudes)."""
    return float(c) if isinstance(c, Fraction) else float(c().mid())


@dataclass
class AffineMap:
    """y = J x + b with exact coefficients: rationals (the stored float32 weights, 1/k of an average) or real numbers
    derived from stored ones (batch norm's γ/√(var + ε)), given as balls."""

    rows: list[list[tuple[int, Coef]]]  # per output, its non-zero (input index, coefficient)
    bias: list[Coef]

    def extremes(self, lo: np.ndarray, hi: np.ndarray) -> tuple[Enclosure, Enclosure]:
        """Enclosures (N, n_out) of the exact minimum and maximum of y over each box [lo, hi] (N, n_in): a linear map
        takes them at corners, coefficient by coefficient. Infinite box ends give infinite extremes."""
        n, k = lo.shape[0], len(self.rows)

        signs = [[coef_float(c) > 0 for _, c in row] for row in self.rows]

        def extreme(s: int, i: int, low: bool) -> arb | float:
            total = coef_ball(self.bias[i])
            for (j, c), positive in zip(self.rows[i], signs[i]):
                end = (lo if positive == low else hi)[s, j]
                if math.isinf(end):
                    return float(end if positive else -end)
                total += coef_ball(c) * arb(float(end))
            return total

        out = []
        for low in (True, False):
            e = np.empty((2, n, k))
            for s in range(n):
                for i in range(k):
                    v = with_prec(PREC, lambda s=s, i=i, low=low: extreme(s, i, low))
                    e[0, s, i], e[1, s, i] = (v, v) if isinstance(v, float) else enclose(v)

            def ball(q: int, bits: int, low: bool = low) -> Ball:
                s, i = divmod(q, k)
                v = with_prec(bits, lambda: extreme(s, i, low))
                return None if isinstance(v, float) else v

            out.append(Enclosure(e[0], e[1], np.full((n, k), -math.inf), np.full((n, k), math.inf), ball))
        return out[0], out[1]


# ------------------------------------------------------------------------------------------ checking bounds


def violations(ref: Enclosure, lower: np.ndarray, upper: np.ndarray, sampled: bool = True,
               limit: int = 5) -> list[tuple[tuple[int, ...], str]]:
    """Where exact values leave [lower, upper] for certain, a bound is NaN, or a value is undefined (NaN
    enclosure) while the bounds are not both infinite: (index, message) pairs, up to a few per kind. `ref`
    (N, n, K) of sampled points against bounds (N, K) when `sampled`, else (N, K) against (N, K). Close calls are
    decided at PREC_FINE bits; one still undecided there counts as a violation."""
    lo_b = lower[:, None, :] if sampled else lower
    hi_b = upper[:, None, :] if sampled else upper
    lo_b, hi_b = np.broadcast_to(lo_b, ref.lo.shape), np.broadcast_to(hi_b, ref.lo.shape)
    undefined = np.isnan(ref.lo)
    bad = np.isnan(lo_b) | np.isnan(hi_b)
    bad |= undefined & ~((lo_b == -np.inf) & (hi_b == np.inf))
    ok_lo = (lo_b <= ref.lo) | (lo_b <= ref.sa)
    ok_hi = (hi_b >= ref.hi) | (hi_b >= ref.sb)
    below = ~undefined & ~ok_lo & ((lo_b > ref.hi) | (lo_b >= ref.sb))
    above = ~undefined & ~ok_hi & ((hi_b < ref.lo) | (hi_b <= ref.sa))
    close_lo = ~undefined & ~ok_lo & ~below & ~bad
    close_hi = ~undefined & ~ok_hi & ~above & ~bad
    out: list[tuple[tuple[int, ...], str]] = []

    def where(i: int) -> tuple[int, ...]:
        return tuple(int(v) for v in np.unravel_index(i, ref.lo.shape))

    def known(i: int) -> str:
        return (f"exact value in [{float(ref.lo.flat[i])!r}, {float(ref.hi.flat[i])!r}] ∩ ({float(ref.sa.flat[i])!r}, "
                f"{float(ref.sb.flat[i])!r})")

    for i in np.flatnonzero(bad)[:limit]:
        out.append((where(i), f"bounds [{float(lo_b.flat[i])!r}, {float(hi_b.flat[i])!r}], {known(i)}"))
    for i in np.flatnonzero(below | above)[:limit]:
        out.append((where(i), f"{known(i)} outside bounds [{float(lo_b.flat[i])!r}, {float(hi_b.flat[i])!r}]"))
    for mask, side in ((close_lo, "lower"), (close_hi, "upper")):
        for i in np.flatnonzero(mask):
            b = ref.ball(int(i), PREC_FINE)
            bound = float(lo_b.flat[i] if side == "lower" else hi_b.flat[i])
            verdict = None
            if b is not None and b.is_finite():
                cmp = arb(bound)
                if side == "lower":
                    verdict = True if b < cmp else (False if b >= cmp else None)
                else:
                    verdict = True if b > cmp else (False if b <= cmp else None)
            if verdict is not False and len(out) < 3 * limit:
                out.append((where(int(i)), f"{known(int(i))} {'below the lower' if side == 'lower' else 'above the upper'} bound "
                                           f"{bound!r}" + (" (undecided at 4000 bits)" if verdict is None else "")))
    return out
