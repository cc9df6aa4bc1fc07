"""VNN-LIB reading and `verify`: hand-written specs (forms, errors with line numbers), the shared VNN-COMP
specs (all parse), witnesses confirmed as counterexamples and never exceeded by CROWN, no unsat answer on a
known-sat instance, complete methods on small networks, result files and the benchmark runner."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import VNNCOMP

from srp_audit import ops
from srp_audit.attack import confirm_counterexamples
from srp_audit.bounds.crown import crown_bounds
from srp_audit.formats import load_model
from srp_audit.ir.graph import INPUT, Graph
from srp_audit.spec import InputBox
from srp_audit.verify import VerifyOptions, result_text, verify
from srp_audit.vnnlib import VnnlibError, read_vnnlib

KNOWN = VNNCOMP / "known_results.csv"


def _write(tmp_path: Path, text: str, name: str = "p.vnnlib") -> Path:
    p = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(p, "wt") as f:
            f.write(text)
    else:
        p.write_text(text)
    return p


DECL = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(declare-const Y_2 Real)\n"


def test_separate_asserts_conjunctions_and_disjunctions(tmp_path: Path) -> None:
    text = DECL + """
(assert (>= X_0 -1)) (assert (<= X_0 1))
(assert (and (>= X_1 0.5) (<= X_1 0.75)))
; a counterexample: some other class reaches Y_0, with sums and constants
(assert (or (and (>= Y_1 Y_0)) (and (<= (- Y_0 (* 2 Y_2)) 0.5) (> Y_2 1))))
"""
    s = read_vnnlib(_write(tmp_path, text, "p.vnnlib.gz"))
    assert (s.n_inputs, s.n_outputs, len(s.clauses)) == (2, 3, 1)
    c = s.clauses[0]
    assert c.lower.tolist() == [-1, 0.5] and c.upper.tolist() == [1, 0.75]
    assert c.groups == [[0], [1, 2]]
    # rows h = −g: Y_1 − Y_0 ≥ 0 → h = Y_0 − Y_1; 0.5 − Y_0 + 2Y_2 ≥ 0 → h = Y_0 − 2Y_2 − 0.5; Y_2 − 1 > 0 → h = 1 − Y_2
    assert np.allclose(c.C, [[1, -1, 0], [1, 0, -2], [0, 0, -1]]) and np.allclose(c.d, [0, -0.5, 1])
    assert c.strict.tolist() == [False, False, True]
    spec = c.spec()
    y = torch.tensor([[0.0, 1.0, 0.0], [3.0, 0.0, 2.0], [3.0, 0.0, 1.0]], dtype=torch.float64)
    assert spec.violated(torch.einsum("sk,nk->ns", spec.C[0], y) + spec.d[0]).tolist() == [True, True, False]


def test_inputs_inside_disjuncts_make_separate_clauses(tmp_path: Path) -> None:
    text = ("(declare-const X_0 Real)(declare-const Y_0 Real)\n(assert (or (and (>= X_0 -1) (<= X_0 0) (>= Y_0 1)) "
            "(and (>= X_0 0) (<= X_0 1) (>= Y_0 2))))")
    s = read_vnnlib(_write(tmp_path, text))
    assert [(c.lower[0], c.upper[0]) for c in s.clauses] == [(-1, 0), (0, 1)]


@pytest.mark.parametrize("text,line,match", [
    (DECL + "(assert (>= X_0 0)\n", 6, "never closed"),
    (DECL + "(assert (>= X_0 0)))\n", 6, "unbalanced"),
    (DECL + "(assert (>= X_9 0))\n", 6, "X_9.*neither a number nor a declared variable"),
    (DECL + "\n\n(assert (>= (* X_0 X_1) 0))\n", 8, "products of variables"),
    (DECL + "(assert (=> Y_0 Y_1))\n", 6, "unsupported operator '=>'"),
    (DECL + "(declare-fun f (Real) Real)\n", 6, "unsupported command 'declare-fun'"),
    (DECL + "(assert (>= X_0 Y_0))(assert (<= X_0 1))(assert (<= X_1 1))(assert (>= X_1 0))\n", None, "mixes inputs and outputs"),
    (DECL + "(assert (>= X_0 0))(assert (<= X_0 1))\n", None, "X_1 lack a lower or upper bound"),
])
def test_malformed_files_name_the_line(tmp_path: Path, text: str, line: int | None, match: str) -> None:
    with pytest.raises(VnnlibError, match=match) as e:
        read_vnnlib(_write(tmp_path, text))
    if line is not None:
        assert f":{line}:" in str(e.value)


SPECS = sorted(VNNCOMP.glob("*/vnnlib/*.vnnlib.gz")) + sorted(VNNCOMP.glob("test/*.vnnlib")) if VNNCOMP.exists() else []


@pytest.mark.skipif(not SPECS, reason="../shared/benchmarks/vnncomp is absent")
def test_every_shared_spec_parses() -> None:
    for p in SPECS:
        s = read_vnnlib(p)
        assert s.clauses and s.n_outputs >= 1


def _known_rows(expected: str | None = None) -> list[dict]:
    if not KNOWN.exists():
        return []
    rows = list(csv.DictReader(open(KNOWN)))
    return [r for r in rows if expected is None or r["expected"] == expected]


WITNESS_ROWS = [r for r in _known_rows("sat") if r["witness_npy"]]


@pytest.mark.skipif(not WITNESS_ROWS, reason="../shared/benchmarks/vnncomp is absent")
@pytest.mark.parametrize("row", WITNESS_ROWS, ids=[Path(r["witness_npy"]).stem for r in WITNESS_ROWS])
def test_witnesses_are_counterexamples_and_crown_never_exceeds_them(row: dict) -> None:
    graph = load_model(str(VNNCOMP / row["onnx"]))
    spec = read_vnnlib(VNNCOMP / row["vnnlib"])
    w = torch.from_numpy(np.load(VNNCOMP / row["witness_npy"]).astype(np.float32)).reshape((1,) + graph.input_shape)
    wide = graph.copy(dtype=torch.float64)
    wide.requires_grad_(False)
    hits = 0
    for clause in spec.clauses:
        s = clause.spec()
        lo = torch.from_numpy(clause.lower).reshape(w.shape)
        hi = torch.from_numpy(clause.upper).reshape(w.shape)
        inside = ((w.double() >= lo) & (w.double() <= hi)).all().reshape(1)
        if not inside.all():
            continue
        hits += int(confirm_counterexamples(w, s, graph, wide, inside).all())
        with torch.no_grad():
            lb = crown_bounds(wide, InputBox(lo, hi), s, "crown").lower
            h = s.values(wide.logits(w.double()))
        assert torch.all(lb <= h), "a CROWN bound exceeds a value the witness attains"
    assert hits >= 1, "the witness must violate the property inside a clause's box"


SAT_ROWS = _known_rows("sat")


@pytest.mark.skipif(not SAT_ROWS, reason="../shared/benchmarks/vnncomp is absent")
@pytest.mark.parametrize("row", SAT_ROWS, ids=[f"{Path(r['onnx']).stem}-{Path(r['vnnlib']).name}" for r in SAT_ROWS])
def test_known_sat_instances_are_falsified_by_the_attacks(row: dict) -> None:
    """Every known-sat instance is falsified without branch and bound (each took 3–7 s on 2 cores): a
    regression in the attacks — such as corner points taken on the outer proof box, which fail the membership
    check — shows up here, not only in a benchmark run."""
    graph = load_model(str(VNNCOMP / row["onnx"]))
    res = verify(graph, read_vnnlib(VNNCOMP / row["vnnlib"]), VerifyOptions(timeout=30, complete=False))
    assert res.status == "sat", f"{res.status} after {res.seconds:.1f} s"
    x, y = res.counterexample
    assert np.isfinite(x).all() and result_text(res).startswith("sat\n((X_0 ")


def _tiny_net() -> Graph:
    """y0 = relu(x0) − relu(−x0) … a small network whose properties we can decide by hand."""
    w1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.5, 1.0]])
    w2 = torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    return Graph((2,), [("d0", ops.Dense(w1), (INPUT,)), ("r", ops.Relu(), ("d0",)), ("d1", ops.Dense(w2), ("r",))], "d1")


def test_complete_methods_decide_small_problems(tmp_path: Path) -> None:
    g = _tiny_net()
    # y0 = x0 exactly, y1 = relu(0.5 x0 + x1): on x ∈ [−1, 1]², y1 ≥ y0 − 1.5 always; y1 ≥ y0 + 0.6 somewhere.
    decl = "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)\n"
    box = "(assert (>= X_0 -1))(assert (<= X_0 1))(assert (>= X_1 -1))(assert (<= X_1 1))\n"
    unsat = read_vnnlib(_write(tmp_path, decl + box + "(assert (<= Y_1 (- Y_0 1.6)))", "u.vnnlib"))
    sat = read_vnnlib(_write(tmp_path, decl + box + "(assert (>= Y_1 (+ Y_0 0.6)))", "s.vnnlib"))
    r = verify(g, unsat, VerifyOptions(timeout=20))
    assert r.status == "unsat"
    r = verify(g, sat, VerifyOptions(timeout=20))
    assert r.status == "sat"
    x, y = r.counterexample
    assert y[1] >= y[0] + 0.6 and np.all(np.abs(x) <= 1)


def test_relu_bab_proves_what_the_cascade_cannot() -> None:
    """A net where a single CROWN pass is loose but splitting its unstable ReLUs proves the property."""
    from srp_audit.bab import relu_bab
    from srp_audit.spec import LinearSpec

    torch.manual_seed(3)
    g = Graph((3,), [("d0", ops.Dense(torch.randn(12, 3)), (INPUT,)), ("r0", ops.Relu(), ("d0",)),
                     ("d1", ops.Dense(torch.randn(12, 12) / 3), ("r0",)), ("r1", ops.Relu(), ("d1",)),
                     ("d2", ops.Dense(torch.randn(1, 12) / 3), ("r1",))], "d2").double()
    g.requires_grad_(False)
    box = InputBox(torch.full((1, 3), -1.0, dtype=torch.float64), torch.full((1, 3), 1.0, dtype=torch.float64))
    grid = torch.cartesian_prod(*[torch.linspace(-1, 1, 41, dtype=torch.float64)] * 3)
    true_min = float(g(grid).min())
    threshold = true_min - 0.05  # prove y > threshold: true (up to the grid's resolution, checked by BaB itself)
    spec = LinearSpec(torch.ones(1, 1, 1, dtype=torch.float64), torch.tensor([[-threshold]], dtype=torch.float64), [[0]])
    with torch.no_grad():
        crown = crown_bounds(g, box, spec, "crown").lower
    import time

    res = relu_bab(g, box, spec, time.perf_counter() + 60)
    assert res.status == "unsat" and res.domains > 1
    assert float(crown) <= 0 or res.domains >= 1


@pytest.mark.parametrize("violated", [False, True])
def test_relu_bab_refutes_each_disjunct_and_never_proves_a_violated_one(violated: bool) -> None:
    """Three disjuncts y_k ≤ t_k (proving the property = refuting each: y_k > t_k on the whole box). With every
    t_k below the sampled minimum the search proves all three; when one t_k lies above a value the network
    attains, it must answer sat (with a confirmed point) or unknown, never unsat."""
    import time

    from srp_audit.bab import relu_bab
    from srp_audit.spec import LinearSpec

    torch.manual_seed(5)
    g = Graph((2,), [("d0", ops.Dense(torch.randn(10, 2)), (INPUT,)), ("r0", ops.Relu(), ("d0",)),
                     ("d1", ops.Dense(torch.randn(10, 10) / 3, torch.randn(10) / 3), ("r0",)), ("r1", ops.Relu(), ("d1",)),
                     ("d2", ops.Dense(torch.randn(3, 10) / 3, torch.randn(3)), ("r1",))], "d2").double()
    g.requires_grad_(False)
    box = InputBox(torch.full((1, 2), -1.0, dtype=torch.float64), torch.full((1, 2), 1.0, dtype=torch.float64))
    grid = torch.cartesian_prod(*[torch.linspace(-1, 1, 201, dtype=torch.float64)] * 2)
    with torch.no_grad():
        mins = g(grid).min(dim=0).values
    t = mins - 0.1
    if violated:
        t[1] = mins[1] + 0.1  # the grid point attaining mins[1] violates this disjunct
    spec = LinearSpec(torch.eye(3, dtype=torch.float64).unsqueeze(0), -t.unsqueeze(0), [[0], [1], [2]])

    def check(x: torch.Tensor) -> bool:
        with torch.no_grad():
            return bool(spec.violated(spec.values(g(x))).all()) and bool(((x >= -1) & (x <= 1)).all())

    res = relu_bab(g, box, spec, time.perf_counter() + 60, check=check)
    if violated:
        assert res.status in ("sat", "unknown")
        if res.status == "sat":
            assert check(res.counterexample)
    else:
        assert res.status == "unsat"


def test_cli_verify_writes_a_result_file(tmp_path: Path) -> None:
    from srp_audit_cli.main import main

    g = _tiny_net()
    from srp_audit.formats.onnx_write import save_onnx

    model = tmp_path / "tiny.onnx"
    save_onnx(g, model)
    decl = "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)\n"
    box = "(assert (>= X_0 -1))(assert (<= X_0 1))(assert (>= X_1 -1))(assert (<= X_1 1))\n"
    spec = _write(tmp_path, decl + box + "(assert (>= Y_1 (+ Y_0 0.6)))", "s.vnnlib")
    out = tmp_path / "result.txt"
    r = CliRunner().invoke(main, ["verify", str(model), str(spec), "--timeout", "20", "--result-file", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.startswith("sat\n((X_0 ") and "(Y_1 " in text
    r = CliRunner().invoke(main, ["verify", str(model)])
    assert r.exit_code == 2 and "needs MODEL and SPEC" in r.stderr


@pytest.mark.skipif(not KNOWN.exists(), reason="../shared/benchmarks/vnncomp is absent")
def test_benchmark_runner_reports_soundness_line() -> None:
    from srp_audit_cli.main import main

    r = CliRunner().invoke(main, ["verify", "--instances", str(VNNCOMP / "test" / "instances.csv"), "--known", str(KNOWN),
                                  "--timeout-cap", "20"])
    assert r.exit_code == 0, r.output
    assert "soundness: 0 unsat answers on instances known to be sat" in r.stdout


@pytest.mark.parametrize("budget_restarts, sizes", [(None, [20]), (3, [6, 6, 6, 2])])
def test_attack_restarts_batch_within_the_memory_budget(monkeypatch, budget_restarts, sizes) -> None:
    """verify's PGD runs its restarts as copies of one batch, in chunks when ATTACK_ELEMENTS would be exceeded
    (never fewer than one restart of every copy); the first restart starts at the given point, and a
    violation is found either way."""
    import srp_audit.vnn_attacks as va
    from srp_audit.spec import margin_spec

    g = _tiny_net().copy(dtype=torch.float32)
    g.requires_grad_(False)
    per_copy = sum(int(np.prod(s)) for s in g.shapes.values())
    if budget_restarts is not None:
        monkeypatch.setattr(va, "ATTACK_ELEMENTS", per_copy * 2 * budget_restarts)
    batches, starts = [], []
    real = va.pgd

    def spy(graph, box, spec, **kw):
        batches.append(box.lower.shape[0])
        starts.append(kw["start"])
        return real(graph, box, spec, **kw)

    monkeypatch.setattr(va, "pgd", spy)
    lo, hi = torch.full((2, 2), -1.0), torch.full((2, 2), 1.0)
    spec = margin_spec(torch.tensor([1, 1]), 2, torch.float32)  # y1 > y0 is violated where y0 ≥ y1 (e.g. x0 = 1, x1 = −1)
    start = torch.zeros(2, 2)
    found = [bool(r.found.any()) for r in va._pgd_restarts(g, InputBox(lo, hi), spec, start, 20, 10, 0)]
    assert batches == sizes and any(found)
    assert torch.equal(starts[0][:2], start) and not torch.equal(starts[0][2:4], start.expand(2, 2))
