"""Max pooling (ONNX MaxPool, 2-D, ceil_mode 0): the checker's one nonlinear node besides the ReLU.

`idx` (n_out, K) lists each window's flattened input cells (−1: padding, which counts as −∞; every window
holds an input cell). With the input in [l, u] elementwise:

* Interval pass: y ∈ [max over the window of l, max of u]: max is monotone and a float max is exact.
* Relaxation of window w (`lines`, srp-audit's own, `MaxPool2d.crown_backward`): j = its input with the largest
  l (ties: the largest u, then the first). Lower line y ≥ x_j: y is the window's max, so this holds for any j.
  Upper line: y ≤ x_j where j *dominates* (l_j ≥ u_i for every other input i — then y = x_j, exact), else the
  constant y ≤ max_i u_i. The choices and dominance are comparisons of floats, so exact. Any valid bounds may
  be used for them: the caller (`bounds.interval_maxpool`) uses the ones srp-audit chose on — relu of a ReLU's
  bounds as used on the leaf (its claims), which the checker's own interval may beat by srp-audit's 1e-7 loosening
  and so break a tie differently — and the interval's max u (the tightest valid constant it has).
* Backward pass (`back`): a coefficient a ≥ 0 on y moves to x_j, as does a < 0 where j dominates — moving is
  exact; a < 0 elsewhere adds a·max u to the constant, a dot product charged γ_n like the ReLU's chords. Where
  windows overlap and pick one input cell several times (m at most), their coefficients are summed there: that
  is charged γ_m·⟨|a|, |x_j|⟩; where no cell is picked twice the pass is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import Rejected
from .fp import abs_rows_dot, add_up, gamma, product_charge, up


@dataclass
class PoolLines:
    """One MaxPool's relaxation on a leaf: the chosen input j, whether it dominates, and max u, per window;
    `picks`: how often the most-picked input cell is picked."""

    j: np.ndarray
    dom: np.ndarray
    umax: np.ndarray
    picks: int


def windows(in_shape: tuple[int, int, int], kernel: tuple[int, int], strides: tuple[int, int],
            pads: tuple[int, int, int, int], dilations: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(C·H_out·W_out, kh·kw): the flattened input cell of every window, −1 in the padding; and (C, H_out, W_out)."""
    c, h, w = in_shape
    t, le, b, r = pads
    grid = np.pad(np.arange(c * h * w).reshape(c, h, w), ((0, 0), (t, b), (le, r)), constant_values=-1)
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilations))
    if grid.shape[1] < span[0] or grid.shape[2] < span[1]:
        raise ValueError("the pooling's output is empty")
    win = sliding_window_view(grid, span, axis=(1, 2))[:, ::strides[0], ::strides[1], ::dilations[0], ::dilations[1]]
    return np.ascontiguousarray(win.reshape(-1, kernel[0] * kernel[1])), win.shape[:3]


class MaxPool:
    """y_w = max of the window's inputs; `out_shape` (C, H_out, W_out)."""

    def __init__(self, in_shape: tuple[int, int, int], kernel: tuple[int, int], strides: tuple[int, int],
                 pads: tuple[int, int, int, int], dilations: tuple[int, int]):
        self.idx, self.out_shape = windows(in_shape, kernel, strides, pads, dilations)
        self.pad = self.idx < 0
        if np.any(np.all(self.pad, axis=1)):
            raise ValueError("a max-pooling window lies in the padding only")
        self.n_in, self.n_out = int(np.prod(in_shape)), self.idx.shape[0]

    def _gather(self, v: np.ndarray) -> np.ndarray:
        """Rows v (m, n_in) ↦ (m, n_out, K) window values, −∞ in the padding."""
        return np.where(self.pad, -np.inf, v[..., self.idx])

    def forward(self, X: np.ndarray) -> np.ndarray:
        return self._gather(X).max(axis=-1)

    def lines(self, l: np.ndarray, u: np.ndarray, umax: np.ndarray, where: str) -> PoolLines:
        """The relaxation chosen on bounds [l, u] of the input (and `umax` ≥ every window's max)."""
        if not (np.all(np.isfinite(l)) and np.all(np.isfinite(u)) and np.all(np.isfinite(umax))):
            raise Rejected(f"{where}: the bounds of its input overflow")
        L, V = self._gather(l), self._gather(u)
        rows = np.arange(self.n_out)
        jj = np.where(L == L.max(axis=1, keepdims=True), V, -np.inf).argmax(axis=1)
        others = V.copy()
        others[rows, jj] = -np.inf
        j = self.idx[rows, jj]
        return PoolLines(j, L[rows, jj] >= others.max(axis=1), umax, int(np.bincount(j).max()))

    def back(self, A: np.ndarray, ln: PoolLines, mag: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows A over y ↦ (A_in over x, const, charge): A·y ≥ A_in·x + const − charge (exactly) on the box."""
        moved = np.where(ln.dom | (A >= 0), A, 0.0)
        rest = A - moved  # exact: a or 0
        charge = product_charge(np.abs(rest), np.abs(ln.umax), self.n_out, 1.0)
        A_in = np.zeros((A.shape[0], self.n_in))
        if ln.picks == 1:
            A_in[:, ln.j] = moved
        else:
            np.add.at(A_in, (slice(None), ln.j), moved)  # type: ignore[arg-type]  # numpy's stub takes integer indices only; a tuple indexes too
            charge = add_up(charge, up(gamma(ln.picks) * abs_rows_dot(np.abs(moved), mag[ln.j])))
        return A_in, rest @ ln.umax, charge
