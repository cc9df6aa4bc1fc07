"""Input sets and output properties.

- `InputBox`: per-sample lower/upper input bounds (an L∞ ball intersected with the input domain, or a VNN-LIB box).
- `LinearSpec`: rows h_i(y) = C_i·y + d_i of the model output, grouped into disjuncts. The property *holds*
  (is proved) when every group has a row with h_i > 0 over the whole input set; a point *violates* it when
  some group has h_i ≤ 0 for all its rows. Robustness margins are the special case of one row per group,
  h_j = y_label − y_j: proved when every margin is positive, violated when another class reaches the label's score.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch

from .errors import UsageError

NORMS = ("inf", "2", "1")


@dataclass
class LpBall:
    """An L2 or L1 ball {x : ‖x − centre‖_p ≤ eps} per sample (eps already rounded the way its use needs)."""

    centre: torch.Tensor  # (N, *sample_shape)
    eps: torch.Tensor  # (N,) float64
    p: float  # 2.0 or 1.0
    widened: bool = False  # an image under copies (`moved` with repeats): a ball larger than the set it holds

    @property
    def q(self) -> float:
        """The dual norm's exponent: ‖A‖_q bounds A·(x − centre) over the ball (Hölder)."""
        return math.inf if self.p == 1.0 else 2.0

    def select(self, idx: torch.Tensor | slice) -> "LpBall":
        return LpBall(self.centre[idx], self.eps[idx], self.p, self.widened)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "LpBall":
        return LpBall(self.centre.to(device=device, dtype=dtype), self.eps.to(device=device), self.p, self.widened)

    def moved(self, centre: torch.Tensor, repeats: int = 1) -> "LpBall":
        """The ball around `centre` (the exact image of this ball's centre under an op that moves, drops or pads
        entries) that holds the op's outputs: the same radius, or — when an entry is copied up to `repeats`
        times — the radius times repeats^(1/p) (‖copies‖_p ≤ repeats^(1/p)·‖x − c‖_p), rounded up."""
        if repeats <= 1:
            return LpBall(centre, self.eps, self.p, self.widened)
        return self.image(centre, repeats ** (1.0 / self.p), widened=True)

    def image(self, centre: torch.Tensor, factor: float = 1.0, slack: torch.Tensor | None = None,
              widened: bool = False) -> "LpBall":
        """A ball around `centre` holding the image of this one under a map that stretches distances by at most
        `factor` (a Lipschitz constant in this norm) and whose computed centre may miss the exact image of this
        centre by `slack` (N,) in this norm: radius eps·factor + slack, rounded up. `widened`: the new ball is larger
        than the image (a scale that differs between entries, copies), so CROWN refines the layer it reaches."""
        eps = self.eps.double() * (float(factor) * (1 + 4 * torch.finfo(torch.float64).eps))
        if slack is not None:
            eps = (eps + slack.double().reshape(eps.shape)) * (1 + 2 * torch.finfo(torch.float64).eps)
        return LpBall(centre, torch.nextafter(eps, torch.full_like(eps, math.inf)), self.p, self.widened or widened)


@dataclass
class InputBox:
    """Lower and upper bounds of the input set, shape (N, *sample_shape) each; with `ball`, the set is the box ∩
    an L2/L1 ball (the box is then the ball's bounding box ∩ the domain, which methods without a ball rule use)."""

    lower: torch.Tensor
    upper: torch.Tensor
    nonneg: bool = False  # known: lower ≥ 0 everywhere (lets bound methods skip an abs)
    ball: LpBall | None = None

    def __post_init__(self) -> None:
        if self.lower.shape != self.upper.shape:
            raise ValueError("lower and upper must have the same shape")

    @property
    def n(self) -> int:
        return self.lower.shape[0]

    def select(self, idx: torch.Tensor | slice) -> "InputBox":
        return InputBox(self.lower[idx], self.upper[idx], self.nonneg, self.ball.select(idx) if self.ball else None)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "InputBox":
        ball = self.ball.to(dtype, device) if self.ball else None
        return InputBox(self.lower.to(device=device, dtype=dtype), self.upper.to(device=device, dtype=dtype), self.nonneg, ball)


def check_radius(eps: float, what: str = "eps") -> None:
    """A radius must be a finite positive normal number: 0 (or −0, or a number like 1e-400 that rounds to 0, or a
    subnormal, which flushing turns into 0) would make every verdict a statement about the sample alone — 100 %
    certified and a CI gate passed with nothing tested. Raises `UsageError` saying so."""
    problem = radius_problem(eps)
    if problem:
        raise UsageError(f"{what} must be a finite positive radius, {problem}; give one such as 0.01")


def radius_problem(eps: float) -> str | None:
    """What is wrong with `eps` as a radius (`check_radius`), or None."""
    e = float(eps)
    if math.isfinite(e) and e >= sys.float_info.min:
        return None
    if not math.isfinite(e):
        return f"got {e:g}"
    if e < 0:
        return f"got {e:g} (a radius is a distance)"
    if e == 0:
        return "got 0 (or a number that rounds to 0): the ball would hold only the sample itself and test nothing"
    return f"got {e:g}, below the smallest normal double ({sys.float_info.min:.1e}), which computations flush to 0"


def _expand_eps(eps: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if e.dim() == 0:
        e = e.expand(x.shape[0])
    return e.reshape((x.shape[0],) + (1,) * (x.dim() - 1))


def linf_ball(x: torch.Tensor, eps: torch.Tensor | float, domain: tuple[float, float]) -> InputBox:
    """The L∞ ball of radius eps (per sample) around x, clipped to the domain, rounded *outward*.

    Used for proofs: the box contains every point of the exact ball ∩ domain.
    """
    e = _expand_eps(eps, x)
    lo = torch.nextafter(x - e, torch.full_like(x, -torch.inf))
    hi = torch.nextafter(x + e, torch.full_like(x, torch.inf))
    lo = torch.minimum(lo, x).clamp_(min=domain[0])
    hi = torch.maximum(hi, x).clamp_(max=domain[1])
    return InputBox(*without_subnormal_ends(lo, hi), nonneg=domain[0] >= 0)


def without_subnormal_ends(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[lo, hi] widened so that no end is subnormal (to 0 or ± the smallest normal number, outward): with denormals
    flushed to zero (the CLI's setting, for speed) a subnormal *input* reads as 0, which could put it on the wrong
    side of a kink (sign(−5e-324) read as sign(0)); normal ends are read as they are."""
    tiny = torch.finfo(lo.dtype).tiny
    lo = torch.where((lo > 0) & (lo < tiny), torch.zeros_like(lo), torch.where((lo < 0) & (lo > -tiny), torch.full_like(lo, -tiny), lo))
    hi = torch.where((hi < 0) & (hi > -tiny), torch.zeros_like(hi), torch.where((hi > 0) & (hi < tiny), torch.full_like(hi, tiny), hi))
    return lo, hi


def inner_linf_ball(x: torch.Tensor, eps: torch.Tensor | float, domain: tuple[float, float]) -> InputBox:
    """The L∞ ball ∩ domain rounded *inward* in x's dtype: every point of this box lies in the exact set.

    Used for attacks, whose points must be genuine members of the input set.
    """
    x64 = x.double()
    e64 = _expand_eps(torch.as_tensor(eps, dtype=torch.float64, device=x.device), x64)
    # In float64, step one ulp inward from the rounded ends; then round to x's dtype towards x.
    lo64 = torch.nextafter(x64 - e64, x64).clamp(min=domain[0])
    hi64 = torch.nextafter(x64 + e64, x64).clamp(max=domain[1])
    lo, hi = round_inward(lo64, hi64, x.dtype)
    return InputBox(torch.minimum(lo, x), torch.maximum(hi, x))


def round_inward(lo64: torch.Tensor, hi64: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """[lo64, hi64] (float64) in `dtype`, each end moved one ulp inward where rounding took it outward, so the
    rounded ends lie inside (an end may pass the other on a box narrower than an ulp: callers decide)."""
    lo, hi = lo64.to(dtype), hi64.to(dtype)
    lo = torch.where(lo.double() < lo64, torch.nextafter(lo, torch.full_like(lo, torch.inf)), lo)
    hi = torch.where(hi.double() > hi64, torch.nextafter(hi, torch.full_like(hi, -torch.inf)), hi)
    return lo, hi


def inside_linf_ball(points: torch.Tensor, x: torch.Tensor, eps: torch.Tensor | float, domain: tuple[float, float]) -> torch.Tensor:
    """Per sample: whether `points` lie in the exact L∞ ball ∩ domain (`offsets`: exact in float64, or rounded up)."""
    return inside_ball(points, x, eps, domain, "inf")


def offsets(points: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """|points − x| per entry in float64, flattened to (N, n): the float64 difference where it is exact (always for
    float32 values a few powers of two apart) and rounded up where it is not (TwoSum finds its error exactly)."""
    a, b = points.double().reshape(x.shape[0], -1), x.double().reshape(x.shape[0], -1)
    s = a - b
    t = s - a
    err = (a - (s - t)) - (b + t)  # TwoSum: a − b = s + err exactly
    d = s.abs()
    inexact = err != 0
    if bool(inexact.any()):
        d = torch.where(inexact, torch.nextafter(d + err.abs(), torch.full_like(d, math.inf)), d)
    return d


def distance(points: torch.Tensor, x: torch.Tensor, norm: str = "inf") -> torch.Tensor:
    """Per sample, an upper bound of ‖points − x‖ in `norm` computed in float64: exact for L∞ (a maximum of exact
    offsets); the L1 sum and the L2 root of the sum of squares rounded up by γ_{n+8} and one ulp (an absolute tiny
    under the root per offset below 2^-500 covers squares that underflow)."""
    d = offsets(points, x)
    if norm == "inf":
        return d.amax(dim=1) if d.shape[1] else torch.zeros(d.shape[0], dtype=torch.float64, device=d.device)
    n = d.shape[1]
    up = 1 + 2 * _gamma64(n + 8)
    if norm == "1":
        total = d.sum(dim=1) * up
    else:
        underflow = ((d > 0) & (d < 2.0**-500)).sum(dim=1) * torch.finfo(torch.float64).tiny  # squares lost there
        total = (d.square().sum(dim=1) * up + underflow).sqrt() * up
    return torch.where(total > 0, torch.nextafter(total, torch.full_like(total, math.inf)), total)  # 0: every offset 0


def _gamma64(n: int) -> float:
    u = torch.finfo(torch.float64).eps / 2
    return n * u / (1 - n * u)


def _attack_shrink(n: int) -> float:
    """The relative amount attacks keep inside an L2/L1 ball's radius, so that `distance`'s rounded-up norm of
    their points stays within it (well above the rounding of n terms)."""
    return max(2e-9, 8 * _gamma64(n + 8))


def _eps64(eps: torch.Tensor | float, x: torch.Tensor, direction: float) -> torch.Tensor:
    """eps as float64 per sample, one ulp up (proofs) or down (attacks) from its nearest value."""
    e = torch.as_tensor(eps, dtype=torch.float64, device=x.device)
    e = e.expand(x.shape[0]) if e.dim() == 0 else e.reshape(x.shape[0])
    return torch.nextafter(e, torch.full_like(e, direction))


def ball(x: torch.Tensor, eps: torch.Tensor | float, domain: tuple[float, float], norm: str = "inf") -> InputBox:
    """The `norm` ball of radius eps around x ∩ domain, for proofs (rounded outward)."""
    box = linf_ball(x, eps, domain)
    if norm != "inf":
        box.ball = LpBall(x, _eps64(eps, x, math.inf), float(norm))
    return box


def inner_ball(x: torch.Tensor, eps: torch.Tensor | float, domain: tuple[float, float], norm: str = "inf") -> InputBox:
    """The `norm` ball ∩ domain for attacks (rounded inward): its points belong to the exact set."""
    box = inner_linf_ball(x, eps, domain)
    if norm != "inf":
        shrink = 1 - _attack_shrink(math.prod(x.shape[1:]))  # `inside_ball`'s rounded-up norm stays within eps
        box.ball = LpBall(x, _eps64(eps, x, 0.0) * shrink, float(norm))
    return box


def inside_ball(points: torch.Tensor, x: torch.Tensor, eps: torch.Tensor | float, domain: tuple[float, float], norm: str = "inf") -> torch.Tensor:
    """Per sample: whether `points` lie in the exact `norm` ball ∩ domain: every entry inside the domain, and
    `distance` (an upper bound of the norm in float64) at most eps (the float64 number given)."""
    p = points.double().reshape(x.shape[0], -1)
    in_domain = ((p >= domain[0]) & (p <= domain[1])).all(dim=1)
    e = torch.as_tensor(eps, dtype=torch.float64, device=p.device)
    e = e.expand(x.shape[0]) if e.dim() == 0 else e.reshape(x.shape[0])
    return in_domain & (distance(points, x, norm).to(p.device) <= e)


@dataclass
class SharedRows:
    """Every sample's rows come from a small table: C[n] = table_C[index[n]], d[n] = table_d[index[n]]
    (margin specs: one table entry per label). Lets bound methods fold C into a layer once per entry."""

    index: torch.Tensor  # (N,) long
    C: torch.Tensor  # (U, S, K)
    d: torch.Tensor  # (U, S)


@dataclass
class LinearSpec:
    """Rows h = C·y + d over the flattened output y, grouped into disjuncts (see module docstring).

    `C`: (N, S, K); `d`: (N, S); `groups`: list of row-index lists, shared by every sample in the batch;
    `shared`: optional table form of the same rows.
    """

    C: torch.Tensor
    d: torch.Tensor
    groups: list[list[int]]
    shared: SharedRows | None = None
    strict: torch.Tensor | None = None  # (S,) bool: row violated only when h < 0 (VNN-LIB's < and >)

    @property
    def rows(self) -> int:
        return self.C.shape[1]

    def select(self, idx: torch.Tensor) -> "LinearSpec":
        sh = self.shared
        if sh is not None:
            sh = SharedRows(sh.index[idx], sh.C, sh.d)
        return LinearSpec(self.C[idx], self.d[idx], self.groups, sh, self.strict)

    def repeated(self, n: int, copy: bool = False) -> "LinearSpec":
        """The rows of sample 0 for n samples (domains of one property, attack restarts); a view unless `copy`."""
        C, d = self.C[:1].expand(n, -1, -1), self.d[:1].expand(n, -1)
        if copy:
            C, d = C.contiguous(), d.contiguous()
        return LinearSpec(C, d, self.groups, None, self.strict)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "LinearSpec":
        sh = self.shared
        if sh is not None:
            sh = SharedRows(sh.index.to(device=device), sh.C.to(device=device, dtype=dtype), sh.d.to(device=device, dtype=dtype))
        strict = None if self.strict is None else self.strict.to(device=device)
        return LinearSpec(self.C.to(device=device, dtype=dtype), self.d.to(device=device, dtype=dtype), self.groups, sh, strict)

    def values(self, y: torch.Tensor) -> torch.Tensor:
        """h for outputs y of shape (N, K): (N, S)."""
        return torch.einsum("nsk,nk->ns", self.C.to(y.dtype), y) + self.d.to(y.dtype)

    def proved(self, lower: torch.Tensor) -> torch.Tensor:
        """Given sound lower bounds of h (N, S): whether each sample's property is proved."""
        ok = torch.ones(lower.shape[0], dtype=torch.bool, device=lower.device)
        for rows in self.groups:
            ok &= (lower[:, rows] > 0).any(dim=1)
        return ok

    def violated(self, h: torch.Tensor) -> torch.Tensor:
        """Given exact values of h at a point (N, S): whether that point violates the property."""
        bad = torch.zeros(h.shape[0], dtype=torch.bool, device=h.device)
        row_bad = h <= 0 if self.strict is None else torch.where(self.strict.to(h.device), h < 0, h <= 0)
        for rows in self.groups:
            bad |= row_bad[:, rows].all(dim=1)  # an empty group is violated by every point
        return bad

    def objective(self, h: torch.Tensor) -> torch.Tensor:
        """A scalar per sample that is ≤ 0 exactly when violated: min over groups of max over rows of h."""
        lowest = torch.full((h.shape[0],), -torch.inf, dtype=h.dtype, device=h.device)
        per_group = torch.stack([h[:, rows].max(dim=1).values if rows else lowest for rows in self.groups], dim=1)
        return per_group.min(dim=1).values

    def worst_bound(self, lower: torch.Tensor) -> torch.Tensor:
        """The proof margin per sample (> 0 iff proved): min over groups of max over rows of the lower bound."""
        return self.objective(lower)


def margin_spec(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float64) -> LinearSpec:
    """Rows y_label − y_j for every j ≠ label, one group each (proved iff every margin is positive)."""
    table, table_d = _margin_table(num_classes, dtype, labels.device)
    labels = labels.long()
    return LinearSpec(table[labels], table_d[labels], [[j] for j in range(num_classes - 1)], SharedRows(labels, table, table_d))


_MARGIN_TABLES: dict = {}


def _margin_table(k: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, K−1, K) rows e_y − e_j for every label y, and zero constants; one shared instance per (K, dtype,
    device) so that bound methods can cache what they fold into the last layer."""
    key = (k, dtype, str(device))
    if key not in _MARGIN_TABLES:
        eye = torch.eye(k, dtype=dtype, device=device)
        others = torch.arange(k, device=device).expand(k, k)[eye == 0].reshape(k, k - 1)  # every class but y
        _MARGIN_TABLES[key] = (eye.unsqueeze(1) - eye[others], torch.zeros(k, k - 1, dtype=dtype, device=device))
    return _MARGIN_TABLES[key]
