"""Generators of the generated-model fuzz that move, pick, join or reshape the data: Pad, Reshape, Flatten,
Squeeze/Unsqueeze, Transpose (also moving the batch axis and back), Slice, Gather, Split, Expand, Tile, Concat.
Registers into graph_fuzz_onnx.REG."""

from __future__ import annotations

import math

import numpy as np
from graph_fuzz_onnx import I64_MAX, Builder, V, gen


@gen("Pad", 11)
def _pad(b, x):
    r = len(x.shape)
    modes = ["constant", "constant", "reflect", "edge"] + (["wrap"] if b.opset >= 19 else [])
    mode = b.pick(modes)
    axes = list(range(1, r + 1))
    if b.opset >= 18 and b.coin(0.4):
        axes = sorted({int(a) for a in b.rng.integers(1, r + 1, 2)})
    cap = [min(x.shape[a - 1] - 1 if mode == "reflect" else 2, 2) for a in axes]
    lo, hi = [int(b.rng.integers(0, c + 1)) for c in cap], [int(b.rng.integers(0, c + 1)) for c in cap]
    if b.coin(0.05):
        lo[0] = -1  # cropping: refused
    pads = lo + hi
    if axes == list(range(1, r + 1)) and not (b.opset >= 18 and b.coin(0.2)):
        ins = [x.name, b.i64([0] + lo + [0] + hi)]
    else:
        ins = [x.name, b.i64(pads), "", b.i64([a - (r + 1) if b.coin() else a for a in axes])]
    if mode == "constant" and b.coin():
        if len(ins) == 2:
            ins.append(b.f32(b.rng.uniform(-1, 1)))
        else:
            ins[2] = b.f32(b.rng.uniform(-1, 1))
    return V(b.node("Pad", ins, mode=mode), ())


def factor(b: Builder, n: int, k: int) -> list[int]:
    """n split into k factors (random divisors)."""
    out = []
    for _ in range(k - 1):
        d = b.pick([d for d in range(1, n + 1) if n % d == 0])
        out.append(d)
        n //= d
    return out + [n]


@gen("Reshape")
def _reshape(b, x):
    n = math.prod(x.shape)
    dims = factor(b, n, int(b.rng.integers(1, 4)))
    target = [b.pick([0, -1, 0])] + dims
    if target[0] == 0 and b.coin(0.4):
        target[int(b.rng.integers(1, len(target)))] = -1
    for i in range(1, len(target)):
        if i - 1 < len(x.shape) and target[i] == x.shape[i - 1] and b.coin(0.3):
            target[i] = 0
    attrs = {"allowzero": 0} if b.opset >= 14 and b.coin(0.2) else {}
    return V(b.node("Reshape", [x.name, b.i64(target)], **attrs), tuple(dims))


@gen("Flatten")
def _flatten(b, x):
    r = len(x.shape)
    axis = b.pick([1, 1, -r, 2, 0]) if r > 1 else b.pick([1, -1])
    return V(b.node("Flatten", [x.name], axis=axis), ())


@gen("Unsqueeze")
def _unsqueeze(b, x):
    r = len(x.shape)
    pos = sorted({int(a) for a in b.rng.integers(1, r + 2, int(b.rng.integers(1, 3)))})
    rank = r + 1 + len(pos)
    ins, attrs = b.axes_in(x.name, [a - rank if b.coin() else a for a in pos], 13)
    return V(b.node("Unsqueeze", ins, **attrs), ())


@gen("Squeeze")
def _squeeze(b, x):
    if 1 not in x.shape:
        x = _unsqueeze(b, x)
        x = V(x.name, b.probe(x.name))
    r = len(x.shape)
    ones = [i + 1 for i, d in enumerate(x.shape) if d == 1]
    if b.batch == "N" and b.coin(0.3):
        return V(b.node("Squeeze", [x.name]), ())
    ins, attrs = b.axes_in(x.name, [a - (r + 1) if b.coin() else a for a in ones[: int(b.rng.integers(1, len(ones) + 1))]], 13)
    return V(b.node("Squeeze", ins, **attrs), ())


@gen("Transpose")
def _transpose(b, x):
    r = len(x.shape)
    if r >= 1 and b.coin(0.25):  # the batch axis moves, and an op reads it there (Transpose back, Slice, Gather, Squeeze)
        perm = [int(p) for p in b.rng.permutation(r + 1)]
        while perm[0] == 0:
            perm = [int(p) for p in b.rng.permutation(r + 1)]
        t = b.node("Transpose", [x.name], perm=perm)
        j = int(b.rng.integers(1, r + 1))  # a sample axis of the transposed tensor (never where the batch went)
        while perm[j] == 0:
            j = int(b.rng.integers(0, r + 1))
        if b.coin() and x.shape[perm[j] - 1] > 1:
            t = b.node("Slice", [t, b.i64([1]), b.i64([I64_MAX]), b.i64([j])])
        inv = [int(i) for i in np.argsort(perm)]
        return V(b.node("Transpose", [t], perm=inv), ())
    perm = [0] + [int(p) + 1 for p in b.rng.permutation(r)]
    return V(b.node("Transpose", [x.name], perm=perm), ())


@gen("Slice", 10)
def _slice(b, x):
    r = len(x.shape)
    axes = sorted({int(a) for a in b.rng.integers(1, r + 1, int(b.rng.integers(1, 3)))})
    starts, ends, steps = [], [], []
    for a in axes:
        d = x.shape[a - 1]
        st = b.pick([1, 1, 2, -1, -2])
        s0 = int(b.rng.integers(-d, d))
        e0 = b.pick([I64_MAX if st > 0 else -I64_MAX, int(b.rng.integers(-d - 1, d + 2))])
        starts.append(s0), ends.append(e0), steps.append(st)
    ins = [x.name, b.i64(starts), b.i64(ends)]
    if b.coin(0.2) and axes == [1]:  # axes left out: the batch axis is sliced whole
        ins = [x.name, b.i64([0] + starts), b.i64([I64_MAX] + ends), b.i64([0, 1]), b.i64([1] + steps)]
        return V(b.node("Slice", ins[:3] if steps == [1] else ins), ())
    ins.append(b.i64([a - (r + 1) if b.coin() else a for a in axes]))
    if steps != [1] * len(steps) or b.coin():
        ins.append(b.i64(steps))
    return V(b.node("Slice", ins), ())


@gen("Gather")
def _gather(b, x):
    r = len(x.shape)
    a = b.ax(r)
    d = x.shape[a % (r + 1) - 1]
    idx = b.pick([np.int64(b.rng.integers(-d, d)), b.rng.integers(-d, d, int(b.rng.integers(1, 5))),
                  b.rng.integers(-d, d, (2, 2))])
    return V(b.node("Gather", [x.name, b.i64(idx)], axis=a), ())


@gen("Split")
def _split(b, x):
    r = len(x.shape)
    cands = [i + 1 for i, d in enumerate(x.shape) if d >= 2]
    if not cands:
        return None
    a = b.pick(cands)
    d = x.shape[a - 1]
    k = int(b.rng.integers(2, min(d, 3) + 1))
    sizes = factor_sum(b, d, k)
    axis = a - (r + 1) if b.coin() else a
    if b.opset >= 18 and b.coin(0.3):
        parts = b.node("Split", [x.name], k, axis=axis, num_outputs=k)
    elif b.opset >= 13:
        parts = b.node("Split", [x.name, b.i64(sizes)], k, axis=axis)
    else:
        parts = b.node("Split", [x.name], k, axis=axis, split=sizes)
    if b.coin(0.3):
        return V(parts[int(b.rng.integers(k))], ())
    parts = [b.node(b.pick(["Identity", "Relu", "Tanh"]), [p]) for p in parts]
    return V(b.node("Concat", parts[::-1] if b.coin() else parts, axis=axis), ())


def factor_sum(b: Builder, n: int, k: int) -> list[int]:
    cuts = sorted(int(c) for c in b.rng.choice(np.arange(1, n), k - 1, replace=False))
    return [q - p for p, q in zip([0, *cuts], [*cuts, n])]


@gen("Expand")
def _expand(b, x):
    if 1 not in x.shape:
        ins, attrs = b.axes_in(x.name, [b.ax(len(x.shape) + 1)], 13)
        x = V(b.node("Unsqueeze", ins, **attrs), ())
        x = V(x.name, b.probe(x.name))
    target = [1] + [int(b.rng.integers(2, 4)) if d == 1 and b.coin(0.8) else d for d in x.shape]
    if b.coin(0.3):
        target = [t if t != x.shape[i - 1] or b.coin() else 1 for i, t in enumerate(target)]  # 1 keeps the size
    if b.coin(0.2):
        target = target[len(target) - int(b.rng.integers(1, len(target) + 1)):]
    return V(b.node("Expand", [x.name, b.i64(target)]), ())


@gen("Tile")
def _tile(b, x):
    reps = [1] + [int(b.rng.integers(1, 3)) for _ in x.shape]
    return V(b.node("Tile", [x.name, b.i64(reps)]), ())


@gen("Concat")
def _concat(b, x):
    r = len(x.shape)
    a = b.ax(r)
    other = V(b.node(b.pick(["Relu", "Neg", "Identity"]), [x.name]), x.shape)
    parts = [x.name, other.name] if b.coin() else [other.name, x.name, x.name]
    if b.batch == 1 and b.coin(0.4):  # a constant joins the data (a fixed batch of 1)
        shape = [1, *x.shape]
        shape[a % (r + 1)] = int(b.rng.integers(1, 3))
        parts.insert(int(b.rng.integers(len(parts) + 1)), b.f32(b.rng.standard_normal(shape)))
    return V(b.node("Concat", parts, axis=a), ())
