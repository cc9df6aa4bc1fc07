"""IBP: interval bound propagation, one rule per IR op (`IBP`).

An `Interval` is held in whichever form its producer computes cheaply:
- *bounds form* (lower, upper): what monotone activations produce (ReLU and max are exact in floating point);
- *centre/radius form* (c, r): what affine maps produce, c' = W c + b, r' = |W| r — two products per layer.
Both forms are rigorous: the exact set lies in [lower, upper], resp. [c − r, c + r], and in centre/radius form
the floating-point values fl(c − r) and fl(c + r) are themselves valid bounds. Affine rules guarantee this by
widening r with the rounding allowance of `rounding.py`, folded into the constants of a cached |W| so that it
costs no extra pass over the data. Margins of the spec are bounded directly, with C folded into the last layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from ..ir import nodes as ir
from ..ir.graph import INPUT, Graph
from ..spec import InputBox, LinearSpec
from .rounding import gamma, tiny, unit_roundoff
from .rules import RuleTable


class Interval:
    """A rigorous elementwise enclosure in bounds form or in centre/radius form (see module docstring)."""

    __slots__ = ("lo", "hi", "c", "r", "nonneg")

    def __init__(self, lower=None, upper=None, *, c=None, r=None, nonneg: bool = False) -> None:
        self.lo, self.hi, self.c, self.r = lower, upper, c, r
        self.nonneg = nonneg  # lower ≥ 0 everywhere (ReLU outputs, [0, 1] inputs): |l + u| = l + u

    @property
    def is_bounds(self) -> bool:
        return self.lo is not None

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.lo is None:
            self.lo, self.hi = self.c - self.r, self.c + self.r  # rounding-safe by the centre/radius invariant
        return self.lo, self.hi

    @property
    def lower(self) -> torch.Tensor:
        return self.bounds()[0]

    @property
    def upper(self) -> torch.Tensor:
        return self.bounds()[1]

    @property
    def dtype(self) -> torch.dtype:
        return (self.lo if self.lo is not None else self.c).dtype

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Interval":
        """Apply a shape-only op (reshape, permute) to both parts."""
        if self.lo is not None:
            return Interval(fn(self.lo), fn(self.hi), nonneg=self.nonneg)
        return Interval(c=fn(self.c), r=fn(self.r))

    def affine_inputs(self, g: float) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(m, v, halved) for an affine rule: the exact set lies in k·m ± k·v with k = ½ if `halved` else 1,
        and v already carries the absolute rounding term g·|m| of the next product, so a rule only multiplies
        by (1 + 6g)·|W|. Bounds form hands over (l + u, u − l) and saves two halvings."""
        if self.lo is None:
            return self.c, torch.add(self.r, self.c.abs(), alpha=g), False
        s = self.lo + self.hi
        v = self.hi - self.lo
        v.add_(s if self.nonneg else s.abs(), alpha=g + 4 * unit_roundoff(s.dtype))
        return s, v, True


IBP = RuleTable("ibp")


def _terms(n: int, dtype: torch.dtype) -> float:
    """The allowance factor g for an n-term product: γ_{n+8}, a few units above the dot-product bound."""
    return gamma(n + 8, dtype)


def _inflation(g: float, dtype: torch.dtype) -> float:
    """Relative factor on |W|·v: covers rounding of v, of the product, and of the later lower/upper conversion."""
    return (1 + 6 * g) * (1 + 4 * unit_roundoff(dtype))


class _Weights:
    """W/2, (1 + 6g)·|W| and its half, and the radius bias 4g|b| + guard, for a Dense/Conv2d node."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, g: float, n: int) -> None:
        self.half = w * 0.5
        self.abs = w.abs() * _inflation(g, w.dtype)
        self.abs_half = self.abs * 0.5
        self.radius_bias = b.abs() * (4 * g) + tiny(w.dtype) * n


def weights(node: ir.Node, g: float, n: int) -> _Weights:
    """Cached on the node while the weights are unchanged and no gradient is taken; training recomputes."""
    w, b = node.weight, node.bias
    if torch.is_grad_enabled() and (w.requires_grad or b.requires_grad):
        return _Weights(w, b, g, n)
    key = (w._version, b._version, w.data_ptr(), b.data_ptr(), w.dtype, w.device, g)
    cached = getattr(node, "_ibp_weights", None)
    if cached is None or cached[0] != key:
        cached = (key, _Weights(w.detach(), b.detach(), g, n))
        object.__setattr__(node, "_ibp_weights", cached)
    return cached[1]


def _finish(c: torch.Tensor, r: torch.Tensor, g: float, n: int, bias_abs: torch.Tensor | None) -> Interval:
    """Add the bias's rounding allowance 4g|b| and an underflow guard: a safe centre/radius interval."""
    r = r + tiny(c.dtype) * n if bias_abs is None else r + (4 * g * bias_abs + tiny(c.dtype) * n)
    return Interval(c=c, r=r)


def _generic_linear(x: Interval, n: int, apply: Callable, apply_abs: Callable, bias_abs) -> Interval:
    """Affine rule for ops without cached weights: c' = apply(k·m), r' = apply_abs(k·v), apply_abs inflated."""
    g = _terms(n, x.dtype)
    m, v, halved = x.affine_inputs(g)
    if halved:
        m, v = m * 0.5, v * 0.5
    return _finish(apply(m), apply_abs(v), g, n, bias_abs)


@IBP.register(ir.Dense)
def _dense(node: ir.Dense, x: Interval) -> Interval:
    n = node.weight.shape[1] + 1
    g = _terms(n, x.dtype)
    w = weights(node, g, n)
    m, v, halved = x.affine_inputs(g)
    c = F.linear(m, w.half if halved else node.weight, node.bias)
    return Interval(c=c, r=F.linear(v, w.abs_half if halved else w.abs, w.radius_bias))


@IBP.register(ir.Conv2d)
def _conv(node: ir.Conv2d, x: Interval) -> Interval:
    n = math.prod(node.weight.shape[1:]) + 1
    g = _terms(n, x.dtype)
    w = weights(node, g, n)
    m, v, halved = x.affine_inputs(g)
    c = node.linear(m, w.half if halved else None) + node.bias.view(-1, 1, 1)
    r = node.linear(v, w.abs_half if halved else w.abs) + w.radius_bias.view(-1, 1, 1)
    return Interval(c=c, r=r)


@IBP.register(ir.ElementwiseAffine)
def _elementwise_affine(node: ir.ElementwiseAffine, x: Interval) -> Interval:
    g = _terms(2, x.dtype)
    scale_abs = node.scale.abs() * _inflation(g, x.dtype)
    return _generic_linear(x, 2, node, lambda v: v * scale_abs, node.shift.abs())


@IBP.register(ir.AvgPool2d)
def _avgpool(node: ir.AvgPool2d, x: Interval) -> Interval:
    n = node.kernel[0] * node.kernel[1] + 1
    k = _inflation(_terms(n, x.dtype), x.dtype)
    return _generic_linear(x, n, node, lambda v: node(v) * k, None)


@IBP.register(ir.Relu)
def _relu(node: ir.Relu, x: Interval) -> Interval:
    if x.is_bounds:
        return Interval(torch.relu(x.lo), torch.relu(x.hi), nonneg=True)  # exact
    return Interval(torch.relu_(x.c - x.r), torch.relu_(x.c + x.r), nonneg=True)  # fresh tensors


@IBP.register(ir.MaxPool2d)
def _maxpool(node: ir.MaxPool2d, x: Interval) -> Interval:
    lo, hi = x.bounds()
    return Interval(node(lo), node(hi), nonneg=x.nonneg)  # monotone and exact


def _widen_transcendental(lo: torch.Tensor, hi: torch.Tensor, floor: float, ceil: float) -> Interval:
    """Library sigmoid/tanh are accurate to a few ulps; widen by 16 ulps and clamp to the function's range."""
    u = unit_roundoff(lo.dtype) * 16
    t = tiny(lo.dtype)
    return Interval((lo - u * lo.abs() - t).clamp(floor, ceil), (hi + u * hi.abs() + t).clamp(floor, ceil))


@IBP.register(ir.Sigmoid)
def _sigmoid(node: ir.Sigmoid, x: Interval) -> Interval:
    lo, hi = x.bounds()
    return _widen_transcendental(torch.sigmoid(lo), torch.sigmoid(hi), 0.0, 1.0)


@IBP.register(ir.Tanh)
def _tanh(node: ir.Tanh, x: Interval) -> Interval:
    lo, hi = x.bounds()
    return _widen_transcendental(torch.tanh(lo), torch.tanh(hi), -1.0, 1.0)


@IBP.register(ir.Add)
def _add(node: ir.Add, a: Interval, b: Interval) -> Interval:
    """[l1 + l2, u1 + u2], each sum rounded outward by a relative 2u (plus an underflow guard)."""
    la, ha = a.bounds()
    lb, hb = b.bounds()
    lo, hi = la + lb, ha + hb
    u2 = 2 * unit_roundoff(lo.dtype)
    t = tiny(lo.dtype)
    return Interval(lo - u2 * lo.abs() - t, hi + u2 * hi.abs() + t)


@IBP.register(ir.Reshape, ir.Transpose, ir.Identity)
def _shape_only(node: ir.Node, x: Interval) -> Interval:
    return x.map(node)


@IBP.register(ir.Pad)
def _pad(node: ir.Pad, x: Interval) -> Interval:
    if x.is_bounds:
        return Interval(node(x.lo), node(x.hi), nonneg=x.nonneg and node.value >= 0)
    return Interval(c=node(x.c), r=node(x.r, value=0.0))


# ------------------------------------------------------------------------------------------ the spec layer


class _FoldedTable:
    """A shared spec table folded into the last Dense: rows C_u·W, constants, and whether every row has at most
    two ±1 entries (then fl(C W) is one correctly rounded subtraction, covered by the allowance g)."""

    def __init__(self, C: torch.Tensor, d: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> None:
        k = C.shape[-1]
        table = C.reshape(-1, k)
        dd = d.reshape(-1)
        self.w = table if weight is None else table @ weight  # (U·S, in)
        self.w_abs = self.w.abs()
        self.const = dd if weight is None else table @ bias + dd
        self.const_mag = dd.abs() if weight is None else table.abs() @ bias.abs() + dd.abs()
        self.simple = bool(((C == 0) | (C.abs() == 1)).all()) and int((C != 0).sum(-1).max()) <= 2


def _folded_table(sh, node: ir.Dense | None) -> _FoldedTable:
    """Cached on the node per (table, weights) while nothing changes and no gradient is taken."""
    if node is None:
        return _FoldedTable(sh.C, sh.d, None, None)
    w, b = node.weight, node.bias
    if torch.is_grad_enabled() and (w.requires_grad or b.requires_grad):
        return _FoldedTable(sh.C, sh.d, w, b)
    key = (w._version, b._version, w.data_ptr(), b.data_ptr(), w.dtype, w.device)
    cached = getattr(node, "_ibp_spec_fold", None)
    if cached is None or cached[0] != key or cached[1] is not sh.C or cached[2] is not sh.d:
        cached = (key, sh.C, sh.d, _FoldedTable(sh.C, sh.d, w.detach(), b.detach()))
        object.__setattr__(node, "_ibp_spec_fold", cached)
    return cached[3]


def _spec_affine(spec: LinearSpec, x: Interval, node: ir.Dense | None) -> Interval:
    """Interval of the spec rows C·(W x + b) + d (or C·x + d without a last Dense): (N, S).

    With shared rows (margin specs) C is folded into W once per table entry and the right rows are picked
    per sample; otherwise per sample. Rounding: Ŵ = fl(C W) differs from C W by at most γ_K |C||W|, which
    adds γ_K |C| |W| |x| to the radius, on top of the usual allowance for Ŵ c + C b + d.
    """
    dt = x.dtype
    k = spec.C.shape[-1]
    weight, bias = (node.weight, node.bias) if node is not None else (None, None)
    n_in = weight.shape[1] if weight is not None else k
    n = n_in + k + 2
    g = _terms(n, dt)
    sh = spec.shared
    m, v, halved = x.affine_inputs(g)
    if halved:
        m, v = m * 0.5, v * 0.5
    simple = False
    if sh is not None:
        t = _folded_table(sh, node)
        simple = t.simple
        s_ = sh.C.shape[1]
        rows = sh.index.to(m.device).unsqueeze(1) * s_ + torch.arange(s_, device=m.device)  # (N, S)
        c = F.linear(m, t.w).gather(1, rows) + t.const[rows]
        r = F.linear(v, t.w_abs).gather(1, rows)
        const_mag = t.const_mag[rows]
    else:
        w_eff = spec.C if weight is None else torch.matmul(spec.C, weight)  # (N, S, in)
        const = spec.d if weight is None else torch.einsum("nsk,k->ns", spec.C, bias) + spec.d
        const_mag = spec.d.abs() if weight is None else torch.einsum("nsk,k->ns", spec.C.abs(), bias.abs()) + spec.d.abs()
        c = torch.bmm(w_eff, m.unsqueeze(2)).squeeze(2) + const
        r = torch.bmm(w_eff.abs(), v.unsqueeze(2)).squeeze(2)
    r = r * _inflation(g, dt) + 4 * g * const_mag + tiny(dt) * n
    if weight is not None and not simple:
        mag = F.linear(m.abs() + v, weight.abs())  # ≥ |W| |x|, (N, K)
        r = r + 2 * _terms(k, dt) * torch.einsum("nsk,nk->ns", spec.C.abs(), mag)
    return Interval(c=c, r=r * (1 + 4 * unit_roundoff(dt)))


@dataclass
class IntervalResult:
    """Bounds on the spec rows (or on the flat output when no spec) plus any kept node intervals."""

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
    keep_set = set(graph.order) if keep is True else set(keep or ())
    last_use = graph._last_use
    fold_last = spec is not None and isinstance(graph.node(graph.output), ir.Dense) and len(graph.output_shape) == 1
    values: dict[str, Interval] = {INPUT: Interval(box.lower, box.upper, nonneg=box.nonneg)}
    kept: dict[str, Interval] = {}
    out: Interval | None = None
    for step, (name, node, inputs) in enumerate(graph.items()):
        args = [values[i] for i in inputs]
        if name == graph.output and fold_last:
            out = _spec_affine(spec, args[0], node)  # type: ignore[arg-type]
        else:
            values[name] = IBP.lookup(type(node), graph.describe_node(name))(node, *args)
            if name in keep_set:
                kept[name] = values[name]
        for i in inputs:
            if last_use.get(i) == step:
                values.pop(i, None)
    if out is None:
        y = values[graph.output].map(lambda t: t.reshape(t.shape[0], -1))
        out = y if spec is None else _spec_affine(spec, y, None)
    return IntervalResult(out, kept)
