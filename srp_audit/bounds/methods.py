"""The sound bound methods as objects. Each one declares its place in `auto`'s cascade and what drivers may do
with it (salvage its linear bound, hand it prior bounds, gate it, ...), so that drivers read declarations instead of
branching on method names, and adding a method means adding one instance here."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import UsageError
from ..ir.graph import Graph
from ..ir.walk import INPUT
from ..kernel.backward import Bounds, Context
from ..spec import NORMS, InputBox, LinearSpec
from .alpha import alpha_crown_bounds, optimise_slopes
from .crown import CrownResult, Widen, crown_bounds, relevant_unstable, relu_inputs
from .ibp import interval_bounds


@dataclass
class MethodBounds:
    """What a method proves: lower bounds of the spec rows and, for the linear methods, their CROWN state."""

    lower: torch.Tensor  # (N, S)
    unstable: torch.Tensor | None = None  # (N,) unstable ReLU neurons, when the method computes them
    crown: CrownResult | None = None  # the linear methods' state, reusable by a method that `reuses` this one
    ibp_unstable: torch.Tensor | None = None  # (N,) unstable ReLU neurons under IBP, the relevant ones (what makes
    # CROWN slow), when asked for (`count_unstable`) and the method's own IBP pass gives them


@dataclass
class ClaimBounds:
    """What a certificate leaf is written from (one sample): the spec rows' lower bounds and, for a linear method,
    its relaxation's context (the intermediate bounds it claims) and optimised slopes by 'alpha:NODE' (None:
    CROWN's own slopes, the checker's rule)."""

    lower: torch.Tensor
    ctx: Context | None = None
    slopes: dict[str, torch.Tensor] | None = None


@dataclass(frozen=True, eq=False)
class BoundMethod:
    """A sound bound method: the user-facing name (reports, `--method`), its place in the cascade and its
    capabilities. Subclasses compute the bounds (`bounds`) and a certificate's claim (`claim_bounds`)."""

    name: str
    rank: int
    """Place in `auto`'s cascade, cheapest (and loosest) first; `CASCADE` is the methods in this order, and `verify`
    names the highest-ranked method that proved a clause."""
    linear: bool = False
    """Returns a CROWN linear relaxation (`MethodBounds.crown`): a certificate leaf records its intermediate
    bounds and slopes; a non-linear method's leaf is the checker's interval pass."""
    salvageable: bool = False
    """A refuted pass's linear bound, over intermediate bounds that hold on every smaller ball, is bisected for a
    smaller radius it still proves without another pass (`Prover.salvage`)."""
    takes_prior: bool = False
    """Accepts `prior`: node bounds known to hold on the box (from a pass over a larger ball), intersected first."""
    refines_intermediates: bool = False
    """Refines its intermediate bounds itself: those of refuted samples are kept as priors for smaller balls."""
    reuses: BoundMethod | None = None
    """The method whose result (`base=`, same samples and box) it starts from instead of recomputing it."""
    optimised: bool = False
    """Iterative and costly: `auto` runs it only on samples whose bound came near a proof, and its radius search
    skips it (few-percent gains for ~20 passes a step)."""
    norms: frozenset[str] = frozenset(NORMS)
    """The balls whose proofs a certificate can carry: the checker re-derives them with its own rules."""

    def bounds(self, graph: Graph, box: InputBox, spec: LinearSpec, **kw: Any) -> MethodBounds:
        """Lower bounds of the spec rows over the box; options a method does not take are ignored."""
        raise NotImplementedError

    def claim_bounds(self, graph: Graph, box: InputBox, spec: LinearSpec, widen: Widen | None = None,
                     alpha_iters: int = 20) -> ClaimBounds:
        """The bounds of a certificate's claim, intermediate bounds widened by `widen` as the claim states them."""
        raise NotImplementedError

    def __call__(self, graph: Graph, box: InputBox, spec: LinearSpec, **kw: Any) -> MethodBounds:
        return self.bounds(graph, box, spec, **kw)

    def __repr__(self) -> str:
        return f"BoundMethod({self.name!r})"


def interval_with_unstable(graph: Graph, box: InputBox, spec: LinearSpec | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """IBP's lower bounds (of the spec rows, else of the flat output) and, from the same pass, the unstable ReLU
    neurons per sample that the outputs depend on (`relevant_unstable`)."""
    res = interval_bounds(graph, box, spec, keep=[p for _, p in relu_inputs(graph)])
    kept = {INPUT: (box.lower, box.upper), **{k: v.bounds() for k, v in res.nodes.items()}}
    return res.lower, relevant_unstable(graph, kept)


@dataclass(frozen=True, eq=False, repr=False)
class IntervalMethod(BoundMethod):
    """Interval bound propagation (a NaN lower bound — ∞ − ∞ past an overflow — is reported as −∞)."""

    def bounds(self, graph: Graph, box: InputBox, spec: LinearSpec, count_unstable: bool = False, **_: object) -> MethodBounds:
        lower, unstable = interval_with_unstable(graph, box, spec) if count_unstable else (interval_bounds(graph, box, spec).lower, None)
        return MethodBounds(torch.where(lower < math.inf, lower, -math.inf), ibp_unstable=unstable)

    def claim_bounds(self, graph: Graph, box: InputBox, spec: LinearSpec, widen: Widen | None = None,
                     alpha_iters: int = 20) -> ClaimBounds:
        return ClaimBounds(self.bounds(graph, box, spec).lower)


@dataclass(frozen=True, eq=False, repr=False)
class LinearMethod(BoundMethod):
    """A CROWN backward pass over intermediate bounds from IBP (`intermediate='ibp'`) or CROWN itself ('crown')."""

    intermediate: str = "crown"

    def bounds(self, graph: Graph, box: InputBox, spec: LinearSpec, prior: Bounds | None = None,
               count_unstable: bool = False, **_: object) -> MethodBounds:
        prior = prior if self.takes_prior else None
        r = crown_bounds(graph, box, spec, self.intermediate, prior=prior)
        # IBP's own intermediate bounds (CROWN-IBP over an L∞ box refines none, and no prior narrowed them)
        pure_ibp = count_unstable and self.intermediate == "ibp" and box.ball is None and prior is None
        return MethodBounds(r.lower, r.unstable, r, relevant_unstable(graph, r.ctx.bounds) if pure_ibp else None)

    def claim_bounds(self, graph: Graph, box: InputBox, spec: LinearSpec, widen: Widen | None = None,
                     alpha_iters: int = 20) -> ClaimBounds:
        with torch.no_grad():
            r = crown_bounds(graph, box, spec, self.intermediate, widen=widen)
        return ClaimBounds(r.lower, r.ctx)


@dataclass(frozen=True, eq=False, repr=False)
class OptimisedMethod(BoundMethod):
    """alpha-CROWN: the ReLU lower slopes optimised on top of the method it `reuses` (CROWN), stopping its
    iterations early past `deadline` (time.perf_counter)."""

    def bounds(self, graph: Graph, box: InputBox, spec: LinearSpec, alpha_iters: int = 20,
               base: CrownResult | None = None, deadline: float | None = None, **_: object) -> MethodBounds:
        r = alpha_crown_bounds(graph, box, spec, iters=alpha_iters, base=base, deadline=deadline)
        return MethodBounds(r.lower, r.unstable, r)

    def claim_bounds(self, graph: Graph, box: InputBox, spec: LinearSpec, widen: Widen | None = None,
                     alpha_iters: int = 20) -> ClaimBounds:
        """The reused method's claimed intermediate bounds, and the final pass's slopes optimised over them."""
        if self.reuses is None:
            raise TypeError(f"{self.name} optimises another method's result: declare it in `reuses`")
        start = self.reuses.claim_bounds(graph, box, spec, widen, alpha_iters)
        assert start.ctx is not None, "an optimised method reuses a linear one"
        state: dict[str, torch.Tensor] = {}
        lower = optimise_slopes(start.ctx, spec, box, start.lower, alpha_iters, 0.5, state=state, pools=False)
        return ClaimBounds(lower, start.ctx, state)


IBP = IntervalMethod("ibp", rank=0, norms=frozenset({"inf"}))  # over an L2/L1 ball its ball rule bounds a first
# layer the checker's interval pass (over the bounding box) does not
CROWN_IBP = LinearMethod("crown-ibp", rank=1, linear=True, salvageable=True, intermediate="ibp")
CROWN = LinearMethod("crown", rank=2, linear=True, salvageable=True, takes_prior=True, refines_intermediates=True,
                     intermediate="crown")
ALPHA_CROWN = OptimisedMethod("alpha-crown", rank=3, linear=True, reuses=CROWN, optimised=True)

CASCADE_METHODS: tuple[BoundMethod, ...] = tuple(sorted((IBP, CROWN_IBP, CROWN, ALPHA_CROWN), key=lambda m: m.rank))
"""Every method, cheapest first: `--method auto` escalates through them."""
CASCADE: tuple[str, ...] = tuple(m.name for m in CASCADE_METHODS)
METHODS: dict[str, BoundMethod] = {m.name: m for m in CASCADE_METHODS}


def get_method(name: str) -> BoundMethod:
    """The method called `name`; a `UsageError` naming the choices for any other name."""
    if name not in METHODS:
        raise UsageError(f"unknown bound method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def as_methods(methods: Iterable[BoundMethod | str]) -> tuple[BoundMethod, ...]:
    """Methods given as objects or by name, as objects."""
    return tuple(m if isinstance(m, BoundMethod) else get_method(m) for m in methods)
