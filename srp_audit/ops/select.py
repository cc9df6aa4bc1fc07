"""Select: y = x.flatten()[indices].reshape(shape) for constant indices — every op that only picks, repeats or
reorders a sample's entries (ONNX Slice, Gather, Split, Expand and Tile on data; ATen slice, select, index_select,
split, expand). Exact in every method; an entry may be picked several times (then CROWN adds its coefficients).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..ir.node import Node, Shape
from ..kernel.backward import Context, zero_const
from ..kernel.interval import Interval
from ..kernel.rounding import dot_gamma


class Select(Node):
    """Entries of the sample at constant flat `indices`, shaped as `shape`."""

    passes_bounds = True
    indices: torch.Tensor  # a buffer (`register_buffer` in __init__), declared so that it types as a tensor

    def __init__(self, indices: torch.Tensor | np.ndarray | Sequence[int], shape: Sequence[int], in_numel: int) -> None:
        super().__init__()
        idx = torch.tensor(np.asarray(indices, dtype=np.int64)).reshape(-1)
        if idx.numel() != math.prod(shape):
            raise ValueError(f"Select: {idx.numel()} indices for an output of shape {tuple(shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= in_numel):
            raise ValueError(f"Select: indices outside a sample of {in_numel} entries")
        self.register_buffer("indices", idx)
        self.shape = tuple(int(s) for s in shape)
        self.in_numel = int(in_numel)
        counts = torch.bincount(idx, minlength=max(in_numel, 1)) if idx.numel() else torch.zeros(1, dtype=torch.long)
        self.repeats = int(counts.max())  # how often the most-picked entry is picked (CROWN sums that many terms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1).index_select(1, self.indices).reshape((x.shape[0],) + self.shape)

    def out_shape(self, shape: Shape) -> Shape:
        if math.prod(shape) != self.in_numel:
            raise ValueError(f"Select picks from {self.in_numel} entries, the sample has shape {shape}")
        return self.shape

    def describe(self) -> str:
        return f"{self.in_numel}→{self.shape}" + (f" (×{self.repeats})" if self.repeats > 1 else "")

    def ibp(self, x: Interval) -> Interval:
        return x.map(self)

    def ball_image(self, ball):
        """Picked entries keep their distances; an entry picked k times counts k times (radius · repeats^(1/p))."""
        return ball.moved(self(ball.centre), self.repeats)

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        n, r = A.shape[:2]
        flat = torch.zeros(n, r, self.in_numel, dtype=A.dtype, device=A.device)
        flat.index_add_(2, self.indices, A.reshape(n, r, -1))
        return [flat.reshape((n, r) + ctx.shape(ctx.x(name)))], zero_const(A)

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        """Exact when no entry repeats; otherwise the sums of up to `repeats` coefficients round."""
        x = ctx.x(name)
        err = self(ctx.err[x])
        if self.repeats > 1:
            err = err + dot_gamma(self.repeats, err.dtype) * self(ctx.mag(x))
        return err

    def singleprop(self, centres, radii, variant):
        return self(radii[0])

    def to_onnx(self, b, name, ins, out) -> None:
        flat = b.add("Reshape", [ins[0], b.const(f"{name}.flat", np.array([-1, self.in_numel], dtype=np.int64))], f"{name}.flat_x")
        picked = b.add("Gather", [flat, b.const(f"{name}.indices", self.indices.cpu().numpy())], f"{name}.picked", axis=1)
        b.add("Reshape", [picked, b.const(f"{name}.shape", np.array((-1,) + self.shape, dtype=np.int64))], out)


def index_map(apply, sample: Shape, batched: bool, batch_at: int = 0) -> list[tuple[np.ndarray, Shape, int]] | None:
    """Run a shape op `apply(ids) -> [outputs]` on the sample's entry numbers to learn which entries each output
    picks: [(flat indices, output sample shape, output batch position)] — or None when the op does not act on each
    sample alone (it mixes the batch axis). A batched op is tried on a batch of 3 (at framework axis `batch_at`):
    in each output exactly one axis must hold the batch, with sample b picking exactly sample 0's entries shifted by
    b samples."""
    n = math.prod(sample)
    if not batched:
        return [(np.asarray(o).reshape(-1).astype(np.int64), tuple(np.asarray(o).shape), 0) for o in apply(np.arange(n).reshape(sample))]
    ids = np.moveaxis(np.arange(3 * n).reshape((3,) + tuple(sample)), 0, batch_at)
    outs = []
    for o in apply(ids):
        o = np.asarray(o)
        found = [k for k in range(o.ndim) if o.shape[k] == 3
                 and all(np.array_equal(np.moveaxis(o, k, 0)[b], np.moveaxis(o, k, 0)[0] + b * n) for b in (1, 2))]
        if len(found) != 1:
            return None
        first = np.moveaxis(o, found[0], 0)[0]
        outs.append((first.reshape(-1).astype(np.int64), tuple(first.shape), found[0]))
    return outs
