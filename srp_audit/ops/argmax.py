"""ArgMax and ArgMin along one axis, as float indices (segmentation heads: ArgMax → OneHot/Equal → ReduceSum).

A piecewise-constant function of its input: IBP encloses the index by the first and last entry that can be the
maximum somewhere in the box (upper bound ≥ the largest lower bound; ties are kept, so either tie-breaking rule
is covered), and CROWN bounds it by that constant range.
"""

from __future__ import annotations

import math

import torch

from ..ir.node import Node, Shape
from ..ir.reading import AtenReading, OnnxNode, OnnxReading, Tensor, Value, aten_tensor, reads_aten, reads_onnx
from ..kernel.backward import Context, split_signs
from ..kernel.interval import Interval
from ..kernel.patches import weighted_sum
from ..kernel.rounding import dot_gamma


class ArgMax(Node):
    """y = the index of the largest (`minimum`: smallest) entry along sample axis `axis`; `last`: the last such
    index on ties (ONNX's select_last_index), else the first; `keepdims` keeps the axis with size 1."""

    kind = "activation"
    nonlinear = True
    constant_relaxation = True  # (not `ibp_exact`: not elementwise, and IBP's hull of indices is not the set of them)

    def __init__(self, axis: int, keepdims: bool = False, last: bool = False, minimum: bool = False) -> None:
        super().__init__()
        self.axis, self.keepdims, self.last, self.minimum = int(axis), bool(keepdims), bool(last), bool(minimum)

    def describe(self) -> str:
        return f"{'argmin' if self.minimum else 'argmax'} axis {self.axis}"

    def out_shape(self, *shapes: Shape) -> Shape:
        s = list(shapes[0])
        if not 0 <= self.axis < len(s):
            raise ValueError(f"axis {self.axis} out of range for shape {tuple(s)}")
        if self.keepdims:
            s[self.axis] = 1
        else:
            del s[self.axis]
        return tuple(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ax = self.axis + 1
        v = -x if self.minimum else x
        if self.last:
            n = v.shape[ax]
            idx = n - 1 - torch.argmax(torch.flip(v, (ax,)), dim=ax, keepdim=self.keepdims)
        else:
            idx = torch.argmax(v, dim=ax, keepdim=self.keepdims)
        return idx.to(x.dtype)

    def range(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(first, last) index that can be the extreme entry for some point of the box [lo, hi]."""
        ax = self.axis + 1
        if self.minimum:
            lo, hi = -hi, -lo
        best_low = lo.amax(dim=ax, keepdim=True)
        can = hi >= best_low
        shape = [1] * lo.dim()
        shape[ax] = lo.shape[ax]
        index = torch.arange(lo.shape[ax], dtype=lo.dtype, device=lo.device).reshape(shape)
        big = torch.full_like(lo, float(lo.shape[ax]))
        first = torch.where(can, index, big).amin(dim=ax, keepdim=self.keepdims)
        last = torch.where(can, index, -torch.ones_like(lo)).amax(dim=ax, keepdim=self.keepdims)
        return first, last

    def ibp(self, x: Interval) -> Interval:
        return Interval(*self.range(*x.bounds()), nonneg=True)

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        x = ctx.x(name)
        low, high = ctx.relaxation(name, (x,), self.range)
        pos, neg = split_signs(A)
        return [A.new_zeros(A.shape[:2] + tuple(ctx.shape(x)))], weighted_sum(pos, low) + weighted_sum(neg, high)

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        """Slope 0: nothing propagates from the input; the constant's sum rounds (indices below the axis size)."""
        x = ctx.x(name)
        size = float(ctx.shape(x)[self.axis])
        e = ctx.err[x]
        return e.new_full((e.shape[0],) + tuple(ctx.shape(name)), dot_gamma(math.prod(ctx.shape(name)), e.dtype) * size)

    def to_onnx(self, b, name, ins, out):
        op = "ArgMin" if self.minimum else "ArgMax"
        b.add(op, ins, out + "_index", axis=self.axis + 1, keepdims=int(self.keepdims), select_last_index=int(self.last))
        b.add("Cast", [out + "_index"], out, to=1)

    def singleprop(self, centres, radii, variant):
        low, high = self.range(centres[0] - radii[0], centres[0] + radii[0])
        return 0.5 * (high - low)


# ---- reading: ArgMax and ArgMin, in ONNX and ATen
@reads_onnx("ArgMax", "ArgMin")
def _read_onnx_argmax(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    axis = ctx.sample_axis(x, int(attrs.get("axis", 0)))
    return [ctx.emit(ArgMax(axis, bool(attrs.get("keepdims", 1)), bool(attrs.get("select_last_index", 0)),
                                node.op_type == "ArgMin"), [x], "argmax")]


@reads_aten("aten.argmax.default", "aten.argmin.default")
def _read_aten_argmax(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    dim = a[1] if len(a) > 1 else kw.get("dim")
    keep = bool(a[2] if len(a) > 2 else kw.get("keepdim", False))
    if dim is None:
        raise ctx.unsupported("argmax over the whole tensor (give a dim)")
    return ctx.emit(ArgMax(ctx.sample_axis(x, int(dim)), keep, False, "argmin" in str(ctx.node.target)), [x], "argmax")
