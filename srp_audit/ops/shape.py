"""Ops that only move values: Reshape (flatten included), Transpose, constant Pad and Identity.

They are exact in every method: IBP applies them to both parts of an interval, CROWN moves coefficients back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..ir.node import Node, Shape
from ..kernel.backward import Context, zero_const
from ..kernel.interval import Interval
from ..kernel.patches import flat_sum
from ..kernel.rounding import dot_gamma


class _MovesValues(Node):
    """Shared rules of the ops that only move values (reshape, transpose, identity)."""

    def ibp(self, x: Interval) -> Interval:
        return x.map(self)

    def ball_image(self, ball):
        """Each entry moves to one place: the ball's image is the same ball around the moved centre."""
        return ball.moved(self(ball.centre))

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        return [A.reshape(A.shape[:2] + ctx.shape(ctx.x(name)))], zero_const(A)

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        return self(ctx.err[ctx.x(name)])

    def singleprop(self, centres, radii, variant):
        return self(radii[0])


class Reshape(_MovesValues):
    """Reshape the sample to `shape` (flatten is the special case of a 1-D target). The batch axis is kept."""

    passes_bounds = True

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape((x.shape[0],) + self.shape)

    def out_shape(self, shape: Shape) -> Shape:
        if math.prod(shape) != math.prod(self.shape):
            raise ValueError(f"cannot reshape {shape} to {self.shape}")
        return self.shape

    def describe(self) -> str:
        return f"→{self.shape}"

    def to_onnx(self, b, name, ins, out) -> None:
        shape = b.const(f"{name}.shape", np.array((-1,) + self.shape, dtype=np.int64))
        b.add("Reshape", [ins[0], shape], out)


class Identity(_MovesValues):
    """y = x (ONNX Identity and Dropout at inference); `simplify` removes it."""

    passes_bounds = True

    onnx_op = "Identity"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Transpose(_MovesValues):
    """Permute the sample's axes (`perm` indexes sample axes; the batch axis stays first)."""

    passes_bounds = True

    def __init__(self, perm: Sequence[int]) -> None:
        super().__init__()
        self.perm = tuple(int(p) for p in perm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute((0,) + tuple(p + 1 for p in self.perm))

    def inverse(self) -> tuple[int, ...]:
        inv = [0] * len(self.perm)
        for i, p in enumerate(self.perm):
            inv[p] = i
        return tuple(inv)

    def out_shape(self, shape: Shape) -> Shape:
        if sorted(self.perm) != list(range(len(shape))):
            raise ValueError(f"perm {self.perm} does not fit shape {shape}")
        return tuple(shape[p] for p in self.perm)

    def describe(self) -> str:
        return f"perm{self.perm}"

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        return [A.permute((0, 1) + tuple(p + 2 for p in self.inverse()))], zero_const(A)

    def to_onnx(self, b, name, ins, out) -> None:
        b.add("Transpose", ins, out, perm=[0] + [p + 1 for p in self.perm])


def _rounded_ends(value: float, dtype: torch.dtype) -> tuple[float, float]:
    """The largest number of `dtype` at or below `value` and the smallest at or above it."""
    t = torch.tensor(value, dtype=torch.float64)
    near = t.to(dtype)
    down = torch.where(near.double() > t, torch.nextafter(near, torch.tensor(-math.inf, dtype=dtype)), near)
    up = torch.where(near.double() < t, torch.nextafter(near, torch.tensor(math.inf, dtype=dtype)), near)
    return float(down), float(up)


class Pad(Node):
    """Constant padding of the sample's axes; `pads` holds (before, after) per sample axis."""

    def __init__(self, pads: Sequence[tuple[int, int]], value: float = 0.0) -> None:
        super().__init__()
        self.pads = tuple((int(a), int(b)) for a, b in pads)
        self.value = float(value)  # the model's own value (the ATen reader rounds torch's Python scalars to float32)

    def torch_pad(self) -> tuple[int, ...]:
        flat: list[int] = []
        for before, after in reversed(self.pads):
            flat += [before, after]
        return tuple(flat)

    def forward(self, x: torch.Tensor, value: float | None = None) -> torch.Tensor:
        return F.pad(x, self.torch_pad(), value=self.value if value is None else value)

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) != len(self.pads):
            raise ValueError(f"Pad has {len(self.pads)} axes, sample has shape {shape}")
        out = tuple(n + a + b for n, (a, b) in zip(shape, self.pads))
        if any(n <= 0 for n in out):
            raise ValueError(f"padding {self.pads} empties a sample of shape {shape}")
        return out

    def describe(self) -> str:
        return f"{list(self.pads)} value={self.value}"

    def ball_image(self, ball):
        """Padding adds constant entries and cropping drops entries: neither lengthens x − c. The padded centre
        must hold the constant exactly: a constant the centre's dtype cannot hold (0.7 in float32) stops the ball."""
        c = ball.centre
        if float(torch.tensor(self.value, dtype=torch.float64).to(c.dtype)) != self.value:
            return None
        return ball.moved(self(c))

    def ibp(self, x: Interval) -> Interval:
        """The padded entries are the constant: exact when it is a number of the bounds' dtype; otherwise (0.7 in
        float32) the lower bound pads with it rounded down and the upper with it rounded up, or the radius with a
        rounding gap (F.pad would round it to nearest, on one side of the exact value)."""
        near = float(torch.tensor(self.value, dtype=torch.float64).to(x.dtype))
        if x.is_bounds:
            if near == self.value:
                return Interval(self(x.lo), self(x.hi), nonneg=x.nonneg and self.value >= 0)
            down, up = _rounded_ends(self.value, x.dtype)
            return Interval(self(x.lo, value=down), self(x.hi, value=up), nonneg=x.nonneg and self.value >= 0)
        gap = 0.0 if near == self.value else torch.finfo(x.dtype).eps * abs(near) + torch.finfo(x.dtype).tiny  # ≥ 1 ulp
        return Interval(c=self(x.c, value=near), r=self(x.r, value=gap))

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        x_shape = ctx.shape(ctx.x(name))
        index = (slice(None), slice(None)) + tuple(slice(a, a + n) for (a, _), n in zip(self.pads, x_shape))
        inner = A[index]
        const = self.value * (flat_sum(A) - flat_sum(inner)) if self.value else zero_const(A)
        return [inner], const

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        g = dot_gamma(math.prod(ctx.shape(name)), ctx.mag(ctx.x(name)).dtype)
        return self(ctx.err[ctx.x(name)], value=g * abs(self.value))

    def singleprop(self, centres, radii, variant):
        return self(radii[0], value=0.0)

    def to_onnx(self, b, name, ins, out) -> None:
        befores = [0] + [p[0] for p in self.pads]
        afters = [0] + [p[1] for p in self.pads]
        pads = b.const(f"{name}.pads", np.array(befores + afters, dtype=np.int64))
        value = b.const(f"{name}.value", np.array(self.value, dtype=np.float32))
        b.add("Pad", [ins[0], pads, value], out, mode="constant")
