"""Concat: input-dependent tensors joined along one sample axis (DenseNet blocks, inputs split and rejoined).

Exact in every method: IBP joins the intervals, CROWN splits the coefficients back into the inputs' parts.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch

from ..ir.node import Node, Shape
from ..ir.reading import AtenReading, OnnxNode, OnnxReading, Tensor, Value, reads_aten, reads_onnx
from ..kernel.backward import Context, zero_const
from ..kernel.interval import Interval


class Concat(Node):
    """y = cat(x_1, …, x_n) along sample axis `axis`; `n` inputs (the node's arity)."""

    passes_bounds = True

    def __init__(self, axis: int, n: int) -> None:
        super().__init__()
        if n < 1:
            raise ValueError("Concat needs at least one input")
        self.axis = int(axis)
        self.arity = int(n)  # type: ignore[misc]  # Node's ClassVar, per instance here: how many tensors it joins

    @classmethod
    def from_aten(cls, args: list[Any], kwargs: dict[str, Any]) -> "Concat":
        raise NotImplementedError  # mapped by a handler (the tensor list and the batch axis need the load context)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.axis + 1)

    def out_shape(self, *shapes: Shape) -> Shape:
        first = shapes[0]
        if not 0 <= self.axis < len(first):
            raise ValueError(f"Concat axis {self.axis} does not exist in shape {first}")
        for s in shapes[1:]:
            if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != self.axis):
                raise ValueError(f"Concat along axis {self.axis} needs equal other axes, got {shapes}")
        return first[: self.axis] + (sum(s[self.axis] for s in shapes),) + first[self.axis + 1 :]

    def describe(self) -> str:
        return f"{self.arity} inputs, axis {self.axis}"

    def ibp(self, *xs: Interval) -> Interval:
        d = self.axis + 1
        if all(not x.is_bounds for x in xs):
            return Interval(c=torch.cat([x.c for x in xs], d), r=torch.cat([x.r for x in xs], d))
        parts = [x.bounds() for x in xs]
        return Interval(torch.cat([p[0] for p in parts], d), torch.cat([p[1] for p in parts], d), nonneg=all(x.nonneg for x in xs))

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        sizes = [ctx.shape(i)[self.axis] for i in ctx.graph.inputs_of[name]]
        return list(torch.split(A, sizes, dim=self.axis + 2)), zero_const(A)

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        errs = [ctx.err[i] for i in ctx.graph.inputs_of[name]]
        return torch.cat(_same_batch(errs), self.axis + 1)

    def singleprop(self, centres, radii, variant):
        return torch.cat(_same_batch(radii), self.axis + 1)

    def to_onnx(self, b, name, ins, out) -> None:
        b.add("Concat", ins, out, axis=self.axis + 1)


def _same_batch(ts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Tensors whose batch axis may be 1 where the value is the same for every sample, broadcast to one batch."""
    n = max(t.shape[0] for t in ts)
    return [t.expand((n,) + t.shape[1:]) if t.shape[0] != n else t for t in ts]


# ---- reading: Concat with constants joined to the data, in ONNX and ATen
@reads_onnx("Concat")
def _read_onnx_concat(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    got = [ctx.get(i) for i in node.input]
    data = next(p for p in got if isinstance(p, Tensor))  # (all-constant Concats are folded before handlers)
    # the others are stored constants (a derived or missing one would fail in constant_from, not be joined)
    rank = len(ctx.full_shape(data))
    if any(isinstance(p, np.ndarray) and p.ndim != rank for p in got):
        raise ctx.unsupported(f"a constant part of another rank than the data's {rank} (Concat does not broadcast)")
    parts = [p if isinstance(p, Tensor) else ctx.constant_from(data, cast(np.ndarray, p)) for p in got]
    axis = ctx.sample_axis(parts[0], int(attrs.get("axis", 0)))
    if len(parts) == 1:
        return [parts[0]]
    return [ctx.emit(Concat(axis, len(parts)), parts, "concat")]


@reads_aten("aten.cat.default")
def _read_aten_cat(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    parts = list(a[0])
    data = next(p for p in parts if isinstance(p, Tensor))  # (all-constant cats are evaluated before handlers)
    parts = [p if isinstance(p, Tensor) else ctx.constant_from(data, np.asarray(p)) for p in parts]
    dim = int(a[1]) if len(a) > 1 else int(kw.get("dim", 0))
    axis = ctx.sample_axis(parts[0], dim)
    return parts[0] if len(parts) == 1 else ctx.emit(Concat(axis, len(parts)), parts, "concat")
