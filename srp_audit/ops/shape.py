"""Ops that only move values: Reshape (flatten included), Transpose, constant Pad and Identity; and how Identity,
Dropout and Pad are read (the reshapes and transposes are the loader's shape arithmetic, `srp_audit.formats`).

They are exact in every method: IBP applies them to both parts of an interval, CROWN moves coefficients back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..ir.node import Node, Shape
from ..ir.reading import AtenReading, OnnxNode, OnnxReading, Tensor, Value, aten_ints, aten_tensor, reads_aten, reads_onnx
from ..kernel.backward import Context, zero_const
from ..kernel.interval import Interval
from ..kernel.patches import flat_sum
from ..kernel.rounding import as_float32, dot_gamma, tiny
from .select import Select, index_map


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

    onnx_writes = "Identity"  # read by this module's reader (Dropout at inference too; no node: values pass through)

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
        if not self.value:
            return [inner], zero_const(A)
        # Σ of A over the padded entries only: Σ A − Σ inner cancels (a large inner coefficient loses the padded ones)
        padded = self(torch.zeros((1,) + tuple(x_shape), dtype=A.dtype, device=A.device), value=1.0)
        return [inner], self.value * flat_sum(A * padded.unsqueeze(1))

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        """The constant's sum over the padded entries, and the constant as the bounds' dtype holds it (2^-160 is 0 in
        float32: a gap no relative term covers)."""
        dt = ctx.mag(ctx.x(name)).dtype
        g = dot_gamma(math.prod(ctx.shape(name)), dt)
        gap = abs(self.value - float(torch.tensor(self.value, dtype=torch.float64).to(dt)))
        return self(ctx.err[ctx.x(name)], value=g * abs(self.value) + gap * 2 + tiny(dt))

    def singleprop(self, centres, radii, variant):
        return self(radii[0], value=0.0)

    def to_onnx(self, b, name, ins, out) -> None:
        befores = [0] + [p[0] for p in self.pads]
        afters = [0] + [p[1] for p in self.pads]
        pads = b.const(f"{name}.pads", np.array(befores + afters, dtype=np.int64))
        value = b.const(f"{name}.value", np.array(self.value, dtype=np.float32))
        b.add("Pad", [ins[0], pads, value], out, mode="constant")


# ---- reading: Identity and Dropout (values pass through), Pad in ONNX and ATen
@reads_onnx("Identity", "Dropout")
def _read_onnx_identity(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    training = len(node.input) > 2 and node.input[2] and bool(np.asarray(ctx.get(node.input[2])).reshape(-1)[:1].all())
    if training or (len(node.output) > 1 and node.output[1]) or attrs.get("is_test", 1) == 0:
        raise ctx.unsupported("dropout in training mode (random, so no single function to verify): export the model "
                              "after calling model.eval()")
    return [ctx.get(node.input[0])]  # type: ignore[list-item]  # an Identity/Dropout's data input is named (never None)


@reads_onnx("Pad")
def _read_onnx_pad(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    mode = attrs.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ctx.unsupported(f"mode={mode!r} (constant, reflect, edge and wrap are supported)")
    rank = len(ctx.onnx_shape(x))
    if ctx.opset >= 11:
        pads = [int(p) for p in ctx.const(node.input[1], "pads").reshape(-1)]
        stored = ctx.const(node.input[2], "constant_value").reshape(-1) if len(node.input) > 2 and node.input[2] else [0.0]
        if len(stored) != 1:
            raise ctx.unsupported(f"constant_value holds {len(stored)} numbers (one is needed)")
        value = float(stored[0])
        axes = (
            [int(a) % rank for a in ctx.const(node.input[3], "axes").reshape(-1)]
            if len(node.input) > 3 and node.input[3]
            else list(range(rank))
        )
    else:
        pads, value, axes = list(attrs["pads"]), float(attrs.get("value", 0.0)), list(range(rank))
    n = len(axes)
    if len(pads) != 2 * n:
        raise ctx.unsupported(f"{len(pads)} pad values for {n} axes")
    full = [(0, 0)] * rank
    for i, a in enumerate(axes):
        full[a] = (pads[i], pads[i + n])
    if any(p < 0 for pair in full for p in pair):
        raise ctx.unsupported("negative pads (cropping) are not supported")
    if ctx.batched:
        if full[0] != (0, 0):
            raise ctx.unsupported("padding the batch axis")
        full = full[1:]
    if all(p == (0, 0) for p in full):
        return [x]
    if mode == "reflect" and any(max(p) >= n for p, n in zip(full, x.shape)):
        raise ctx.unsupported("reflect padding as wide as the axis it reflects (onnxruntime refuses it)")
    if mode != "constant":  # reflect / edge / wrap only repeat entries of the sample: a Select
        np_modes: dict[str, Literal["reflect", "edge", "wrap"]] = {"reflect": "reflect", "edge": "edge", "wrap": "wrap"}
        np_mode = np_modes[mode]
        picks = index_map(lambda ids: [np.pad(ids, ([(0, 0)] if ctx.batched else []) + full, mode=np_mode)], x.shape, ctx.batched)
        idx, shape, _ = picks[0]  # type: ignore[index]  # not None: the pad leaves the batch axis alone, each sample its own
        return [ctx.emit(Select(idx, shape, math.prod(x.shape)), [x], "pad")]
    return [ctx.emit(Pad(full, value), [x])]


@reads_aten("aten.constant_pad_nd.default")
def _read_aten_pad(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    flat = aten_ints(a[1])
    value = float(a[2]) if len(a) > 2 else 0.0
    pads = [(0, 0)] * len(x.shape)
    for i in range(len(flat) // 2):  # torch lists pads from the last axis backwards
        pads[len(x.shape) - 1 - i] = (flat[2 * i], flat[2 * i + 1])
    if any(p < 0 for pair in pads for p in pair):
        raise ctx.unsupported("negative padding (cropping)")
    return ctx.emit(Pad(pads, as_float32(value)), [x])
