"""Rigorous enclosures of constants that a loader *derives* from a model's stored values.

The network we certify is the stored one in exact real arithmetic. A constant the model only implies — 1/c for a
division by a stored c, batch-norm's γ/√(var + ε), the product of two consecutive scales — is generally not a
floating-point number, so a rounded copy of it would make the analysed network differ from the stored one.
`Enclosed` keeps such a constant as mid ± rad (float64 tensors): every exact value lies within rad of mid. Each
operation rounds mid to nearest and adds its own rounding error to rad (zero when the operation was exact, which
an error-free transformation detects), and every rad is rounded upward, so the enclosure only ever grows.

A bound rule that uses mid in place of the exact constant adds rad·|x| (scales) or rad (shifts) to its own
rounding allowance (`ElementwiseAffine`), which keeps its bounds rigorous for the exact constant.
"""

from __future__ import annotations

import torch

_U = 2.0 ** -53  # float64 unit roundoff
_TINY = torch.finfo(torch.float64).tiny * 16  # underflow guard, as in rounding.tiny
_SPLIT = 134217729.0  # 2^27 + 1: Dekker's splitter for float64
_SAFE = 2.0 ** 996  # below this magnitude the error-free transformations cannot overflow
_NORMAL = 2.0 ** -969  # above this magnitude their error terms cannot underflow


def _up(rad: torch.Tensor) -> torch.Tensor:
    """A sum of a few non-negative float64 terms rounded up: covers up to 8 roundings of u each; an underflow guard
    wherever something is left."""
    return torch.where(rad > 0, rad * (1 + 8 * _U) + _TINY, rad)


def _two_sum_error(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """a + b − fl(a + b), exactly (Knuth's TwoSum; needs no overflow)."""
    bb = s - a
    return (a - (s - bb)) + (b - bb)


def _two_product_error(a: torch.Tensor, b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """a·b − fl(a·b), exactly (Dekker's TwoProduct; needs |a|, |b| < 2^996 and no underflow of the terms)."""
    def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = _SPLIT * x
        hi = c - (c - x)
        return hi, x - hi

    ah, al = split(a)
    bh, bl = split(b)
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _rounding(result: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """The rounding error allowance of one correctly rounded operation: 0 where it was `exact`, else u·|result|
    (plus the underflow guard)."""
    return torch.where(exact, torch.zeros_like(result), result.abs() * _U + _TINY)


def _safe(*ts: torch.Tensor) -> torch.Tensor:
    """Where the error-free transformations are valid: finite, no overflow, and no underflow of their terms."""
    ok = torch.ones_like(ts[0], dtype=torch.bool)
    for t in ts:
        m = t.abs()
        ok &= (m < _SAFE) & ((m > _NORMAL) | (m == 0))
    return ok


class Enclosed:
    """Exact real constants known only to lie in mid ± rad, elementwise (float64 tensors of one shape, rad ≥ 0)."""

    __slots__ = ("mid", "rad")

    def __init__(self, mid: torch.Tensor, rad: torch.Tensor | None = None) -> None:
        self.mid = mid.to(torch.float64)
        self.rad = torch.zeros_like(self.mid) if rad is None else rad.to(torch.float64)
        if self.mid.shape != self.rad.shape:
            self.mid, self.rad = torch.broadcast_tensors(self.mid, self.rad)

    @classmethod
    def exact(cls, value: torch.Tensor | float) -> "Enclosed":
        """A stored value (float32, float64 or integer): exact in float64."""
        t = torch.tensor(float(value), dtype=torch.float64) if isinstance(value, (int, float)) else torch.as_tensor(value)
        if t.dtype not in (torch.float64, torch.float32, torch.float16, torch.bfloat16) and t.is_floating_point():
            raise TypeError(f"no exact float64 copy of a {t.dtype} constant")
        mid = t.detach().to(torch.float64)
        if not t.is_floating_point() and bool((mid.abs() > 2.0 ** 53).any()):
            raise ValueError("an integer constant beyond 2^53 has no exact float64 copy")
        return cls(mid.clone())

    @property
    def is_exact(self) -> bool:
        return not bool(self.rad.any())

    @property
    def lower(self) -> torch.Tensor:
        """A float64 lower bound of every exact value."""
        return torch.nextafter(self.mid - self.rad, torch.tensor(-torch.inf, dtype=torch.float64))

    @property
    def upper(self) -> torch.Tensor:
        return torch.nextafter(self.mid + self.rad, torch.tensor(torch.inf, dtype=torch.float64))

    def reshape(self, *shape: int) -> "Enclosed":
        return Enclosed(self.mid.reshape(*shape), self.rad.reshape(*shape))

    def __neg__(self) -> "Enclosed":
        return Enclosed(-self.mid, self.rad.clone())

    def __add__(self, other: "Enclosed | torch.Tensor | float") -> "Enclosed":
        o = other if isinstance(other, Enclosed) else Enclosed.exact(other)
        a, b = torch.broadcast_tensors(self.mid, o.mid)
        s = a + b
        err = _two_sum_error(a, b, s).abs()
        err = torch.where(_safe(a, b, s), err, s.abs() * _U + _TINY)
        return Enclosed(s, _up(self.rad + o.rad + err))

    def __sub__(self, other: "Enclosed | torch.Tensor | float") -> "Enclosed":
        return self + (-(other if isinstance(other, Enclosed) else Enclosed.exact(other)))

    def __mul__(self, other: "Enclosed | torch.Tensor | float") -> "Enclosed":
        o = other if isinstance(other, Enclosed) else Enclosed.exact(other)
        a, b = torch.broadcast_tensors(self.mid, o.mid)
        ra, rb = torch.broadcast_tensors(self.rad, o.rad)
        p = a * b
        ok = _safe(a, b, p) & ((p.abs() > _NORMAL) | (a == 0) | (b == 0))
        exact = ok & (_two_product_error(a, b, p) == 0)
        return Enclosed(p, _up(a.abs() * rb + b.abs() * ra + ra * rb + _rounding(p, exact)))

    def reciprocal(self) -> "Enclosed":
        """1/x; every value of the enclosure must be non-zero (`ValueError` otherwise)."""
        a, ra = self.mid, self.rad
        gap = (a.abs() - ra) * (1 - 2 * _U)  # a lower bound of |x| over the enclosure
        if bool((gap <= 0).any()):
            raise ValueError("the reciprocal of a constant that may be 0")
        r = 1.0 / a
        mant, _ = torch.frexp(a)
        exact = (mant.abs() == 0.5) & _safe(a, r)  # 1/2^k is exact unless it leaves the normal range
        return Enclosed(r, _up(ra / (a.abs() * gap) + _rounding(r, exact)))

    def sqrt(self) -> "Enclosed":
        """√x; every value of the enclosure must be ≥ 0 (`ValueError` otherwise)."""
        a, ra = self.mid, self.rad
        if bool((a - ra < 0).any()):
            raise ValueError("the square root of a constant that may be negative")
        r = torch.sqrt(a)
        exact = _safe(a, r) & (r * r == a) & (_two_product_error(r, r, r * r) == 0)
        # |√x − √a| ≤ |x − a| / √a, and ≤ √|x − a| (the only bound when a = 0)
        per_mid = torch.where(a > 0, ra / torch.where(a > 0, r, torch.ones_like(r)), torch.full_like(r, torch.inf))
        spread = torch.minimum(per_mid, torch.sqrt(ra)) * (1 + 4 * _U)
        return Enclosed(r, _up(spread + _rounding(r, exact)))

    def in_dtype(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(value, rad) in `dtype`: the value is mid rounded to nearest, rad bounds |exact − value| (rounded up)."""
        if dtype == torch.float64:
            return self.mid, self.rad
        v = self.mid.to(dtype)
        total = _up(self.rad + (v.to(torch.float64) - self.mid).abs())
        r = total.to(dtype)
        r = torch.where(r.to(torch.float64) < total, torch.nextafter(r, torch.full_like(r, torch.inf)), r)
        return v, r
