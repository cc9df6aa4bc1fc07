"""The rounding slack of a CROWN pass: what a bound computed in floating point gives up so that it holds exactly.

Each op's `crown_rounding` rule propagates forward, once per batch, err_y: a bound on the rounding a backward
pass from node y can accumulate per unit of |A| (`crown.py`), down to the next checkpoints (weighted sums with
signed weights, `Node.crown_checkpoint`), whose err starts afresh. A pass starting from A_T at T subtracts
⟨|A_T|, err_T⟩, and at each checkpoint c it reaches ⟨|A_c|, err_c⟩ on the coefficients it computed there
(`charge`) — carrying err through |W| instead would lose the cancellation of signed coefficients, a bound that
grew about 6× per layer of a deep network. Where coefficients from two paths are added, that rounding is charged
too (`merge_charge`). Each term is inflated for the rounding of its own computation, and `final` takes the slack
and the rounding of the last additions off the computed value.

Why it holds: the pass computes A'_x = fl(A'_y·J) = A'_y·J + E, so A'_y·y = A'_x·x − E·x + (constants) exactly, and
|E·x| ≤ ⟨|A'_y|, err⟩ for the step's rule; summed over every step, each bounded on the coefficients actually
computed, the bound is the exact one minus at most the slack.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..ir.graph import Graph
from ..kernel.backward import Coeffs, Context, zero_const
from ..kernel.patches import Patches, weighted_sum
from ..kernel.rounding import gamma, tiny, unit_roundoff
from .context import graph_of


def compounding(graph: Graph, dtype: torch.dtype) -> float:
    """The factor on a computed slack for the rounding of the slack itself: each step of the forward rounding
    pass and the final ⟨|A|, err⟩ are sums of non-negative terms that may round down by γ_n, n at most the
    largest node's size (a factor 1 + 4·depth·γ_8, as before, covered sums of up to 32 terms only)."""
    n = max(math.prod(s) for s in graph.shapes.values())
    return 1 + 2 * (len(graph.order) + 3) * gamma(n, dtype)


def rounding_slack(ctx: Context, A: Coeffs, name: str) -> torch.Tensor:
    """⟨|A|, err⟩ at the starting node `name`, inflated by `compounding`; none if the pass only steers."""
    if ctx.steer_only:
        return zero_const(A)
    absA = A.with_data(A.data.abs()) if isinstance(A, Patches) else A.abs()
    return weighted_sum(absA, ctx.err[name]) * compounding(graph_of(ctx), ctx.err[name].dtype)


def charge(ctx: Context, A: Coeffs, key: str, err: torch.Tensor, factor: float) -> torch.Tensor:
    """⟨|A|, err⟩·factor, without a gradient (a constant of alpha-CROWN's steps): a pass's rounding from a checkpoint,
    on the coefficients it computed there. `factor` (≥ `compounding`) covers the rounding of the sum itself. Patches
    read err's windows through the context's memo under `key` (the row chunks of one refinement share them)."""
    with torch.no_grad():
        if isinstance(A, Patches):
            cols = ctx.unfolded(key, A, (err,), lambda: err)
            windows = A.pick(cols)
            return (A.data.detach().abs() * windows).reshape(A.data.shape[0], A.rows, -1).sum(dim=2) * factor
        return weighted_sum(A.detach().abs(), err) * factor


def merge_charge(ctx: Context, merged: Coeffs, name: str, factor: float) -> torch.Tensor:
    """The rounding of adding two paths' coefficients at value `name`: one rounding per entry, |E| ≤ u·|sum| ≤
    2u·|computed sum|, against |value| ≤ its magnitude."""
    mag = ctx.mag(name)
    return charge(ctx, merged, "|x| " + name, mag, 2 * unit_roundoff(mag.dtype) * factor)


def addition_charge(total: torch.Tensor) -> torch.Tensor:
    """The rounding of adding a step's constant to the running one: |E| ≤ u·|exact sum| ≤ 2u·|computed sum|. (Small
    constants added to a large one are lost whole: nothing else pays for that.)"""
    return total.detach().abs() * (2 * unit_roundoff(total.dtype))


def underflow_charge(ctx: Context, name: str, values: list[str]) -> torch.Tensor:
    """(N, 1): what underflow can cost a step at `name` whose coefficients land on `values`. The error model's
    relative terms miss a product or sum below the smallest normal number, which rounds to a subnormal or to
    zero: at most that (tiny/16) per operation, absolute. An entry of the step's coefficients or constant takes
    at most one product and one addition per output entry (plus the charge's own), so the step's error is at most
    tiny·(|y| + 4)·(1 + Σ_v ‖|v|‖₁), |y| the output's size — negligible unless the values are near the float range."""
    total = sum(_magnitude(ctx, v, "|x|1 ", lambda m: m.sum(1, keepdim=True)) for v in values)
    assert isinstance(total, torch.Tensor)
    return (1 + total) * (tiny(total.dtype) * (math.prod(graph_of(ctx).shapes[name]) + 4))


def _magnitude(ctx: Context, name: str, key: str, reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """reduce(max(|lower|, |upper|) flattened per sample) of a value, kept like a relaxation (once per batch)."""
    return ctx.relaxation(key + name, (name,), lambda lo, hi: (reduce(torch.maximum(lo.abs(), hi.abs()).reshape(lo.shape[0], -1)),))[0]


def relaxation_underflow(ctx: Context, A: Coeffs, name: str) -> torch.Tensor:
    """(N, R): what underflow in a relaxation's computed slopes and intercepts can cost a pass through it. Each
    may be off by half the smallest subnormal (a chord's intercept −s·l rounds to a subnormal), which a large
    coefficient multiplies: tiny·‖A‖₁·(1 + max |input|), far above that, per row."""
    with torch.no_grad():
        data = A.data if isinstance(A, Patches) else A
        l1 = data.detach().abs().reshape(data.shape[0], data.shape[1], -1).sum(dim=2)
        big = 1 + torch.cat([_magnitude(ctx, x, "|x|max ", lambda m: m.amax(1, keepdim=True)) for x in graph_of(ctx).inputs_of[name]], 1).amax(1)
        return l1 * big.unsqueeze(1) * tiny(l1.dtype)


def final(value: torch.Tensor, slack: torch.Tensor) -> torch.Tensor:
    """Subtract the slack and the rounding of the last additions; NaN (∞ − ∞, 0·∞ past an overflow) and +∞ become
    −∞, and −∞ stays −∞ (nan_to_num's default would make it the lowest float: above an exact value past it)."""
    lower = value - slack - gamma(8, value.dtype) * value.abs() - tiny(value.dtype)
    return torch.where(lower < math.inf, lower, -math.inf)
