"""One leaf's proof: its ReLU bounds in graph order, then the margins of the spec rows.

For each ReLU (graph order) the bounds it uses are the certificate's claims where given, else the interval
pass's. A claimed lower bound is accepted without more work if it is ≤ the interval lower bound, or ≤ 0 on a
neuron split z ≥ 0 on the leaf's path (upper bounds symmetrically); every other claim is re-derived by a
backward pass from that neuron with CROWN's slope rule for the ReLUs before it and no β, and accepted only if
the derived rigorous bound is at least as tight (a float comparison, exact). Split neurons are then clamped
(l ← max(l, 0) on z ≥ 0, u ← min(u, 0) on z ≤ 0). If some neuron's bounds cross (l > u), or cross the interval
pass's, no point of the box satisfies the path's splits and the leaf holds vacuously.

The final pass runs from the spec rows with the certificate's slopes (CROWN's rule where none are given) and β
(to the input, or to each of the leaf's `stops` tensors, minimised there over its interval: each row its best);
each row's bound val − err is evaluated exactly in rationals, and the leaf proves the claim when every group
has a row whose bound is > 0. Structural rules checked first, exactly: slopes in [0, 1]; β ≥ 0; β = 0 off the
neurons split on the path.
"""

from __future__ import annotations

import numpy as np

from .bounds import LeafState, backward, interval_add, interval_linear, lower_bounds
from .certificate import Claim, Leaf
from .errors import Rejected
from .fp import exact
from .network import Network
from .relax import relax
from .tree import LeafContext

CHUNK_ELEMENTS = 1 << 22  # coefficient entries per backward-pass chunk (32 MiB in float64)


def _derive(net: Network, st: LeafState, z: str, idx: np.ndarray, sign: float) -> np.ndarray:
    """Rigorous lower bounds of sign·z_j for the neurons idx (CROWN's rule, no β), in chunks of rows."""
    n = net.sizes[z]
    width = max(net.sizes.values())
    step = max(1, CHUNK_ELEMENTS // width)
    out = []
    for s in range(0, idx.size, step):
        part = idx[s:s + step]
        A = np.zeros((part.size, n))
        A[np.arange(part.size), part] = sign
        out.append(lower_bounds(*backward(net, st, z, A, np.zeros(part.size))))
    return np.concatenate(out) if out else np.zeros(0)


def _settle(net: Network, st: LeafState, name: str, leaf: Leaf, splits: dict[int, int], where: str) -> tuple[np.ndarray, np.ndarray]:
    """The bounds a ReLU uses on this leaf (claims verified), split neurons clamped."""
    z = net.nodes[net.relus[name]].inputs[0]
    l_int, u_int = st.lo[z], st.hi[z]
    n = l_int.size
    pos, neg = np.zeros(n, bool), np.zeros(n, bool)
    for j, s in splits.items():
        (pos if s > 0 else neg)[j] = True
    if name in leaf.bounds:
        l, u = leaf.bounds[name]
        for claim, mine, ok_split, sign, what in ((l, l_int, pos & (l <= 0), 1.0, "lower"), (u, u_int, neg & (u >= 0), -1.0, "upper")):
            idx = np.flatnonzero(~(sign * claim <= sign * mine) & ~ok_split)
            derived = sign * _derive(net, st, z, idx, sign)
            bad = np.flatnonzero(sign * claim[idx] > sign * derived)
            if bad.size:
                j = int(idx[bad[0]])
                raise Rejected(f"{where}, neuron {j}: the claimed {what} bound {float(claim[j])!r} of its input is not "
                               f"derived: the checker's {what} bound is {float(derived[bad[0]])!r}")
    else:
        l, u = l_int, u_int
    l, u = np.where(pos, np.maximum(l, 0.0), l), np.where(neg, np.minimum(u, 0.0), u)
    if not (np.all(np.isfinite(l)) and np.all(np.isfinite(u))):
        raise Rejected(f"{where}: the bounds of its input overflow")
    return l, u


def _structure(leaf: Leaf, ctx: LeafContext, where: str) -> dict[str, np.ndarray]:
    """Check slopes and β against the path; return the β coefficients −β·s to add at each ReLU's input."""
    for name, lam in leaf.slopes.items():
        bad = np.flatnonzero(~((lam >= 0) & (lam <= 1)).reshape(-1))
        if bad.size:
            raise Rejected(f"{where}: slope {float(lam.reshape(-1)[bad[0]])!r} of ReLU {name!r} (entry {int(bad[0])}) is outside [0, 1]")
    coef = {}
    for name, b in leaf.beta.items():
        if np.any(~(b >= 0)):
            raise Rejected(f"{where}: a negative β on ReLU {name!r}: {float(b[~(b >= 0)].reshape(-1)[0])!r}")
        s = np.zeros(b.shape[-1])
        for j, sign in ctx.splits.get(name, {}).items():
            s[j] = sign
        off = np.flatnonzero(np.any(b.reshape(-1, s.size) > 0, axis=0) & (s == 0))
        if off.size:
            raise Rejected(f"{where}: β on neuron {int(off[0])} of ReLU {name!r}, which is not split on the path {ctx.path}")
        if np.any(b > 0):
            coef[name] = -b * s
    return coef


def sweep(net: Network, leaf: Leaf, ctx: LeafContext, where: str) -> LeafState | None:
    """The forward sweep of a leaf: intervals of every tensor and the verified bounds and relaxation of every
    ReLU, in graph order. None when the leaf's part of the set is empty; `Rejected` at an underivable claim."""
    if np.any(ctx.lo > ctx.hi):
        return None  # an input split left this leaf an empty box
    st = LeafState(ctx.lo, ctx.hi)
    st.set_interval(net.input, ctx.lo, ctx.hi)
    for i, nd in enumerate(net.nodes):
        if nd.kind == "linear":
            st.set_interval(nd.output, *interval_linear(st, i, nd.op, nd.inputs[0]))
        elif nd.kind == "add":
            st.set_interval(nd.output, *interval_add(st, *nd.inputs))
        else:
            l, u = _settle(net, st, nd.output, leaf, ctx.splits.get(nd.output, {}), f"{where}, ReLU {nd.output!r}")
            z = nd.inputs[0]
            lo, hi = np.maximum(l, st.lo[z]), np.minimum(u, st.hi[z])
            if np.any(l > u) or np.any(lo > hi):
                return None  # the path's splits contradict bounds that hold on it
            st.relax[nd.output] = relax(l, u, f"{where}, ReLU {nd.output!r}")
            st.set_interval(nd.output, np.maximum(lo, 0.0), np.maximum(hi, 0.0))
    return st


def prove_leaf(net: Network, claim: Claim, ctx: LeafContext, where: str) -> None:
    """Prove the claim on one leaf (or find its part of the set empty); `Rejected` at the first failing step."""
    leaf = claim.leaves[ctx.index]
    beta = _structure(leaf, ctx, where)
    st = sweep(net, leaf, ctx, where)
    if st is None:
        return
    margins: list = [None] * claim.C.shape[0]
    for stop in leaf.stops:  # each row keeps its best pass
        val, err = backward(net, st, net.output, claim.C.copy(), claim.d.copy(), leaf.slopes, beta, stop)
        for r, (v, e) in enumerate(zip(val, err)):
            m = (exact(v) - exact(e)) if np.isfinite(v) and np.isfinite(e) else None
            if m is not None and (margins[r] is None or m > margins[r]):
                margins[r] = m
    for g, rows in enumerate(claim.groups):
        if not any(margins[r] is not None and margins[r] > 0 for r in rows):
            best = max((float(margins[r]) for r in rows if margins[r] is not None), default=float("-inf"))
            raise Rejected(f"{where}: group {g} (rows {rows}) is not proven: its best row's lower bound is {best!r}")
