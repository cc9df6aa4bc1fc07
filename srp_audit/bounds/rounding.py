"""Floating-point rounding allowances that keep computed bounds sound.

Bounds are computed in floating point, so a computed lower bound can exceed the exact one by rounding error.
Every transfer function widens its result outward by a rigorous allowance from the standard error model
(|fl(a∘b) − a∘b| ≤ u·|a∘b|, and γ_n = n·u / (1 − n·u) for an n-term dot product, valid for any summation order
and with FMA). These terms are tiny (about 1e-16 relative in float64) and never tighten a bound.
Assumes IEEE arithmetic without reduced-precision shortcuts: certification disables TF32 on CUDA.
"""

from __future__ import annotations

import torch


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


def gamma(n: int, dtype: torch.dtype) -> float:
    """γ_n for dtype; n counts the terms of a dot product (plus a few for the surrounding operations)."""
    nu = (n + 4) * unit_roundoff(dtype)
    if nu >= 0.5:
        raise ValueError(f"dot products of {n} terms are too long for {dtype} error bounds")
    return nu / (1 - nu)


def tiny(dtype: torch.dtype) -> float:
    """An absolute allowance covering underflow to subnormals."""
    return torch.finfo(dtype).tiny * 16


def centre_radius(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, r) with [c − r, c + r] ⊇ [lower, upper] despite rounding in computing c and r."""
    u = unit_roundoff(lower.dtype)
    c = (lower + upper) / 2
    r = (upper - lower) / 2 + 4 * u * (lower.abs() + upper.abs()) + tiny(lower.dtype)
    return c, r


def bounds_of(c: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower, upper) with [lower, upper] ⊇ [c − r, c + r] despite rounding."""
    u = unit_roundoff(c.dtype)
    slack = 4 * u * (c.abs() + r) + tiny(c.dtype)
    return c - r - slack, c + r + slack
