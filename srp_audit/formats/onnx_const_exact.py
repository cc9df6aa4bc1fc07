"""More constant folders, each exact: integer arithmetic of shape computations (Mod, Sum, ReduceProd), and ops
whose float results are floats (Abs, Floor, Ceil, Round, Min, Max, fmod) — plus NonZero, ArgMax/ArgMin and Size.
A float computation no float holds (a float Sum, a float Mod with fmod = 0) is refused, never rounded."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .onnx_const import _axes, folds


def _exact_dtype(a: np.ndarray, op: str) -> None:
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise ValueError(f"{op} of float constants rounds; only integer constants are folded")


@folds("Mod")
def _mod(inputs, attrs, opset):
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    if np.any(b == 0):
        raise ValueError("Mod by zero")
    if attrs.get("fmod", 0):
        return [np.fmod(a, b)]  # exact for floats (IEEE remainder of the truncated quotient) and integers
    _exact_dtype(np.asarray(a + b), "Mod")
    return [np.mod(a, b)]


@folds("Abs", "Floor", "Ceil", "Round")
def _unary(inputs, attrs, opset):
    unary: dict[str, Callable[[np.ndarray], np.ndarray]] = {"Abs": np.abs, "Floor": np.floor, "Ceil": np.ceil, "Round": np.round}
    f = unary[attrs["__op"]]
    return [f(np.asarray(inputs[0]))]  # np.round rounds half to even, as ONNX does


@folds("Min", "Max", "Sum")
def _variadic(inputs, attrs, opset):
    arrays = [np.asarray(i) for i in inputs]
    if attrs["__op"] == "Sum":
        for a in arrays:
            _exact_dtype(a, "Sum")
        out = arrays[0]
        for a in arrays[1:]:
            out = out + a
        return [out]
    f = np.minimum if attrs["__op"] == "Min" else np.maximum
    out = arrays[0]
    for a in arrays[1:]:
        out = f(out, a)
    return [out]


@folds("ReduceProd", "ReduceMax", "ReduceMin")
def _reduce(inputs, attrs, opset):
    a = np.asarray(inputs[0])
    op = attrs["__op"]
    if op == "ReduceProd":
        _exact_dtype(a, op)
    axes = _axes(inputs, attrs, opset, 1, 18)
    keep = bool(attrs.get("keepdims", 1))
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return [a]
        axes = list(range(a.ndim))
    reductions: dict[str, Callable[..., np.ndarray]] = {"ReduceProd": np.prod, "ReduceMax": np.max, "ReduceMin": np.min}
    f = reductions[op]
    return [np.asarray(f(a, axis=tuple(int(x) % max(a.ndim, 1) for x in axes), keepdims=keep))]


@folds("NonZero")
def _nonzero(inputs, attrs, opset):
    a = np.asarray(inputs[0])
    return [np.array(np.nonzero(a if a.ndim else a.reshape(1)), dtype=np.int64)]


@folds("ArgMax", "ArgMin")
def _argmax(inputs, attrs, opset):
    a = np.asarray(inputs[0])
    axis = int(attrs.get("axis", 0))
    v = -a if attrs["__op"] == "ArgMin" else a
    if attrs.get("select_last_index", 0):
        n = a.shape[axis]
        out = n - 1 - np.argmax(np.flip(v, axis), axis=axis)
    else:
        out = np.argmax(v, axis=axis)
    return [np.expand_dims(out, axis).astype(np.int64) if attrs.get("keepdims", 1) else out.astype(np.int64)]


@folds("Size")
def _size(inputs, attrs, opset):
    return [np.asarray(np.asarray(inputs[0]).size, dtype=np.int64)]
