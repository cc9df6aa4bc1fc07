"""Elementwise, reduction and normalisation ops of the exact ONNX interpreter, in exact real arithmetic.

Each follows the ONNX operator spec on the stored values: a Div by 3 divides by 3 (not by float32(1/3)), attribute
floats are the float32 numbers the file stores, spec constants (HardSwish's 1/6, GELU's √(2/π) and 0.044715)
are the real numbers the spec writes. Non-smooth ops use `piecewise`, so a ball straddling a breakpoint gets an
enclosure of both sides. Integer tensors (shape arithmetic) are computed with numpy integers.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from exact_onnx_core import Ctx, Unsupported, compare, interval, ints_of, is_real, max2, min2, op, piecewise, vec
from flint import arb, fmpq


def _need_arb(x: Any) -> arb:
    if isinstance(x, fmpq):
        raise Unsupported("a transcendental function in exact-rational mode")
    return x


# ------------------------------------------------------------------------------------------------- arithmetic


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer Div truncates towards zero (C semantics, as onnxruntime computes it)."""
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) ^ (b < 0), -q, q).astype(np.result_type(a, b))


_BINARY = {"Add": (lambda a, b: a + b, np.add), "Sub": (lambda a, b: a - b, np.subtract),
           "Mul": (lambda a, b: a * b, np.multiply), "Div": (lambda a, b: a / b, _int_div)}


@op("Add", "Sub", "Mul", "Div")
def _binary(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    a, b = ins
    exact_fn, int_fn = _BINARY[node.op_type]
    if is_real(a) or is_real(b):
        return [vec(exact_fn, ctx.real(a), ctx.real(b))]
    return [int_fn(a, b)]


@op("Pow")
def _pow(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x, y = ins
    if not is_real(x):
        return [np.power(x, y)]

    def p(a: Any, e: Any) -> Any:
        if isinstance(e, fmpq) and e.q == 1:
            return a ** int(e.p)
        if isinstance(e, arb) and e.is_exact() and e.is_integer():
            return a ** int(e.unique_fmpz())
        return _need_arb(a) ** e

    return [vec(p, ctx.real(x), ctx.real(y))]


@op("Neg")
def _neg(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    return [vec(lambda v: -v, ins[0]) if is_real(ins[0]) else -ins[0]]


@op("Abs")
def _abs(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    return [vec(abs, ctx.real(ins[0])) if is_real(ins[0]) else np.abs(ins[0])]


@op("Sum", "Mean", "Max", "Min")
def _variadic(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    if not any(is_real(a) for a in ins):
        f = {"Sum": np.add, "Max": np.maximum, "Min": np.minimum}[node.op_type]
        return [functools.reduce(f, ins)]
    xs = [ctx.real(a) for a in ins]
    f = {"Sum": lambda a, b: a + b, "Mean": lambda a, b: a + b, "Max": max2, "Min": min2}[node.op_type]
    out = functools.reduce(lambda a, b: vec(f, a, b), xs)
    if node.op_type == "Mean":
        out = vec(lambda v: v / len(xs), out)
    return [out]


# --------------------------------------------------------------------------------------------- activations


def _unary(fn: Any) -> Any:
    def run(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
        return [vec(lambda v: fn(v, attrs), ctx.real(ins[0]))]

    return run


def _relu(v: Any, a: dict) -> Any:
    return piecewise(v, 0, lambda t: t * 0, lambda t: t)


def _sigmoid(v: Any, a: dict) -> Any:
    return 1 / (1 + (-_need_arb(v)).exp())


def _softplus(v: Any) -> Any:
    v = _need_arb(v)
    return piecewise(v, 0, lambda t: t.exp().log1p(), lambda t: t + (-t).exp().log1p())


def _hard_sigmoid(v: Any, alpha: Any, beta: Any) -> Any:
    return min2(max2(alpha * v + beta, v * 0), v * 0 + 1)


def _gelu(v: Any, a: dict) -> Any:
    v = _need_arb(v)
    if a.get("approximate", "none") == "tanh":
        inner = (2 / arb.pi()).sqrt() * (v + arb("0.044715") * v ** 3)
        return v / 2 * (1 + inner.tanh())
    return v / 2 * (1 + (v / arb(2).sqrt()).erf())


def _f32(a: dict, key: str, default: float) -> arb:
    """A float attribute: the float32 number stored in the file (`attr.f`), or the spec's default as float32."""
    return arb(float(np.float32(a.get(key, default))))


def _shrink(v: Any, a: dict) -> Any:
    """x − bias above λ, x + bias below −λ, 0 between (both ends included: the spec's comparisons are strict)."""
    lam, bias = _f32(a, "lambd", 0.5), _f32(a, "bias", 0.0)
    at = float(lam.mid())  # a float32 number: exact
    return piecewise(v, at, lambda t: piecewise(-t, at, lambda u: u * 0, lambda u: bias - u), lambda t: t - bias)


ELEMENTWISE = {
    "Relu": _relu,
    "LeakyRelu": lambda v, a: piecewise(v, 0, lambda t: t * _f32(a, "alpha", 0.01), lambda t: t),
    "Elu": lambda v, a: piecewise(_need_arb(v), 0, lambda t: _f32(a, "alpha", 1.0) * t.expm1(), lambda t: t),
    "Selu": lambda v, a: _f32(a, "gamma", 1.05070102214813232421875) * piecewise(
        _need_arb(v), 0, lambda t: _f32(a, "alpha", 1.67326319217681884765625) * t.expm1(), lambda t: t),
    "Celu": lambda v, a: piecewise(_need_arb(v), 0, lambda t: _f32(a, "alpha", 1.0) * (t / _f32(a, "alpha", 1.0)).expm1(),
                                   lambda t: t),
    "ThresholdedRelu": lambda v, a: piecewise(v, float(_f32(a, "alpha", 1.0).mid()), lambda t: t * 0, lambda t: t),
    "Sigmoid": _sigmoid,
    "HardSigmoid": lambda v, a: _hard_sigmoid(v, _f32(a, "alpha", 0.2), _f32(a, "beta", 0.5)),
    "HardSwish": lambda v, a: v * _hard_sigmoid(v, arb(1) / 6, arb(0.5)),  # the spec's exact 1/6 and 1/2
    "Softplus": lambda v, a: _softplus(v),
    "Softsign": lambda v, a: v / (1 + abs(v)),
    "Shrink": _shrink,
    "Mish": lambda v, a: v * _softplus(v).tanh(),
    "Gelu": _gelu,
    "Tanh": lambda v, a: _need_arb(v).tanh(),
    "Exp": lambda v, a: _need_arb(v).exp(),
    "Log": lambda v, a: _need_arb(v).log(),
    "Sqrt": lambda v, a: _need_arb(v).sqrt(),
    "Reciprocal": lambda v, a: 1 / v,
    "Erf": lambda v, a: _need_arb(v).erf(),
    "Sin": lambda v, a: _need_arb(v).sin(),
    "Cos": lambda v, a: _need_arb(v).cos(),
    "Tan": lambda v, a: _need_arb(v).tan(),
    "Atan": lambda v, a: _need_arb(v).atan(),
    "Sinh": lambda v, a: _need_arb(v).sinh(),
    "Cosh": lambda v, a: _need_arb(v).cosh(),
    "Floor": lambda v, a: v.floor() if isinstance(v, arb) else fmpq(v.floor()),
    "Ceil": lambda v, a: v.ceil() if isinstance(v, arb) else fmpq(v.ceil()),
    "Sign": lambda v, a: v.sgn() if isinstance(v, arb) else fmpq(int(v > 0) - int(v < 0)),
}
for _name, _fn in ELEMENTWISE.items():
    op(_name)(_unary(_fn))


@op("PRelu")
def _prelu(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x, slope = ctx.real(ins[0]), ctx.real(ins[1])
    if slope.ndim == 1 and x.ndim >= 2 and slope.shape[0] == x.shape[1] and slope.shape[0] != x.shape[-1]:
        slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))  # opset ≤ 6 style per-channel slope
    return [vec(lambda v, s: piecewise(v, 0, lambda t: t * s, lambda t: t), x, slope)]


@op("Clip")
def _clip(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x = ctx.real(ins[0])
    if ctx.opset < 11:
        lo = ctx.num(np.float32(attrs["min"])) if "min" in attrs else None
        hi = ctx.num(np.float32(attrs["max"])) if "max" in attrs else None
    else:
        lo = ctx.real(ins[1]).reshape(()).item() if len(ins) > 1 and ins[1] is not None else None
        hi = ctx.real(ins[2]).reshape(()).item() if len(ins) > 2 and ins[2] is not None else None
    if lo is not None:
        x = vec(lambda v: max2(v, lo), x)
    if hi is not None:
        x = vec(lambda v: min2(v, hi), x)
    return [x]


# ------------------------------------------------------------------------------------------------ comparisons


_REL = {"Equal": "eq", "Less": "lt", "LessOrEqual": "le", "Greater": "gt", "GreaterOrEqual": "ge"}
_NP_REL = {"eq": np.equal, "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal}


@op(*_REL)
def _compare(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    rel = _REL[node.op_type]
    a, b = ins
    if is_real(a) or is_real(b):
        return [_tidy_bool(vec(lambda x, y: compare(x, y, rel), ctx.real(a), ctx.real(b)))]
    return [_NP_REL[rel](a, b)]


def _tidy_bool(a: np.ndarray) -> np.ndarray:
    """A three-valued array with every entry decided becomes a plain bool array."""
    return a.astype(bool) if all(v is not None for v in a.flat) else a


def _tri(f: Any) -> Any:
    def g(*vs: Any) -> Any:
        return None if any(v is None for v in vs) else f(*vs)

    return g


@op("Not", "And", "Or", "Xor")
def _logic(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    if all(a.dtype == bool for a in ins):
        f = {"Not": np.logical_not, "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor}[node.op_type]
        return [f(*ins)]
    f = {"Not": lambda a: not a, "And": lambda a, b: a and b, "Or": lambda a, b: a or b, "Xor": lambda a, b: a != b}[node.op_type]
    return [_tidy_bool(vec(_tri(f), *[a.astype(object) for a in ins]))]


@op("Where")
def _where(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    c, a, b = ins
    if c.dtype == bool and not (is_real(a) or is_real(b)):
        return [np.where(c, a, b)]
    a, b = ctx.real(a), ctx.real(b)

    def pick(cv: Any, x: Any, y: Any) -> Any:
        if cv is None:
            return x.union(y) if isinstance(x, arb) else (x if x == y else interval(x, y))
        return x if cv else y

    return [vec(pick, c.astype(object), a, b)]


# -------------------------------------------------------------------------------------------------- reductions


def _axes(ctx: Ctx, ins: list, attrs: dict, rank: int, input_since: int) -> tuple[int, ...] | None:
    """Reduction axes from the attribute (older opsets) or the second input; None = all axes."""
    if ctx.opset >= input_since:
        axes = ints_of(ins[1]) if len(ins) > 1 and ins[1] is not None else []
    else:
        axes = list(attrs.get("axes", []))
    if not axes:
        return () if attrs.get("noop_with_empty_axes", 0) else None
    return tuple(sorted(a % rank for a in axes))


_REDUCE_SINCE = {"ReduceSum": 13}


@op("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceProd", "ReduceLogSumExp")
def _reduce(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x = ins[0]
    axes = _axes(ctx, ins, attrs, x.ndim, _REDUCE_SINCE.get(node.op_type, 18))
    if axes == ():
        return [x]
    keep = bool(attrs.get("keepdims", 1))
    ax = tuple(range(x.ndim)) if axes is None else axes
    if not is_real(x):
        f = {"ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min, "ReduceProd": np.prod}[node.op_type]
        return [f(x, axis=ax, keepdims=keep)]
    x = ctx.real(x)
    kind = node.op_type
    if kind in ("ReduceSumSquare", "ReduceL2"):
        x = vec(lambda v: v * v, x)
    elif kind == "ReduceL1":
        x = vec(abs, x)
    elif kind == "ReduceLogSumExp":
        x = vec(lambda v: _need_arb(v).exp(), x)
    if kind in ("ReduceMax", "ReduceMin"):
        f = np.frompyfunc(max2 if kind == "ReduceMax" else min2, 2, 1)
        out = x
        for a in sorted(ax, reverse=True):
            out = f.reduce(out, axis=a, keepdims=True)
        out = np.asarray(out, dtype=object)
        if not keep:
            out = out.reshape([s for i, s in enumerate(x.shape) if i not in ax])
        return [out]
    if kind == "ReduceProd":
        out = np.multiply.reduce(x, axis=ax, keepdims=keep)
    else:
        out = np.sum(x, axis=ax, keepdims=keep)
    out = np.asarray(out, dtype=object)
    if kind == "ReduceMean":
        count = int(np.prod([x.shape[a] for a in ax]))
        out = vec(lambda v: v / count, out)
    elif kind == "ReduceL2":
        out = vec(lambda v: _need_arb(v).sqrt(), out)
    elif kind == "ReduceLogSumExp":
        out = vec(lambda v: _need_arb(v).log(), out)
    return [out]


# ------------------------------------------------------------------------------------------ softmax and norms


def _softmax_axes(ctx: Ctx, x: np.ndarray, attrs: dict) -> tuple[np.ndarray, tuple[int, ...]]:
    """Before opset 13 Softmax works on the input coerced to 2-D at `axis` (default 1); from 13 on one axis (-1)."""
    if ctx.opset < 13:
        axis = attrs.get("axis", 1) % x.ndim
        return x.reshape(x.shape[:axis] + (-1,)), (axis,)
    return x, (attrs.get("axis", -1) % x.ndim,)


@op("Softmax", "LogSoftmax")
def _softmax(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x0 = ctx.real(ins[0])
    x, (axis,) = _softmax_axes(ctx, x0, attrs)
    # shift by a float near the maximum (any constant gives the same exact result; this keeps the balls tight)
    shift = np.max(vec(lambda v: float(_need_arb(v).mid()), x).astype(float), axis=axis, keepdims=True)
    z = vec(lambda v, s: v - s, x, shift)
    e = vec(lambda v: v.exp(), z)
    total = np.sum(e, axis=axis, keepdims=True)
    if node.op_type == "Softmax":
        out = vec(lambda a, t: a / t, e, total)
    else:
        out = vec(lambda a, t: a - t.log(), z, total)
    return [out.reshape(x0.shape)]


def _normalise(x: np.ndarray, axes: tuple[int, ...], eps: Any) -> np.ndarray:
    count = int(np.prod([x.shape[a] for a in axes]))
    mean = vec(lambda v: v / count, np.sum(x, axis=axes, keepdims=True))
    d = vec(lambda a, m: a - m, x, mean)
    var = vec(lambda v: v / count, np.sum(vec(lambda v: v * v, d), axis=axes, keepdims=True))
    inv = vec(lambda v: _need_arb(v + eps).rsqrt(), var)
    return vec(lambda a, s: a * s, d, inv)


@op("BatchNormalization")
def _batchnorm(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    if attrs.get("training_mode", 0):
        raise Unsupported("BatchNormalization in training mode")
    x, scale, bias, mean, var = (ctx.real(a) for a in ins[:5])
    shape = (-1,) + (1,) * (x.ndim - 2)
    eps = _f32(attrs, "epsilon", 1e-5)
    inv = vec(lambda v: _need_arb(v + eps).rsqrt(), var.reshape(shape))
    y = vec(lambda a, m, s, g, b: (a - m) * s * g + b, x, mean.reshape(shape), inv, scale.reshape(shape), bias.reshape(shape))
    return [y] + [None] * (len(node.output) - 1)


@op("LayerNormalization")
def _layernorm(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x = ctx.real(ins[0])
    axis = attrs.get("axis", -1) % x.ndim
    y = _normalise(x, tuple(range(axis, x.ndim)), _f32(attrs, "epsilon", 1e-5))
    y = vec(lambda a, s: a * s, y, ctx.real(ins[1]))
    if len(ins) > 2 and ins[2] is not None:
        y = vec(lambda a, b: a + b, y, ctx.real(ins[2]))
    return [y] + [None] * (len(node.output) - 1)


@op("InstanceNormalization")
def _instancenorm(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    x = ctx.real(ins[0])
    shape = (-1,) + (1,) * (x.ndim - 2)
    y = _normalise(x, tuple(range(2, x.ndim)), _f32(attrs, "epsilon", 1e-5))
    return [vec(lambda a, s, b: a * s + b, y, ctx.real(ins[1]).reshape(shape), ctx.real(ins[2]).reshape(shape))]


@op("GroupNormalization")
def _groupnorm(ctx: Ctx, node: Any, ins: list, attrs: dict) -> list:
    """Each group of channels normalised over its channels and spatial entries; scale and bias per channel (opset
    21) or per group (opset 18)."""
    x = ctx.real(ins[0])
    n, c, g = x.shape[0], x.shape[1], int(attrs["num_groups"])
    y = _normalise(x.reshape(n, g, -1), (2,), _f32(attrs, "epsilon", 1e-5)).reshape(x.shape)
    scale, bias = ctx.real(ins[1]).reshape(-1), ctx.real(ins[2]).reshape(-1)
    if scale.size == g != c:
        scale, bias = np.repeat(scale, c // g), np.repeat(bias, c // g)
    shape = (-1,) + (1,) * (x.ndim - 2)
    return [vec(lambda a, s, b: a * s + b, y, scale.reshape(shape), bias.reshape(shape))]
