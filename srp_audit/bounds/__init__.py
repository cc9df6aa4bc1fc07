"""Sound bound methods over the IR — drivers only: what an op does under each method is in `srp_audit.ops`.
Each maps (graph, input box, linear spec) to `MethodBounds`: lower bounds
of the spec rows, shape (N, S), and (for the backward methods) unstable ReLU counts per sample.
SingleProp (training only, unsound) deliberately lives outside this table."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import UsageError
from ..ir.graph import Graph
from ..kernel.interval import Interval
from ..spec import InputBox, LinearSpec
from .alpha import alpha_crown_bounds
from .crown import Bounds, CrownResult, crown_bounds
from .ibp import interval_bounds


@dataclass
class MethodBounds:
    lower: torch.Tensor  # (N, S)
    unstable: torch.Tensor | None = None  # (N,) unstable ReLU neurons, when the method computes them
    crown: CrownResult | None = None  # the backward methods' state, reusable by alpha-CROWN


BoundMethod = Callable[..., MethodBounds]


def ibp_method(graph: Graph, box: InputBox, spec: LinearSpec, **_: object) -> MethodBounds:
    """Interval bound propagation (a NaN lower bound — ∞ − ∞ past an overflow — is reported as −∞, and −∞ stays −∞)."""
    lower = interval_bounds(graph, box, spec).lower
    return MethodBounds(torch.where(lower < math.inf, lower, -math.inf))


def crown_ibp_method(graph: Graph, box: InputBox, spec: LinearSpec, **_: object) -> MethodBounds:
    """CROWN backward pass with IBP intermediate bounds."""
    r = crown_bounds(graph, box, spec, "ibp")
    return MethodBounds(r.lower, r.unstable, r)


def crown_method(graph: Graph, box: InputBox, spec: LinearSpec, prior: Bounds | None = None, **_: object) -> MethodBounds:
    """CROWN with CROWN intermediate bounds (layer by layer, on IBP-unstable neurons); `prior`: node bounds
    known to hold on this box (e.g. from a pass over a larger ball around the same centre), intersected first."""
    r = crown_bounds(graph, box, spec, "crown", prior=prior)
    return MethodBounds(r.lower, r.unstable, r)


def alpha_crown_method(graph: Graph, box: InputBox, spec: LinearSpec, alpha_iters: int = 20,
                       crown: CrownResult | None = None, deadline: float | None = None, **_: object) -> MethodBounds:
    """alpha-CROWN: optimised ReLU lower slopes on top of CROWN (reusing `crown` when given), stopping its
    iterations early past `deadline` (time.perf_counter)."""
    r = alpha_crown_bounds(graph, box, spec, iters=alpha_iters, base=crown, deadline=deadline)
    return MethodBounds(r.lower, r.unstable, r)


METHODS: dict[str, BoundMethod] = {
    "ibp": ibp_method,
    "crown-ibp": crown_ibp_method,
    "crown": crown_method,
    "alpha-crown": alpha_crown_method,
}
# cheapest first: `--method auto` escalates through them
CASCADE = ("ibp", "crown-ibp", "crown", "alpha-crown")


def get_method(name: str) -> BoundMethod:
    if name not in METHODS:
        raise UsageError(f"unknown bound method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["Interval", "interval_bounds", "METHODS", "CASCADE", "MethodBounds", "get_method"]
