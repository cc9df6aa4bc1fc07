"""Bounds stay where they were pinned (`pinned_bounds.py`): restructuring never moves a bound.

CPUs sum in different orders (AVX2 or AVX-512 kernels, thread counts), so the comparison allows what reordering
can change: every float64 value here is within its rounding allowance — about 1e-13 relative (γ_n·Σ|terms| per dot
product, a few dozen layers deep) — of the exact one, so two summation orders differ by at most twice that. The
tolerance, 1e-10 relative (to max(1, |bound|)), leaves a thousand-fold headroom over that and stays far below what
a real change moves: a constant rounded to float32 shifts a bound by ~1e-8 relative, a changed rule far more.
Bit-identity is an opt-in check on the machine that pinned them: SRP_AUDIT_PIN_BITS=1.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from pinned_bounds import PIN_FILE, compute

RTOL = 1e-10


@pytest.fixture(scope="module")
def current() -> dict[str, np.ndarray]:
    return compute()


def _moved(pinned: np.ndarray, now: np.ndarray) -> float:
    """The largest change, relative to max(1, |pinned|)."""
    return float(np.max(np.abs(pinned - now) / np.maximum(1.0, np.abs(pinned))))


def test_every_pinned_bound_is_where_it_was(current: dict[str, np.ndarray]) -> None:
    pinned = np.load(PIN_FILE)
    assert set(pinned.files) == set(current), "the pinned cases changed; regenerate only on purpose"
    moved = {k: _moved(pinned[k], current[k]) for k in pinned.files if not np.allclose(pinned[k], current[k], rtol=0, atol=0)}
    beyond = {k: v for k, v in moved.items() if v > RTOL}
    assert not beyond, f"bounds moved beyond {RTOL:g} relative (largest change per case): {beyond}"


@pytest.mark.skipif(os.environ.get("SRP_AUDIT_PIN_BITS") != "1", reason="bit-identity only on the machine that pinned (SRP_AUDIT_PIN_BITS=1)")
def test_every_pinned_bound_is_bit_identical(current: dict[str, np.ndarray]) -> None:
    pinned = np.load(PIN_FILE)
    moved = {k: _moved(pinned[k], current[k]) for k in pinned.files if not np.array_equal(pinned[k], current[k])}
    assert not moved, f"bounds moved (largest relative change per case): {moved}"


def test_the_tolerance_catches_a_float32_constant() -> None:
    """A bound 6e-8 relative off (one float32 rounding of a derived constant) must fail the comparison."""
    pinned = np.array([12.5, -3.25, 0.001])
    assert _moved(pinned, pinned * (1 + 6e-8)) > RTOL
    assert _moved(pinned, pinned + 1e-13) <= RTOL
