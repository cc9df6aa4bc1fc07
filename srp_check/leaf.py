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

from .ball import Ball, input_ball
from .bounds import LeafState, backward, interval_add, interval_linear, interval_maxpool, lower_bounds
from .certificate import Claim, Leaf
from .errors import Rejected
from .fp import exact
from .network import Network
from .relax import relax
from .tree import LeafContext

CHUNK_ELEMENTS = 1 << 22  # coefficient entries per backward-pass chunk (32 MiB in float64)


def _derive(net: Network, st: LeafState, z: str, idx: np.ndarray, sign: float, given: tuple | None = None) -> np.ndarray:
    """Rigorous lower bounds of sign·z_j for the neurons idx, no β, in chunks of rows: the certificate's
    intermediate slopes `given` ((neurons, {relu: (2, k, n)})) for the neurons it lists, CROWN's rule elsewhere."""
    n = net.sizes[z]
    step = max(1, CHUNK_ELEMENTS // max(net.sizes.values()))
    pos = {} if given is None else {j: i for i, j in enumerate(given[0].tolist())}
    out = []
    for s in range(0, idx.size, step):
        part = idx[s:s + step]
        A = np.zeros((part.size, n))
        A[np.arange(part.size), part] = sign
        rows = np.array([pos.get(j, -1) for j in part.tolist()], dtype=np.int64)
        have, slopes = rows >= 0, {}
        if given is not None and have.any():
            for r, lam in given[1].items():
                if r in st.relax:  # a ReLU before z (others never meet these rows)
                    full = np.repeat(st.relax[r].crown[None], part.size, axis=0)
                    full[have] = lam[0 if sign > 0 else 1, rows[have]]
                    slopes[r] = full
        out.append(lower_bounds(*backward(net, st, z, A, np.zeros(part.size), slopes)))
    return np.concatenate(out) if out else np.zeros(0)


def _settle(net: Network, st: LeafState, name: str, leaf: Leaf, splits: dict[int, int], where: str,
            base: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """The bounds a ReLU uses on this item (claims verified), split neurons clamped. `base`: bounds verified on an
    anchor above (else the interval pass's), used as they are where the entry claims none; a claim at least as
    loose as them is accepted without more work, others are derived."""
    z = net.nodes[net.relus[name]].inputs[0]
    l_base, u_base = base if base is not None else (st.lo[z], st.hi[z])
    pos, neg = np.zeros(l_base.size, bool), np.zeros(l_base.size, bool)
    for j, s in splits.items():
        (pos if s > 0 else neg)[j] = True
    given = leaf.islopes.get(name)
    for r, lam in (given[1] if given is not None else {}).items():
        if np.any(~((lam >= 0) & (lam <= 1))):
            raise Rejected(f"{where}: an intermediate slope on ReLU {r!r} is outside [0, 1]")
    if name in leaf.bounds:
        l, u = leaf.bounds[name]
        for claim, mine, ok_split, sign, what in ((l, l_base, pos & (l <= 0), 1.0, "lower"), (u, u_base, neg & (u >= 0), -1.0, "upper")):
            idx = np.flatnonzero(~(sign * claim <= sign * mine) & ~ok_split)
            derived = _derive(net, st, z, idx, sign, given)
            bad = np.flatnonzero(sign * claim[idx] > derived)
            if bad.size and given is not None:  # the given slopes may be worse than CROWN's rule on some neurons
                derived[bad] = np.maximum(derived[bad], _derive(net, st, z, idx[bad], sign, None))
                bad = np.flatnonzero(sign * claim[idx] > derived)
            if bad.size:
                j = int(idx[bad[0]])
                raise Rejected(f"{where}, neuron {j}: the claimed {what} bound {float(claim[j])!r} of its input is not "
                               f"derived: the checker's {what} bound is {sign * float(derived[bad[0]])!r}")
    else:
        l, u = l_base, u_base
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


Bounds = dict[str, tuple[np.ndarray, np.ndarray]]


def sweep(net: Network, leaf: Leaf, ctx: LeafContext, where: str, base: Bounds | None = None, ball: Ball | None = None) -> LeafState | None:
    """The forward sweep of a leaf or anchor: intervals of every tensor and the verified bounds and relaxation of
    every ReLU, in graph order (`base`: bounds verified on the anchors above; `ball`: an L2/L1 input ball). None when its part of the set is
    empty; `Rejected` at an underivable claim."""
    if np.any(ctx.lo > ctx.hi):
        return None  # an input split left this leaf an empty box
    base = base or {}
    st = LeafState(ctx.lo, ctx.hi, ball=ball)
    st.set_interval(net.input, ctx.lo, ctx.hi)
    for i, nd in enumerate(net.nodes):
        if nd.kind == "linear":
            st.set_interval(nd.output, *interval_linear(st, i, nd.linear, nd.inputs[0]))
        elif nd.kind == "add":
            st.set_interval(nd.output, *interval_add(st, *nd.inputs))
        elif nd.kind == "maxpool":
            st.set_interval(nd.output, *interval_maxpool(st, nd, f"{where}, MaxPool {nd.output!r}"))
        else:
            l, u = _settle(net, st, nd.output, leaf, ctx.splits.get(nd.output, {}), f"{where}, ReLU {nd.output!r}", base.get(nd.output))
            z = nd.inputs[0]
            lo, hi = np.maximum(l, st.lo[z]), np.minimum(u, st.hi[z])
            if np.any(l > u) or np.any(lo > hi):
                return None  # the path's splits contradict bounds that hold on it
            st.relax[nd.output] = relax(l, u, f"{where}, ReLU {nd.output!r}")
            st.set_interval(nd.output, np.maximum(lo, 0.0), np.maximum(hi, 0.0))
    return st


def anchor_bounds(net: Network, claim: Claim, ctx: LeafContext, where: str, base: Bounds | None) -> Bounds | None:
    """Verify an anchor's ReLU bounds on its region: what the items below it start from (None: the region is empty)."""
    st = sweep(net, claim.leaves[ctx.index], ctx, where, base, input_ball(claim.input_set))
    return None if st is None else {**(base or {}), **{r: (rx.l, rx.u) for r, rx in st.relax.items()}}


def prove_leaf(net: Network, claim: Claim, ctx: LeafContext, where: str, base: Bounds | None = None) -> None:
    """Prove the claim's groups `ctx.groups` (all if None) on one leaf, or find its part of the set empty;
    `Rejected` at the first failing step."""
    leaf = claim.leaves[ctx.index]
    groups = range(len(claim.groups)) if ctx.groups is None else ctx.groups
    rows = sorted({r for g in groups for r in claim.groups[g]})
    for name, arr in list(leaf.slopes.items()) + list(leaf.beta.items()):
        if arr.ndim == 2 and arr.shape[0] != len(rows):
            raise Rejected(f"{where}: the slopes or β of ReLU {name!r} have {arr.shape[0]} rows, the leaf proves {len(rows)} spec rows")
    beta = _structure(leaf, ctx, where)
    st = sweep(net, leaf, ctx, where, base, input_ball(claim.input_set))
    if st is None:
        return
    margins: dict = {}
    for stop in leaf.stops:  # each row keeps its best pass
        val, err = backward(net, st, net.output, claim.C[rows], claim.d[rows], leaf.slopes, beta, stop)
        for r, v, e in zip(rows, val, err):
            m = (exact(v) - exact(e)) if np.isfinite(v) and np.isfinite(e) else None
            if m is not None and (margins.get(r) is None or m > margins[r]):
                margins[r] = m
    for g in groups:
        rs = claim.groups[g]
        if not any(margins.get(r) is not None and margins[r] > 0 for r in rs):
            best = max((float(margins[r]) for r in rs if margins.get(r) is not None), default=float("-inf"))
            raise Rejected(f"{where}: group {g} (rows {rs}) is not proven: its best row's lower bound is {best!r}")
