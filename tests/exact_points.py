"""Input points for the exactness oracle's checks (tests/test_exactness_oracle.py): where a model is meant to be
evaluated (its VNN-LIB property's input box, [0, 1] for the MNIST fixtures, a normal range for the architecture
zoo), as float32-representable random points, the box centre and corners, zeros/ones and a data sample.

The box is read from the .vnnlib text directly (its `(assert (<= X_i c))` / `(>= X_i c)` input bounds, the first
box of a disjunction): only the input side is needed here, and a point is just a point — no proof rests on it.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

_BOUND = re.compile(r"\(\s*(<=|>=)\s+(X_(\d+)|[^\s()]+)\s+(X_(\d+)|[^\s()]+)\s*\)")


def vnnlib_box(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of the first input box of a .vnnlib or .vnnlib.gz file, n inputs (float64 nearest the decimals)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        text = f.read()
    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
    for rel, a, ia, b, ib in _BOUND.findall(text):
        if ia and not ib:  # X_i rel c
            i, c, upper = int(ia), float(b), rel == "<="
        elif ib and not ia:  # c rel X_i
            i, c, upper = int(ib), float(a), rel == ">="
        else:
            continue
        if i >= n:
            continue
        target = hi if upper else lo
        if np.isnan(target[i]):
            target[i] = c
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise ValueError(f"{path}: not every input X_0..X_{n - 1} has a lower and an upper bound")
    return lo, hi


def f32(x: np.ndarray) -> np.ndarray:
    """x rounded to float32 numbers, as float64 (exactly representable in both)."""
    return np.asarray(x).astype(np.float32).astype(np.float64)


def box_points(lo: np.ndarray, hi: np.ndarray, n_random: int, seed: int = 0) -> dict[str, np.ndarray]:
    """label → flat float64 point in [lo, hi]: random float32 points, the lower corner, the centre (float64) and
    the upper corner."""
    rng = np.random.default_rng(seed)
    pts = {}
    for i in range(n_random):  # float32 rounding may step a hair outside a box whose ends are not float32: harmless
        pts[f"random{i}"] = f32(lo + (hi - lo) * rng.random(lo.size))
    pts["lower corner"] = lo.copy()
    pts["centre"] = (lo + hi) / 2
    pts["upper corner"] = hi.copy()
    return pts
