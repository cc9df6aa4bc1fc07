"""The ReLU relaxation on [l, u] and its exact check.

For an unstable neuron (l < 0 < u) the checker picks the upper line itself: slope k = fl(u / (u − l)) and
intercept c = max(up(−k·l), up(u·up(1 − k))), rounded up so that the line should lie above the ReLU. It then
checks, exactly in rationals, that k·l + c ≥ 0 = relu(l) and k·u + c ≥ u = relu(u); ReLU being convex, the line
is then above it on all of [l, u]. Lower lines λ·z with λ ∈ [0, 1] are below the ReLU everywhere (the slopes'
range is checked by the caller, exactly: a float comparison). CROWN's rule: λ = 1 where u ≥ −l, else 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import Rejected
from .fp import up


@dataclass
class Relaxation:
    """One ReLU on a leaf: the bounds [l, u] of its input, which neurons are active / unstable, the chord
    (k, c) of every unstable neuron (0 elsewhere) and CROWN's lower slopes."""

    l: np.ndarray
    u: np.ndarray
    active: np.ndarray
    unstable: np.ndarray
    k: np.ndarray
    c: np.ndarray
    crown: np.ndarray


def first_invalid_chord(k: np.ndarray, c: np.ndarray, l: np.ndarray, u: np.ndarray) -> int | None:
    """The first index where the line k·z + c is not on or above the ReLU at l or at u, else None. Exact: each
    float is the ratio of two integers (`float.as_integer_ratio`, positive denominators), and the two
    inequalities k·l + c ≥ 0 and k·u + c − u ≥ 0 are compared after multiplying out the denominators."""
    for j, (K, C, L, V) in enumerate(zip(k.tolist(), c.tolist(), l.tolist(), u.tolist())):
        (kn, kd), (cn, cd), (ln, ld), (vn, vd) = (t.as_integer_ratio() for t in (K, C, L, V))
        if kn * ln * cd + cn * kd * ld < 0 or kn * vn * cd + cn * kd * vd - vn * kd * cd < 0:
            return j
    return None


def relax(l: np.ndarray, u: np.ndarray, where: str) -> Relaxation:
    """The relaxation of a ReLU whose input lies in [l, u] (finite, l ≤ u); `where` names it in a rejection."""
    unstable = (l < 0) & (u > 0)
    k, c = np.zeros_like(l), np.zeros_like(l)
    lu, uu = l[unstable], u[unstable]
    ku = uu / (uu - lu)
    cu = np.maximum(up(-ku * lu), up(uu * up(1.0 - ku)))
    bad = first_invalid_chord(ku, cu, lu, uu)
    if bad is not None:
        j = int(np.flatnonzero(unstable)[bad])
        k_, c_, l_, u_ = (float(v[bad]) for v in (ku, cu, lu, uu))
        raise Rejected(f"{where}, neuron {j}: the chord {k_!r}·z + {c_!r} is not above the ReLU on [{l_!r}, {u_!r}]")
    k[unstable], c[unstable] = ku, cu
    return Relaxation(l, u, l >= 0, unstable, k, c, (u >= -l).astype(np.float64))
