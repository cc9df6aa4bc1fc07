"""Hidden counterexamples (a scaled-down SoundnessBench, benchmarks/soundnessbench.py): the generator is
deterministic and its witnesses violate their properties (default suite, a tiny configuration); `verify` never
answers unsat on a planted counterexample, never sat on an instance an independent oracle proved, and every sat
counterexample re-checks (slow suite: the whole set, generated once per generator version and cached)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_soundnessbench as bsb
import soundnessbench as sb

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _generate_tiny(out: Path) -> None:
    threads = torch.get_num_threads()
    try:
        sb.generate(out, sb.TINY, jobs=1, log=lambda s: None)
    finally:
        torch.set_num_threads(threads)  # the generator uses one thread per family


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in (".vnnlib", ".npy", ".csv")}


def _initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory) -> tuple[Path, Path]:
    a, b = tmp_path_factory.mktemp("sb_a"), tmp_path_factory.mktemp("sb_b")
    _generate_tiny(a)
    _generate_tiny(b)
    return a, b


def test_generator_is_deterministic(tiny_sets: tuple[Path, Path]) -> None:
    """Two runs of the tiny configuration write the same specs, witnesses and index files, and networks with the
    same weights."""
    a, b = tiny_sets
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys() and any(k.endswith(".vnnlib") for k in fa)
    assert [k for k in fa if fa[k] != fb[k]] == []
    for onnx in sorted(a.rglob("*.onnx")):
        ia, ib = _initializers(onnx), _initializers(b / onnx.relative_to(a))
        assert ia.keys() == ib.keys() and all(np.array_equal(ia[k], ib[k]) for k in ia)


def test_generated_witnesses_violate_their_properties(tiny_sets: tuple[Path, Path]) -> None:
    """Every witness lies in its box as srp-audit reads it and violates the property there by srp-audit's own
    spec semantics (onnxruntime outputs), and passes the benchmark's independent re-check (exact arithmetic)."""
    from srp_audit.vnnlib import read_vnnlib

    a, _ = tiny_sets
    rows = [r for r in sb.read_rows(a) if r["expected"] == "sat"]
    assert any(r["kind"] == "planted" for r in rows), "the tiny configuration planted no counterexample"
    for r in rows:
        spec = read_vnnlib(a / r["vnnlib"])
        w = np.load(a / r["witness_npy"])
        (clause,) = spec.clauses
        assert np.all(clause.lower <= w) and np.all(w <= clause.upper)
        y = sb.ort_outputs(a / r["onnx"], w[None], sb.TINY[0].input_shape)
        s = clause.spec()
        values = torch.einsum("sk,nk->ns", s.C[0], torch.from_numpy(y).double()) + s.d[0]
        assert bool(s.violated(values).all()), r["vnnlib"]
        assert bsb.recheck(a, r, w, spec.n_outputs, {}) == "ok"


def test_recheck_rejects_a_point_that_does_not_violate(tiny_sets: tuple[Path, Path]) -> None:
    """The re-check is not vacuous: the box's centre of a planted instance (classified as its label) fails it."""
    a, _ = tiny_sets
    r = next(r for r in sb.read_rows(a) if r["kind"] == "planted")
    lo, hi = sb.read_box((a / r["vnnlib"]).read_text(), sb.TINY[0].input_shape[0])
    centre = np.array([float((x + y) / 2) for x, y in zip(lo, hi)], dtype=np.float32)
    assert bsb.recheck(a, r, centre, sb.TINY[0].n_classes, {}) != "ok"
    outside = (np.array([float(v) for v in hi]) + 1.0).astype(np.float32)
    assert bsb.recheck(a, r, outside, sb.TINY[0].n_classes, {}) == "outside the box"


@pytest.mark.slow
def test_verify_never_answers_unsat_on_a_hidden_counterexample() -> None:
    """The whole set (a few hundred instances; generated in ~5–10 min on 2 cores the first time, then cached by
    the generator's hash), 5 s per instance. Prints the per-family table (run with -s to see it)."""
    from tabulate import tabulate

    gen = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soundnessbench.py")], capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr[-3000:]
    folder = Path(gen.stdout.strip().splitlines()[-1])
    outcomes = bsb.run(folder, timeout=5.0, jobs=2)
    heads, body = bsb.table(outcomes)
    print("\n" + tabulate(body, headers=heads, tablefmt="github"))
    wrong = bsb.report_wrong(folder, outcomes)
    assert not wrong, f"{len(wrong)} wrong answers (see above)"
    errors = [f"{o.row['vnnlib']}: {o.method[:200]}" for o in outcomes if o.status == "error"]
    assert not errors, errors[:3]
    assert len(outcomes) >= 150
    assert sum(o.row["kind"] == "planted" and o.row["hidden"] == "True" for o in outcomes) >= 5
