"""Smooth and piecewise-smooth activations on the grid rule of `scalar.py`: SiLU, GELU, Mish, HardSwish,
Softplus, Sin, Cos, Atan, and SELU (with ELU for α > 1).

Each states what the rule needs: its kinks, bounds on f″ between them, and its shape for IBP (monotone or a
single valley). Curvature bounds and valleys are analytic where that is short (GELU, HardSwish, Softplus,
Sin/Cos); for SiLU, Mish and tanh-GELU they are the extremes over a 1e-5 grid on [−30, 30] (beyond which f″ is
below 1e-11) widened by margins far above the sampling error (|f‴| ≤ 2, so at most 2e-5). Valley abscissae are
accurate to 1e-5, well inside `scalar.VALLEY_SLACK`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..kernel.rounding import as_float32
from .scalar import ScalarActivation


def _const(l: torch.Tensor, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full_like(l, lo), torch.full_like(l, hi)


class Silu(ScalarActivation):
    """y = x·σ(x) (SiLU, swish); ONNX has no op for it, the loader fuses Mul(x, Sigmoid(x))."""

    aten_ops = ("aten.silu.default",)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)

    def curvature(self, l, u):
        return _const(l, -0.0375, 0.5001)

    def valley(self):
        return -1.27846, -0.27846455

    def to_onnx(self, b: Any, name: str, ins: list[str], out: str) -> None:
        b.add("Sigmoid", ins, f"{name}_sigmoid")
        b.add("Mul", [ins[0], f"{name}_sigmoid"], out)


_K_MAX, _K_MIN = 4 / math.sqrt(math.pi), -4 / math.sqrt(math.pi) * math.exp(-2)  # extremes of d²/dy² y(1 + erf y)
_Y_STAR, _K_VALLEY = -0.531597, -0.24037559  # argmin of y(1 + erf y) and a value at or below its minimum


class Gelu(ScalarActivation):
    """y = scale·x·(1 + erf(inner·x)) (exact GELU: scale ½, inner 1/√2), or torch's tanh approximation.

    Exact form: with y = inner·x, f = (scale/inner)·y(1 + erf y), so f″ = scale·inner·k(y) with
    k(y) = (4/√π)e^{−y²}(1 − y²) ∈ [−(4/√π)e^{−2}, 4/√π]. The loader fuses the Div/Erf/Add/Mul form the
    TorchScript exporter writes, keeping its exact constants."""

    onnx_op = "Gelu"
    aten_ops = ("aten.gelu.default",)

    def __init__(self, approximate: str = "none", scale: float = 0.5, inner: float = 1 / math.sqrt(2)) -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU approximation '{approximate}' (only 'none' and 'tanh' exist)")
        if not (scale > 0 and inner > 0):
            raise ValueError("GELU needs positive scale and inner factor")
        self.approximate, self.scale, self.inner = approximate, float(scale), float(inner)
        self.standard = approximate == "tanh" or (self.scale == 0.5 and self.inner == 1 / math.sqrt(2))

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any]) -> "Gelu":
        a = attrs.get("approximate", "none")
        return cls(a.decode() if isinstance(a, bytes) else a)

    @classmethod
    def from_aten(cls, args: list[Any], kwargs: dict[str, Any]) -> "Gelu":
        return cls(str(kwargs.get("approximate", args[1] if len(args) > 1 else "none")))

    def onnx_attrs(self) -> dict[str, Any]:
        return {"approximate": self.approximate}

    def to_onnx(self, b: Any, name: str, ins: list[str], out: str) -> None:
        if self.standard:
            b.add("Gelu", ins, out, approximate=self.approximate)
            return
        inner, scale = b.const(f"{name}_inner", torch.tensor(self.inner)), b.const(f"{name}_scale", torch.tensor(self.scale))
        one = b.const(f"{name}_one", torch.tensor(1.0))
        b.add("Mul", [ins[0], inner], f"{name}_y")
        b.add("Erf", [f"{name}_y"], f"{name}_erf")
        b.add("Add", [f"{name}_erf", one], f"{name}_1p")
        b.add("Mul", [ins[0], f"{name}_1p"], f"{name}_x1p")
        b.add("Mul", [f"{name}_x1p", scale], out)

    def describe(self) -> str:
        return "tanh approximation" if self.approximate == "tanh" else ("" if self.standard else f"{self.scale:g}·x·(1 + erf({self.inner:g}·x))")

    def f(self, x: torch.Tensor) -> torch.Tensor:
        if self.approximate == "tanh":
            return F.gelu(x, approximate="tanh")
        if self.standard:
            return F.gelu(x)
        return self.scale * x * (1 + torch.erf(self.inner * x))

    def curvature(self, l, u):
        if self.approximate == "tanh":
            return _const(l, -0.1085, 0.7980)
        k = self.scale * self.inner
        return _const(l, k * _K_MIN * 1.001, k * _K_MAX * 1.001)

    def valley(self):
        if self.approximate == "tanh":
            return -0.75246, -0.17004076
        return _Y_STAR / self.inner, self.scale / self.inner * _K_VALLEY


class Mish(ScalarActivation):
    """y = x·tanh(softplus(x))."""

    onnx_op = "Mish"
    aten_ops = ("aten.mish.default",)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return F.mish(x)

    def curvature(self, l, u):
        return _const(l, -0.0595, 0.6443)

    def valley(self):
        return -1.19243, -0.30884342


class HardSwish(ScalarActivation):
    """y = x·min(max(x + 3, 0), 6)/6: 0 below −3, x above 3, the parabola x(x + 3)/6 between (f″ = 1/3)."""

    onnx_op = "HardSwish"
    aten_ops = ("aten.hardswish.default",)
    kinks = (-3.0, 3.0)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(x)

    def curvature(self, l, u):
        return _const(l, 0.0, 1 / 3 + 1e-9)

    def valley(self):
        return -1.5, -0.375


class Softplus(ScalarActivation):
    """y = log(1 + e^{βx})/β, convex and increasing (f″ = β·σ′(βx) ≤ β/4). Computed as torch does, returning x
    itself where βx exceeds `threshold` (20 unless the model says otherwise): at most log(1 + e^{−threshold})/β
    below the exact value (2e-9 by default), which the error term covers, so the bounds hold for both forms."""

    onnx_op = "Softplus"
    aten_ops = ("aten.softplus.default",)
    increasing = True

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        if not beta > 0 or not math.isfinite(threshold):
            raise ValueError(f"Softplus with beta {beta}, threshold {threshold} (beta > 0 and a finite threshold needed)")
        self.beta, self.threshold = float(beta), float(threshold)
        self.jump = math.log1p(math.exp(-self.threshold)) / self.beta * (1 + 1e-6)

    @classmethod
    def from_aten(cls, args: list[Any], kwargs: dict[str, Any]) -> "Softplus":
        beta = float(args[1]) if len(args) > 1 else float(kwargs.get("beta", 1.0))
        return cls(beta, float(args[2]) if len(args) > 2 else float(kwargs.get("threshold", 20.0)))

    def describe(self) -> str:
        return f"beta {self.beta:g}, threshold {self.threshold:g}"

    def to_onnx(self, b: Any, name: str, ins: list[str], out: str) -> None:
        """ONNX's Softplus is the exact function: written when torch's threshold shortcut is invisible in float32."""
        if self.jump > 1e-8:
            raise NotImplementedError(f"ONNX export of Softplus with threshold {self.threshold:g} (ONNX's Softplus has none; "
                                      f"they differ by up to {self.jump:.1e})")
        if self.beta == 1.0:
            b.add("Softplus", ins, out)
            return
        b.add("Mul", [ins[0], b.const(f"{name}.beta", torch.tensor(self.beta))], f"{name}.bx")
        b.add("Softplus", [f"{name}.bx"], f"{name}.sp")
        b.add("Mul", [f"{name}.sp", b.const(f"{name}.inv_beta", torch.tensor(1 / self.beta))], out)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x, self.beta, self.threshold)

    @property
    def ibp_exact(self) -> bool:  # type: ignore[override]  # Node's ClassVar flag, a property of the instance here
        """The error term widens every enclosure by `jump`: exact up to rounding only where the jump is that small
        (the default threshold's 2e-9), not for a low threshold (3: 0.02)."""
        return self.jump <= 1e-8 * (1 + 1 / self.beta)

    def err(self, x, y):
        return super().err(x, y) + self.jump

    def curvature(self, l, u):
        return _const(l, 0.0, self.beta / 4 * (1 + 1e-9))


class _Periodic(ScalarActivation, abstract=True):
    """sin(x + phase): maxima at π/2 − phase + 2πk, minima at −π/2 − phase + 2πk; f″ = −f."""

    phase = 0.0

    def f(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _hits(self, l: torch.Tensor, u: torch.Tensor, at: float) -> torch.Tensor:
        """Whether [l, u] may contain a point at + 2πk (erring towards yes)."""
        two_pi = 2 * math.pi
        slack = 1e-9 * (1 + l.abs() + u.abs())
        return torch.ceil((l - at) / two_pi - slack) <= torch.floor((u - at) / two_pi + slack)

    def range(self, l, u):
        fl, fu = self.f(l), self.f(u)
        lo = torch.minimum(fl - self.err(l, fl), fu - self.err(u, fu))
        hi = torch.maximum(fl + self.err(l, fl), fu + self.err(u, fu))
        hi = torch.where(self._hits(l, u, math.pi / 2 - self.phase), torch.ones_like(hi), hi.clamp(max=1))
        lo = torch.where(self._hits(l, u, -math.pi / 2 - self.phase), -torch.ones_like(lo), lo.clamp(min=-1))
        big = ~(torch.isfinite(l) & torch.isfinite(u))
        return torch.where(big, -torch.ones_like(lo), lo), torch.where(big, torch.ones_like(hi), hi)

    def curvature(self, l, u):
        lo, hi = self.range(l, u)
        return -hi, -lo


class Sin(_Periodic):
    """y = sin(x)."""

    onnx_op = "Sin"
    aten_ops = ("aten.sin.default",)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


class Cos(_Periodic):
    """y = cos(x) = sin(x + π/2)."""

    onnx_op = "Cos"
    aten_ops = ("aten.cos.default",)
    phase = math.pi / 2

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cos(x)


class Atan(ScalarActivation):
    """y = arctan(x): increasing, f″ = −2x/(1 + x²)² ∈ [−3√3/8, 3√3/8]."""

    onnx_op = "Atan"
    aten_ops = ("aten.atan.default",)
    increasing = True

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return torch.atan(x)

    def curvature(self, l, u):
        return _const(l, -0.6496, 0.6496)  # 3√3/8 = 0.649519…


SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875  # ONNX's defaults (float32 values)


class ScaledElu(ScalarActivation):
    """y = γ·x for x > 0, γ·α·(e^x − 1) below: SELU, and ELU with α > 1 (γ = 1), where it is not convex (the
    slope drops from γα to γ at the kink 0). Increasing; f″ = γαe^x ∈ (0, γα] below 0, and 0 above."""

    onnx_op = "Selu"
    increasing = True
    kinks = (0.0,)

    def __init__(self, alpha: float = SELU_ALPHA, gamma: float = SELU_GAMMA) -> None:
        super().__init__()
        self.alpha, self.gamma = as_float32(alpha), as_float32(gamma)
        if not (self.alpha > 0 and self.gamma > 0):
            raise ValueError(f"SELU/ELU with alpha {self.alpha} and gamma {self.gamma} (both must be positive)")

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any]) -> "ScaledElu":
        return cls(float(attrs.get("alpha", SELU_ALPHA)), float(attrs.get("gamma", SELU_GAMMA)))

    def onnx_attrs(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "gamma": self.gamma}

    def describe(self) -> str:
        return f"alpha {self.alpha:g}, gamma {self.gamma:g}"

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * F.elu(x, self.alpha)

    def curvature(self, l, u):
        return _const(l, 0.0, self.gamma * self.alpha * (1 + 1e-9))
