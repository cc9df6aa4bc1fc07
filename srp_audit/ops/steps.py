"""Rounding steps on the model's data: Ceil, Round (half to even, as ONNX and torch define it) and Trunc (a Cast
of floats to an integer type: rounding toward zero, as C and onnxruntime cast).

Each is monotone and integer-valued, so IBP is exact: the step at each end of the box (a float's floor, ceiling,
rounding or truncation is a float). CROWN bounds each by the two parallel lines that hold everywhere (x ≤ ⌈x⌉ <
x + 1; x − ½ ≤ round(x) ≤ x + ½; x − 1 < trunc(x) < x + 1) or by its constant value where the box holds no step;
slopes 1 and intercepts ½ or 1 are exact numbers. A Cast to an integer type is undefined by ONNX outside the
type's range: where the box reaches past it, Trunc's enclosure also holds the whole range and CROWN uses it.
"""

from __future__ import annotations

import torch

from ..kernel.interval import Interval
from .lines import LinesActivation


def _step_lines(l: torch.Tensor, u: torch.Tensor, step, below: float, above: float):
    """Lines x + below ≤ f(x) ≤ x + above, or the constant f(l) where f(l) = f(u) (no step inside the box)."""
    same = step(l) == step(u)
    one, zero = torch.ones_like(l), torch.zeros_like(l)
    slope = torch.where(same, zero, one)
    return (slope, torch.where(same, step(l), torch.full_like(l, below)),
            slope, torch.where(same, step(l), torch.full_like(l, above)))


class _Step(LinesActivation, abstract=True):
    """A monotone rounding step: IBP at the box's ends, CROWN by its parallel lines."""

    ibp_exact = True
    below: float = -1.0
    above: float = 0.0

    def step(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x)

    def ibp(self, x: Interval) -> Interval:
        lo, hi = x.bounds()
        return Interval(self.step(lo), self.step(hi))  # exact: monotone, and the step of a float is a float

    def lines(self, l: torch.Tensor, u: torch.Tensor):
        return _step_lines(l, u, self.step, self.below, self.above)

    def singleprop(self, centres, radii, variant):
        """Half the output's range over [c − v, c + v] (its gradient is zero almost everywhere)."""
        c, v = centres[0], radii[0]
        return 0.5 * (self.step(c + v) - self.step(c - v))


class Ceil(_Step):
    """y = ⌈x⌉."""

    below, above = 0.0, 1.0
    onnx_op = "Ceil"
    aten_ops = ("aten.ceil.default",)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ceil(x)


class Round(_Step):
    """y = x rounded to the nearest integer, ties to even (ONNX Round, torch.round)."""

    below, above = -0.5, 0.5
    onnx_op = "Round"
    aten_ops = ("aten.round.default",)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)


INT_RANGES = {"int8": (-2.0 ** 7, 2.0 ** 7 - 1), "uint8": (0.0, 255.0), "int16": (-2.0 ** 15, 2.0 ** 15 - 1),
              "uint16": (0.0, 2.0 ** 16 - 1), "int32": (-2.0 ** 31, 2.0 ** 31 - 1), "uint32": (0.0, 2.0 ** 32 - 1),
              "int64": (-2.0 ** 63, 2.0 ** 63 - 1024), "uint64": (0.0, 2.0 ** 64 - 2048)}
"""The float-exact part of each integer type's range (int64's top is 2^63 − 1, not a float: its largest float)."""
ONNX_TYPES = {"float": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "int32": 6, "int64": 7, "uint32": 12, "uint64": 13}
"""ONNX's TensorProto data-type codes of the types a Cast may target here."""


class Trunc(_Step):
    """y = trunc(x): the value of a Cast of a float to the integer type `dtype` (and back to float: IR values are
    floats), or with no type (None) the rounding toward zero inside Mod. Outside the type's range ONNX leaves the
    result undefined: the enclosure then holds every value of the type as well as trunc's (the forward pass gives
    trunc's)."""

    below, above = -1.0, 1.0
    aten_ops = ("aten.trunc.default",)

    def __init__(self, dtype: str | None = None) -> None:
        super().__init__()
        if dtype is not None and dtype not in INT_RANGES:
            raise ValueError(f"casting to {dtype} is not supported")
        self.dtype = dtype

    @property
    def ibp_exact(self) -> bool:  # type: ignore[override]  # Node's ClassVar flag, a property of the instance here
        """Past an integer type's range the enclosure also holds the type's values: exact only without a type."""
        return self.dtype is None

    def describe(self) -> str:
        return f"cast to {self.dtype}" if self.dtype else "trunc"

    def step(self, x: torch.Tensor) -> torch.Tensor:
        return torch.trunc(x)

    def _outside(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        low, high = INT_RANGES[self.dtype] if self.dtype else (-float("inf"), float("inf"))
        return (lo < low) | (hi > high) | lo.isnan() | hi.isnan()

    def ibp(self, x: Interval) -> Interval:
        lo, hi = x.bounds()
        if self.dtype is None:
            return Interval(torch.trunc(lo), torch.trunc(hi))
        low, high = INT_RANGES[self.dtype]
        out = self._outside(lo, hi)
        tl, th = torch.trunc(lo), torch.trunc(hi)
        return Interval(torch.where(out, torch.minimum(tl, torch.full_like(tl, low)), tl),
                        torch.where(out, torch.maximum(th, torch.full_like(th, high)), th))

    def lines(self, l: torch.Tensor, u: torch.Tensor):
        ls, li, us, ui = _step_lines(l, u, torch.trunc, self.below, self.above)
        out = self._outside(l, u)
        if not bool(out.any()):
            return ls, li, us, ui
        box = self.ibp(Interval(l, u))
        zero = torch.zeros_like(l)
        return (torch.where(out, zero, ls), torch.where(out, box.lower, li), torch.where(out, zero, us), torch.where(out, box.upper, ui))

    def to_onnx(self, b, name, ins, out):
        if self.dtype is None:  # trunc(x) = x − fmod(x, 1), both exact in floating point
            b.add("Mod", [ins[0], b.const(name + "_one", torch.ones(1))], out + "_frac", fmod=1)
            b.add("Sub", [ins[0], out + "_frac"], out)
            return
        b.add("Cast", ins, out + "_int", to=ONNX_TYPES[self.dtype])
        b.add("Cast", [out + "_int"], out, to=ONNX_TYPES["float"])

    def singleprop(self, centres, radii, variant):
        c, v = centres[0], radii[0]
        return 0.5 * (torch.trunc(c + v) - torch.trunc(c - v))


