"""The ATen op table, part two: ops that pick, join, reduce, multiply or clip the model's data (slice, select,
index_select, split, expand, repeat, cat, sum, mean, bmm/matmul of two tensors, softmax, clamp/hardtanh). They
register into `aten_read.ATEN`."""

from __future__ import annotations

import numpy as np
import torch

from ..ir.reading import Tensor, aten_tensor, aten_weight
from ..kernel.rounding import as_float32
from ..ops.affine import Dense
from ..ops.select import index_map
from .aten_context import _AtenCtx, aten


@aten("aten.bmm.default", "aten.matmul.default")
def _matmul2(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x, y = a[:2]
    if isinstance(x, Tensor) and not isinstance(y, Tensor):  # data @ W: a Dense over the last axis
        w = aten_weight(ctx, y)
        if w.dim() != 2:
            raise ctx.unsupported(f"data @ a constant of rank {w.dim()} (only a matrix is supported)")
        return ctx.emit(Dense(w.T.contiguous()), [x], "dense")
    if not (isinstance(x, Tensor) and isinstance(y, Tensor)):
        raise ctx.unsupported("a constant @ the model's data (only data @ weights and data @ data are supported)")
    return ctx.matmul(x, y)


@aten("aten.slice.Tensor", "aten.select.int", "aten.index_select.default", "aten.split.Tensor", "aten.split_with_sizes.default",
      "aten.expand.default", "aten.repeat.default", "aten.narrow.default", "aten.unbind.int")
def _pick(ctx: _AtenCtx, a: list, kw: dict):
    """Ops that only pick, repeat or reorder entries: run the op itself on the entries' numbers to learn which
    entries each output takes (one Select per output; a list for ops with several)."""
    x = a[0] if isinstance(a[0], Tensor) else aten_tensor(ctx, a[0])  # (a moved batch axis is fine here)
    rest = [torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) and v.ndim else v for v in a[1:]]

    args = list(rest)
    if ctx.node.target is torch.ops.aten.expand.default and ctx.batched:  # the batch size was folded to 1: keep the data's
        args[0] = [-1] + [int(s) for s in list(args[0])[1:]]

    def apply(ids: np.ndarray) -> list:
        out = ctx.node.target(torch.from_numpy(ids), *args, **kw)
        return [o.numpy() for o in out] if isinstance(out, (list, tuple)) else [out.numpy()]

    try:
        index_map(apply, x.shape, ctx.batched, x.batch_at)  # fails here (not in pick) when torch cannot apply it
    except Exception as e:
        raise ctx.unsupported(f"cannot apply it to the sample ({type(e).__name__}: {str(e)[:80]})") from None
    outs = ctx.pick(x, apply)
    multi = "split" in str(ctx.node.target) or "unbind" in str(ctx.node.target)
    return outs if multi else outs[0]


@aten("aten.clamp.default", "aten.hardtanh.default")
def _clamp(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    hardtanh = "hardtanh" in str(ctx.node.target)
    lo = a[1] if len(a) > 1 else kw.get("min_val" if hardtanh else "min", -1.0 if hardtanh else None)
    hi = a[2] if len(a) > 2 else kw.get("max_val" if hardtanh else "max", 1.0 if hardtanh else None)
    return ctx.clip(x, None if lo is None else as_float32(lo), None if hi is None else as_float32(hi))  # torch's float32 scalars
