"""Sound bound methods over the IR. Each method maps (graph, input box, linear spec) to lower bounds of the
spec rows, shape (N, S). SingleProp (training only, unsound) deliberately lives outside this table."""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import UsageError
from ..ir.graph import Graph
from ..spec import InputBox, LinearSpec
from .interval import IBP, Interval, interval_bounds

BoundMethod = Callable[[Graph, InputBox, LinearSpec], torch.Tensor]


def ibp_lower(graph: Graph, box: InputBox, spec: LinearSpec) -> torch.Tensor:
    """Lower bounds of the spec rows by interval bound propagation."""
    return interval_bounds(graph, box, spec).lower


METHODS: dict[str, BoundMethod] = {"ibp": ibp_lower}


def get_method(name: str) -> BoundMethod:
    if name not in METHODS:
        raise UsageError(f"unknown bound method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["IBP", "Interval", "interval_bounds", "METHODS", "get_method", "ibp_lower"]
