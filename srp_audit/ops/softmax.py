"""Softmax over one sample axis. Classifiers often end with it; `certify` then proves the argmax on the logits
before it (softmax keeps their order) and says so, while `verify` keeps it, since a property may be about
probabilities.

IBP: y_i = 1 / (1 + Σ_{j≠i} exp(x_j − x_i)) is decreasing in every x_j (j ≠ i) and increasing in x_i, so the
interval bounds come from the opposite corners, computed as σ(x_i − LSE_{j≠i} x_j) so that no exponential
overflows and no quotient of underflowed numbers arises at any logit spread; every step is rounded outward.
CROWN relaxes it by those constant bounds (slope 0): sound, and tight where IBP is.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from ..errors import ModelLoadError
from ..ir.node import Node, Shape
from ..ir.reading import AtenReading, OnnxNode, OnnxReading, Reading, Tensor, Value, aten_tensor, reads_aten, reads_onnx
from ..kernel.backward import Context, split_signs
from ..kernel.interval import Interval
from ..kernel.patches import weighted_sum
from ..kernel.rounding import dot_gamma, tiny, unit_roundoff


class Softmax(Node):
    """y = softmax(x) over one sample axis."""

    kind = "activation"
    nonlinear = True
    constant_relaxation = True
    keeps_argmax = True
    positive_output = True
    onnx_writes: ClassVar[str | None] = "Softmax"  # read by this module's reader (opset conventions for the axis)

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = int(axis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=self.axis + 1)

    def out_shape(self, shape: Shape) -> Shape:
        if not 0 <= self.axis < len(shape):
            raise ValueError(f"Softmax axis {self.axis} does not exist in shape {shape}")
        return shape

    def describe(self) -> str:
        return f"axis {self.axis}"

    def relevant_inputs(self, mask: torch.Tensor, shapes: list[Shape]) -> list[torch.Tensor]:
        """An output entry reads its whole slice along the axis."""
        return [mask.any(dim=self.axis + 1, keepdim=True).expand(mask.shape).clone()]

    def onnx_attrs(self) -> dict:
        return {"axis": self.axis + 1}

    def bounds(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rigorous lower and upper bounds of softmax over the box [lo, hi] (same shape), at any scale:
        min y_i = σ(l_i − LSE_{j≠i}(u_j)) and max y_i = σ(u_i − LSE_{j≠i}(l_j)), σ the logistic function and LSE the
        log-sum-exp. Every exponential has an argument ≤ 0 and every sum contains the term e⁰ = 1, so nothing
        overflows and no quotient of two underflowed numbers is ever formed (a logit spread past 708 underflows
        e^{x − max}; with denormals flushed to zero the old quotient form returned 0 for a probability of 0.05).
        Every exp, sum, log, difference and σ is rounded outward by its own allowance."""
        d = self.axis + 1
        if lo.shape[d] == 1:
            one = torch.ones_like(lo)
            return one, one
        _, lse_u_hi = _lse_excluding(hi, d)  # the others at their highest make y_i smallest
        lse_l_lo, _ = _lse_excluding(lo, d)
        low = _sigmoid_bounds(_sub_down(lo, lse_u_hi), upper=False)
        high = _sigmoid_bounds(_sub_up(hi, lse_l_lo), upper=True)
        return torch.nan_to_num(low, nan=0.0).clamp(0, 1), torch.nan_to_num(high, nan=1.0).clamp(0, 1)

    def ibp(self, x: Interval) -> Interval:
        return Interval(*self.bounds(*x.bounds()), nonneg=True)

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        low, high = ctx.relaxation(name, (ctx.x(name),), self.bounds)
        pos, neg = split_signs(A)
        return [torch.zeros_like(A)], weighted_sum(pos, low) + weighted_sum(neg, high)

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        """Slope 0: nothing propagates from the input; the constant's sum rounds (values in [0, 1])."""
        x = ctx.x(name)
        return torch.full_like(ctx.err[x], dot_gamma(math.prod(ctx.shape(name)), ctx.err[x].dtype))

    def singleprop(self, centres, radii, variant):
        low, high = self.bounds(centres[0] - radii[0], centres[0] + radii[0])
        return 0.5 * (high - low)



class LogSoftmax(Softmax):
    """y = log softmax(x) = x_i − LSE_j x_j over one sample axis (its own op: log of a softmax underflows to −∞ in
    the forward pass and gives no bound below; this form is exact and bounded at any logit spread).

    IBP: y_i = −softplus(LSE_{j≠i} x_j − x_i), decreasing in every x_j (j ≠ i), increasing in x_i: the bounds
    come from the same opposite corners as softmax's, each softplus rounded outward. CROWN: those constants."""

    positive_output = False

    onnx_writes = None  # written by its own `to_onnx`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(x, dim=self.axis + 1)

    def bounds(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.axis + 1
        if lo.shape[d] == 1:
            zero = torch.zeros_like(lo)
            return zero, zero
        _, lse_u_hi = _lse_excluding(hi, d)
        lse_l_lo, _ = _lse_excluding(lo, d)
        low = -_softplus_bounds(_sub_up(lse_u_hi, lo), upper=True)
        high = -_softplus_bounds(_sub_down(lse_l_lo, hi), upper=False)
        return torch.nan_to_num(low, nan=-math.inf).clamp(max=0), torch.nan_to_num(high, nan=0.0).clamp(max=0)

    def ibp(self, x: Interval) -> Interval:
        return Interval(*self.bounds(*x.bounds()))

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        """Slope 0: nothing propagates from the input; the constant's sum rounds (values ≤ 0, as large as |x|)."""
        x = ctx.x(name)
        return dot_gamma(math.prod(ctx.shape(name)), ctx.err[x].dtype) * ctx.mag(name)

    def onnx_attrs(self) -> dict:
        return {"axis": self.axis + 1}

    def to_onnx(self, b, name, ins, out) -> None:
        b.add("LogSoftmax", ins, out, axis=self.axis + 1)


def _outward(v: torch.Tensor, upper: bool, ulps: int = 2) -> torch.Tensor:
    """A value computed with one rounding (or `ulps`/2 of them), moved outward past its rounding error."""
    e = v.abs() * (ulps * unit_roundoff(v.dtype)) + tiny(v.dtype)
    return v + e if upper else v - e


def _sub_down(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _outward(a - b, upper=False)


def _sub_up(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _outward(a - b, upper=True)


def _exp_nonpositive(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds of exp(a*) for the exact a* of a computed a = fl(x − m) ≤ 0: the subtraction's rounding (|a|·u) and
    exp's own error (4 ulps) as a relative allowance, an absolute one for underflow (and flushed denormals)."""
    u = unit_roundoff(a.dtype)
    e = torch.exp(a)
    rel = a.abs() * (1.01 * u) + 4 * u
    return (e * (1 - rel) - tiny(a.dtype)).clamp(min=0), e * (1 + rel) + tiny(a.dtype)


def _lse_excluding(x: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds of LSE_{j≠i}(x_j) = log Σ_{j≠i} e^{x_j} for every i along axis d (length ≥ 2).

    Shifted by M_i = max_{j≠i} x_j (the top value, or the second one for the top entry itself), so the sum is ≥ 1
    (its largest term is exactly e⁰): for i other than the top entry it is the total over the top shift minus
    e^{x_i − top} (an error of at most γ_n·total + u absolute, small against a sum ≥ 1); for the top entry, a sum
    with that entry masked out."""
    n = x.shape[d]
    dt = x.dtype
    g = dot_gamma(n, dt)
    top2 = x.topk(2, dim=d)
    top, second = top2.values.narrow(d, 0, 1), top2.values.narrow(d, 1, 1)
    is_top = torch.zeros_like(x, dtype=torch.bool).scatter_(d, top2.indices.narrow(d, 0, 1), True)
    # every i but the top one: M_i = top
    e1_lo, e1_hi = _exp_nonpositive(x - top)
    total_lo = e1_lo.sum(dim=d, keepdim=True) * (1 - g)
    total_hi = e1_hi.sum(dim=d, keepdim=True) * (1 + g)
    rest_lo = ((total_lo - e1_hi) * (1 - 2 * unit_roundoff(dt))).clamp(min=1.0)  # the top term e⁰ = 1 stays in
    rest_hi = (total_hi - e1_lo) * (1 + 2 * unit_roundoff(dt))
    # the top entry: M = the second value, the top entry masked out of the sum
    e2_lo, e2_hi = (torch.where(is_top, torch.zeros_like(e), e) for e in _exp_nonpositive((x - second).clamp(max=0)))
    own_lo = (e2_lo.sum(dim=d, keepdim=True) * (1 - g)).clamp(min=1.0)
    own_hi = e2_hi.sum(dim=d, keepdim=True) * (1 + g)
    shift = torch.where(is_top, second, top)
    s_lo = torch.where(is_top, own_lo, rest_lo)
    s_hi = torch.where(is_top, own_hi, rest_hi)
    u = unit_roundoff(dt)
    log_lo = (torch.log(s_lo) * (1 - 4 * u) - tiny(dt)).clamp(min=0)  # log of a sum ≥ 1 is ≥ 0
    log_hi = torch.log(s_hi) * (1 + 4 * u) + tiny(dt)
    return _outward(shift + log_lo, upper=False), _outward(shift + log_hi, upper=True)


def _sigmoid_bounds(t: torch.Tensor, upper: bool) -> torch.Tensor:
    """σ(t) = 1/(1 + e^{−t}) bounded from one side, for t already rounded that way: computed as 1/(1 + e^{−t}) for
    t ≥ 0 and e^t/(1 + e^t) for t < 0 (no overflow either way), with |t|·u for exp's argument and 8 ulps for the
    rest; an underflow to 0 is covered by the absolute allowance (the exact value is then below it)."""
    u = unit_roundoff(t.dtype)
    e = torch.exp(-t.abs())
    s = torch.where(t >= 0, 1 / (1 + e), e / (1 + e))
    rel = t.abs() * (1.01 * u) + 8 * u
    return s * (1 + rel) + tiny(t.dtype) if upper else (s * (1 - rel) - tiny(t.dtype)).clamp(min=0)


def _softplus_bounds(t: torch.Tensor, upper: bool) -> torch.Tensor:
    """softplus(t) = max(t, 0) + log(1 + e^{−|t|}) bounded from one side, for t already rounded that way: exp's
    argument error |t|·u and its own, log1p's, and the sum's, outward (an underflowed e^{−|t|} is covered by the
    absolute allowance); +∞ stays +∞."""
    u = unit_roundoff(t.dtype)
    e = torch.exp(-t.abs())
    e = e * (1 + t.abs() * (1.01 * u) + 4 * u) + tiny(t.dtype) if upper else (e * (1 - t.abs() * (1.01 * u) - 4 * u) - tiny(t.dtype)).clamp(min=0)
    tail = torch.log1p(e)
    tail = tail * (1 + 4 * u) + tiny(t.dtype) if upper else (tail * (1 - 4 * u) - tiny(t.dtype)).clamp(min=0)
    return _outward(t.clamp(min=0) + tail, upper)


# ---- reading: Softmax and LogSoftmax over one axis, in ONNX and ATen
@reads_onnx("Softmax")
def _read_onnx_softmax(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    return [ctx.emit(Softmax(_softmax_axis(ctx, node, attrs, x)), [x], "softmax")]


@reads_onnx("LogSoftmax")
def _read_onnx_log_softmax(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    return [_log_softmax(ctx, x, _softmax_axis(ctx, node, attrs, x))]


@reads_aten("aten._softmax.default", "aten.softmax.int")
def _read_aten_softmax(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    return ctx.emit(Softmax(ctx.sample_axis(x, int(a[1]))), [x], "softmax")


@reads_aten("aten._log_softmax.default", "aten.log_softmax.int")
def _read_aten_log_softmax(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    return _log_softmax(ctx, x, ctx.sample_axis(x, int(a[1])))


def _softmax_axis(ctx: OnnxReading, node: OnnxNode, attrs: dict, x: Tensor) -> int:
    """The sample axis of an ONNX (Log)Softmax; before opset 13 it flattened every axis from `axis` on, which is
    read only where that is the last axis alone."""
    rank = len(ctx.onnx_shape(x))
    axis = int(attrs.get("axis", -1 if ctx.opset >= 13 else 1))
    if not -rank <= axis < rank:
        raise ctx.unsupported(f"axis {axis} of a rank-{rank} input")
    axis %= rank
    if ctx.opset < 13 and axis != rank - 1:
        raise ctx.unsupported(f"{node.op_type} over the flattened axes {axis}… (opset {ctx.opset}); re-export with opset ≥ 13")
    return ctx.sample_axis(x, axis)


def _log_softmax(ctx: Reading, x: Tensor, axis: int) -> Tensor:
    """log(softmax(x)) as its own op (exact forward at any logit spread, bounds that never lose the ≤ 0);
    `certify` strips a final one as it does a final Softmax (argmax unchanged)."""
    if not 0 <= axis < len(x.shape):
        raise ModelLoadError(f"LogSoftmax over axis {axis} of a rank-{len(x.shape)} sample")
    return ctx.emit(LogSoftmax(axis), [x], "logsoftmax")
