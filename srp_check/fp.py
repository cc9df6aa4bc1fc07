"""Rigorous float64 arithmetic: the few primitives every bound in `srp_check` is built from.

NumPy computes in IEEE float64 with round-to-nearest. The checker never assumes a computed number is exact; it
uses these facts of the standard model (u = 2^-53, η = 2^-1074 the smallest subnormal):

* one operation (+, −, ×, /, √) returns the float nearest to the exact result, so the exact result lies between
  the computed float's two neighbours: `down(fl(a∘b)) ≤ a∘b ≤ up(fl(a∘b))`;
* a sum of n products, in any order, blocked or fused: |fl(Σ aᵢbᵢ) − Σ aᵢbᵢ| ≤ γ_n·Σ|aᵢbᵢ| + n·η, with
  γ_n = n·u/(1 − n·u) (the n·η term covers products that underflow);
* a computed sum of n non-negative products falls short of the exact one by at most the same amount.

`gamma(n)` returns 1.01·(n + 4)·u ≥ γ_n: the extra 4u and 1 % cover the rounding of the bound's own arithmetic
and the factors (1 + γ_k) by which a computed magnitude fed into a bound may fall short of the exact one
(n·u < 1e-4 is asserted, so those factors are below 1.0002). Sums of error bounds are rounded up with `up`.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

U = 2.0**-53
ETA = 2.0**-1074


def gamma(n: int) -> float:
    """A float at least γ_n (see the module docstring), for dot products of length n."""
    if not n * U < 1e-4:
        raise ValueError(f"a dot product of {n} terms is too long for the rounding-error model")
    return 1.01 * (n + 4) * U


def up(x: np.ndarray | float) -> np.ndarray:
    """The next float above x: an upper bound of the exact result of the one operation that gave x."""
    return np.nextafter(x, np.inf)


def down(x: np.ndarray | float) -> np.ndarray:
    """The next float below x: a lower bound of the exact result of the one operation that gave x."""
    return np.nextafter(x, -np.inf)


def ub(x: np.ndarray | float, k: int) -> np.ndarray:
    """An upper bound of a non-negative quantity that float64 computed as x, a sum of k products of exact
    non-negative floats: exact ≤ x·(1 + γ_k) + k·η ≤ the value returned."""
    return up(up(np.asarray(x, dtype=np.float64) * (1.0 + gamma(k))) + 2 * k * ETA)


def add_up(*terms: np.ndarray | float) -> np.ndarray:
    """An upper bound of the exact sum of the given floats (each addition rounded up)."""
    total = np.asarray(terms[0], dtype=np.float64)
    for t in terms[1:]:
        total = up(total + t)
    return total


def abs_rows_dot(absA: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per row of absA (≥ 0): an upper bound of Σ_j absA[r, j]·w[j] (or w[r, j]), w ≥ 0 exact floats."""
    s = absA @ w if w.ndim == 1 else np.einsum("rj,rj->r", absA, w)
    return ub(s, absA.shape[1])


def product_charge(absA: np.ndarray, w_mag: np.ndarray, n: int, mag_sum: np.ndarray | float) -> np.ndarray:
    """Per row: a bound of the error of a computed coefficient product fl(A·W) (dot products of n terms) times
    an input z with |z| ≤ mag: γ_n·⟨|A|, |W|·mag⟩ + n·η·Σ mag, where `w_mag` ≥ |W|·mag and `mag_sum` ≥ Σ mag."""
    return add_up(up(gamma(n) * abs_rows_dot(absA, w_mag)), up(up(n * ETA) * mag_sum))


def accumulate(val: np.ndarray, err: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """val + c in float64, with the addition's rounding (≤ u·|exact| ≤ 2u·|computed|) charged to err."""
    new = val + c
    return new, add_up(err, np.abs(new) * (2 * U))


def exact(x: float) -> Fraction:
    """The exact rational value of a float64."""
    return Fraction(float(x))
