"""Sound bound methods over the IR — drivers only: what an op does under each method is in `srp_audit.ops`.
Each method (`methods.BoundMethod`) maps (graph, input box, linear spec) to `MethodBounds`: lower bounds of the
spec rows, shape (N, S), and (for the backward methods) unstable ReLU counts per sample; it declares what drivers
may do with it. SingleProp (training only, unsound) deliberately lives outside this table."""

from __future__ import annotations

from ..kernel.interval import Interval
from .crown import Bounds, CrownResult
from .ibp import interval_bounds
from .methods import (
    ALPHA_CROWN,
    CASCADE,
    CASCADE_METHODS,
    CROWN,
    CROWN_IBP,
    IBP,
    METHODS,
    BoundMethod,
    ClaimBounds,
    MethodBounds,
    as_methods,
    get_method,
)

__all__ = ["Interval", "interval_bounds", "METHODS", "CASCADE", "CASCADE_METHODS", "MethodBounds", "ClaimBounds",
           "BoundMethod", "get_method", "as_methods", "IBP", "CROWN_IBP", "CROWN", "ALPHA_CROWN", "Bounds", "CrownResult"]
