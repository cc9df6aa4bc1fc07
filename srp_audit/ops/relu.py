"""The ReLU family: Relu and LeakyRelu (negative slope a ∈ [0, 1]), piecewise linear with the kink at 0.

CROWN relaxes an unstable neuron (l < 0 < u) by the chord above and a lower line of slope λ ∈ [0, 1] below
(CROWN's adaptive choice, or alpha-CROWN's optimised one, from `ctx.alpha`). LeakyRelu is a·x + (1 − a)·relu(x):
its rules are ReLU's applied to the (1 − a) part, so the same slopes, splits and relaxations serve both.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import BoundMethodError
from ..ir.node import Node
from ..ir.reading import AtenReading, OnnxNode, OnnxReading, Reading, Tensor, Value, aten_tensor, aten_weight, reads_aten, reads_onnx
from ..kernel import relax
from ..kernel.backward import Context, negative_part, per_row, split_signs
from ..kernel.interval import Interval, valid_ends
from ..kernel.patches import Patches, weighted_sum
from ..kernel.rounding import as_float32, dot_gamma, tiny, unit_roundoff

SINGLEPROP_VARIANTS = ("fastlin", "zero", "adaptive")


def relu_radius(z: torch.Tensor, v: torch.Tensor, variant: str) -> torch.Tensor:
    """SingleProp's ReLU rule (z: pre-activation centre, v ≥ 0: its radius), written with ReLUs only, so that the
    same expression gives v on active and 0 on dead neurons and differentiates cheaply. With
    U = relu(z + v) = relu(u) and L = relu(v − z) = relu(−l):
    zero     ½(U − relu(z − v))                 (= (z + v)/2 when unstable: half the width of [relu(l), relu(u)])
    fastlin  U·(U + L − l) / (2(U + L))          (= 3v/4 + z/2 − z²/(4v) when unstable)
    adaptive zero + ½·relu(v − z)·[z ≥ 0]        (= v when z ≥ 0, (z + v)/2 when unstable with z < 0)
    """
    upper = torch.relu(z + v)
    if variant == "fastlin":
        neg_l = torch.relu(v - z)
        total = upper + neg_l
        return upper * (total - (z - v)) / (2 * total + 1e-30)
    zero = 0.5 * (upper - torch.relu(z - v))
    if variant == "zero":
        return zero
    if variant == "adaptive":
        return zero + 0.5 * torch.relu(v - z) * (z >= 0).to(z.dtype)
    raise ValueError(f"unknown SingleProp variant {variant!r}; choose one of {', '.join(SINGLEPROP_VARIANTS)}")


def relu_relaxation(l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(upper slope s, upper intercept, CROWN's adaptive lower slope λ, fl(s − λ)) on [l, u]: what a ReLU's backward
    step and its rounding rule read, computed once per bound computation (`Context.relaxation`)."""
    s, t = relax.relu_upper(l, u)
    lam = relax.relu_adaptive_lower(l, u)
    return s, t, lam, s - lam


def _stable_slopes(l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unstable mask, exact slope 1 or 0 of stable neurons), with a row axis: what optimised slopes are kept to."""
    active, _, unstable = relax.relu_masks(l, u)
    return unstable.unsqueeze(1), active.unsqueeze(1).to(l.dtype)


def relu_backward(A: Any, ctx: Context, name: str) -> tuple[Any, torch.Tensor]:
    """(A_x, constant) through relu at node `name` (input bounds from ctx, slopes from ctx.alpha when set)."""
    l, u = ctx.bounds[ctx.x(name)]
    up_slope, up_icpt, lam_map, gap = ctx.relaxation(name, (ctx.x(name),), relu_relaxation)
    lam = ctx.alpha.get(name)
    if isinstance(A, Patches):
        if lam is not None:
            raise BoundMethodError("optimised slopes are only used on dense coefficients")
        # A_x = A·λ + A⁻·(s − λ): four passes over the windows and no mask (a where over A > 0 took twice as
        # long on CROWN's conv refinements); constant Σ A⁻·t
        def maps() -> torch.Tensor:
            return torch.cat([lam_map, gap, up_icpt], dim=1)

        lam_w, d_w, t_w = A.pick_parts(ctx.unfolded("relu " + name, A, (l, u), maps), 3)
        n, r = A.data.shape[:2]
        neg = negative_part(A.data)
        const = torch.einsum("nrk,nrk->nr", neg.reshape(n, r, -1), t_w.reshape(n, r, -1))
        return A.with_data((A.data * lam_w).addcmul_(neg, d_w), clean=True), const
    if ctx.record is not None:
        ctx.record[name] = A.detach()
    if lam is None:  # CROWN's slopes: the patches form, three passes and no sign split
        neg = negative_part(A)
        return (A * lam_map.unsqueeze(1)).addcmul_(neg, gap.unsqueeze(1)), weighted_sum(neg, up_icpt)
    unstable, fixed = ctx.relaxation(name + " stable slopes", (ctx.x(name),), _stable_slopes)
    lam = torch.where(unstable, lam, fixed)
    pos, neg = split_signs(A)  # per-row optimised slopes: two sign parts and a fused multiply-add
    return torch.addcmul(pos * lam, neg, up_slope.unsqueeze(1)), weighted_sum(neg, up_icpt)


def relu_alpha_start(lo: torch.Tensor, hi: torch.Tensor, rows: int) -> torch.Tensor | None:
    """alpha-CROWN's lower slopes λ ∈ [0, 1] per sample, row and neuron, from CROWN's adaptive choice; None when no
    neuron is unstable (nothing to optimise)."""
    if not bool(((lo < 0) & (hi > 0)).any()):
        return None
    return per_row(relax.relu_adaptive_lower(lo, hi), rows)


def mixed_backward(A: torch.Tensor, a: float | torch.Tensor, ctx: Context, name: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """CROWN through a·x + (1 − a)·relu(x) (LeakyRelu, PRelu): A·a passes exactly, ReLU's rule takes A·(1 − a)."""
    A_r, const = relu_backward(A * (1 - a), ctx, name)
    return [A_r + A * a], const


def mixed_rounding(ctx: Context, name: str, k: float) -> torch.Tensor:
    """ReLU's allowance, doubled for the two extra products (A·a, A·(1 − a)) and the sum per coefficient, scaled by
    the coefficients' growth k = max |a| + |1 − a|."""
    x = ctx.x(name)
    mag = ctx.mag(x)
    u = unit_roundoff(mag.dtype)
    return k * (ctx.err[x] * (1 + 8 * u) + 2 * dot_gamma(math.prod(ctx.shape(name)), mag.dtype) * mag)


class Relu(Node):
    """y = max(x, 0)."""

    kind = "activation"
    nonlinear = True
    elementwise = True
    ibp_exact = True
    kinked_at_zero = True
    zero_below_zero = True
    crown_patches = True
    onnx_op = "Relu"
    aten_ops = ("aten.relu.default",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def ibp(self, x: Interval) -> Interval:
        if x.is_bounds:
            return Interval(torch.relu(x.lo), torch.relu(x.hi), nonneg=True)  # exact
        lo, hi = valid_ends(x.c - x.r, x.c + x.r)  # fresh tensors (an overflowed end made infinite, never +∞ below)
        return Interval(torch.relu_(lo), torch.relu_(hi), nonneg=True)

    def alpha_start(self, lo: torch.Tensor, hi: torch.Tensor, rows: int) -> torch.Tensor | None:
        return relu_alpha_start(lo, hi, rows)

    def crown_backward(self, A, ctx: Context, name: str):
        A_x, const = relu_backward(A, ctx, name)
        return [A_x], const

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        x = ctx.x(name)
        mag = ctx.mag(x)
        u = unit_roundoff(mag.dtype)
        # A_x = A⁺·λ + A⁻·s (optimised slopes: three roundings) or A·λ + A⁻·fl(s − λ) (four, fl(s − λ) within
        # u·|s − λ| ≤ u of s − λ): at most four roundings of terms ≤ |A|·(1 + 2u) each, times |x|; the
        # constant Σ A⁻·t sums over the whole layer, and t is non-zero only on unstable neurons
        icpt = ctx.relaxation(name, (x,), relu_relaxation)[1]
        return ctx.err[x] * (1 + 4 * u) + 8 * u * mag + dot_gamma(math.prod(ctx.shape(name)), mag.dtype) * icpt.abs()

    def singleprop(self, centres, radii, variant):
        return relu_radius(centres[0], radii[0], variant)


class LeakyRelu(Node):
    """y = x for x ≥ 0, a·x below (a = `negative_slope` ∈ [0, 1]; ONNX LeakyRelu's alpha, torch's negative_slope)."""

    kind = "activation"
    nonlinear = True
    elementwise = True
    ibp_exact = True  # a monotone sum: relu(x) + a·min(x, 0), a ∈ [0, 1]
    kinked_at_zero = True
    onnx_op = "LeakyRelu"
    aten_ops = ("aten.leaky_relu.default",)

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        a = as_float32(negative_slope)
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"LeakyRelu with negative slope {a} (only slopes in [0, 1] are supported)")
        self.negative_slope = a

    @classmethod
    def of(cls, negative_slope: float) -> "LeakyRelu | PRelu":
        """This op for a slope in [0, 1]; outside (a negative slope: not monotone; above 1: concave), a PRelu with
        that one slope, whose rules hold for any sign."""
        a = as_float32(negative_slope)
        return cls(a) if 0.0 <= a <= 1.0 else PRelu(torch.tensor(a, dtype=torch.float32))

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any]) -> "LeakyRelu | PRelu":
        return cls.of(float(attrs.get("alpha", 0.01)))

    @classmethod
    def from_aten(cls, args: list[Any], kwargs: dict[str, Any]) -> "LeakyRelu | PRelu":
        return cls.of(float(args[1]) if len(args) > 1 else float(kwargs.get("negative_slope", 0.01)))

    def onnx_attrs(self) -> dict[str, Any]:
        return {"alpha": self.negative_slope}

    def describe(self) -> str:
        return f"slope {self.negative_slope:g}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def ibp(self, x: Interval) -> Interval:
        """Monotone: [f(l), f(u)], where a·t (t < 0) is rounded outward by a relative 2u plus an underflow guard."""
        lo, hi = x.bounds()
        a, u2, t = self.negative_slope, 2 * unit_roundoff(lo.dtype), tiny(lo.dtype)
        flo, fhi = F.leaky_relu(lo, a), F.leaky_relu(hi, a)
        flo = torch.where(lo < 0, flo - u2 * flo.abs() - t, flo)
        fhi = torch.where(hi < 0, fhi + u2 * fhi.abs() + t, fhi)
        return Interval(*valid_ends(flo, fhi), nonneg=a == 0.0)  # −∞ + ∞ (an infinite upper end below 0) is NaN

    def alpha_start(self, lo: torch.Tensor, hi: torch.Tensor, rows: int) -> torch.Tensor | None:
        return relu_alpha_start(lo, hi, rows)

    def crown_backward(self, A, ctx: Context, name: str):
        return mixed_backward(A, self.negative_slope, ctx, name)

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        return mixed_rounding(ctx, name, 1.0)  # |a| + |1 − a| = 1 for a ∈ [0, 1]

    def singleprop(self, centres, radii, variant):
        a = self.negative_slope
        return a * radii[0] + (1 - a) * relu_radius(centres[0], radii[0], variant)


class PRelu(Node):
    """y = x for x ≥ 0, a·x below, with a learned slope per channel (any sign): a·x + (1 − a)·relu(x) as for
    LeakyRelu, with a a constant tensor that broadcasts against the sample."""

    kind = "activation"
    slope: torch.Tensor  # a buffer (`register_buffer` in __init__), declared so that it types as a tensor
    nonlinear = True
    elementwise = True
    kinked_at_zero = True

    def __init__(self, slope: torch.Tensor | float = 0.25) -> None:
        super().__init__()
        t = torch.as_tensor(slope)
        # the stored slope exactly: float32, or float64 for a float64 model (the loader then makes the graph float64)
        self.register_buffer("slope", t.to(torch.float64 if t.dtype == torch.float64 else torch.float32).detach().clone())

    def to_onnx(self, b: Any, name: str, ins: list[str], out: str) -> None:
        b.add("PRelu", [ins[0], b.const(f"{name}.slope", self.slope)], out)

    def describe(self) -> str:
        return f"{self.slope.numel()} slopes in [{float(self.slope.min()):.3g}, {float(self.slope.max()):.3g}]"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.slope.to(x.dtype)
        if a.dim() == 0 or (a.dim() == x.dim() - 1 and all(n == 1 for n in a.shape[1:])):  # torch's form: one per channel
            return F.prelu(x, a.reshape(-1))
        return torch.where(x >= 0, x, a * x)

    def ibp(self, x: Interval) -> Interval:
        """relu(x) ∈ [relu(l), relu(u)] plus a·min(x, 0) between its values at l and u; outward by 4u. An end that
        overflows (a·l past the range) or is NaN (0·∞, ∞ − ∞) becomes infinite (`valid_ends`)."""
        lo, hi = x.bounds()
        a = self.slope.to(lo.dtype)
        nl, nu = a * lo.clamp(max=0), a * hi.clamp(max=0)
        ylo, yhi = lo.clamp(min=0) + torch.minimum(nl, nu), hi.clamp(min=0) + torch.maximum(nl, nu)
        u4, t = 4 * unit_roundoff(lo.dtype), tiny(lo.dtype)
        return Interval(*valid_ends(ylo - u4 * ylo.abs() - t, yhi + u4 * yhi.abs() + t))

    def alpha_start(self, lo: torch.Tensor, hi: torch.Tensor, rows: int) -> torch.Tensor | None:
        return relu_alpha_start(lo, hi, rows)

    def crown_backward(self, A, ctx: Context, name: str):
        return mixed_backward(A, self.slope.to(A.dtype), ctx, name)

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        return mixed_rounding(ctx, name, float((self.slope.abs() + (1 - self.slope).abs()).max()))

    def singleprop(self, centres, radii, variant):
        a = self.slope.to(radii[0].dtype)
        return a.abs() * radii[0] + (1 - a).abs() * relu_radius(centres[0], radii[0], variant)


# ---- reading: PRelu with a stored slope tensor (ONNX broadcasts it numpy-style, torch along the channel axis)
@reads_onnx("PRelu")
def _read_onnx_prelu(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    return [_prelu(ctx, ctx.tensor(node.input[0]), ctx.weight(node.input[1], "slope"), None)]


@reads_aten("aten.prelu.default")
def _read_aten_prelu(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    w = aten_weight(ctx, a[1])
    channel = ctx.sample_axis(x, 1) if len(ctx.full_shape(x)) > 1 else 0
    return _prelu(ctx, x, w, channel)


def _prelu(ctx: Reading, x: Tensor, slope: torch.Tensor, channel_axis: int | None) -> Tensor:
    """PRelu with a constant slope: ONNX broadcasts it numpy-style (ONNX) or, in torch, along the channel axis."""
    s = slope.reshape(-1) if channel_axis is not None else slope
    if channel_axis is not None and s.numel() > 1:
        shape = [1] * len(x.shape)
        shape[channel_axis] = s.numel()
        s = s.reshape(shape)
    elif channel_axis is not None:
        s = s.reshape(())
    else:
        s = ctx.sample_const(x, s.numpy())
    x = ctx.broadcast(x, s)
    return ctx.emit(PRelu(s), [x], "prelu")
