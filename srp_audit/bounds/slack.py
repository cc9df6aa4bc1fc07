"""The rounding slack of a CROWN pass: what a bound computed in floating point gives up so that it holds exactly.

Each op's `crown_rounding` rule propagates forward, once per batch, err_y: a bound on the rounding a backward
pass from node y can accumulate per unit of |A| (`crown.py`). A pass starting from A_T at T then subtracts
⟨|A_T|, err_T⟩, inflated for the rounding of that computation itself, and `final` takes the slack and the
rounding of the last additions off the computed value.
"""

from __future__ import annotations

import math

import torch

from ..ir.graph import Graph
from ..kernel.backward import Coeffs, Context, zero_const
from ..kernel.patches import Patches, weighted_sum
from ..kernel.rounding import gamma, tiny
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


def final(value: torch.Tensor, slack: torch.Tensor) -> torch.Tensor:
    """Subtract the slack and the rounding of the last additions; NaN (∞ − ∞, 0·∞ past an overflow) and +∞ become
    −∞, and −∞ stays −∞ (nan_to_num's default would make it the lowest float: above an exact value past it)."""
    lower = value - slack - gamma(8, value.dtype) * value.abs() - tiny(value.dtype)
    return torch.where(lower < math.inf, lower, -math.inf)
