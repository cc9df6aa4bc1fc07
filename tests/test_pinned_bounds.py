"""Bounds are bit-identical to the pinned ones (`pinned_bounds.py`): restructuring never moves a bound."""

from __future__ import annotations

import numpy as np
import pytest
from pinned_bounds import PIN_FILE, compute


@pytest.fixture(scope="module")
def current() -> dict[str, np.ndarray]:
    return compute()


def test_every_pinned_bound_is_bit_identical(current: dict[str, np.ndarray]) -> None:
    pinned = np.load(PIN_FILE)
    assert set(pinned.files) == set(current), "the pinned cases changed; regenerate only on purpose"
    moved = [k for k in pinned.files if not np.array_equal(pinned[k], current[k])]
    worst = {k: float(np.max(np.abs(pinned[k] - current[k]))) for k in moved}
    assert not moved, f"bounds moved (max abs difference per case): {worst}"
