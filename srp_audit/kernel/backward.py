"""What CROWN's backward rules read and share: the `Context` of one bound computation, and small helpers.

A rule `crown_backward(A, ctx, name)` receives coefficients A — dense (N, R, *shape) or `Patches` — and returns
the coefficients on its inputs and a constant (N, R); `crown_rounding(ctx, name)` returns err_y, the bound on the
floating-point error per unit of |A| at its output (see `srp_audit.bounds.crown`). Rules read their inputs' err from
`ctx.err`, which is zero at checkpoint nodes: their err is in `ctx.charge`, charged by each pass on its own
coefficients there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .patches import Patches

Coeffs = torch.Tensor | Patches
Bounds = dict[str, tuple[torch.Tensor, torch.Tensor]]  # (lower, upper) per node


class GraphView(Protocol):
    """What a rule reads of the graph (an `srp_audit.ir.Graph` is one): the kernel sits below the IR."""

    @property
    def inputs_of(self) -> Mapping[str, Sequence[str]]: ...

    @property
    def shapes(self) -> Mapping[str, tuple[int, ...]]: ...


@dataclass
class Context:
    """What the rules read: (lower, upper) and rounding magnitudes of node values, optional ReLU slopes."""

    graph: GraphView
    bounds: dict[str, tuple[torch.Tensor, torch.Tensor]]
    err: dict[str, torch.Tensor] = field(default_factory=dict)
    alpha: dict[str, torch.Tensor] = field(default_factory=dict)
    beta: dict[str, torch.Tensor] = field(default_factory=dict)  # extra coefficients −β·s at split pre-activations
    record: dict[str, torch.Tensor] | None = None  # when a dict: the dense A seen at ReLUs and the input
    memo: dict | None = None  # when a dict: unfolded maps, reused by the row chunks of one refinement
    relaxed: dict = field(default_factory=dict)  # relaxations per node, see `relaxation`
    origin: tuple | None = None  # (root context, its rows, {value: (root's bounds, these)}) for a sample subset
    steer_only: bool = False  # a search's context, whose values only steer it (never bounds): no rounding slack
    charge: dict[str, torch.Tensor] = field(default_factory=dict)  # err of checkpoint nodes, charged at each pass's step

    def relaxation(self, key: str, names: tuple[str, ...], make: Callable[..., tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        """make(lo_1, hi_1, lo_2, …) on the bounds of `names`: per-sample relaxation data (samples first), computed
        once for the whole batch and kept while those bounds are the same tensor objects — every refinement pass
        and row chunk crosses the same relaxations. A sample subset (`select`) slices its root's, unless its own
        bounds of `names` have been replaced since."""
        if self.origin is not None:
            root, rows, inherited = self.origin
            if all(n in inherited and self.bounds.get(n) is inherited[n][1] and root.bounds.get(n) is inherited[n][0] for n in names):
                return tuple(t[rows] for t in root.relaxation(key, names, make))
            return tuple(make(*(t for n in names for t in self.bounds[n])))
        sources = tuple(t for n in names for t in self.bounds[n])
        hit = self.relaxed.get(key)
        if hit is None or not _same(hit[0], sources):
            hit = (sources, _kept(lambda: tuple(make(*sources)), sources))
            self.relaxed[key] = hit
        return hit[1]

    def unfolded(self, key: str, A: Patches, sources: tuple[torch.Tensor, ...], make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """A.unfold(make()), the map `make` builds from `sources`; with a memo, kept while `sources` are the
        same tensor objects (a chunk of rows at the same positions' grid reuses it, a changed bound never does)."""
        if self.memo is None:
            return A.unfold(make())
        full = (key, A.grid, tuple(A.data.shape[3:]))
        hit = self.memo.get(full)
        if hit is not None and _same(hit[0], sources):
            return hit[1]
        cols = _kept(lambda: A.unfold(make()), sources)
        self.memo[full] = (sources, cols)
        return cols

    def mag(self, name: str) -> torch.Tensor:
        """max(|lower|, |upper|) of a node's value, kept like a relaxation (rounding rules read it several times)."""
        return self.relaxation("|x| " + name, (name,), lambda lo, hi: (torch.maximum(lo.abs(), hi.abs()),))[0]

    def x(self, name: str) -> str:
        """The (first) input of node `name`."""
        return self.graph.inputs_of[name][0]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.graph.shapes[name]

    def subset(self, s0: int, s1: int) -> "Context":
        return self.select(slice(s0, s1))

    def select(self, idx: slice | torch.Tensor) -> "Context":
        """The same context for a subset of the samples."""
        def cut(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v[idx] for k, v in d.items()}

        bounds = {k: (lo[idx], hi[idx]) for k, (lo, hi) in self.bounds.items()}
        if self.origin is not None:  # a subset of a subset: its own bounds, no shared relaxations
            return Context(self.graph, bounds, cut(self.err), cut(self.alpha), steer_only=self.steer_only,
                           charge=cut(self.charge))
        inherited = {k: (self.bounds[k], b) for k, b in bounds.items()}
        return Context(self.graph, bounds, cut(self.err), cut(self.alpha), origin=(self, idx, inherited),
                       steer_only=self.steer_only, charge=cut(self.charge))


def dense(A: Coeffs) -> torch.Tensor:
    return A.dense() if isinstance(A, Patches) else A


def zero_const(A: Coeffs) -> torch.Tensor:
    """The (N, R) zero constant of a rule that adds none."""
    t = A.data if isinstance(A, Patches) else A
    return torch.zeros(t.shape[:2], dtype=t.dtype, device=t.device)


def split_signs(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive part, negative part) of t. ReLUs, not clamps: with its gradient a clamp cost 4× as much (its
    backward builds two masks), and alpha-CROWN's steps differentiate through these."""
    pos = torch.relu(t)
    return pos, t - pos


def _same(kept: tuple[torch.Tensor, ...], sources: tuple[torch.Tensor, ...]) -> bool:
    """Whether a kept value was made from these very tensors."""
    return len(kept) == len(sources) and all(a is b for a, b in zip(kept, sources))


def _kept(make: Callable[[], Any], sources: tuple[torch.Tensor, ...]) -> Any:
    """make(), for keeping: with the gradient its sources carry even where the caller runs without one (a rounding
    rule), since every later caller reads the kept value — one made without it cut training's gradient through
    every relaxation."""
    if not torch.is_grad_enabled() and any(t.requires_grad for t in sources):
        with torch.enable_grad():
            return make()
    return make()


def negative_part(t: torch.Tensor) -> torch.Tensor:
    """min(t, 0): a clamp (one pass) without a gradient; with one, t − relu(t), whose gradient is cheap (see
    `split_signs`) and at 0 is a clamp's (1) — exact for finite t, NaN at t = +∞, a coefficient past an overflow
    whose bound is already lost (NaN bounds read −∞)."""
    return t - torch.relu(t) if t.requires_grad else t.clamp(max=0)


def per_row(t: torch.Tensor, rows: int) -> torch.Tensor:
    """A per-sample map (N, *shape) repeated for `rows` spec rows: (N, rows, *shape), its own writable copy."""
    return t.unsqueeze(1).expand((t.shape[0], rows) + tuple(t.shape[1:])).clone()


def per_sample(t: torch.Tensor, shape: tuple[int, ...], n: int) -> torch.Tensor:
    """A constant (no batch axis) broadcast to a per-sample map (n, *shape)."""
    return torch.broadcast_to(t, shape).unsqueeze(0).expand((n,) + tuple(shape))


def linear_transpose(fn: Callable[[torch.Tensor], torch.Tensor], A: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Aᵀ-product of any linear op through its vector-Jacobian product (ops without a closed-form transpose)."""
    n, s = A.shape[:2]
    x = torch.zeros((n * s,) + tuple(in_shape), dtype=A.dtype, device=A.device, requires_grad=True)
    with torch.enable_grad():
        y = fn(x)
        # ⟨y, A⟩ differentiated: the product with A, from a scalar (no first-call import of autograd's symbolic shapes)
        (gx,) = torch.autograd.grad((y * A.reshape(y.shape)).sum(), x, create_graph=A.requires_grad)
    return gx.reshape((n, s) + tuple(in_shape))
