"""Comparisons on the model's data, as 0/1 values: z > 0, z ≥ 0, z = 0 and z ≠ 0 of one input z.

The loader brings every comparison to this form: a > b is (a − b) > 0, with the difference an exact IR value
(a shift by a stored constant, or an Add of data); a Cast to bool is z ≠ 0, Equal on an ArgMax's index is
(index − k) = 0. IBP is the exact range over the box. CROWN bounds the two steps (> and ≥) like Sign: below by
0 or the line through the origin and (u, 1), above by 1 or the line through (l, 0) and (0, 1) — whichever
encloses less area, slopes rounded down so that each line stays on its side — and the spikes (= and ≠) by
their constant range.
"""

from __future__ import annotations

import torch

from ..kernel.interval import Interval
from ..kernel.rounding import unit_roundoff
from .lines import LinesActivation

KINDS = ("gt", "ge", "eq", "ne")
ONNX_OF = {"gt": "Greater", "ge": "GreaterOrEqual", "eq": "Equal"}


class Compare(LinesActivation):
    """y = 1 where z `kind` 0 holds, else 0."""

    ibp_exact = True

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown comparison {kind!r}")
        self.kind = kind  # type: ignore[misc]  # the comparison ('gt', …), shadowing Node's display ClassVar per instance

    def describe(self) -> str:
        return {"gt": "z > 0", "ge": "z ≥ 0", "eq": "z = 0", "ne": "z ≠ 0"}[self.kind]

    def holds(self, z: torch.Tensor) -> torch.Tensor:
        """The comparison as a boolean tensor."""
        return {"gt": z > 0, "ge": z >= 0, "eq": z == 0, "ne": z != 0}[self.kind]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.holds(z).to(z.dtype)

    def range(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact range of y over [lo, hi]: monotone steps at the ends; spikes by whether 0 is inside."""
        if self.kind in ("gt", "ge"):
            return self.forward(lo), self.forward(hi)
        point_zero = (lo == 0) & (hi == 0)
        holds_zero = (lo <= 0) & (hi >= 0)
        if self.kind == "eq":
            return point_zero.to(lo.dtype), holds_zero.to(lo.dtype)
        return (~holds_zero).to(lo.dtype), (~point_zero).to(lo.dtype)

    def ibp(self, x: Interval) -> Interval:
        return Interval(*self.range(*x.bounds()), nonneg=True)

    def lines(self, l: torch.Tensor, u: torch.Tensor):
        low, high = self.range(l, u)
        zero = torch.zeros_like(l)
        if self.kind not in ("gt", "ge"):
            return zero, low, zero, high
        ur = unit_roundoff(l.dtype)
        one = torch.ones_like(l)
        both = low < high  # the box holds points of either value (so l ≤ 0 ≤ u)
        lo_line = both & (u > 0) & (u > -l)  # y ≥ z/u: ≤ 0 ≤ y for z ≤ 0, ≤ 1 = y on (0, u]
        up_line = both & (l < 0) & (-l >= u)  # y ≤ 1 + z/(−l): ≥ 0 on [l, 0], ≥ 1 beyond
        lo_slope = torch.where(lo_line, (1 / torch.where(lo_line, u, one)) * (1 - 2 * ur), zero)
        up_slope = torch.where(up_line, (1 / torch.where(up_line, -l, one)) * (1 - 2 * ur), zero)
        return lo_slope, torch.where(lo_line, zero, low), up_slope, torch.where(up_line, one, high)

    def to_onnx(self, b, name, ins, out):
        zero = b.const(name + "_zero", torch.zeros(1))
        test = out + "_test"
        if self.kind == "ne":
            b.add("Equal", [ins[0], zero], out + "_eq")
            b.add("Not", [out + "_eq"], test)
        else:
            b.add(ONNX_OF[self.kind], [ins[0], zero], test)
        b.add("Cast", [test], out, to=1)

    def singleprop(self, centres, radii, variant):
        """Half the output's range over [c − v, c + v] (its gradient is zero almost everywhere)."""
        low, high = self.range(centres[0] - radii[0], centres[0] + radii[0])
        return 0.5 * (high - low)
