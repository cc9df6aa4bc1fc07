"""The VNN-LIB reader's disjunctive normal form against the file's meaning: random properties (box asserts split
and repeated, disjunctions with their own input bounds, constant constraints, several top-level disjunctions)
are evaluated directly on grid points and compared with membership in the parsed clauses."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

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
