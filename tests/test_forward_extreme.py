"""Forward passes at extreme inputs: the IR of every single-op model (each case of `extreme_cases.py`, exported
with our writer — or, for Clip, HardSigmoid and LogSoftmax, the ONNX model the loader decomposes) read back by the
ONNX loader computes, in float32 and in float64, what onnxruntime computes in float32 — at ±1e30 and ±3.4e38,
float32 subnormals, kinks and domain edges, exp past float32's 88.7 and float64's 709.8, and logit spreads of
700–750 for softmax and log-softmax.

How results are compared (onnxruntime computes in float32 only):
- float32: NaN where onnxruntime gives NaN (log −1, √−1), the same infinity where it gives ±∞ (exp 89, 1/0), and
  elsewhere agreement to 1e-5 relative, or absolutely to 1e-30 (subnormal results, where either side may flush);
- float64: our value rounded to float32 — past float32's range that is ±∞, which must match onnxruntime's ±∞ —
  then compared the same way, with the absolute allowance also covering onnxruntime's own float32 cancellation
  (2e-7 of the input's size for functions like GELU whose float32 formula cancels in the left tail);
- affine ops (dense, convolutions, pools, sums) are sums whose float32 value depends on the order of the terms:
  each output may differ by the dot product's error bound (n + 2)·ε₃₂·Σ|w·x| (+|b|), and where the partial sums
  may reach float32's range (Σ|x| for an average, which may sum before it divides) the float32 result is
  indeterminate (one order overflows to ±∞ or gives ∞ − ∞ = NaN, another stays finite): not compared there.
"""

from __future__ import annotations

import math
import os
from functools import cache

import numpy as np
import pytest
import torch
from arb_reference import coef_float
from conftest import ort_session
from extreme_cases import (
    F32_MAX,
    F32_TINY,
    SOFTMAX_BOXES,
    Case,
    denormals,
    extreme_cases,
    one_thread,  # noqa: F401  (an autouse fixture: one torch thread per test)
)

from srp_audit import ops
from srp_audit.formats.onnx_read import load_onnx
from srp_audit.formats.onnx_write import save_onnx
from srp_audit.ops.steps import INT_RANGES

CASES = extreme_cases()

RTOL, ATOL = 1e-5, 1e-30
NAMES = sorted(n for n in CASES if not n.startswith("chain_"))  # single-op models (the chains are for the bounds)

GENERAL = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-30, -1e-30, 1e-40, -1e-40, F32_TINY, -F32_TINY, 1e15, -1e15, 1e30, -1e30,
           F32_MAX, -F32_MAX, 88.7, 88.8, 89.0, -87.5, -103.9, -104.0, 709.0, 710.0, -745.0, -750.0, 20.0, 6.0, -3.0, 3.0)


def _values(case: Case) -> np.ndarray:
    """Float32 scalars for the case's inputs: the general extremes, its special points and its tails' ends."""
    vals = list(GENERAL) + list(case.special) + [v for iv in case.tails for v in iv]
    with np.errstate(over="ignore"):
        v = np.array(vals, dtype=np.float64).astype(np.float32)
    return np.unique(v[np.isfinite(v)])


def _inputs(case: Case) -> np.ndarray:
    """(N, *shape) float32 inputs: the case's values spread over every entry (shifted per row), and, for softmax
    and log-softmax, rows with logit spreads of 700–750 and exp overflow."""
    shape = case.graph.input_shape
    n_in = math.prod(shape)
    v = _values(case)
    rows = [np.roll(np.resize(v, n_in), -k) for k in range(0, len(v), max(1, len(v) // 8))]
    if case.point_fn is not None and shape == (2, 5):
        spreads = [[0.0, -700.0, -720.0, -745.0, -750.0], [750.0, 0.0, 20.0, -1.0, 1.0], [100.0, 0.0, 0.0, 0.0, 0.0],
                   [1e30, 0.0, -1e30, 5.0, 5.0], [F32_MAX, -F32_MAX, 0.0, 0.0, 0.0], [-0.5, 0.0, 709.0, -1.0, -740.0],
                   [89.0, 88.0, 0.0, -10.0, 0.0], [-103.0, -104.0, 0.0, 0.0, -1.0]]
        rows += [np.array(a + b, dtype=np.float32) for a in spreads for b in spreads[:3]]
        rows += [np.array([lo for lo, _ in box], dtype=np.float32) for box in SOFTMAX_BOXES]
        rows += [np.array([hi for _, hi in box], dtype=np.float32) for box in SOFTMAX_BOXES]
    return np.stack([np.asarray(r, dtype=np.float32).reshape(shape) for r in rows])


@cache
def _model(name: str, folder: str) -> tuple[str, object]:
    """(path of the ONNX model, the IR read back from it)."""
    case = CASES[name]
    path = os.path.join(folder, f"{name}.onnx")
    if case.onnx_model is not None:
        with open(path, "wb") as f:
            f.write(case.onnx_model)
    else:
        save_onnx(case.graph.copy(dtype=torch.float32), path)
    return path, load_onnx(path)


def _magnitudes(case: Case, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """For an affine case, per output (float64, rounded up generously): Σ_j |J_ij x_j| + |b_i|, the same with every
    coefficient below 1 taken as 1 (an average may sum its terms before it divides: what its partial sums reach),
    and the most terms of any output."""
    flat = x.astype(np.float64).reshape(x.shape[0], -1)
    k = len(case.affine.rows)
    J = np.zeros((k, flat.shape[1]))
    for i, row in enumerate(case.affine.rows):
        for j, c in row:
            J[i, j] = abs(coef_float(c))
    b = np.array([abs(coef_float(v)) for v in case.affine.bias])
    with np.errstate(all="ignore"):
        mag = (np.abs(flat) @ J.T + b) * (1 + 1e-10)
        partial = (np.abs(flat) @ np.where(J > 0, np.maximum(J, 1.0), 0.0).T + b) * (1 + 1e-10)
    return mag, partial, max(len(r) for r in case.affine.rows)


def _agree(ours: np.ndarray, ref: np.ndarray, atol: np.ndarray | float, free: np.ndarray | None = None) -> list[str]:
    """Mismatches of `ours` (float32 values) against onnxruntime's `ref` under the module's rules; entries in
    `free` (indeterminate in float32) are not compared."""
    ours = ours.reshape(ref.shape)
    if free is not None:
        free = free.reshape(ref.shape)
        ours, ref = np.where(free, 0, ours).astype(np.float32), np.where(free, 0, ref).astype(np.float32)
    problems = []
    nan_r, nan_o = np.isnan(ref), np.isnan(ours)
    if (nan_r != nan_o).any():
        i = int(np.flatnonzero(nan_r != nan_o)[0])
        problems.append(f"NaN mismatch at {np.unravel_index(i, ref.shape)}: ours {ours.flat[i]!r}, onnxruntime {ref.flat[i]!r}")
    inf_r, inf_o = np.isinf(ref), np.isinf(ours)
    both = ~nan_r & ~nan_o
    bad_inf = both & ((inf_r != inf_o) | (inf_r & (np.sign(ref) != np.sign(ours))))
    if bad_inf.any():
        i = int(np.flatnonzero(bad_inf)[0])
        problems.append(f"infinity mismatch at {np.unravel_index(i, ref.shape)}: ours {ours.flat[i]!r}, onnxruntime {ref.flat[i]!r}")
    finite = both & ~inf_r & ~inf_o
    with np.errstate(all="ignore"):
        err = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
        tol = RTOL * np.maximum(np.abs(ours), np.abs(ref)).astype(np.float64) + np.broadcast_to(atol, ref.shape)
    bad = finite & (err > tol)
    if bad.any():
        i = int(np.flatnonzero(bad)[np.argmax((err - tol)[bad])])
        problems.append(f"{int(bad.sum())} values differ, worst at {np.unravel_index(i, ref.shape)}: ours {ours.flat[i]!r}, "
                        f"onnxruntime {ref.flat[i]!r}")
    return problems


CANCELS = {"Gelu", "Gelu_scaled", "Gelu_tanh", "Silu", "Mish"}  # float32 formulas that cancel in their left tails


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_onnxruntime_at_extreme_inputs(name: str, tmp_path_factory) -> None:
    case = CASES[name]
    if name == "Softplus_threshold":
        pytest.skip("torch's threshold 3 is visible in float32 and ONNX's Softplus has none: the writer refuses it")
    folder = str(tmp_path_factory.getbasetemp())
    path, graph = _model(name, folder)
    sess = ort_session(path)
    x = _inputs(case)
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    problems = []
    with torch.no_grad(), np.errstate(all="ignore"), denormals(False):  # IEEE subnormals, as onnxruntime keeps them
        ours32 = graph.copy(dtype=torch.float32)(torch.from_numpy(x)).numpy()
        ours64 = graph.copy(dtype=torch.float64)(torch.from_numpy(x.astype(np.float64))).numpy()
        free, atol32 = None, ATOL
        if case.kind == "affine":
            mag, partial, n = _magnitudes(case, x)
            free = partial >= F32_MAX / 2
            atol32 = ATOL + (n + 2) * float(np.finfo(np.float32).eps) * np.where(free, 0.0, mag).reshape(ref.shape)
        if isinstance(graph.node(graph.output), ops.Trunc):  # ONNX leaves a Cast past the integer type's range undefined
            low, high = INT_RANGES[graph.node(graph.output).dtype]
            free = (x < low) | (x > high) | np.isnan(x)
        problems += [f"float32: {p}" for p in _agree(ours32, ref, atol32, free)]
        scale = np.abs(x.astype(np.float64)).reshape(x.shape[0], -1).max(axis=1).reshape((-1,) + (1,) * (ref.ndim - 1))
        atol64 = atol32 + (2e-7 * np.minimum(scale, 1e6) if name in CANCELS else 0.0)
        problems += [f"float64: {p}" for p in _agree(ours64.astype(np.float32), ref, atol64, free)]
    assert not problems, f"{name}: " + "; ".join(problems)
