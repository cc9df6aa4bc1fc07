"""Soundness of every transfer function at the edges: IBP, CROWN-IBP, CROWN and (where the op has slopes)
alpha-CROWN, in float32 and float64, on boxes far outside the default suite's [−3, 3] — ×10 and ×1000 wider,
widths 0 and 1e-300, magnitudes to 1e15 and the ends of the float64 range, boxes at every kink and domain edge,
and each op's overflow and underflow tails (`extreme_cases.py`). The reference is exact: every sampled value (or,
for affine ops, the exact minimum and maximum over the box) is an arb ball rounded outward (`arb_reference.py`), so a
bound fails only where the exact value lies outside it for certain — no tolerance, and no float64 evaluation of
the function standing in for its value. A NaN bound fails; a point where the function is undefined (log 0, √−1)
needs infinite bounds.

float32 bounds are computed on the float32 box rounded outward (ends past float32's range become ±∞) and checked
at points sampled from that box. Every bound is computed twice: with IEEE subnormals (how the command line runs,
`perf.tune_process`), and with denormals flushed to zero and read as zero (a setting a library user's process may
have) on the box widened so that no end is itself subnormal (`normal_ends`: a subnormal end would be read as 0,
shrinking the box); references and sampling always keep subnormals.
"""

from __future__ import annotations

import itertools
import math
from functools import cache

import numpy as np
import pytest
import torch
from arb_reference import Enclosure, elementwise, exact, pointwise, violations
from extreme_cases import (
    Case,
    boxes,
    denormals,
    extreme_cases,
    normal_ends,
    one_thread,  # noqa: F401  (an autouse fixture: one torch thread per test)
    sample,
    to_float32_outward,
)
from soundness import identity_spec, op_graphs

from srp_audit import ops
from srp_audit.bounds import METHODS, interval_bounds
from srp_audit.spec import InputBox

POINTS = 96  # sampled points per box (plus corners, special points and the case's extra points)
DTYPES = {"f32": torch.float32, "f64": torch.float64}
CASES = extreme_cases()

PARAMS = [(name, m) for name in sorted(CASES) for m in ("ibp", "crown-ibp", "crown", "alpha-crown")
          if m != "alpha-crown" or CASES[name].has_slopes]


def test_every_op_with_a_sampling_case_has_an_extreme_case() -> None:
    """The op contract's list: every op type that is the output of a `soundness.op_graphs` case is here too."""
    wanted = {type(g.node(g.output)) for g in op_graphs(0).values()}
    covered = {type(c.graph.node(c.graph.output)) for c in CASES.values()}
    assert wanted <= covered, sorted(t.__name__ for t in wanted - covered)
    assert set(ops.ALL_OPS) <= covered


def _reference(case: Case, points: np.ndarray) -> Enclosure:
    """Exact values of the case's graph at float64 points (N, m, *shape), flattened to (N, m, K)."""
    N, m = points.shape[:2]
    flat = points.reshape(N, m, -1)
    if case.kind == "exact":
        with torch.no_grad():
            v = case.graph.logits(torch.from_numpy(points.reshape((N * m,) + case.graph.input_shape))).numpy()
        return exact(v.reshape(N, m, -1))
    if case.kind == "elementwise":
        if case.params is not None:
            return elementwise(None, flat, None, np.broadcast_to(case.params.reshape(-1), flat.shape), case.param_fn)
        raise AssertionError("forms are checked one by one")
    uniq, inverse = np.unique(flat.reshape(N * m, -1), axis=0, return_inverse=True)
    k = case.graph.num_classes
    enc = pointwise(case.point_fn, uniq, k, case.bracket)
    inverse = inverse.reshape(-1)
    index = (inverse[:, None] * k + np.arange(k)).reshape(-1)
    return enc.take(index, (N, m, k), lambda i, bits: enc.ball(int(index[i]), bits))


@cache
def _data(name: str) -> dict:
    """Boxes and exact references per dtype, computed once per case (shared by the method tests), with subnormals
    kept (flushing would move sampled points out of their boxes)."""
    with denormals(False):
        return _build_data(name)


def _build_data(name: str) -> dict:
    case = CASES[name]
    lo, hi, families = boxes(case)
    l32, h32 = to_float32_outward(lo, hi)
    data = {"families": families}
    for key, (a, b) in {"f64": (lo, hi), "f32": (l32.astype(np.float64), h32.astype(np.float64))}.items():
        entry: dict = {"box": (a, b)}
        if case.kind == "affine":
            flat_lo, flat_hi = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
            entry["extremes"] = case.affine.extremes(flat_lo, flat_hi)
        else:
            pts = sample(a, b, POINTS, np.random.default_rng(5), case)
            if case.kind == "elementwise" and case.params is None:
                flat = pts.reshape(pts.shape[:2] + (-1,))
                entry["refs"] = [elementwise(f, flat, bracket) for f, bracket in case.forms]
            else:
                entry["refs"] = [_reference(case, pts)]
        data[key] = entry
    return data


def _bounds(case: Case, method: str, dtype: torch.dtype, lo: np.ndarray, hi: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower, upper) of the flat output over each box, by `method` in `dtype` (CROWN: rows ±e_i), as computed (the
    caller converts them to float64 with subnormals kept)."""
    g = case.graph.copy(dtype=dtype)
    g.requires_grad_(False)
    box = InputBox(torch.from_numpy(lo), torch.from_numpy(hi))  # already in `dtype` (no conversion while flushing)
    n, k = lo.shape[0], g.num_classes
    if method == "ibp":
        with torch.no_grad():
            r = interval_bounds(g, box)
        lower, upper = r.lower.reshape(n, -1), r.upper.reshape(n, -1)
    else:
        lb = METHODS[method](g, box, identity_spec(k, n, dtype), alpha_iters=3).lower.detach()
        lower, upper = lb[:, :k], -lb[:, k:]
    return lower, upper


@pytest.mark.parametrize("name, method", PARAMS, ids=[f"{n}-{m}" for n, m in PARAMS])
def test_bounds_contain_exact_values_at_extreme_scales(name: str, method: str) -> None:
    with denormals(False):  # the boxes' conversions and the checks compare subnormals exactly, whatever ran before
        _check_case(name, method)


def _check_case(name: str, method: str) -> None:
    case = CASES[name]
    data = _data(name)
    problems = []
    for (key, dtype), flush in itertools.product(DTYPES.items(), (False, True)):
        entry = data[key]
        lo, hi = entry["box"]
        np_dtype = np.float32 if key == "f32" else np.float64
        with np.errstate(all="ignore"):
            ends = normal_ends(lo, hi, np_dtype) if flush else (lo.astype(np_dtype), hi.astype(np_dtype))
            with denormals(flush):
                computed = _bounds(case, method, dtype, *ends)
            lower, upper = (t.double().numpy() for t in computed)
        found = []
        if case.kind == "affine":
            mins, maxs = entry["extremes"]
            # the bounds must be below the exact minimum and above the exact maximum
            found += violations(mins, lower, np.full_like(upper, math.inf), sampled=False)
            found += violations(maxs, np.full_like(lower, -math.inf), upper, sampled=False)
        else:
            for ref in entry["refs"]:
                found += violations(ref, lower, upper)
        for at, msg in found:
            row, entry_k = at[0], at[-1]
            flat_lo, flat_hi = lo.reshape(lo.shape[0], -1), hi.reshape(hi.shape[0], -1)
            where = f"box {row} ({data['families'][row]})"
            if case.kind == "elementwise":
                where += f", entry {entry_k} in [{float(flat_lo[row, entry_k])!r}, {float(flat_hi[row, entry_k])!r}]"
            problems.append(f"{method} {key}{' flushing denormals' if flush else ''} {where}, output {entry_k}: {msg}")
    assert not problems, f"{name}: {len(problems)} violations\n" + "\n".join(problems[:12])


# ------------------------------------------------------------------------------------------ the checker itself


def _old_softmax_bounds(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax's bounds before the log-sum-exp form (quotients of exps shifted by max u): the reviewer's failure."""
    from srp_audit.kernel.rounding import dot_gamma, tiny, unit_roundoff

    u, d = unit_roundoff(lo.dtype), 2
    m = hi.amax(dim=d, keepdim=True)
    el = torch.exp(lo - m) * (1 - ((lo - m).abs() * 1.01 * u + 4 * u))
    eu = torch.exp(hi - m) * (1 + ((hi - m).abs() * 1.01 * u + 4 * u))
    n = lo.shape[d]
    others = torch.ones(n, n, dtype=lo.dtype) - torch.eye(n, dtype=lo.dtype)
    g = dot_gamma(n, lo.dtype)
    s_hi, s_lo = (eu @ others) * (1 + g), (el @ others) * (1 - g)
    low = el / (el + s_hi) * (1 - 4 * u) - tiny(lo.dtype)
    high = eu / (eu + s_lo) * (1 + 4 * u) + tiny(lo.dtype)
    return torch.nan_to_num(low, nan=0.0).clamp(0, 1), torch.nan_to_num(high, nan=1.0).clamp(0, 1)


def test_the_checker_catches_the_softmax_underflow_and_passes_the_fix() -> None:
    """Not vacuous: on the reviewer's box the old quotient form's upper bound on y_0 (≈ 3.6e-307, where y_0 reaches
    0.119) is caught at the box's own extreme corner, and today's bounds pass there."""
    with denormals(False):
        _softmax_underflow_is_caught()


def _softmax_underflow_is_caught() -> None:
    case = CASES["Softmax"]
    box = np.array(case.explicit[0], dtype=np.float64).reshape(1, 2, 5, 2)
    lo, hi = box[..., 0], box[..., 1]
    pts = sample(lo, hi, 8, np.random.default_rng(0), case)
    ref = _reference(case, pts)
    old = _old_softmax_bounds(torch.from_numpy(lo), torch.from_numpy(hi))
    assert float(old[1][0, 0, 0]) < 1e-300
    found = violations(ref, old[0].reshape(1, -1).numpy(), old[1].reshape(1, -1).numpy())
    assert any("outside bounds" in msg and at[-1] == 0 for at, msg in found), found
    now = _bounds(case, "ibp", torch.float64, lo, hi)
    assert not violations(ref, *(t.numpy() for t in now))


def test_the_checker_decides_bounds_on_asymptotes_and_past_the_range() -> None:
    """Bounds exactly at an asymptote the balls cannot separate from the value (tanh(−1e5) = −1 + 1e-86859) are
    decided by the open bracket: −1 below is valid, −1 above is not; a lower bound −max for a cube of −1e200 (an
    exact value −1e600 past the range, what nan_to_num's defaults produced) is caught."""
    with denormals(False):
        _asymptotes_are_decided()


def _asymptotes_are_decided() -> None:
    x = np.array([[[-1e5]]])
    tanh = elementwise(lambda v: v.tanh(), x, lambda v: (-1.0, 1.0))
    assert not violations(tanh, np.array([[-1.0]]), np.array([[-0.5]]))
    assert violations(tanh, np.array([[-2.0]]), np.array([[-1.0]]))
    cube = elementwise(lambda v: v * v * v, np.array([[[-1e200]]]))
    assert violations(cube, np.array([[-1.7976931348623157e308]]), np.array([[math.inf]]))
    assert not violations(cube, np.array([[-math.inf]]), np.array([[-1.7976931348623157e308]]))


@pytest.mark.parametrize("dtype,l,u", [(torch.float64, 1e155, 1e160), (torch.float32, 1e19, 1e20)])
@pytest.mark.parametrize("op", [ops.Reciprocal(), ops.Power(-2.0), ops.Power(-3.0)], ids=["reciprocal", "x^-2", "x^-3"])
def test_tangent_lines_hold_where_the_slope_leaves_the_normal_range(dtype, l: float, u: float, op) -> None:
    """1/x at x = 5e159: x² overflows and the tangent's slope rounds to −0 instead of −4e-320. Each line (CROWN's
    and alpha-CROWN's at its family's ends and middle) must still lie below (above) the function: checked exactly
    at nine points across the box, its ends included."""
    from fractions import Fraction

    lo, hi = torch.tensor([l], dtype=dtype), torch.tensor([u], dtype=dtype)
    n = -1 if isinstance(op, ops.Reciprocal) else int(op.exponent)
    for a in (None, 0.0, 0.5, 1.0):
        s_lo, t_lo, s_up, t_up = op.lines(lo, hi) if a is None else op.lines_with(lo, hi, torch.tensor([a], dtype=dtype),
                                                                               torch.tensor([a], dtype=dtype))
        for x in torch.linspace(float(lo), float(hi), 9, dtype=torch.float64).to(dtype):
            X = Fraction(float(x))
            fx = X ** n
            assert Fraction(float(s_lo)) * X + Fraction(float(t_lo)) <= fx, (a, float(x))
            assert Fraction(float(s_up)) * X + Fraction(float(t_up)) >= fx, (a, float(x))
