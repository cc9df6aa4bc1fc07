"""The hyperbolic sine, y = sinh x (ONNX Sinh, ATen sinh): an elementwise activation on the grid rule of
`scalar.ScalarActivation`, which needs only the function and bounds on its second derivative."""

from __future__ import annotations

import torch

from .scalar import ScalarActivation


class Sinh(ScalarActivation):
    """y = sinh x: increasing (IBP is exact), f″ = sinh x, so f″ lies in [sinh l, sinh u] on [l, u] — each end
    widened by the library's error. Past |x| ≈ 710 (89 in float32) sinh overflows and the bounds are infinite."""

    onnx_op = "Sinh"
    aten_ops = ("aten.sinh.default",)
    increasing = True

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sinh(x)

    def curvature(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = torch.sinh(l), torch.sinh(u)
        return lo - self.err(l, lo), hi + self.err(u, hi)
