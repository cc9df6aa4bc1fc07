"""The VNN-LIB reader's disjunctive normal form against the file's meaning: random properties (box asserts split
and repeated, disjunctions with their own input bounds, constant constraints, several top-level disjunctions)
are evaluated directly on grid points: every point satisfying the file lies in a clause's proof box, and every point
in a clause's confirmation box that violates a group satisfies the file (strict input bounds included); then the
edges: strict bounds sharing an outer box, a strict bound at 0 under flushed denormals, numbers past float64's
range, and `verify` on a strict bound."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from srp_audit.vnnlib import VnnlibError, read_vnnlib

N_IN, N_OUT = 2, 3
GRID = [-2, -1, 0, 1, 2]


def _atom(rng: random.Random, kind: str) -> tuple[str, object]:
    """(text, evaluator of (x, y)) for one comparison."""
    op = rng.choice(["<=", ">=", "<", ">"])
    cmp = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, ">": lambda a, b: a > b}[op]
    if kind == "x":
        i, v = rng.randrange(N_IN), rng.choice(GRID)
        return f"({op} X_{i} {v})", lambda x, y: cmp(x[i], v)
    if kind == "c":
        a, b = rng.choice(GRID), rng.choice(GRID)
        return f"({op} {a} {b})", lambda x, y: cmp(a, b)
    i, j = rng.sample(range(N_OUT), 2)
    return f"({op} Y_{i} Y_{j})", lambda x, y: cmp(y[i], y[j])


def _box(rng: random.Random) -> list[tuple[str, object]]:
    """Both bounds of every input (so the box is complete), in random order and sometimes repeated."""
    out = []
    for i in range(N_IN):
        lo = rng.choice(GRID[:3])
        hi = lo + rng.choice([0, 1, 2])
        out += [(f"(>= X_{i} {lo})", lambda x, y, i=i, lo=lo: x[i] >= lo),
                (f"(<= X_{i} {hi})", lambda x, y, i=i, hi=hi: x[i] <= hi)]
        if rng.random() < 0.3:
            out.append((f"(<= X_{i} {hi + 1})", lambda x, y, i=i, hi=hi: x[i] <= hi + 1))
    rng.shuffle(out)
    return out


def _disjunction(rng: random.Random) -> tuple[str, object]:
    arms = []
    for _ in range(rng.randint(1, 4)):
        atoms = [_atom(rng, "y") for _ in range(rng.randint(1, 2))]
        if rng.random() < 0.3:
            atoms.append(_atom(rng, "x"))
        if rng.random() < 0.15:
            atoms.append(_atom(rng, "c"))
        arms.append(atoms)
    text = "(or " + " ".join("(and " + " ".join(t for t, _ in a) + ")" for a in arms) + ")"
    return text, lambda x, y: any(all(f(x, y) for _, f in a) for a in arms)


def _property(rng: random.Random) -> tuple[str, list]:
    asserts = [(f"(assert {t})", f) for t, f in _box(rng)]
    for _ in range(rng.randint(1, 2)):
        t, f = _disjunction(rng)
        asserts.insert(rng.randrange(len(asserts) + 1), (f"(assert {t})", f))
    decl = [f"(declare-const X_{i} Real)" for i in range(N_IN)] + [f"(declare-const Y_{j} Real)" for j in range(N_OUT)]
    return "\n".join(decl + [t for t, _ in asserts]) + "\n", [f for _, f in asserts]


def _in_clauses(spec, x: np.ndarray, y: np.ndarray, inner: bool) -> bool:
    """Whether (x, y) is in some clause: in its proof box (closed, rounded outward) or, with `inner`, in the box
    counterexamples are confirmed in (strict input bounds excluded)."""
    for c in spec.clauses:
        lo, hi = (c.lower_in, c.upper_in) if inner else (c.lower, c.upper)
        if not (np.all(lo <= x) and np.all(x <= hi)):
            continue
        h = c.C @ y + c.d
        for group in c.groups:
            if all(h[r] < 0 if c.strict[r] else h[r] <= 0 for r in group):
                return True
    return False


@pytest.mark.parametrize("seed", range(40))
def test_clauses_hold_exactly_the_files_counterexamples(tmp_path, seed):
    rng = random.Random(seed)
    text, holds = _property(rng)
    path = tmp_path / "p.vnnlib"
    path.write_text(text)
    try:
        spec = read_vnnlib(path)
    except VnnlibError as e:  # only an empty input set may be refused; then no grid point satisfies the file
        assert "empty" in str(e)
        spec = None
    ys = [np.array(v, dtype=float) for v in itertools.product([-1, 0, 1], repeat=N_OUT)]
    for xv in itertools.product(GRID + [3], repeat=N_IN):
        x = np.array(xv, dtype=float)
        for y in ys:
            want = all(f(x, y) for f in holds)
            if spec is None:
                assert not want
            else:  # every counterexample is covered by the proof boxes; every confirmed one is a counterexample
                assert not want or _in_clauses(spec, x, y, inner=False), (text, xv, y)
                assert want or not _in_clauses(spec, x, y, inner=True), (text, xv, y)


def test_a_shared_box_is_read_once_for_every_disjunct(tmp_path):
    """A box over many inputs beside a disjunction over many classes (an ImageNet-style property) is one clause
    with one group per disjunct; the box is not copied into each disjunct."""
    n_in, n_out = 3000, 200
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)] + [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    lines += [f"(assert (<= X_{i} {i % 7 + 1}))\n(assert (>= X_{i} {-(i % 5)}))" for i in range(n_in)]
    lines.append("(assert (or " + " ".join(f"(and (>= Y_{j} Y_0))" for j in range(1, n_out)) + "))")
    path = tmp_path / "wide.vnnlib"
    path.write_text("\n".join(lines) + "\n")
    spec = read_vnnlib(path)
    assert len(spec.clauses) == 1
    c = spec.clauses[0]
    assert c.C.shape == (n_out - 1, n_out) and len(c.groups) == n_out - 1
    np.testing.assert_array_equal(c.upper, [i % 7 + 1 for i in range(n_in)])
    np.testing.assert_array_equal(c.lower, [-(i % 5) for i in range(n_in)])


def _write(tmp_path, body: str, n_in: int = 1, n_out: int = 1):
    path = tmp_path / "p.vnnlib"
    decl = [f"(declare-const X_{i} Real)" for i in range(n_in)] + [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    path.write_text("\n".join(decl) + "\n" + body)
    return path


def test_disjuncts_with_one_outer_box_but_different_strict_bounds_keep_their_own_inner_boxes(tmp_path):
    """X > 0 in one disjunct and X ≥ 0 in the other round to the same outer box; merged, the second's inner box
    let X = 0 confirm the first disjunct's counterexample."""
    spec = read_vnnlib(_write(tmp_path, "(assert (or (and (> X_0 0) (<= X_0 1) (>= Y_0 5)) (and (>= X_0 0) (<= X_0 1) (<= Y_0 -5))))\n"))
    assert len(spec.clauses) == 2
    strict = next(c for c in spec.clauses if c.d[0] == 5.0)
    assert strict.lower[0] == 0.0 and strict.lower_in[0] > 0.0


def test_a_strict_bound_at_zero_confirms_no_point_flushed_denormals_read_as_zero(tmp_path):
    """The inner box of X > 0 starts at float32's smallest normal number, not at 5e-324 (a subnormal that flushed
    denormals compare as 0), even when the process flushes them."""
    from srp_audit.perf import flushing

    path = _write(tmp_path, "(assert (> X_0 0))\n(assert (< X_0 1))\n(assert (>= Y_0 5))\n")
    was = flushing()
    torch.set_flush_denormal(True)
    try:
        assert flushing()
        c = read_vnnlib(path).clauses[0]
        assert flushing()  # the reader restores the flushing it found
    finally:
        torch.set_flush_denormal(was)
    assert c.lower_in[0] == float(np.finfo(np.float32).tiny) and c.upper_in[0] < 1.0 and c.lower[0] == 0.0


def test_numbers_past_float64_range_are_read_or_refused_in_one_line(tmp_path):
    spec = read_vnnlib(_write(tmp_path, "(assert (>= X_0 -1e400))\n(assert (<= X_0 1e400))\n(assert (>= Y_0 0))\n"))
    c = spec.clauses[0]
    assert c.lower[0] == -np.inf and c.upper[0] == np.inf and np.isfinite(c.lower_in[0]) and np.isfinite(c.upper_in[0])
    with pytest.raises(VnnlibError):
        read_vnnlib(_write(tmp_path, "(assert (>= X_0 0))\n(assert (<= X_0 1e99999999))\n(assert (>= Y_0 0))\n"))


def test_verify_reports_no_counterexample_outside_a_strict_bound(tmp_path):
    """y = 5 − x with X > −1 and Y ≥ 6 has no counterexample. Branch and bound searches in float64, where
    x = −0.9999999999999999 gives 6.0; its point rounded to the model's float32 is −1, outside X > −1. The
    confirmation checks the point that is reported, so the answer is not sat."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from srp_audit.formats import load_model
    from srp_audit.verify import VerifyOptions, verify

    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
                          [numpy_helper.from_array(np.float32([[-1.0]]), "w"), numpy_helper.from_array(np.float32([5.0]), "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "m.onnx"))
    spec = read_vnnlib(_write(tmp_path, "(assert (> X_0 -1))\n(assert (<= X_0 1))\n(assert (>= Y_0 6))\n"))
    res = verify(load_model(str(tmp_path / "m.onnx")), spec, VerifyOptions(timeout=10, device="cpu"))
    assert res.status != "sat" or float(res.counterexample[0][0]) > -1.0, res
