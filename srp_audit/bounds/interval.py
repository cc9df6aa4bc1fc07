"""IBP: interval bound propagation in centre/radius form, one rule per IR op (`IBP`).

For an affine map y = W x + b over x ∈ [c − r, c + r]: c' = W c + b, r' = |W| r — two products per layer.
Activations are monotone and map [l, u] to [σ(l), σ(u)]. Bounds on the specification's rows (margins) are
computed directly by folding the spec matrix into the last Dense layer (tighter than subtracting logit bounds).
Every rule widens its result by the rounding allowance of `rounding.py`, so the bounds hold exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F

from ..ir import nodes as ir
from ..ir.graph import INPUT, Graph
from ..spec import InputBox, LinearSpec
from .rounding import bounds_of, centre_radius, gamma, tiny, unit_roundoff
from .rules import RuleTable


@dataclass
class Interval:
    """x ∈ [c − r, c + r] elementwise, r ≥ 0."""

    c: torch.Tensor
    r: torch.Tensor

    @staticmethod
    def from_bounds(lower: torch.Tensor, upper: torch.Tensor) -> "Interval":
        return Interval(*centre_radius(lower, upper))

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return bounds_of(self.c, self.r)

    @property
    def lower(self) -> torch.Tensor:
        return self.bounds()[0]

    @property
    def upper(self) -> torch.Tensor:
        return self.bounds()[1]

    def map(self, fn) -> "Interval":
        """Apply a shape-only op (reshape, permute) to both parts."""
        return Interval(fn(self.c), fn(self.r))


IBP = RuleTable("ibp")


def abs_weight(node: ir.Node) -> torch.Tensor:
    """|W| of a Dense/Conv2d node, cached while the weight is unchanged and no gradient is being taken."""
    w = node.weight
    if torch.is_grad_enabled() and w.requires_grad:
        return w.abs()
    key = (w._version, w.data_ptr(), w.dtype, w.device)
    cached = getattr(node, "_abs_weight_cache", None)
    if cached is None or cached[0] != key:
        cached = (key, w.detach().abs())
        object.__setattr__(node, "_abs_weight_cache", cached)
    return cached[1]


def affine_radius(abs_linear, c: torch.Tensor, r: torch.Tensor, terms: int, bias_abs: torch.Tensor | float) -> torch.Tensor:
    """r' ≥ |W| r + rounding error of computing W c + b, given `abs_linear(v)` = |W| v and the dot-product length.

    The rounding error of the centre, γ·(|W||c| + |b|), is folded into the same product: |W|(r + γ|c|).
    """
    g = gamma(terms, c.dtype)
    v = abs_linear(r + g * c.abs())
    return v * (1 + 3 * g) + 2 * g * bias_abs + tiny(c.dtype) * terms


@IBP.register(ir.Dense)
def _dense(node: ir.Dense, x: Interval) -> Interval:
    c = F.linear(x.c, node.weight, node.bias)
    r = affine_radius(lambda v: F.linear(v, abs_weight(node)), x.c, x.r, node.weight.shape[1] + 1, node.bias.abs())
    return Interval(c, r)


@IBP.register(ir.Conv2d)
def _conv(node: ir.Conv2d, x: Interval) -> Interval:
    c = node(x.c)
    terms = math.prod(node.weight.shape[1:]) + 1
    r = affine_radius(lambda v: node.linear(v, abs_weight(node)), x.c, x.r, terms, node.bias.abs().view(-1, 1, 1))
    return Interval(c, r)


@IBP.register(ir.ElementwiseAffine)
def _elementwise_affine(node: ir.ElementwiseAffine, x: Interval) -> Interval:
    scale_abs = node.scale.abs()
    return Interval(node(x.c), affine_radius(lambda v: v * scale_abs, x.c, x.r, 2, node.shift.abs()))


@IBP.register(ir.AvgPool2d)
def _avgpool(node: ir.AvgPool2d, x: Interval) -> Interval:
    terms = node.kernel[0] * node.kernel[1] + 1
    return Interval(node(x.c), affine_radius(node, x.c, x.r, terms, 0.0))


def _monotone(fn, x: Interval, widen) -> Interval:
    lo, hi = x.bounds()
    lo, hi = widen(fn(lo), fn(hi))
    return Interval.from_bounds(lo, hi)


@IBP.register(ir.Relu)
def _relu(node: ir.Relu, x: Interval) -> Interval:
    return _monotone(torch.relu, x, lambda lo, hi: (lo, hi))  # relu is exact in floating point


def _widen_transcendental(lo: torch.Tensor, hi: torch.Tensor, floor: float, ceil: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Library sigmoid/tanh are accurate to a few ulps; widen by 16 ulps and clamp to the function's range."""
    u = unit_roundoff(lo.dtype) * 16
    t = tiny(lo.dtype)
    return (lo - u * lo.abs() - t).clamp(floor, ceil), (hi + u * hi.abs() + t).clamp(floor, ceil)


@IBP.register(ir.Sigmoid)
def _sigmoid(node: ir.Sigmoid, x: Interval) -> Interval:
    return _monotone(torch.sigmoid, x, lambda lo, hi: _widen_transcendental(lo, hi, 0.0, 1.0))


@IBP.register(ir.Tanh)
def _tanh(node: ir.Tanh, x: Interval) -> Interval:
    return _monotone(torch.tanh, x, lambda lo, hi: _widen_transcendental(lo, hi, -1.0, 1.0))


@IBP.register(ir.MaxPool2d)
def _maxpool(node: ir.MaxPool2d, x: Interval) -> Interval:
    return _monotone(node, x, lambda lo, hi: (lo, hi))  # max is exact


@IBP.register(ir.Add)
def _add(node: ir.Add, a: Interval, b: Interval) -> Interval:
    c = a.c + b.c
    u = unit_roundoff(c.dtype)
    return Interval(c, (a.r + b.r) * (1 + 4 * u) + 2 * u * c.abs() + tiny(c.dtype))


@IBP.register(ir.Reshape, ir.Transpose, ir.Identity)
def _shape_only(node: ir.Node, x: Interval) -> Interval:
    return x.map(node)


@IBP.register(ir.Pad)
def _pad(node: ir.Pad, x: Interval) -> Interval:
    return Interval(node(x.c), node(x.r, value=0.0))


# ------------------------------------------------------------------------------------------ propagation


def _spec_affine(C: torch.Tensor, d: torch.Tensor, x: Interval, weight: torch.Tensor | None, bias: torch.Tensor | None) -> Interval:
    """Interval of C·(W x + b) + d (or C·x + d without W), with C folded into W first.

    Rounding: the product Ŵ = fl(C W) differs from C W by at most γ_K |C||W|, which adds γ_K |C| |W| |x| to
    the radius, on top of the usual allowance for Ŵ c + C b + d.
    """
    dt = x.c.dtype
    if weight is None:
        w_eff, const, k_terms = C, d, 1
        extra = 0.0
    else:
        w_eff = torch.matmul(C, weight)  # (N, S, in)
        const = torch.einsum("nsk,k->ns", C, bias) + d
        k = C.shape[-1]
        k_terms = k
        g_k = gamma(k, dt)
        mag = F.linear(x.c.abs() + x.r, weight.abs())  # |W| |x| bound, (N, K)
        extra = g_k * torch.einsum("nsk,nk->ns", C.abs(), mag) * (1 + 3 * g_k)
        bias_mag = torch.einsum("nsk,k->ns", C.abs(), bias.abs()) + d.abs()
    terms = w_eff.shape[-1] + k_terms + 1
    c = torch.einsum("nsi,ni->ns", w_eff, x.c) + const
    g = gamma(terms, dt)
    v = torch.einsum("nsi,ni->ns", w_eff.abs(), x.r + g * x.c.abs())
    mag_const = const.abs() if weight is None else bias_mag
    r = v * (1 + 3 * g) + 2 * g * mag_const + extra + tiny(dt) * terms
    return Interval(c, r)


@dataclass
class IntervalResult:
    """Bounds on the spec rows (or on the flattened output when no spec) plus any kept node intervals."""

    out: Interval
    nodes: dict[str, Interval]

    @property
    def lower(self) -> torch.Tensor:
        return self.out.lower

    @property
    def upper(self) -> torch.Tensor:
        return self.out.upper


def interval_bounds(
    graph: Graph,
    box: InputBox,
    spec: LinearSpec | None = None,
    keep: Iterable[str] | bool = False,
) -> IntervalResult:
    """Propagate the input box through `graph`; bounds on `spec` rows when given, else on the flat output.

    `keep`: node ids whose intervals to return (True: all); others are freed as soon as they are consumed.
    """
    x = Interval.from_bounds(box.lower, box.upper)
    keep_set = set(graph.order) if keep is True else set(keep or ())
    last_use = graph._last_use
    fold_last = spec is not None and isinstance(graph.node(graph.output), ir.Dense) and len(graph.output_shape) == 1
    values: dict[str, Interval] = {INPUT: x}
    kept: dict[str, Interval] = {}
    out: Interval | None = None
    for step, (name, node, inputs) in enumerate(graph.items()):
        args = [values[i] for i in inputs]
        if name == graph.output and fold_last:
            out = _spec_affine(spec.C, spec.d, args[0], node.weight, node.bias)  # type: ignore[union-attr]
        else:
            values[name] = IBP.lookup(type(node), graph.describe_node(name))(node, *args)
            if name in keep_set:
                kept[name] = values[name]
        for i in inputs:
            if last_use.get(i) == step:
                values.pop(i, None)
    if out is None:
        y = values[graph.output]
        flat = Interval(y.c.reshape(y.c.shape[0], -1), y.r.reshape(y.r.shape[0], -1))
        out = flat if spec is None else _spec_affine(spec.C, spec.d, flat, None, None)
    return IntervalResult(out, kept)
