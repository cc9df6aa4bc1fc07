"""The exactness oracle: "verified" is a proof about the *stored* ONNX network in exact real arithmetic, so on the
degenerate box [x, x] every sound bound method must return, for every output, an interval that contains the exact
value of the stored network at x. tests/exact_onnx.py computes that value as a rigorous arb ball, reading the
file with `onnx` alone (it shares no code with srp_audit); here the whole ball must lie inside srp-audit's
float64 IBP (and, on piecewise-linear models, CROWN) bounds — with no tolerance.

A loader that derives a constant in float32 (1/c for a Div by c, BatchNorm's γ/√(var+ε), resize weights,
float64 initializers cast down) computes a network ~1e-8 away (relative) from the stored one, far outside the
~1e-13 rounding allowances of the bound rules, and fails here. Models: the fixtures, every VNN-COMP and zoo model
of ../shared (skipped when absent), the architecture zoo (TorchScript exporter; the dynamo exporter's files in the
slow run), and the hand-built edge models of tests/exact_edge_models.py. Points (tests/exact_points.py): random
float32 points of the model's input box, its corners and centre, zeros/ones, a data sample, and points where a
first-layer ReLU input is exactly zero (tests/exact_ties.py). The default run checks two or three points per model;
`-m slow` adds the rest and the largest models.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from arch_zoo import architectures, export
from conftest import FIXTURE_MODELS, FIXTURES, SHARED, VNNCOMP, ort_session
from exact_edge_models import edge_models
from exact_onnx import ExactOnnx, enclosure, midpoints, supported_ops
from exact_op_cases import op_cases
from exact_points import box_points, f32, vnnlib_box
from exact_ties import relu_tie
from soundness import identity_spec

from srp_audit import ops
from srp_audit.bounds import get_method
from srp_audit.bounds.ibp import interval_bounds
from srp_audit.formats import load_model
from srp_audit.ir.graph import Graph
from srp_audit.spec import InputBox, LinearSpec

ZOO = SHARED / "benchmarks" / "zoo"
PIECEWISE_LINEAR = (ops.Dense, ops.Conv2d, ops.Relu, ops.Reshape, ops.Add, ops.ElementwiseAffine, ops.BatchNorm, ops.AvgPool2d,
                    ops.MaxPool2d, ops.Identity, ops.Concat, ops.Select, ops.Transpose, ops.Pad, ops.Reduce, ops.LeakyRelu, ops.PRelu,
                    ops.ConvTranspose2d)
SPEC_ROWS = 24  # outputs bounded through a spec (every output is bounded by the plain IBP interval)
CROWN_MAX_INPUTS = 4096
FINER_PRECISIONS = (1024, 4096)  # bits of the second and third looks at a ball that straddles a bound

# ------------------------------------------------------------------------------------------------ the models


@dataclass(frozen=True)
class Case:
    """One model and where its points come from."""

    id: str
    path: Path | None  # None: an architecture-zoo model, exported on first use
    kind: str  # "fixture", "vnncomp", "zoo", "arch"
    prop: Path | None = None  # a VNN-LIB property whose first input box gives the points


def _instances(folder: Path) -> dict[Path, Path]:
    """model → its first property, from every instances.csv under `folder`."""
    out: dict[Path, Path] = {}
    for inst in sorted(folder.glob("*/instances.csv")) if folder.exists() else []:
        for row in csv.reader(inst.open()):
            if row and (inst.parent / row[0].strip()) not in out:
                out[inst.parent / row[0].strip()] = inst.parent / row[1].strip()
    return out


def _shared_cases() -> list[Case]:
    cases = []
    vnn = _instances(VNNCOMP)
    for p in sorted(VNNCOMP.glob("*/onnx/*.onnx")) + sorted(VNNCOMP.glob("test/*.onnx")) if VNNCOMP.exists() else []:
        family = p.parent.parent.name if p.parent.name == "onnx" else p.parent.name
        cases.append(Case(f"vnncomp/{family}/{p.stem}", p, "vnncomp", vnn.get(p)))
    for model, prop in _instances(ZOO).items():
        cases.append(Case(f"zoo/{model.relative_to(ZOO).parts[0]}/{model.stem}"[:60], model, "zoo", prop))
    return cases


ARCHS = architectures()
# The largest models take 4–10 s per point in the oracle (tens of millions of ball multiply-adds): slow run only.
SLOW_MODELS = ("traffic_signs_recognition/3_64_64", "cgan/cGAN_imgSz64")
# Models whose oracle run or bound passes take seconds per point: one point in the default run, the rest when slow.
HEAVY_MODELS = ("cgan/", "traffic_signs_recognition/", "vit/", "ml4acopf/300", "cifar10_resnet/resnet_4b")
CASES = ([Case(f"fixture/{n}", FIXTURES / f"{n}.onnx", "fixture") for n in FIXTURE_MODELS] + _shared_cases()
         + [Case(f"arch/{n}/{how}", None, "arch") for how in ("torchscript", "dynamo") for n in sorted(ARCHS)])


def _slow(c: Case) -> bool:
    return any(s in c.id for s in SLOW_MODELS) or c.id.endswith("/dynamo")


PARAMS = [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if _slow(c) else []) for c in CASES]
if not _shared_cases():
    PARAMS.append(pytest.param(Case("shared-absent", None, "absent"), id="shared-absent",
                               marks=pytest.mark.skip(reason=f"{SHARED} is absent: its VNN-COMP and zoo models are not checked")))
EDGE = edge_models()


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """case → its ONNX file (an architecture-zoo model is exported once per session, into pytest's tmp folder)."""
    folder = tmp_path_factory.mktemp("exactness-arch")

    def path_of(case: Case) -> Path:
        if case.path is not None:
            return case.path
        _, name, how = case.id.split("/")
        path = folder / f"{name}.{how}.onnx"
        if not path.exists():
            module, shape = ARCHS[name]
            export(module, shape, how, path)
        return path

    return path_of


# ---------------------------------------------------------------------------------------------- evaluation


@functools.lru_cache(maxsize=4)
def _oracle(path: Path) -> ExactOnnx:
    return ExactOnnx(path)


@functools.lru_cache(maxsize=4)
def _ir(path: Path) -> Graph:
    """The model as certify reads it (simplified), in float64 as certify bounds it."""
    return _wide(load_model(str(path)))


def _wide(g: Graph) -> Graph:
    g = g.copy(dtype=torch.float64).eval()
    g.requires_grad_(False)
    return g


_EXACT: dict[tuple, np.ndarray] = {}  # (model file, point bytes, prec) → flat exact outputs, shared by the tests


def exact_outputs(ex: ExactOnnx, feeds: list[np.ndarray], prec: int | None = None) -> np.ndarray:
    """The oracle's flat outputs (graph outputs flattened and concatenated, as srp-audit joins them)."""
    key = (ex.source, b"".join(f.tobytes() for f in feeds), prec)
    if key not in _EXACT:
        _EXACT[key] = np.concatenate([np.asarray(o, dtype=object).reshape(-1) for o in ex.run(feeds, prec=prec)])
    return _EXACT[key]


def _piecewise_linear(g: Graph) -> bool:
    return all(isinstance(node, PIECEWISE_LINEAR) for _, node, _ in g.items())


def _crown_fits(g: Graph) -> bool:
    return _piecewise_linear(g) and int(np.prod(g.input_shape)) <= CROWN_MAX_INPUTS


def _spec_rows(k: int) -> LinearSpec:
    rows = min(k, SPEC_ROWS)
    full = identity_spec(rows, 1, torch.float64)
    C = torch.zeros(1, 2 * rows, k, dtype=torch.float64)
    C[:, :, :rows] = full.C
    return LinearSpec(C, full.d, full.groups)


def ir_bounds(g: Graph, x: np.ndarray, crown: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """method → (lower, upper) of the flat outputs on the box [x, x]: IBP's plain output interval (every output),
    and IBP / CROWN through an identity spec on the first SPEC_ROWS outputs (the path certify takes)."""
    t = torch.from_numpy(np.asarray(x, dtype=np.float64).reshape((1,) + g.input_shape))
    box = InputBox(t, t.clone())
    rows = min(g.num_classes, SPEC_ROWS)
    out = {}
    with torch.no_grad():
        r = interval_bounds(g, box)
        out["ibp"] = (r.lower.reshape(-1).numpy(), r.upper.reshape(-1).numpy())
        for method in ("ibp", "crown") if crown else ("ibp",):
            lb = get_method(method)(g, box, _spec_rows(g.num_classes)).lower.reshape(-1).numpy()
            out[f"{method}-spec"] = (lb[:rows], -lb[rows:])
    return out


def check_point(g: Graph, ex: ExactOnnx, feeds: list[np.ndarray], crown: bool) -> list[str]:
    """Every method's bounds at this point must contain the oracle's balls; returns the violations found.

    A ball that straddles a bound (neither inside nor proven outside: the bound lies within the ball's 2^-256
    relative width of the exact value, e.g. sigmoid(700) = 1 − 1e-304 against the bound 1) is recomputed at
    more bits; one still undecided at 4096 bits counts as a violation."""
    exact = exact_outputs(ex, feeds)
    assert exact.size == g.num_classes, f"the oracle has {exact.size} outputs, the IR {g.num_classes}"
    x = np.concatenate([f.reshape(-1) for f in feeds])
    problems = []
    for method, (lo, hi) in ir_bounds(g, x, crown).items():
        enc = enclosure(exact[: lo.size], lo, hi)
        for prec in FINER_PRECISIONS:
            if enc.ok or (enc.contained | enc.disjoint).all():
                break
            enc = enclosure(exact_outputs(ex, feeds, prec)[: lo.size], lo, hi)
        if not enc.ok:
            problems.append(f"{method}: {enc.summary()}")
    return problems


# -------------------------------------------------------------------------------------------------- points


def _as_input(ex: ExactOnnx, flat: np.ndarray) -> list[np.ndarray]:
    """A flat float64 point split into the model's inputs (their declared shapes)."""
    feeds, at = [], 0
    for shape in ex.input_shapes():
        n = int(np.prod(shape))
        feeds.append(np.asarray(flat[at:at + n], dtype=np.float64).reshape(shape))
        at += n
    return feeds


def points(case: Case, ex: ExactOnnx) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(default points, further points for the slow run), label → flat float64 point."""
    n = sum(int(np.prod(s)) for s in ex.input_shapes())
    if case.prop is not None:
        lo, hi = vnnlib_box(case.prop, n)
    elif case.kind == "fixture":
        lo, hi = np.zeros(n), np.ones(n)
    else:
        lo, hi = np.full(n, -2.0), np.full(n, 2.0)
    pts = box_points(lo, hi, n_random=3)
    first = ("random0",) if case.kind == "arch" or any(h in case.id for h in HEAVY_MODELS) else ("random0", "lower corner")
    default = {k: pts.pop(k) for k in first}
    if case.kind == "fixture":
        data = np.load(FIXTURES / f"{case.path.stem}.samples.npz")
        default["data sample"] = f32(data["x"][0].reshape(-1).astype(np.float64) / 255.0)
    if case.kind == "arch":
        default["zeros"], pts["ones"] = np.zeros(n), np.ones(n)
    return default, pts


def _run(path: Path, case: Case, which: int) -> list[str]:
    ex, g = _oracle(path), _ir(path)
    problems = []
    for label, x in points(case, ex)[which].items():
        problems += [f"{case.id} at {label}: {p}" for p in check_point(g, ex, _as_input(ex, x), _crown_fits(g))]
    return problems


# ------------------------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("case", PARAMS)
def test_bounds_contain_the_exact_value_of_the_stored_model(case: Case, model_path) -> None:
    problems = _run(model_path(case), case, 0)
    if problems:
        pytest.fail("\n".join(problems))


@pytest.mark.slow
@pytest.mark.parametrize("case", PARAMS)
def test_bounds_contain_the_exact_value_at_more_points(case: Case, model_path) -> None:
    """Slow: the box centre, the upper corner, more random points (and ones for the architecture zoo)."""
    problems = _run(model_path(case), case, 1)
    if problems:
        pytest.fail("\n".join(problems))


def _tie_pairs(ex: ExactOnnx) -> list[tuple[int, int]]:
    """Coordinate pairs to move: neighbours in the middle of the input (they share convolution windows)."""
    shape = ex.input_shapes()[0]
    n = int(np.prod(shape))
    if n < 2:
        return [(0, 0)]
    mid = min(n // 2 + (shape[-1] // 2 if len(shape) > 1 else 0), n - 2)
    plane = int(np.prod(shape[-2:])) if len(shape) >= 3 else 1  # the same pixel in the next channel
    pairs = [(mid, mid + 1), (max(mid - 1, 0), mid + 1), (mid - plane, mid) if mid >= plane else (0, n - 1), (0, n - 1)]
    return pairs + [(i, i) for i in (mid, mid + 1)]


TIE_PARAMS = [p for p in PARAMS if p.values[0].kind in ("fixture", "vnncomp")]


@pytest.mark.parametrize("case", TIE_PARAMS)
def test_bounds_contain_the_exact_value_where_a_relu_input_is_exactly_zero(case: Case, model_path) -> None:
    """A point where some first-layer ReLU input is exactly 0 (a tie at the kink), found by exact rational
    arithmetic; skipped where the layers before the first ReLU are not rational (BatchNorm's square root) or no
    float32/float64 solution turns up."""
    path = model_path(case)
    ex, g = _oracle(path), _ir(path)
    base, pairs = np.zeros(ex.input_shapes()[0]), _tie_pairs(ex)
    # float32 numbers near the domain if possible, else float64 numbers, else a far point (small first-layer weights)
    tie = relu_tie(ex, base, pairs) or relu_tie(ex, base, pairs, dtype=np.float64) or relu_tie(ex, base, pairs, span=1024.0)
    if tie is None:
        pytest.skip("no first-layer ReLU input with an exact zero found (irrational prefix or no representable solution)")
    x, name, j = tie
    problems = check_point(g, ex, _as_input(ex, x.reshape(-1)), _crown_fits(g))
    if problems:
        pytest.fail(f"{case.id}, ReLU input {name}[{j}] exactly 0:\n" + "\n".join(problems))


@pytest.mark.parametrize("name", sorted(EDGE))
def test_edge_model_bounds_contain_the_exact_value(name: str, tmp_path: Path) -> None:
    """Hand-built models where deriving a constant in float32 changes the function (tests/exact_edge_models.py)."""
    em = EDGE[name]
    path = tmp_path / f"{name}.onnx"
    onnx.save(em.model, str(path))
    ex, g = ExactOnnx(em.model), _wide(load_model(str(path)))
    f64 = ex.input_dtypes()[0] == np.float64
    crown = "relu-affine" in em.tags and _piecewise_linear(g)
    problems = []
    for i, p in enumerate(em.points):
        x = p if f64 else f32(p)  # a float32 model's input points are float32 numbers
        problems += [f"point {i}: {msg}" for msg in check_point(g, ex, [x.reshape(ex.input_shapes()[0])], crown)]
    if problems:
        pytest.fail(f"{name} ({em.why}):\n" + "\n".join(problems))


@pytest.mark.parametrize("case", PARAMS)
def test_the_oracle_agrees_with_onnxruntime(case: Case, model_path) -> None:
    """The oracle's own semantics checked against a third implementation: at the first random point (float32
    numbers, so onnxruntime reads the same input) its midpoints are onnxruntime's float32 outputs up to float32
    rounding (1e-4 relative to the largest output); a misread op would show here."""
    path = model_path(case)
    ex = _oracle(path)
    feeds = _as_input(ex, points(case, ex)[0]["random0"])
    sess = ort_session(path)
    ref = np.concatenate([r.reshape(-1) for r in sess.run(None, {i.name: f.astype(np.float32) for i, f in zip(sess.get_inputs(), feeds)})])
    ours = midpoints(exact_outputs(ex, feeds))
    scale = max(1.0, float(np.abs(ref).max()))
    assert np.abs(ours - ref).max() <= 1e-4 * scale, f"{case.id}: the oracle differs from onnxruntime by {np.abs(ours - ref).max():.2e}"


@pytest.mark.parametrize("name", sorted(EDGE))
def test_the_oracle_agrees_with_onnxruntime_on_the_edge_models(name: str, tmp_path: Path) -> None:
    em = EDGE[name]
    ex = ExactOnnx(em.model)
    onnx.save(em.model, str(tmp_path / "m.onnx"))
    sess = ort_session(tmp_path / "m.onnx")
    for p in em.points:
        x = p.astype(ex.input_dtypes()[0])
        ref = sess.run(None, {sess.get_inputs()[0].name: x})[0].reshape(-1).astype(np.float64)
        ours = midpoints(exact_outputs(ex, [x.astype(np.float64)]))
        tol = 1e-6 if x.dtype == np.float64 else 1e-4
        normal = np.abs(ours) >= 1e4 * np.finfo(x.dtype).tiny  # onnxruntime's subnormals and overflows are not comparable
        normal &= np.abs(ours) <= np.finfo(x.dtype).max / 2
        assert np.allclose(ours[normal], ref[normal], rtol=tol, atol=tol), f"{name}: {ours} vs {ref}"


OP_CASES = op_cases()


@pytest.mark.parametrize("name", sorted(OP_CASES))
def test_the_oracle_agrees_with_onnxruntime_op_by_op(name: str, tmp_path: Path) -> None:
    """Each operator and attribute combination of tests/exact_op_cases.py: the oracle's midpoints are onnxruntime's
    float32 results up to float32 rounding (so both read the spec the same way: windows, coordinates, clamping)."""
    model = OP_CASES[name]
    onnx.save(model, str(tmp_path / "m.onnx"))
    sess = ort_session(tmp_path / "m.onnx")
    ex = ExactOnnx(model)
    rng = np.random.default_rng(0)
    for _ in range(2):
        x = (rng.standard_normal(ex.input_shapes()[0]) * 1.5).astype(np.float32)
        ref = sess.run(None, {"x": x})[0].astype(np.float64)
        ours = midpoints(ex.run([x.astype(np.float64)])[0])
        assert ours.shape == ref.shape, f"{name}: shape {ours.shape}, onnxruntime {ref.shape}"
        assert np.allclose(ours, ref, rtol=2e-5, atol=2e-5), f"{name}: differs by {np.abs(ours - ref).max():.2e}"


def test_the_oracle_evaluates_every_onnx_operator_srp_audit_reads() -> None:
    """Every ONNX operator the loader maps (on data or on constants) has exact semantics in the oracle."""
    from srp_audit.formats.onnx_const import FOLDERS
    from srp_audit.formats.onnx_read import supported_onnx_ops

    missing = sorted((set(supported_onnx_ops()) | set(FOLDERS)) - set(supported_ops()))
    assert not missing, f"the oracle has no exact semantics for {missing}"


# --------------------------------------------------------------------------------------------- meta-tests


def test_the_oracle_catches_a_weight_one_float32_ulp_off() -> None:
    """A check that cannot fail is worthless: move one weight of the loaded MLP by one float32 ulp (a change of
    ~6e-8 relative, the size of the constant-rounding bugs) and the exact value leaves IBP's and CROWN's bounds
    on exactly the output that weight feeds."""
    path = FIXTURES / "mnist_mlp.onnx"
    ex, g = _oracle(path), _wide(load_model(str(path)))
    data = np.load(FIXTURES / "mnist_mlp.samples.npz")
    feeds = _as_input(ex, f32(data["x"][0].reshape(-1).astype(np.float64) / 255.0))
    assert not check_point(g, ex, feeds, crown=True), "the unperturbed model must pass"
    last, hidden = g.node(g.output), g.inputs_of[g.output][0]
    assert isinstance(last, ops.Dense)
    t = torch.from_numpy(feeds[0].reshape((1,) + g.input_shape))
    act = interval_bounds(g, InputBox(t, t.clone()), keep=[hidden]).nodes[hidden].lower.reshape(-1)
    i = int(act.argmax())  # the most active hidden unit: its weight matters most
    with torch.no_grad():
        w = last.weight[0, i].to(torch.float32)
        last.weight[0, i] = torch.nextafter(w, torch.tensor(np.inf, dtype=torch.float32)).double()
    problems = check_point(g, ex, feeds, crown=True)
    assert len(problems) == 3, f"every method must miss the exact value: {problems}"
    assert all("1 of 10 outputs not enclosed (1 proven outside); worst: output 0 " in p for p in problems), problems


def test_enclosure_has_no_tolerance() -> None:
    """X/3 at X = (1, 3, 0.5, −7): the balls of 1/3, 1/6, −7/3 are not inside the float64 points nearest to them
    (fl(1/3) < 1/3, so [prev(fl(1/3)), fl(1/3)] misses it entirely), 1 is inside [1, 1], and every ball is inside
    the interval one ulp either side of its nearest float."""
    ex = ExactOnnx(EDGE["div_by_3"].model)
    exact = exact_outputs(ex, [np.array([[1.0, 3.0, 0.5, -7.0]])])
    f = np.array([1.0, 3.0, 0.5, -7.0]) / 3
    assert enclosure(exact, f, f).contained.tolist() == [False, True, False, False]
    assert enclosure(exact, np.nextafter(f, -np.inf), np.nextafter(f, np.inf)).ok
    assert enclosure(exact[:1], np.nextafter(f[:1], -np.inf), f[:1]).disjoint.all()


def test_relu_at_a_tie_is_rigorous() -> None:
    """ReLU of a ball straddling 0 covers [0, hi]; of an exact 0 or a tiny negative number it is exactly 0."""
    from exact_onnx_math import ELEMENTWISE
    from flint import arb

    relu = ELEMENTWISE["Relu"]
    r = relu(arb(0, 1e-20), {})
    assert r.contains(0) and r.contains(arb(1e-20)) and r.lower() >= -1e-28
    assert relu(arb(0), {}) == 0 and relu(arb(-1e-300), {}) == 0


@pytest.mark.parametrize("name", sorted(OP_CASES))
def test_the_loader_reads_each_op_case_as_onnxruntime_computes_it(name: str, tmp_path: Path) -> None:
    """Each case of tests/exact_op_cases.py is refused with a one-line error or read as onnxruntime computes it (a
    loader reading a spec rule differently — ConvTranspose's output_shape padding — bounds another function)."""
    from srp_audit.errors import SrpAuditError
    from srp_audit.formats import load_model

    onnx.save(OP_CASES[name], str(tmp_path / "m.onnx"))
    try:
        graph = load_model(str(tmp_path / "m.onnx")).double()
    except SrpAuditError:
        return
    sess = ort_session(tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(sess.get_inputs()[0].shape) * 1.5).astype(np.float32)
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float64).reshape(-1)
    with torch.no_grad():
        ours = graph.logits(torch.from_numpy(x.astype(np.float64)).reshape((-1,) + tuple(graph.input_shape))).numpy().reshape(-1)
    assert ours.shape == ref.shape and np.allclose(ours, ref, rtol=1e-4, atol=1e-4), f"{name}: differs by {np.abs(ours - ref).max():.2e}"
