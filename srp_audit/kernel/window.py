"""Window arithmetic shared by convolution and pooling: kernel/stride pairs, padding quadruples, output sizes."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def pads4(p: int | Sequence[int]) -> tuple[int, int, int, int]:
    """Padding as (top, left, bottom, right); accepts an int, (h, w) or the 4-tuple."""
    if isinstance(p, int):
        return (p, p, p, p)
    p = tuple(int(v) for v in p)
    if len(p) == 2:
        return (p[0], p[1], p[0], p[1])
    if len(p) == 4:
        return p
    raise ValueError(f"padding must have 1, 2 or 4 entries, got {p}")


def pooled_size(n: int, k: int, s: int, p0: int, p1: int, d: int = 1, ceil: bool = False) -> int:
    """Output length of a window op over n cells (kernel k, stride s, padding p0/p1, dilation d)."""
    span = n + p0 + p1 - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + p0:  # torch/ONNX rule: the last window must start inside the input
        out -= 1
    return out
