"""IBP's value type and the affine helpers every op's IBP rule shares.

An `Interval` is held in whichever form its producer computes cheaply:
- *bounds form* (lower, upper): what monotone activations produce (ReLU and max are exact in floating point);
- *centre/radius form* (c, r): what affine maps produce, c' = W c + b, r' = |W| r — two products per layer.
Both forms are rigorous: the exact set lies in [lower, upper], resp. [c − r, c + r], and in centre/radius form
the floating-point values fl(c − r) and fl(c + r) are themselves valid bounds. Affine rules guarantee this by
widening r with the rounding allowance of `rounding.py`, folded into the constants of a cached |W| so that it
costs no extra pass over the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .rounding import dot_gamma, scaled_norm, tiny, unit_roundoff


def valid_ends(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) with every end that cannot be a bound made infinite: a lower end that is NaN or +∞ becomes −∞, an
    upper end that is NaN or −∞ becomes +∞. Such ends come from overflow — ∞ − ∞ in c ∓ r, 0·∞, or a sum that
    overflowed to ±∞ although the exact value is finite (c = +∞ with a finite r would otherwise give the lower
    bound +∞, above every real value) — and no finite end is right for them. Two sums check first, so intervals
    without such ends cost no extra pass over the data."""
    if bool(lo.detach().sum() < math.inf) and bool(hi.detach().sum() > -math.inf):
        return lo, hi
    return torch.where(lo < math.inf, lo, -math.inf), torch.where(hi > -math.inf, hi, math.inf)


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
        if self.lo is None:  # rounding-safe by the centre/radius invariant, while nothing overflowed (`valid_ends`)
            self.lo, self.hi = valid_ends(self.c - self.r, self.c + self.r)
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
        v.add_(tiny(s.dtype))  # halving a subnormal s or v rounds (5e-324 / 2 = 0): far more than that error, per entry
        return s, v, True


def inflation(g: float, dtype: torch.dtype) -> float:
    """Relative factor on |W|·v: covers rounding of v, of the product, and of the later lower/upper conversion."""
    return (1 + 6 * g) * (1 + 4 * unit_roundoff(dtype))


class AffineWeights:
    """W/2, (1 + 6g)·|W| and its half, and the radius bias 4g|b| + guard, for a node with weight and bias."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, g: float, n: int) -> None:
        # W/2 is exact unless a weight is below twice the smallest normal number; rules halve their inputs then
        self.halves_exactly = not bool(((w != 0) & (w.abs() < 2 * torch.finfo(w.dtype).tiny)).any())
        self.half = w * 0.5
        self.abs = w.abs() * inflation(g, w.dtype)
        self.abs_half = self.abs * 0.5
        self.radius_bias = b.abs() * (4 * g) + tiny(w.dtype) * n


def cached_on(node: Any, attr: str, tensors: tuple[torch.Tensor, ...], key: tuple, build: Callable[[], Any],
              build_grad: Callable[[], Any], same: tuple = ()) -> Any:
    """`build()` cached on `node` under `attr` while `tensors` are unchanged (storage, version, dtype, device),
    `key` is equal and the objects in `same` are identical; rebuilt (`build_grad`) when a gradient flows."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return build_grad()
    full = tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in tensors) + tuple(key)
    cached = getattr(node, attr, None)
    if cached is None or cached[0] != full or len(cached[1]) != len(same) or any(a is not b for a, b in zip(cached[1], same)):
        cached = (full, same, build())
        object.__setattr__(node, attr, cached)
    return cached[2]


def abs_weight(node: Any) -> torch.Tensor:
    """|W| of the node's weight, cached while the weight is unchanged and no gradient is taken (CROWN's rounding
    rule reads it on every bound computation: 0.2 ms of the MLP fixture's 13 ms CROWN-IBP)."""
    w = node.weight
    return cached_on(node, "_abs_weight", (w,), (), lambda: w.detach().abs(), lambda: w.abs())


def signed_rows(node: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """([W; −W], [b; −b]) of the node, along the output axis (negation is exact): CROWN's starting rows for
    lower and upper bounds are one gather from it. Cached like `abs_weight`."""
    w, b = node.weight, node.bias
    return cached_on(node, "_signed_rows", (w, b), (), lambda: (torch.cat([w, -w]).detach(), torch.cat([b, -b]).detach()),
                     lambda: (torch.cat([w, -w]), torch.cat([b, -b])))


def affine_weights(node: Any, g: float, n: int) -> AffineWeights:
    """The node's `AffineWeights`, cached while the weights are unchanged and no gradient is taken."""
    w, b = node.weight, node.bias
    return cached_on(node, "_ibp_weights", (w, b), (g,), lambda: AffineWeights(w.detach(), b.detach(), g, n),
                     lambda: AffineWeights(w, b, g, n))


def linear_map_ibp(node: Any, x: Interval, n: int) -> Interval:
    """IBP of a node with `weight`, `bias` (one per output channel) and `linear(x, weight=None)` — the bias-free
    map, with another weight of the same shape when given (Conv2d, ConvTranspose2d); `n` bounds the terms per output."""
    g = dot_gamma(n, x.dtype)
    w = affine_weights(node, g, n)
    m, v, halved = x.affine_inputs(g)
    if halved and not w.halves_exactly:
        m, v, halved = m * 0.5, v * 0.5, False
    c = node.linear(m, w.half if halved else None) + node.bias.view(-1, 1, 1)
    r = node.linear(v, w.abs_half if halved else w.abs) + w.radius_bias.view(-1, 1, 1)
    return Interval(c=c, r=r)


def outward(lo: torch.Tensor, hi: torch.Tensor, ulps: int = 2) -> Interval:
    """[lo, hi] computed with one rounding each, widened by `ulps` relative units plus an underflow guard; an end
    that overflowed inward (a lower +∞, an upper −∞) or is NaN becomes infinite (`valid_ends`)."""
    u = ulps * unit_roundoff(lo.dtype)
    t = tiny(lo.dtype)
    return Interval(*valid_ends(lo - u * lo.abs() - t, hi + u * hi.abs() + t))


def finish(c: torch.Tensor, r: torch.Tensor, g: float, n: int, bias_abs: torch.Tensor | None) -> Interval:
    """Add the bias's rounding allowance 4g|b| and an underflow guard: a safe centre/radius interval."""
    r = r + tiny(c.dtype) * n if bias_abs is None else r + (4 * g * bias_abs + tiny(c.dtype) * n)
    return Interval(c=c, r=r)


def generic_linear(x: Interval, n: int, apply: Callable, apply_abs: Callable, bias_abs) -> Interval:
    """Affine rule for ops without cached weights: c' = apply(k·m), r' = apply_abs(k·v), apply_abs inflated."""
    g = dot_gamma(n, x.dtype)
    m, v, halved = x.affine_inputs(g)
    if halved:
        m, v = m * 0.5, v * 0.5
    return finish(apply(m), apply_abs(v), g, n, bias_abs)


def widen_transcendental(lo: torch.Tensor, hi: torch.Tensor, floor: float, ceil: float) -> Interval:
    """Library sigmoid/tanh are accurate to a few ulps; widen by 16 ulps and clamp to the function's range (a NaN
    end, from a NaN input interval, becomes the range's end)."""
    u = unit_roundoff(lo.dtype) * 16
    t = tiny(lo.dtype)
    return Interval((lo - u * lo.abs() - t).clamp(floor, ceil).nan_to_num(nan=floor),
                    (hi + u * hi.abs() + t).clamp(floor, ceil).nan_to_num(nan=ceil))


def dual_norm_ibp(node: Any, centre_out: Interval, row_weights: torch.Tensor, eps: torch.Tensor, q: float,
                  out_view: tuple[int, ...]) -> Interval:
    """W·x + b over ‖x − c‖_p ≤ eps: the rigorous enclosure of W·c + b widened by eps·‖W_i‖_q per output row
    (Hölder), the norm rounded up by γ_n and the final sums moved outward by 4u of their size (a rounded sum
    may land half an ulp inside). `row_weights` (rows, n) are the weights of each output row."""
    dt = centre_out.dtype
    w = row_weights.to(dt).reshape(row_weights.shape[0], -1)
    n, s = scaled_norm(w, q)  # scaled: an L2 norm's squares would underflow for rows of tiny weights
    norms = (n * (1 + dot_gamma(w.shape[1], dt)) * (1 + 4 * unit_roundoff(dt))).reshape(out_view)
    rad = eps.to(dt).reshape((-1,) + (1,) * len(out_view)) * norms * s.reshape(out_view) + tiny(dt)
    lo, hi = centre_out.bounds()
    lo, hi = lo - rad, hi + rad
    u = 4 * unit_roundoff(dt)
    return Interval(lo - u * lo.abs(), hi + u * hi.abs())
