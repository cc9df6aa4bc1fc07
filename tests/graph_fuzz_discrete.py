"""Generators of the generated-model fuzz for the discrete and piecewise-linear ops on the model's data: Abs, Ceil,
Round, Max/Min, ReduceMax/ReduceMin, ArgMax/ArgMin, OneHot, Mod, comparisons, Not/And/Or/Xor, Where and casts to
integer and bool types. Ties are made on purpose (ReLU zeros, rounded values). Registers into graph_fuzz_onnx.REG."""

from __future__ import annotations

import numpy as np
from graph_fuzz_onnx import Builder, V, bshape, gen
from onnx import TensorProto

gen("Abs")(lambda b, x: V(b.node("Abs", [x.name]), x.shape))
gen("Ceil")(lambda b, x: V(b.node("Ceil", [x.name]), x.shape))
gen("Round", 11)(lambda b, x: V(b.node("Round", [x.name]), x.shape))

RELATIONS = ["Greater", "Less", "Equal", "GreaterOrEqual", "LessOrEqual"]


def _tied(b: Builder, x: V) -> str:
    """x, or a version of it with ties: relu(x), round(2x), floor(x)."""
    k = int(b.rng.integers(4))
    if k == 1:
        return b.node("Relu", [x.name])
    if k == 2 and b.opset >= 11:
        return b.node("Round", [b.node("Mul", [x.name, b.f32(np.float32(2.0))])])
    return b.node("Floor", [x.name]) if k == 3 else x.name


def _other(b: Builder, x: V) -> str:
    """A second operand: a broadcast constant, or a data branch of the same shape."""
    if b.coin():
        return b.f32(b.rng.standard_normal(bshape(b, x.shape)).astype(np.float32))
    return b.node(b.pick(["Relu", "Neg", "Tanh", "Identity"]), [x.name])


def _to_float(b: Builder, v: str) -> str:
    return b.node("Cast", [v], to=TensorProto.FLOAT)


@gen("MaxMin", 8)
def _max_min(b, x):
    ins = [x.name] + [_other(b, x) for _ in range(int(b.rng.integers(0, 3)))]
    order = [int(i) for i in b.rng.permutation(len(ins))]
    return V(b.node(b.pick(["Max", "Min"]), [ins[i] for i in order]), ())


@gen("ReduceMaxMin")
def _reduce_max(b, x):
    r = len(x.shape)
    op = b.pick(["ReduceMax", "ReduceMin"])
    axes = sorted({int(a) for a in b.rng.integers(1, r + 1, int(b.rng.integers(1, r + 1)))})
    axes = [a - (r + 1) if b.coin() else a for a in axes]
    data = _tied(b, x)
    if b.coin(0.1):
        return V(b.node(op, [data], **({"noop_with_empty_axes": 1} if b.opset >= 18 else {"keepdims": 1})), ())
    ins, attrs = ([data, b.i64(axes)], {}) if b.opset >= 18 else ([data], {"axes": axes})
    return V(b.node(op, ins, keepdims=int(b.coin()), **attrs), ())


def _argmax(b: Builder, x: V) -> str:
    r = len(x.shape)
    attrs = {"axis": b.ax(r), "keepdims": int(b.coin())}
    if b.opset >= 12 and b.coin():
        attrs["select_last_index"] = 1
    return b.node(b.pick(["ArgMax", "ArgMin"]), [_tied(b, x)], **attrs)


@gen("ArgMax")
def _argmax_gen(b, x):
    idx = _argmax(b, x)
    if b.coin(0.3):
        return V(b.node("Add", [_to_float(b, idx), b.f32(np.float32(0.5))]), ())
    return V(_to_float(b, idx), ())


@gen("OneHot", 11)
def _one_hot(b, x):
    depth = int(b.rng.integers(2, 6))
    if b.coin():
        idx = _argmax(b, x)
    else:  # integer-valued data (negative and out-of-range indices too), cast or left float
        idx = b.node("Floor", [b.node("Mul", [x.name, b.f32(np.float32(2.0))])])
        idx = b.node("Cast", [idx], to=TensorProto.INT64) if b.coin() else idx
    d = b.i64(np.int64(depth)) if b.coin() else b.i64([depth])
    attrs = {"axis": int(b.rng.integers(-1, 0))} if b.coin() else {}
    off, on = b.pick([(0.0, 1.0), (-1.0, 2.0), (0.5, -0.5)])
    return V(b.node("OneHot", [idx, d, b.f32([off, on])], **attrs), ())


@gen("Mod", 10)
def _mod(b, x):
    if b.coin():  # floats: fmod
        c = b.rng.uniform(0.5, 2.0, bshape(b, x.shape)) * b.rng.choice([-1, 1])
        return V(b.node("Mod", [x.name, b.f32(c.astype(np.float32))], fmod=1), x.shape)
    ints = b.node("Cast", [b.node("Floor", [b.node("Mul", [x.name, b.f32(np.float32(3.0))])])], to=TensorProto.INT64)
    c = b.i64(np.int64(b.pick([2, 3, -2, 5])))
    return V(_to_float(b, b.node("Mod", [ints, c])), x.shape)


def _relation(b: Builder, x: V) -> str:
    op = b.pick(RELATIONS if b.opset >= 12 else RELATIONS[:3])
    a, other = _tied(b, x), _other(b, x)
    if op == "Equal" and b.coin():
        other = b.f32(np.float32(0.0))
    return b.node(op, [a, other] if b.coin() else [other, a])


@gen("compare")
def _compare(b, x):
    c = _relation(b, x)
    k = int(b.rng.integers(4))
    if k == 1:
        c = b.node("Not", [c])
    elif k >= 2:
        c = b.node(b.pick(["And", "Or", "Xor"]), [c, _relation(b, x) if b.coin() else b.const(b.rng.random(bshape(b, x.shape)) < 0.5)])
    return V(_to_float(b, c), ())


@gen("Where", 9)
def _where(b, x):
    c = _relation(b, x)
    a = x.name if b.coin() else b.node("Mul", [x.name, b.f32(np.float32(0.1))])
    other = _other(b, x)
    return V(b.node("Where", [c, a, other] if b.coin() else [c, other, a]), ())


@gen("cast_int")
def _cast_int(b, x):
    to = b.pick([TensorProto.INT32, TensorProto.INT64, TensorProto.INT16, TensorProto.BOOL])
    return V(_to_float(b, b.node("Cast", [x.name], to=to)), x.shape)
