"""The ONNX op table, part two: ops that move, pick, join or reshape the model's data (Flatten, Reshape, Squeeze,
Unsqueeze, Transpose, Pad, Slice/Gather/Split/Expand/Tile, Concat). They register into `onnx_ops.HANDLERS`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..ops.reduce import axes_arg
from .context import Tensor, Value
from .discrete_build import embedding
from .onnx_const import fold
from .onnx_context import OnnxContext
from .onnx_ops import handles


@handles("Flatten")
def _flatten(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    shape = list(ctx.onnx_shape(x))
    axis = int(attrs.get("axis", 1))
    axis = axis + len(shape) if axis < 0 else axis  # ONNX: a negative axis counts from the back, in [-r, r]
    out = [math.prod(shape[:axis]), math.prod(shape[axis:])]
    if ctx.batched and axis == 0:
        raise ctx.unsupported("Flatten(axis=0) merges the batch axis into the sample")
    return [ctx.reshape_to(x, out)]


@handles("Reshape")
def _reshape(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    target = [int(s) for s in ctx.const(node.input[1], "target shape").reshape(-1)]
    shape_in = list(ctx.onnx_shape(x))
    allowzero = int(attrs.get("allowzero", 0))
    out = []
    for i, s in enumerate(target):
        if s == 0 and not allowzero:
            if i >= len(shape_in):
                raise ctx.unsupported(f"target {target} copies a dimension the input does not have")
            out.append(shape_in[i])
        else:
            out.append(s)
    if 0 in out:
        raise ctx.unsupported(f"target shape {target} has a zero-sized dimension")
    if out.count(-1) > 1:
        raise ctx.unsupported(f"target shape {target} has more than one -1")
    if -1 in out:
        known = math.prod(s for s in out if s != -1)
        total = math.prod(shape_in)
        if known == 0 or total % known:
            raise ctx.unsupported(f"cannot reshape {tuple(shape_in)} to {target}")
        out[out.index(-1)] = total // known
    return [ctx.reshape_to(x, out)]


@handles("Squeeze")
def _squeeze(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0], moved_ok=True)
    if ctx.batched and x.batch_at != 0:  # after a Transpose moved the batch: the op itself on entry numbers
        rest = [ctx.const(i, "axes") if i else None for i in node.input[1:]]
        return list(ctx.pick(x, lambda ids: fold("Squeeze", [ids, *rest], attrs, ctx.opset)))
    shape = list(ctx.onnx_shape(x))
    axes = axes_arg(ctx, node, attrs, 13)
    if axes is None:  # squeeze every size-1 sample axis; the batch axis stays
        keep = [s for i, s in enumerate(shape) if s != 1 or (ctx.batched and i == 0)]
    else:
        drop = {a % len(shape) for a in axes}
        if ctx.batched and 0 in drop:
            raise ctx.unsupported("squeezing the batch axis")
        if any(shape[a] != 1 for a in drop):
            raise ctx.unsupported(f"squeezing axes {axes} of shape {tuple(shape)}, which are not of size 1")
        keep = [s for i, s in enumerate(shape) if i not in drop]
    return [ctx.reshape_to(x, keep)]


@handles("Unsqueeze")
def _unsqueeze(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    shape = list(ctx.onnx_shape(x))
    axes = axes_arg(ctx, node, attrs, 13) or []
    rank = len(shape) + len(axes)
    for a in sorted(a % rank for a in axes):
        if ctx.batched and a == 0:
            raise ctx.unsupported("inserting an axis before the batch axis")
        shape.insert(a, 1)
    return [ctx.reshape_to(x, shape)]


@handles("Transpose")
def _transpose(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0], moved_ok=True)
    rank = len(ctx.onnx_shape(x))
    return [ctx.permute(x, [int(p) for p in attrs.get("perm", list(reversed(range(rank))))])]


@handles("Slice", "Gather", "Split", "Expand", "Tile", "DepthToSpace", "SpaceToDepth", "GatherElements", "GatherND")
def _pick(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    """Ops that only pick, repeat or reorder entries, applied to the model's data with constant arguments: their
    effect is computed on the entries' numbers (the op's own constant folder), giving one Select per output."""
    if node.op_type == "Gather" and isinstance(ctx.get(node.input[0]), np.ndarray) and isinstance(ctx.get(node.input[1]), Tensor):
        if int(attrs.get("axis", 0)) != 0:
            raise ctx.unsupported("Gather of a constant table at data indices is read only along axis 0 (an embedding)")
        return [embedding(ctx, ctx.weight(node.input[0], "table"), ctx.tensor(node.input[1]))]
    x = ctx.tensor(node.input[0], moved_ok=True)
    rest = [ctx.const(i, "argument") if i else None for i in node.input[1:]]
    if node.op_type == "Gather" and rest and not np.issubdtype(np.asarray(rest[0]).dtype, np.integer):
        raise ctx.unsupported("Gather indices must be integers")
    op_attrs = {**attrs, "__outputs": len(node.output)}
    return list(ctx.pick(x, lambda ids: fold(node.op_type, [ids, *rest], op_attrs, ctx.opset)))


