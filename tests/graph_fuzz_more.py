"""Generators of the generated-model fuzz for ops read by mapping onto existing IR ops: DepthToSpace,
SpaceToDepth, GatherElements, GatherND, CumSum, Instance/Group normalisation and 1-D pooling. Registers into graph_fuzz_onnx.REG."""

from __future__ import annotations

import numpy as np
from graph_fuzz_onnx import V, gen


@gen("DepthToSpace", 11, ranks=(3,))
def _depth_to_space(b, x):
    c, h, w = x.shape
    if c % 4:
        return None
    attrs = {"blocksize": 2, **({"mode": b.pick(["DCR", "CRD"])} if b.coin() else {})}
    return V(b.node("DepthToSpace", [x.name], **attrs), (c // 4, 2 * h, 2 * w))


@gen("SpaceToDepth", ranks=(3,))
def _space_to_depth(b, x):
    c, h, w = x.shape
    if h % 2 or w % 2:
        return None
    return V(b.node("SpaceToDepth", [x.name], blocksize=2), (4 * c, h // 2, w // 2))


@gen("CumSum", 11)
def _cumsum(b, x):
    r = len(x.shape)
    axis = int(b.rng.integers(1, r + 1))
    attrs = {k: 1 for k in ("exclusive", "reverse") if b.coin(0.3)}
    return V(b.node("CumSum", [x.name, b.i64(axis - (r + 1) if b.coin() else axis)], **attrs), x.shape)


@gen("InstanceNormalization", 6, ranks=(2, 3))
def _instance_norm(b, x):
    c = x.shape[0]
    ins = [x.name, b.f32(b.rng.standard_normal(c)), b.f32(b.rng.standard_normal(c) * 0.3)]
    return V(b.node("InstanceNormalization", ins, **({"epsilon": float(b.pick([1e-3, 0.1]))} if b.coin() else {})), x.shape)


@gen("GroupNormalization", 21, ranks=(2, 3))
def _group_norm(b, x):
    c = x.shape[0]
    groups = b.pick([g for g in (1, 2, c) if c % g == 0])
    ins = [x.name, b.f32(b.rng.standard_normal(c)), b.f32(b.rng.standard_normal(c) * 0.3)]
    return V(b.node("GroupNormalization", ins, num_groups=groups, epsilon=float(b.pick([1e-5, 1e-2]))), x.shape)


@gen("pool_1d", 10, ranks=(2,))
def _pool_1d(b, x):
    c, length = x.shape
    op = b.pick(["MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"])
    if op.startswith("Global"):
        return V(b.node(op, [x.name]), (c, 1))
    k = int(b.rng.integers(1, min(3, length) + 1))
    attrs: dict = {"kernel_shape": [k]}
    if b.coin(0.6):
        attrs["strides"] = [int(b.rng.integers(1, 3))]
    if b.coin(0.5) and k > 1:
        attrs["pads"] = [int(b.rng.integers(0, k // 2 + 1)), int(b.rng.integers(0, k // 2 + 1))]
    if op == "AveragePool" and b.coin(0.3):
        attrs["count_include_pad"] = 1
    return V(b.node(op, [x.name], **attrs), ())


@gen("GatherElements", 11)
def _gather_elements(b, x):
    """Constant indices hold the batch axis, so only a model with a batch of 1 can have them."""
    if b.batch != 1:
        return None
    r = len(x.shape)
    axis = int(b.rng.integers(1, r + 1))
    shape = [1] + [int(b.rng.integers(1, n + 1)) if k + 1 != axis else int(b.rng.integers(1, 4)) for k, n in enumerate(x.shape)]
    idx = b.rng.integers(-x.shape[axis - 1], x.shape[axis - 1], size=shape)
    return V(b.node("GatherElements", [x.name, b.i64(idx)], axis=axis - (r + 1) if b.coin() else axis), tuple(shape[1:]))


@gen("GatherND", 12)
def _gather_nd(b, x):
    """batch_dims 1 with indices into each sample, or 0 with the batch's index 0 first (a batch of 1 only)."""
    if b.batch != 1:
        return None
    r = len(x.shape)
    depth = int(b.rng.integers(1, r + 1))
    k = int(b.rng.integers(1, 4))
    cols = [b.rng.integers(-n, n, size=k) for n in x.shape[:depth]]
    if b.coin():
        idx = np.stack(cols, axis=-1).reshape(1, k, depth)
        return V(b.node("GatherND", [x.name, b.i64(idx)], batch_dims=1), (k,) + tuple(x.shape[depth:]))
    idx = np.stack([np.zeros(k, dtype=int)] + cols, axis=-1)
    return V(b.node("GatherND", [x.name, b.i64(idx)]), ())


@gen("Einsum", 12, ranks=(2, 3))
def _einsum(b, x):
    """A contraction with a weight over the last index, a transpose with a sum, or a data × data product."""
    r = len(x.shape)
    letters = "ijk"[:r]
    form = b.pick(["weight", "sum", "square"])
    if form == "weight":
        n = int(b.rng.integers(1, 5))
        w = b.w(x.shape[-1], n, fan=x.shape[-1])
        eq = f"...{letters},{letters[-1]}z->...{letters[:-1]}z"
        return V(b.node("Einsum", [x.name, w], equation=eq), tuple(x.shape[:-1]) + (n,))
    if form == "sum":
        keep = letters[1:][::-1]
        return V(b.node("Einsum", [x.name], equation=f"b{letters}->b{keep}"), tuple(x.shape[1:][::-1]))
    eq = f"b{letters},b{letters}->b{letters[-1]}"
    return V(b.node("Einsum", [x.name, x.name], equation=eq), (x.shape[-1],))
