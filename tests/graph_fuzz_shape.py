"""Generators of constant-only chains for the generated-model fuzz: shape arithmetic (Shape → Gather → Unsqueeze →
Concat → Reshape and friends, through every constant folder of `onnx_const.FOLDERS`) that feeds a data op, and
float constants computed from others (exact ones, and `Derived` ones no float holds, which only Add/Sub/Mul/Div
may apply to the data). Registers into graph_fuzz_onnx.REG."""

from __future__ import annotations

import numpy as np
from graph_fuzz_onnx import I64_MAX, Builder, V, bshape, gen
from onnx import TensorProto, numpy_helper


def _shape(b: Builder, x: V, start: int | None = None, end: int | None = None) -> str:
    """Shape(x), or a slice of it (Shape's start/end from opset 15, else a Slice of the whole shape)."""
    if start is None and end is None:
        return b.node("Shape", [x.name])
    if b.opset >= 15 and b.coin():
        attrs = {"start": start} if start is not None else {}
        return b.node("Shape", [x.name], **attrs, **({"end": end} if end is not None else {}))
    return b.node("Slice", [b.node("Shape", [x.name]), b.i64([start or 0]), b.i64([I64_MAX if end is None else end])])


def _unsq0(b: Builder, v: str) -> str:
    ins, attrs = b.axes_in(v, [b.pick([0, -1])], 13)
    return b.node("Unsqueeze", ins, **attrs)


@gen("shape_flatten")
def _flatten(b, x):
    """Shape → Gather → Unsqueeze → Concat → Reshape (how older exporters wrote x.view(x.size(0), -1))."""
    batch = _unsq0(b, b.node("Gather", [b.node("Shape", [x.name]), b.i64(np.int64(0))], axis=0)) if b.coin() else _shape(b, x, 0, 1)
    target = b.node("Concat", [batch, b.i64([-1])], axis=0)
    return V(b.node("Reshape", [x.name, target]), ())


@gen("shape_merge", ranks=(2, 3))
def _merge(b, x):
    """Two neighbouring axes merged: their sizes gathered and multiplied, the others sliced from the shape."""
    r = len(x.shape)
    i = int(b.rng.integers(1, r))
    s = b.node("Shape", [x.name])
    m = b.node("Mul", [b.node("Gather", [s, b.i64([i])]), b.node("Gather", [s, b.i64([i + 1 - (r + 1) if b.coin() else i + 1])])])
    head = b.node("Slice", [s, b.i64([0]), b.i64([i])])
    parts = [head, m] + ([b.node("Slice", [s, b.i64([i + 2]), b.i64([I64_MAX])])] if i + 2 <= r else [])
    return V(b.node("Reshape", [x.name, b.node("Concat", parts, axis=0)]), ())


@gen("shape_constant_of_shape", 9)
def _const_of_shape(b, x):
    """ConstantOfShape of the (sample) shape: a constant the data is shifted or scaled by."""
    s = _shape(b, x) if b.coin() else _shape(b, x, 1)
    value = numpy_helper.from_array(np.array([b.rng.uniform(-2, 2)], dtype=np.float32))
    c = b.node("ConstantOfShape", [s], value=value)
    return V(b.node(b.pick(["Add", "Mul", "Sub"]), [x.name, c]), x.shape)


@gen("shape_range_gather", 11)
def _range_gather(b, x):
    """Range over an axis' size (forward, or reversed from size − 1 down) as Gather indices."""
    r = len(x.shape)
    k = int(b.rng.integers(1, r + 1))
    d = b.node("Gather", [b.node("Shape", [x.name]), b.i64(np.int64(k))])
    if b.coin():
        idx = b.node("Range", [b.i64(np.int64(0)), d, b.i64(np.int64(b.pick([1, 2])))])
    else:
        idx = b.node("Range", [b.node("Sub", [d, b.i64(np.int64(1))]), b.i64(np.int64(-1)), b.i64(np.int64(-1))])
    return V(b.node("Gather", [x.name, idx], axis=k - (r + 1) if b.coin() else k), ())


@gen("shape_where_reshape", 9)
def _where_reshape(b, x):
    """A target shape with −1 at axis k chosen by a boolean mask (Equal, And/Or/Xor/Not, ≤/≥ of constants) and Where."""
    r = len(x.shape)
    k = int(b.rng.integers(1, r + 1))
    pos = b.node("Range", [b.i64(np.int64(0)), b.i64(np.int64(r + 1)), b.i64(np.int64(1))]) if b.opset >= 11 else b.i64(np.arange(r + 1))
    mask = b.node("Equal", [pos, b.i64(np.int64(k))])
    form = int(b.rng.integers(5))
    if form == 1:
        mask = b.node("And", [b.node("GreaterOrEqual", [pos, b.i64(np.int64(k))]), b.node("LessOrEqual", [pos, b.i64(np.int64(k))])])
    elif form == 2:
        mask = b.node("Or", [mask, b.node("Greater", [pos, b.i64(np.int64(r + 5))])])
    elif form == 3:
        mask = b.node("Xor", [b.node("Not", [mask]), b.const(np.ones(r + 1, dtype=bool))])
    elif form == 4:
        mask = b.node("Not", [b.node("Not", [b.node("Equal", [b.node("Less", [pos, b.i64(np.int64(k))]), b.const(np.zeros(1, dtype=bool))])])])
        mask = b.node("And", [mask, b.node("Less", [pos, b.i64(np.int64(k + 1))])])
    target = b.node("Where", [mask, b.i64(np.int64(-1)), b.node("Shape", [x.name])])
    return V(b.node("Reshape", [x.name, target]), x.shape)


@gen("shape_cast")
def _cast_chain(b, x):
    """The shape cast to int32 and back (Cast, CastLike), then x.view(batch, -1)."""
    s32 = b.node("Cast", [b.node("Shape", [x.name])], to=TensorProto.INT32)
    s = b.node("CastLike", [s32, b.i64([0])]) if b.opset >= 15 and b.coin() else b.node("Cast", [s32], to=TensorProto.INT64)
    target = b.node("Concat", [b.node("Slice", [s, b.i64([0]), b.i64([1])]), b.i64([-1])], axis=0)
    return V(b.node("Reshape", [x.name, target]), ())


@gen("shape_slice_end", 10)
def _slice_end(b, x):
    """Slice whose end is computed from the shape (size − 1 or size)."""
    r = len(x.shape)
    k = int(b.rng.integers(1, r + 1))
    if x.shape[k - 1] < 2:
        return None
    end = b.node("Sub", [b.node("Gather", [b.node("Shape", [x.name]), b.i64([k])]), b.i64([int(b.rng.integers(0, 2))])])
    return V(b.node("Slice", [x.name, b.i64([int(b.rng.integers(0, 2))]), end, b.i64([k - (r + 1) if b.coin() else k])]), ())


@gen("shape_pad", 11)
def _pad(b, x):
    """Pad amounts computed from the shape: Sign (or Relu of a Sub) of a size, placed by Where at one axis."""
    r = len(x.shape)
    k = int(b.rng.integers(1, r + 1)) + (r + 1) * int(b.rng.integers(0, 2))
    d = b.node("Gather", [b.node("Shape", [x.name]), b.i64(np.int64((k - 1) % (r + 1) + 1))])
    amount = b.node("Sign", [d]) if b.coin() else b.node("Relu", [b.node("Sub", [b.i64(np.int64(2)), d])])
    pos = b.node("Range", [b.i64(np.int64(0)), b.i64(np.int64(2 * (r + 1))), b.i64(np.int64(1))])
    pads = b.node("Where", [b.node("Equal", [pos, b.i64(np.int64(k))]), amount, b.i64(np.zeros(2 * (r + 1), dtype=np.int64))])
    return V(b.node("Pad", [x.name, pads], mode=b.pick(["constant", "edge"])), ())


@gen("shape_tile_expand", 11)
def _tile_expand(b, x):
    """Tile repeats (Tile of [1], plus a cast mask) or an Expand target (the shape, Concat a new trailing size)."""
    r = len(x.shape)
    if b.coin():
        pos = b.node("Range", [b.i64(np.int64(0)), b.i64(np.int64(r + 1)), b.i64(np.int64(1))])
        bump = b.node("Cast", [b.node("Equal", [pos, b.i64(np.int64(int(b.rng.integers(1, r + 1))))])], to=TensorProto.INT64)
        reps = b.node("Add", [b.node("Tile", [b.i64([1]), b.i64([r + 1])]), bump])
        return V(b.node("Tile", [x.name, reps]), ())
    ins, attrs = b.axes_in(x.name, [-1], 13)
    u = b.node("Unsqueeze", ins, **attrs)
    target = b.node("Concat", [b.node("Shape", [x.name]), b.i64([int(b.rng.integers(1, 4))])], axis=0)
    return V(b.node("Expand", [u, target]), ())


def _derived(b: Builder, shape: tuple[int, ...]) -> str:
    """A float constant computed from others: 1/sqrt(v + ε), c/3, c^(±½), −(a·b), … (exact or not)."""
    c = b.f32(b.rng.uniform(0.3, 2.0, shape).astype(np.float32))
    form = int(b.rng.integers(5))
    if form == 0:
        return b.node("Div", [b.f32(np.float32(1.0)), b.node("Sqrt", [b.node("Add", [c, b.f32(np.float32(1e-5))])])])
    if form == 1:
        return b.node("Neg", [b.node("Div", [c, b.f32(np.float32(b.pick([3.0, 2.0, 7.0])))])])
    if form == 2:
        return b.node("Pow", [c, b.f32(np.float32(b.pick([0.5, -0.5, 2.0, -1.0, 1.5, 3.0])))])
    if form == 3:
        return b.node("Mul", [c, b.node("Sub", [b.f32(np.float32(0.1)), c])])
    return b.node("Sqrt", [c])


@gen("const_derived")
def _const_derived(b, x):
    """A derived constant shifts or scales the data, maybe after a shape-only op (Transpose, Reshape, Unsqueeze…)."""
    shape = bshape(b, x.shape)
    c = _derived(b, shape)
    if len(shape) >= 2 and b.coin(0.3):
        c = b.node("Transpose", [b.node("Transpose", [c], perm=[1, 0] + list(range(2, len(shape))))], perm=[1, 0] + list(range(2, len(shape))))
    elif b.coin(0.3):
        c = b.node("Cast", [c], to=TensorProto.FLOAT) if b.coin() else b.node("Identity", [c])
        c = b.node("Reshape", [c, b.i64(list(shape) or [1])]) if b.coin() else c
    if b.coin(0.1):  # a derived weight read by MatMul: refused (only Add/Sub/Mul/Div may read it)
        return V(b.node("MatMul", [x.name, _derived(b, (x.shape[-1], 3))]), x.shape[:-1] + (3,))
    op = b.pick(["Add", "Sub", "Mul", "Div"])
    return V(b.node(op, [x.name, c] if op == "Div" or b.coin() else [c, x.name]), x.shape)


@gen("const_folds")
def _const_folds(b, x):
    """A weight or shift built by exact folds: Transpose, Reshape, Concat, Split, Squeeze/Unsqueeze, Flatten, Tile,
    Expand, Gather, Slice, Relu, Where of comparisons, Identity; then MatMul'ed or added to the data."""
    n, m = x.shape[-1], int(b.rng.integers(1, 6))
    w = b.rng.standard_normal((n, m)).astype(np.float32) / np.sqrt(n)
    form = int(b.rng.integers(10))
    if form == 0:
        W = b.node("Transpose", [b.f32(w.T)], perm=[1, 0])
    elif form == 1:
        W = b.node("Reshape", [b.f32(w.reshape(-1)), b.i64([n, -1])])
    elif form == 2 and m >= 2:
        W = b.node("Concat", [b.f32(w[:, :1]), b.f32(w[:, 1:])], axis=b.pick([1, -1]))
    elif form == 3:
        parts = b.node("Split", [b.f32(np.concatenate([w, w[:, :1]], axis=1))] + ([b.i64([m, 1])] if b.opset >= 13 else []), 2, axis=1,
                       **({} if b.opset >= 13 else {"split": [m, 1]}))
        W = b.node("Identity", [parts[0]])
    elif form == 4:
        ins, attrs = b.axes_in(b.f32(w[None]), [0], 13)
        W = b.node("Squeeze", ins, **attrs)
        if b.coin():  # (n, m, 1) flattened back to (n, m)
            ins, attrs = b.axes_in(W, [2], 13)
            W = b.node("Flatten", [b.node("Unsqueeze", ins, **attrs)], axis=1)
    elif form == 5:
        W = b.node("Tile", [b.f32(w[:, :1]), b.i64([1, m])])
    elif form == 6:
        W = b.node("Expand", [b.f32(w[:1]), b.i64([n, m])])
    elif form == 7:
        W = b.node("Gather", [b.f32(np.concatenate([w, w])), b.i64(np.arange(n) + n * int(b.coin()))], axis=0)
    elif form == 8:
        W = b.node("Slice", [b.f32(np.concatenate([w, w], axis=1)), b.i64([m]), b.i64([2 * m]), b.i64([1])])
    else:
        W = b.f32(w)
        W = b.node("Where", [b.node(b.pick(["Greater", "Less"]), [W, b.f32(np.float32(0))]), W, b.node(b.pick(["Relu", "Neg"]), [W])])
    if b.coin(0.3):
        bias = b.node("Relu", [b.f32(b.rng.standard_normal(m).astype(np.float32))])
        return V(b.node("Add", [b.node("MatMul", [x.name, W]), bias]), x.shape[:-1] + (m,))
    return V(b.node("MatMul", [x.name, W]), x.shape[:-1] + (m,))


@gen("shape_more", 11)
def _shape_more(b, x):
    """The other folders on shapes and constants: ReduceProd, Size, Sum, Max/Min, NonZero, Mod, Abs, ArgMax/ArgMin,
    Ceil/Floor/Round, each computing a Reshape target, pads, Gather indices or a Slice end."""
    r, form = len(x.shape), int(b.rng.integers(8))
    s = b.node("Shape", [x.name])
    k = int(b.rng.integers(1, r + 1))
    d = b.node("Gather", [s, b.i64([k])])
    if form == 0:  # flatten: batch, then the product of the sample sizes
        tail = b.node("Slice", [s, b.i64([1]), b.i64([I64_MAX])])
        prod = b.node("ReduceProd", [tail, b.i64([0])] if b.opset >= 18 else [tail], keepdims=1, **({} if b.opset >= 18 else {"axes": [0]}))
        return V(b.node("Reshape", [x.name, b.node("Concat", [b.node("Slice", [s, b.i64([0]), b.i64([1])]), prod], axis=0)]), ())
    if form == 1:  # [−1, Size(x) / batch]: valid for any batch
        per = b.node("Div", [b.node("Size", [x.name]), b.node("Gather", [s, b.i64(np.int64(0))])])
        return V(b.node("Reshape", [x.name, b.node("Concat", [b.i64([-1]), _unsq0(b, per)], axis=0)]), ())
    if form == 2:  # Sum of the shape and zeros, Max with ones, Min with a large size: the shape itself
        t = b.node("Sum", [s, b.i64(np.zeros(r + 1, dtype=np.int64))] + ([b.i64(np.zeros(1, dtype=np.int64))] if b.coin() else []))
        t = b.node(b.pick(["Max", "Min"]), [t, b.i64(np.ones(r + 1, dtype=np.int64) if b.coin() else np.full(r + 1, 99, dtype=np.int64))])
        t = b.node("Where", [b.node("Equal", [b.node("ReduceMax", [t], keepdims=1), t]), t, t])
        return V(b.node("Reshape", [x.name, t]), x.shape)
    if form == 3:  # pads: Min(shape twice, 1) masked off the batch axis
        mask = np.concatenate([[0], b.rng.integers(0, 2, r), [0], b.rng.integers(0, 2, r)]).astype(np.int64)
        pads = b.node("Mul", [b.node("Min", [b.node("Concat", [s, s], axis=0), b.i64([1])]), b.i64(mask)])
        return V(b.node("Pad", [x.name, pads]), ())
    if form == 4:  # NonZero of a mask computed on the sizes: Gather indices
        rng_ = b.node("Range", [b.i64(np.int64(0)), b.node("ReduceMin", [d], keepdims=0), b.i64(np.int64(1))])
        nz = b.node("NonZero", [b.node("Greater", [rng_, b.i64(np.int64(int(b.rng.integers(-1, 1))))])])
        ins, attrs = b.axes_in(nz, [0], 13)
        return V(b.node("Gather", [x.name, b.node("Squeeze", ins, **attrs)], axis=k), ())
    if form == 5:  # a rotation: Mod(i − 1, size) with Abs of a negated size
        size = b.node("Abs", [b.node("Neg", [b.node("ReduceMax", [d], keepdims=0)])])
        idx = b.node("Mod", [b.node("Add", [b.node("Range", [b.i64(np.int64(0)), size, b.i64(np.int64(1))]), b.i64(np.int64(-1))]), size])
        return V(b.node("Gather", [x.name, idx], axis=k), ())
    if form == 6:  # ArgMax/ArgMin of a float constant picks one index
        w = b.f32(b.rng.standard_normal(x.shape[k - 1]).astype(np.float32))
        return V(b.node("Gather", [x.name, b.node(b.pick(["ArgMax", "ArgMin"]), [w], keepdims=1)], axis=k), ())
    half = b.node(b.pick(["Ceil", "Floor", "Round"]), [b.node("Div", [b.node("Cast", [d], to=TensorProto.FLOAT), b.f32(np.float32(2.0))])])
    end = b.node("Cast", [half], to=TensorProto.INT64)
    return V(b.node("Slice", [x.name, b.i64([0]), b.node("Max", [end, b.i64([1])]), b.i64([k])]), ())
