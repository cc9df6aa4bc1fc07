"""Powers and the logarithm: Pow by a constant exponent, Sqrt, Reciprocal, Log.

Each is convex or concave on its domain (the `Curved` rules of `convex.py`), except odd integer powers ≥ 3,
which bend at 0 and take the grid rule of `scalar.py` with f″ = p(p − 1)x^{p−2} bounded at the box's ends.
Non-integer and negative exponents are defined for x > 0 (x ≥ 0 when positive); a box reaching below gets
infinite bounds, as the model computes NaN or ±∞ there.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..ir.reading import AtenReading, OnnxNode, OnnxReading, Reading, Tensor, Value, aten_const, aten_tensor, reads_aten, reads_onnx
from ..kernel.rounding import as_float32
from .affine import ElementwiseAffine
from .convex import Curved
from .scalar import ScalarActivation


def _exponent_kind(p: float) -> str:
    if p == int(p) and p >= 2:
        return "even" if int(p) % 2 == 0 else "odd"
    if p > 1:
        return "convex_up"  # x^p, p > 1 non-integer: convex increasing on [0, ∞)
    if 0 < p < 1:
        return "concave_up"
    if p < 0:
        return "convex_down"  # decreasing and convex on (0, ∞)
    raise ValueError(f"Pow with exponent {p:g} is linear or constant (the loader maps it without a Pow node)")


class Power(Curved):
    """y = x^p for a constant p ∉ {0, 1}: even integers on the whole line (convex, valley at 0), other
    exponents on x ≥ 0 (x > 0 for p < 0). Odd integers ≥ 3 load as `OddPower`."""

    # ONNX Pow and aten.pow are read by handlers (the exponent picks Power, OddPower, Sqrt or Reciprocal)

    def __init__(self, exponent: float = 2.0) -> None:
        super().__init__()
        p = float(exponent)
        kind = _exponent_kind(p)
        if kind == "odd":
            raise ValueError("odd integer powers are OddPower nodes")
        self.exponent, self.kind_ = p, kind
        self.sign = -1 if kind == "concave_up" else 1
        self.monotone = 0 if kind == "even" else (-1 if kind == "convex_down" else 1)
        self.domain_lo = -math.inf if kind == "even" else 0.0
        self.domain_open = kind == "convex_down"

    def to_onnx(self, b: Any, name: str, ins: list[str], out: str) -> None:
        b.add("Pow", [ins[0], b.const(f"{name}.p", torch.tensor(self.exponent))], out)

    def describe(self) -> str:
        return f"exponent {self.exponent:g}"

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return torch.pow(x, self.exponent)

    def df(self, x: torch.Tensor) -> torch.Tensor:
        return self.exponent * torch.pow(x, self.exponent - 1)


class OddPower(ScalarActivation):
    """y = x^p for an odd integer p ≥ 3: increasing, concave below 0 and convex above; f″ = p(p − 1)x^{p−2} is
    increasing, so its values at l and u bound it on [l, u]."""

    increasing = True

    def __init__(self, exponent: int = 3) -> None:
        super().__init__()
        if _exponent_kind(float(exponent)) != "odd":
            raise ValueError(f"OddPower needs an odd integer exponent ≥ 3, not {exponent}")
        self.exponent = int(exponent)

    def to_onnx(self, b: Any, name: str, ins: list[str], out: str) -> None:
        b.add("Pow", [ins[0], b.const(f"{name}.p", torch.tensor(float(self.exponent)))], out)

    def describe(self) -> str:
        return f"exponent {self.exponent}"

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return torch.pow(x, self.exponent)

    def curvature(self, l, u):
        p = self.exponent
        c = p * (p - 1)
        return c * torch.pow(l, p - 2) * (1 + 1e-6) - 1e-30, c * torch.pow(u, p - 2) * (1 + 1e-6) + 1e-30


class Sqrt(Curved):
    """y = √x on x ≥ 0 (concave, increasing)."""

    onnx_op = "Sqrt"
    aten_ops = ("aten.sqrt.default",)
    sign = -1
    domain_lo = 0.0

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x)

    def df(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 / torch.sqrt(x)


class Reciprocal(Curved):
    """y = 1/x on x > 0 (convex, decreasing); a box touching or crossing 0 is unbounded."""

    onnx_op = "Reciprocal"
    aten_ops = ("aten.reciprocal.default",)
    monotone = -1
    domain_lo = 0.0
    domain_open = True

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return torch.reciprocal(x)

    def df(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.reciprocal(x * x)


class Log(Curved):
    """y = ln x on x > 0 (concave, increasing)."""

    onnx_op = "Log"
    aten_ops = ("aten.log.default",)
    keeps_positive_order = True  # a final log of softmax's scores (LogSoftmax) keeps their order; of others, NaN at x ≤ 0
    sign = -1
    domain_lo = 0.0
    domain_open = True

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)

    def df(self, x: torch.Tensor) -> torch.Tensor:
        return torch.reciprocal(x)

    def _f_out(self, x: torch.Tensor, up: bool) -> torch.Tensor:
        # log's result can be near 0 while its argument is not: its error is relative to |log x| + ulp(1)·…
        y = self.f(x)
        e = 8 * torch.finfo(x.dtype).eps * (y.abs() + 1e-3 * torch.finfo(x.dtype).eps) + torch.finfo(x.dtype).tiny * 16
        return y + e if up else y - e


# ---- reading: Pow with a constant exponent (ONNX, ATen pow), ATen rsqrt and square — each as the op of this
# module that its exponent names
def _scalar_exponent(ctx: Reading, v: Any) -> float:
    """The one constant exponent of a power (every entry the same)."""
    arr = np.asarray(v, dtype=np.float64).reshape(-1)
    if arr.size != 1 or not np.all(arr == arr[0]):
        raise ctx.unsupported("only a single constant exponent is supported")
    return float(arr[0])


@reads_onnx("Pow")
def _read_onnx_pow(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    return [_power(ctx, x, _scalar_exponent(ctx, ctx.const(node.input[1], "exponent")))]


@reads_aten("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor")
def _read_aten_pow(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    if isinstance(a[1], Tensor):
        raise ctx.unsupported("an exponent computed from the model's data")
    return _power(ctx, aten_tensor(ctx, a[0]), as_float32(_scalar_exponent(ctx, aten_const(a[1]))))  # torch's float32 scalar


@reads_aten("aten.rsqrt.default")
def _read_aten_rsqrt(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    return _power(ctx, aten_tensor(ctx, a[0]), -0.5)


@reads_aten("aten.square.default")
def _read_aten_square(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    return _power(ctx, aten_tensor(ctx, a[0]), 2.0)


def _power(ctx: Reading, x: Tensor, p: float) -> Tensor:
    """x^p for a constant exponent (the model's own value): 1 → x itself, 0 → the constant 1, odd integers ≥ 3 →
    OddPower, else Power."""
    p = float(p)
    if p == 1.0:
        return x
    if p == 0.0:
        return ctx.emit(ElementwiseAffine(0.0, 1.0), [x], "affine")
    if p == int(p) and p >= 3 and int(p) % 2 == 1:
        return ctx.emit(OddPower(int(p)), [x], "pow")
    if p == -1.0:
        return ctx.emit(Reciprocal(), [x], "reciprocal")
    if p == 0.5:
        return ctx.emit(Sqrt(), [x], "sqrt")
    return ctx.emit(Power(p), [x], "pow")
