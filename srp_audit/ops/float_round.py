"""RoundToFloat: a cast of the data to a narrower float format (float16, bfloat16, or float32 from float64), which
rounds each value to nearest in that format.

The exact-arithmetic model of the stored network keeps the cast: fl(x) lies within u·|x| + h of x (u the
format's unit roundoff, h half its smallest subnormal) while x stays inside its finite range, and a value past it
may round to ±∞. IBP takes those bounds at the box's ends (rounding is monotone), rounded outward, and no finite
bound where the box reaches past the finite range; CROWN uses the lines of slope 1 at distance u·max|x| + h (exact
slopes, intercepts rounded up) inside it.
"""

from __future__ import annotations

import numpy as np
import torch

from ..kernel.interval import Interval
from .lines import LinesActivation

FORMATS = {  # unit roundoff u, half the smallest subnormal h, largest finite value, ONNX data type
    "float16": (2.0 ** -11, 2.0 ** -25, 65504.0, 10),
    "bfloat16": (2.0 ** -8, 2.0 ** -134, 3.3895313892515355e38, 16),
    "float32": (2.0 ** -24, 2.0 ** -150, 3.4028234663852886e38, 1),
}
TORCH_TYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _down(t: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(t, torch.full_like(t, -torch.inf))


def _up(t: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(t, torch.full_like(t, torch.inf))


class RoundToFloat(LinesActivation):
    """y = x rounded to nearest in the float format `fmt` (a Cast to float16 or bfloat16, or of float64 data to
    float32), as a value of the graph's own dtype."""

    def __init__(self, fmt: str) -> None:
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"rounding to {fmt} is not supported")
        self.fmt = fmt

    def describe(self) -> str:
        return f"round to {self.fmt}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float64 and self.fmt == "float16":  # torch rounds float64 → float32 → float16 (twice)
            return torch.from_numpy(x.detach().cpu().numpy().astype(np.float16).astype(np.float64)).to(x.device)
        return x.to(TORCH_TYPES[self.fmt]).to(x.dtype)

    def _error(self, m: torch.Tensor) -> torch.Tensor:
        """An upper bound of |fl(x) − x| for |x| ≤ m (m inside the finite range), rounded up: computed in float64
        (h is no float32 normal) and at least the graph dtype's smallest normal (a flushed denormal is no bound)."""
        u, h, _, _ = FORMATS[self.fmt]
        e = _up(_up(m.to(torch.float64) * u) + h)
        return torch.maximum(_up(e.to(m.dtype)), torch.full_like(m, torch.finfo(m.dtype).tiny))

    def ibp(self, x: Interval) -> Interval:
        lo, hi = x.bounds()
        _, _, top, _ = FORMATS[self.fmt]
        past = (lo < -top) | (hi > top)  # a value may round to ±∞: no finite bound either way
        lower = torch.where(past, torch.full_like(lo, -torch.inf), _down(lo - self._error(lo.abs())))
        upper = torch.where(past, torch.full_like(hi, torch.inf), _up(hi + self._error(hi.abs())))
        return Interval(lower, upper)

    def lines(self, l: torch.Tensor, u: torch.Tensor):
        _, _, top, _ = FORMATS[self.fmt]
        e = self._error(torch.maximum(l.abs(), u.abs()))
        inside = (l >= -top) & (u <= top)
        box = self.ibp(Interval(l, u))
        one, zero = torch.ones_like(l), torch.zeros_like(l)
        slope = torch.where(inside, one, zero)
        return slope, torch.where(inside, -e, box.lower), slope, torch.where(inside, e, box.upper)

    def to_onnx(self, b, name, ins, out):
        b.add("Cast", ins, out + "_narrow", to=FORMATS[self.fmt][3])
        b.add("Cast", [out + "_narrow"], out, to=1)

    def singleprop(self, centres, radii, variant):
        """The input's radius (the rounding is a training signal's noise)."""
        return radii[0]
