"""`Enclosed`: every operation's enclosure holds the exact real result (checked in exact rationals, and for square
roots with mpmath at 300 bits), at ordinary and extreme magnitudes; exactness is claimed only where it holds."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from srp_audit.kernel.enclosure import Enclosed

FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.floats(min_value=-1e300, max_value=1e300, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1.0, 3.0, 0.3081, 2.0 ** -1000, 5e-324, 1e-310, 1.7e308, 2.0 ** 52 + 1]),
)


def _contains(e: Enclosed, exact: Fraction) -> bool:
    lo, hi = float(e.lower), float(e.upper)
    return Fraction(lo) <= exact <= Fraction(hi)


def _exact_claim_holds(e: Enclosed, exact: Fraction) -> bool:
    """is_exact only when mid is the exact value."""
    return not e.is_exact or Fraction(float(e.mid)) == exact


def _t(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


@settings(max_examples=300, deadline=None)
@given(FLOATS, FLOATS)
def test_sums_products_and_reciprocals_enclose_the_exact_value(a: float, b: float) -> None:
    x, y = Enclosed.exact(_t(a)), Enclosed.exact(_t(b))
    fa, fb = Fraction(a), Fraction(b)
    for got, exact in ((x + y, fa + fb), (x - y, fa - fb), (x * y, fa * fb)):
        if torch.isfinite(got.mid) and torch.isfinite(got.rad):
            assert _contains(got, exact) and _exact_claim_holds(got, exact)
    if b != 0:
        r = y.reciprocal()
        if torch.isfinite(r.mid) and torch.isfinite(r.rad):
            assert _contains(r, 1 / fb) and _exact_claim_holds(r, 1 / fb)


@settings(max_examples=200, deadline=None)
@given(FLOATS, st.floats(min_value=0, max_value=1e-3))
def test_chained_operations_keep_enclosing(a: float, spread: float) -> None:
    """Enclosures of enclosures: (x·y + z)/w with inexact inputs stays around every exact combination's value."""
    if a == 0:
        return
    x = Enclosed(_t(a), _t(abs(a) * spread))
    three = Enclosed.exact(_t(3.0)).reciprocal()
    out = (x * three + Enclosed.exact(_t(0.1))) * Enclosed.exact(_t(7.0)).reciprocal()
    for corner in (-1, 0, 1):
        xa = Fraction(a) + corner * Fraction(float(x.rad))
        exact = (xa / 3 + Fraction(0.1)) / 7
        assert _contains(out, exact)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=1e300, allow_nan=False), st.floats(min_value=0, max_value=0.5))
def test_square_roots_enclose_the_exact_value(a: float, spread: float) -> None:
    mpmath.mp.prec = 300
    e = Enclosed(_t(a), _t(a * spread))
    r = e.sqrt()
    for v in (a - float(e.rad), a, a + float(e.rad)):
        if v < 0:
            continue
        exact = mpmath.sqrt(mpmath.mpf(v))
        assert mpmath.mpf(float(r.lower)) <= exact <= mpmath.mpf(float(r.upper))


def test_exact_cases_stay_exact() -> None:
    """Stored floats, products of float32 numbers, powers of two and perfect squares need no enclosure."""
    a, b = Enclosed.exact(torch.tensor(0.3081, dtype=torch.float32)), Enclosed.exact(torch.tensor(3.0, dtype=torch.float32))
    assert (a * b).is_exact and Enclosed.exact(_t(0.5)).reciprocal().is_exact and Enclosed.exact(_t(4.0)).sqrt().is_exact
    assert not b.reciprocal().is_exact and not Enclosed.exact(_t(2.0)).sqrt().is_exact
    assert not (Enclosed.exact(_t(1.0)) + Enclosed.exact(_t(2.0 ** -60))).is_exact


def test_python_floats_are_taken_in_float64() -> None:
    """A Python float is a float64: its enclosure must not pass through torch's float32 default."""
    assert float(Enclosed.exact(0.1).mid) == 0.1 and Enclosed.exact(0.1).is_exact


def test_float32_view_covers_its_own_rounding() -> None:
    third = Enclosed.exact(_t(3.0)).reciprocal()
    v, rad = third.in_dtype(torch.float32)
    assert v.dtype == torch.float32 and abs(Fraction(float(v)) - Fraction(1, 3)) <= Fraction(float(rad))


def test_reciprocal_and_sqrt_refuse_what_may_be_zero_or_negative() -> None:
    import pytest

    with pytest.raises(ValueError, match="may be 0"):
        Enclosed(_t(1e-20), _t(1e-19)).reciprocal()
    with pytest.raises(ValueError, match="may be negative"):
        Enclosed(_t(1e-20), _t(1e-19)).sqrt()
