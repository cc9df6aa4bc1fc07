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


def dot_gamma(n: int, dtype: torch.dtype) -> float:
    """The allowance factor for an n-term product as the rules use it: γ_{n+8}, a few units above the bound."""
    return gamma(n + 8, dtype)


def tiny(dtype: torch.dtype) -> float:
    """An absolute allowance covering underflow to subnormals."""
    return torch.finfo(dtype).tiny * 16


def as_float32(value: float) -> float:
    """The float32 number a model file stores for `value` (attributes are float32 in ONNX and in torch models)."""
    return float(torch.tensor(float(value), dtype=torch.float32))


def scaled_norm(w: torch.Tensor, q: float) -> tuple[torch.Tensor, torch.Tensor]:
    """‖w‖_q over the last axis as (n, s) with ‖w‖_q = n·s to within γ: s is a power of two near each row's largest
    |w_i| and n the norm of w / s, whose largest entry is then in [1, 4) — so an L2 norm's squares can neither
    underflow (unscaled, a float64 row of entries below 1e-154 has norm 0) nor overflow. Multiply a factor by n
    first and then by s: the product by s is exact unless it leaves the normal range (inf, or an absolute error
    below `tiny`). Entries lost in the scaling are below 2^-1022 of the row's largest and lie within γ_n."""
    m = w.abs().amax(dim=-1)
    usable = (m > 0) & torch.isfinite(m)
    one = torch.ones((), dtype=w.dtype, device=w.device)
    s = torch.where(usable, torch.exp2(torch.floor(torch.log2(torch.where(usable, m, one)))), one)
    return torch.linalg.vector_norm(w / s.unsqueeze(-1), ord=q, dim=-1), s
