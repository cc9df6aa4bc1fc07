"""The two bound computations of a leaf: the interval pass (forward) and the backward pass (linear relaxation).

Both take no number on trust and round outward (`fp`): every value they return is a rigorous bound of the
exact real-number network on the leaf's part of the input set.

* Interval pass, affine y = W·x + b: with x ∈ m ± r (m any float, r ≥ |x − m| rounded up),
  y ∈ fl(W·m + b) ± (|W|·r + γ_{n+1}·(|W|·|m| + |b|) + (n+1)·η + rad·|x|), each term rounded up; Add of two
  data tensors adds the end points, rounded outward. ReLU intervals are set by the caller (`leaf`).
* Backward pass, from rows A over a tensor: an affine operator maps A to fl(A·W) and charges
  γ_n·⟨|A|, |W|·|x|⟩ + n·η·Σ|x| (|x| ≤ the interval magnitude of its input) plus ⟨|A|, rad·|x|⟩ for a derived
  factor; fl(A·b) is added to the constant with its own γ_n charge; two paths into one tensor add their
  coefficients with a charge of 2u·⟨|sum|, |x|⟩. A ReLU neuron with bounds [l, u] passes its coefficient if
  l ≥ 0, drops it if u ≤ 0, else uses λ·z where the coefficient is ≥ 0 and the chord k·z + c (`relax`) where it
  is < 0; each product is charged u·|·| plus underflow. A split's β adds −β·s at z. At the input (or at a
  leaf's `stop` tensor, over its interval) the rows are minimised: Σ max(A, 0)·lo + min(A, 0)·hi, charged γ_{2n};
  over an L2/L1 ball ∩ box, each row takes the better of that and the ball's bound (`ball`).
  A MaxPool's interval is exact and its relaxation moves coefficients to one input per window (`pool`).
The result per row is a pair (val, err): over the leaf, h ≥ val − err exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ball import Ball, ball_bound, best
from .fp import ETA, U, abs_rows_dot, accumulate, add_up, down, gamma, product_charge, ub, up
from .linear import Linear
from .network import Network, Node
from .pool import PoolLines
from .relax import Relaxation


@dataclass
class LeafState:
    """What the forward sweep of one leaf knows: the box, an interval and its magnitude for every tensor, the
    bound |W|·mag (and rad·mag) of every affine node's input, and the relaxation of every ReLU and MaxPool seen so far."""

    box_lo: np.ndarray
    box_hi: np.ndarray
    lo: dict[str, np.ndarray] = field(default_factory=dict)
    hi: dict[str, np.ndarray] = field(default_factory=dict)
    mag: dict[str, np.ndarray] = field(default_factory=dict)
    mag_sum: dict[str, np.ndarray] = field(default_factory=dict)
    wmag: dict[int, np.ndarray] = field(default_factory=dict)
    rmag: dict[int, np.ndarray] = field(default_factory=dict)
    relax: dict[str, Relaxation] = field(default_factory=dict)
    pools: dict[str, PoolLines] = field(default_factory=dict)
    ball: Ball | None = None  # an L2/L1 input ball: the set is the ball ∩ the box

    def set_interval(self, name: str, lo: np.ndarray, hi: np.ndarray) -> None:
        self.lo[name], self.hi[name] = lo, hi
        self.mag[name] = np.maximum(np.abs(lo), np.abs(hi))
        self.mag_sum[name] = ub(self.mag[name].sum(), self.mag[name].size)


# =================================================================================================== forward


def interval_linear(st: LeafState, i: int, op: Linear, x: str) -> tuple[np.ndarray, np.ndarray]:
    """The interval of an affine node's output from its input's; also records |W|·mag and rad·mag of node i."""
    lo, hi, mag = st.lo[x], st.hi[x], st.mag[x]
    m = 0.5 * lo + 0.5 * hi
    r = np.maximum(up(hi - m), up(m - lo))
    y = op.apply(m[None])[0]
    absb = 0.0
    if op.bias is not None:
        y, absb = y + op.bias, np.abs(op.bias)
    n = op.n_fwd + 1
    spread = ub(op.apply_abs(r[None])[0], op.n_fwd)
    rounding = add_up(up(gamma(n) * ub(op.apply_abs(np.abs(m)[None])[0] + absb, n)), up(n * ETA))
    rad = add_up(spread, rounding)
    st.wmag[i] = ub(op.apply_abs(mag[None])[0], op.n_fwd)
    if op.rad is not None:
        st.rmag[i] = up(op.rad * mag)
        rad = add_up(rad, st.rmag[i])
    return down(y - rad), up(y + rad)


def interval_add(st: LeafState, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """The interval of the sum of two data tensors, rounded outward."""
    return down(st.lo[a] + st.lo[b]), up(st.hi[a] + st.hi[b])


def interval_maxpool(st: LeafState, nd: Node, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A MaxPool's interval (exact: windows' max of the ends); also records its relaxation (`pool`), chosen on the
    bounds srp-audit chose it on: relu(the ReLU's settled bounds) where it reads a ReLU, else the interval."""
    lo, hi = st.lo[nd.inputs[0]], st.hi[nd.inputs[0]]
    rx = st.relax.get(nd.inputs[0])
    on: tuple[np.ndarray, np.ndarray] = (np.maximum(rx.l, 0.0), np.maximum(rx.u, 0.0)) if rx is not None else (lo, hi)
    lo, hi = nd.pool.forward(lo[None])[0], nd.pool.forward(hi[None])[0]
    st.pools[nd.output] = nd.pool.lines(*on, hi, where)
    return lo, hi


# ================================================================================================== backward


def _merge(coeff: dict[str, np.ndarray], name: str, A: np.ndarray, st: LeafState, err: np.ndarray) -> np.ndarray:
    """Add coefficients A at tensor `name`; where some are there already, charge the addition's rounding."""
    if name not in coeff:
        coeff[name] = A
        return err
    new = coeff[name] + A
    coeff[name] = new
    return add_up(err, up((2 * U) * abs_rows_dot(np.abs(new), st.mag[name])))


def _concretise(A: np.ndarray, lo: np.ndarray, hi: np.ndarray, val: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add min over [lo, hi] of A·t = Σ max(A, 0)·lo + min(A, 0)·hi to val, its rounding (γ_{2n}) to err."""
    err = add_up(err, product_charge(np.abs(A), np.maximum(np.abs(lo), np.abs(hi)), 2 * lo.size, 1.0))
    return accumulate(val, err, np.maximum(A, 0.0) @ lo + np.minimum(A, 0.0) @ hi)


def _linear_back(nd: Node, i: int, A: np.ndarray, st: LeafState, coeff: dict[str, np.ndarray], val: np.ndarray,
                 err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows A over affine node i (`nd`) moved to its input's coefficients in `coeff`: fl(A·W) charged γ_n·⟨|A|, |W|·|x|⟩
    + n·η·Σ|x| (and ⟨|A|, rad·|x|⟩), fl(A·b) added to val with its own charge. Returns (val, err)."""
    op, x = nd.linear, nd.inputs[0]
    absA = np.abs(A)
    err = add_up(err, product_charge(absA, st.wmag[i], op.n_bwd, st.mag_sum[x]))
    if op.rad is not None:
        err = add_up(err, abs_rows_dot(absA, st.rmag[i]))
    if op.bias is not None:
        err = add_up(err, product_charge(absA, np.abs(op.bias), op.n_out, 1.0))
        val, err = accumulate(val, err, A @ op.bias)
    err = _merge(coeff, x, op.back(A), st, err)
    return val, err


def _relu_back(nd: Node, A: np.ndarray, st: LeafState, coeff: dict[str, np.ndarray], val: np.ndarray, err: np.ndarray,
               slopes: dict[str, np.ndarray], beta: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows A over a ReLU (`nd`) moved to its input's coefficients in `coeff`: passed where active, λ·z where an
    unstable neuron's coefficient is ≥ 0, the chord k·z + c where it is < 0 (each product charged), plus −β·s
    at a split. Returns (val, err)."""
    x = nd.inputs[0]
    absA = np.abs(A)
    rx = st.relax[nd.output]
    lam = slopes.get(nd.output, rx.crown)
    A_in = np.where(rx.active, A, 0.0)
    uns = rx.unstable
    if uns.any():
        Au, lam_u, k_u, c_u = A[:, uns], np.broadcast_to(lam, A.shape)[:, uns], rx.k[uns], rx.c[uns]
        pos = Au >= 0
        factor = np.where(pos, lam_u, k_u)
        A_in[:, uns] = Au * factor
        negA = np.where(pos, 0.0, Au)
        err = add_up(err, product_charge(np.abs(negA), np.abs(c_u), int(uns.sum()), 1.0))
        val, err = accumulate(val, err, negA @ c_u)
        err = add_up(err, product_charge(absA[:, uns], up(factor * st.mag[x][uns]), 1, st.mag_sum[x]))
    if nd.output in beta:
        A_in = A_in + beta[nd.output]
        err = add_up(err, up((2 * U) * abs_rows_dot(np.abs(A_in), st.mag[x])))
    err = _merge(coeff, x, A_in, st, err)
    return val, err


def backward(net: Network, st: LeafState, target: str, A: np.ndarray, val: np.ndarray,
             slopes: dict[str, np.ndarray] | None = None, beta: dict[str, np.ndarray] | None = None,
             stop: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lower-bound the rows h = A·target + val over the leaf: returns (val, err) with h ≥ val − err.

    `slopes[relu]` are the lower slopes λ ((n,) or (S, n)); a ReLU without an entry, and every ReLU when
    `slopes` is None, uses CROWN's rule (`Relaxation.crown`). `beta[relu]` is the coefficient −β·s to add at
    the ReLU's input ((n,) or (S, n), zero off the split neurons). Coefficients reaching the tensor `stop` are
    minimised over its interval there (an IBP-style proof) instead of going further back."""
    slopes, beta = slopes or {}, beta or {}
    coeff = {target: A}
    err = np.zeros(A.shape[0])
    for i in range(len(net.nodes) - 1, -1, -1):
        nd = net.nodes[i]
        if nd.output not in coeff:
            continue
        A = coeff.pop(nd.output)
        if nd.output == stop:
            val, err = _concretise(A, st.lo[stop], st.hi[stop], val, err)
            continue
        x = nd.inputs[0]
        if nd.kind == "add":
            for inp in nd.inputs:
                err = _merge(coeff, inp, A, st, err)
        elif nd.kind == "maxpool":
            A_in, const, charge = nd.pool.back(A, st.pools[nd.output], st.mag[x])
            val, err = accumulate(val, add_up(err, charge), const)
            err = _merge(coeff, x, A_in, st, err)
        elif nd.kind == "linear":
            val, err = _linear_back(nd, i, A, st, coeff, val, err)
        else:
            val, err = _relu_back(nd, A, st, coeff, val, err, slopes, beta)
    A = coeff.pop(net.input, np.zeros((A.shape[0], st.box_lo.size)))
    assert not coeff, f"coefficients left on {list(coeff)}: the graph is not connected to its input"
    box = _concretise(A, st.box_lo, st.box_hi, val, err)
    return box if st.ball is None else best(box, ball_bound(A, st.ball, st.box_lo, st.box_hi, val, err))


def lower_bounds(val: np.ndarray, err: np.ndarray) -> np.ndarray:
    """A float lower bound of val − err per row (−inf where a number overflowed)."""
    out = down(val - err)
    return np.where(np.isfinite(out), out, -np.inf)
