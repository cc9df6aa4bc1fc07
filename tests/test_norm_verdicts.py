"""Verdicts right in every norm: distances, attack radii and `falsified` measured in the ball's own norm (and
re-checked there), the ball carried through reshapes to the first layer's dual-norm rule (IBP and CROWN-IBP),
first layers the rule cannot reach refined over the ball by CROWN, the ball ∩ domain bounded tighter than either
alone (sampling checks, corners and vertices included, in each norm), models with a fixed batch certified one
sample per slot, and radii that test nothing (0, −0, 1e-400) refused."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import FIXTURES
from soundness import assert_contains, identity_spec
from srp_audit_cli.main import main
from test_norms import sample_ball

from srp_audit import ops
from srp_audit.bounds import METHODS
from srp_audit.bounds.crown import _concretise
from srp_audit.bounds.ibp import interval_bounds
from srp_audit.certify import CertifyOptions, certify
from srp_audit.data import load_samples
from srp_audit.errors import UsageError
from srp_audit.formats import load_model
from srp_audit.ir.graph import INPUT, Graph
from srp_audit.robustify import RobustifyOptions
from srp_audit.slots import batch_slots, one_sample_per_slot
from srp_audit.spec import InputBox, ball, distance, inside_ball, margin_spec, offsets

NORMS = ["inf", "2", "1"]
MLP = str(FIXTURES / "mnist_mlp.onnx")
SAMPLES = str(FIXTURES / "mnist_mlp.samples.npz")


def _exact_norm(p: np.ndarray, x: np.ndarray, norm: str) -> Fraction:
    """‖p − x‖ in exact rational arithmetic (squared for L2)."""
    d = [abs(Fraction(float(a)) - Fraction(float(b))) for a, b in zip(p.ravel(), x.ravel())]
    return max(d) if norm == "inf" else sum(d, Fraction(0)) if norm == "1" else sum((t * t for t in d), Fraction(0))


# ------------------------------------------------------------------------------------- distances in the norm


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", NORMS)
def test_distance_is_an_upper_bound_of_the_exact_norm_and_tight(norm: str, dtype: torch.dtype) -> None:
    """Against exact rationals, with offsets float64 cannot hold exactly (1 − 1e-30, float64 inputs) included."""
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(6, 40, generator=gen, dtype=torch.float64).to(dtype)
    p = (x.double() + (torch.rand(6, 40, generator=gen, dtype=torch.float64) - 0.5) * 10.0 ** -torch.randint(0, 9, (6, 1), generator=gen)).to(dtype)
    x[0, 0], p[0, 0] = 1e-30, 1.0  # a difference spanning 30 decimal orders
    p[1] = x[1]  # distance 0
    d = distance(p, x, norm)
    for i in range(6):
        exact = _exact_norm(p[i].double().numpy(), x[i].double().numpy(), norm)
        got = Fraction(float(d[i])) ** 2 if norm == "2" else Fraction(float(d[i]))
        assert got >= exact, (norm, i)
        if exact:
            assert float(got / exact) <= 1 + 1e-12, (norm, i)
    assert float(d[1]) == 0.0
    assert bool((offsets(p, x) >= 0).all())


@pytest.mark.parametrize("norm", ["2", "1"])
def test_inside_ball_on_the_boundary(norm: str) -> None:
    """A point 2^-30 (relative) inside the sphere is inside; a point 2^-20 further out is not — membership is
    decided in the ball's norm, not in L∞ (a point exactly on the sphere may go either way: the norm is rounded up)."""
    x = torch.zeros(1, 4, dtype=torch.float64) + 0.5
    eps = 0.25
    step = torch.tensor([0.125, 0.125 - 2**-30] if norm == "1" else [0.15, 0.2 - 2**-30], dtype=torch.float64)  # 3-4-5
    on = x.clone()
    on[0, :2] += step
    assert bool(inside_ball(on, x, eps, (0.0, 1.0), norm))
    off = on.clone()
    off[0, 1] += 2**-20  # still well inside the L∞ ball, outside the L2/L1 one
    assert bool(inside_ball(off, x, eps, (0.0, 1.0), "inf"))
    assert not bool(inside_ball(off, x, eps, (0.0, 1.0), norm))
    assert not bool(inside_ball(on, x, eps, (0.0, 0.6), norm))  # the domain still counts


@pytest.fixture(scope="module")
def mlp8():
    g = load_model(MLP)
    s = load_samples(SAMPLES, g.input_shape, 10, (0.0, 1.0), 8)
    return g, s.x, s.y.long()


@pytest.mark.parametrize("norm,eps", [("inf", 0.03), ("2", 0.15), ("1", 1.0)])
def test_attack_radius_and_falsified_are_in_the_balls_norm(mlp8, norm: str, eps: float) -> None:
    """The review's case (mnist_mlp, L2 eps 0.15: sample 4 was falsified at an L∞ distance 0.081 whose
    counterexample lay 0.479 away in L2): every attack radius is the counterexample's distance in the ball's norm
    (not L∞), every falsified verdict — at eps and at every radius of the sweep — has its counterexample inside
    that ball ∩ domain and confirmed by a forward pass, and no certified radius passes an attack radius."""
    g, x, y = mlp8
    res = certify(g, x, y, CertifyOptions(eps=eps, norm=norm, sweep=(eps / 4, eps / 2, eps), device="cpu"))
    found = 0
    for s in res.samples:
        if s.attack_radius is None:
            assert s.verdict != "falsified"
            continue
        found += 1
        ce = torch.from_numpy(s.counterexample).unsqueeze(0)
        centre = x[s.index : s.index + 1]
        exact = _exact_norm(ce.numpy(), centre.numpy(), norm)
        exact = math.sqrt(exact) if norm == "2" else float(exact)
        assert exact <= s.attack_radius <= exact * (1 + 1e-12) + 1e-300, (s.index, exact, s.attack_radius)
        assert s.certified_radius <= s.attack_radius
        with torch.no_grad():
            scores = g.logits(ce)[0]
        assert bool((scores.max() >= scores[s.label]) & (scores.argmax() != s.label) | (scores.max() == scores[s.label]))
        for e, v in zip(res.options.sweep, s.sweep_verdicts):
            if v == "falsified":
                assert s.attack_radius <= e and bool(inside_ball(ce, centre, e, (0.0, 1.0), norm))
        if s.verdict == "falsified":
            assert bool(inside_ball(ce, centre, eps, (0.0, 1.0), norm))
    assert found, "the attack radius search found no counterexample at all: the test checks nothing"


def test_l2_example_of_the_review(mlp8) -> None:
    """Before: sample 4 falsified (attack radius 0.081, an L∞ distance), 0 of 8 certified. Now the L2 ball's
    own distances and bounds: nothing falsified at 0.15, and the attack radii are L2 distances ≥ 0.15."""
    g, x, y = mlp8
    res = certify(g, x, y, CertifyOptions(eps=0.15, norm="2", device="cpu"))
    assert res.count("falsified") == 0
    assert res.count("verified") >= 6
    assert all(s.attack_radius is None or s.attack_radius > 0.15 for s in res.samples)


# ------------------------------------------------------------------------------- the ball reaches the first layer


def _chain_graphs(gen: torch.Generator) -> dict[str, Graph]:
    """Graphs whose first dense/conv layer reads the input through ops that move entries (the ball must reach it),
    through a normalisation (it cannot: CROWN refines that first layer over the ball), or copies entries."""
    r = lambda *s: torch.randn(s, generator=gen) * 0.5  # noqa: E731
    idx = torch.arange(2 * 5 * 5).reshape(2, 5, 5)
    return {
        "reshape_dense": Graph((2, 5, 5), [("f", ops.Reshape((50,)), (INPUT,)), ("d0", ops.Dense(r(12, 50), r(12)), ("f",)),
                                           ("a0", ops.Relu(), ("d0",)), ("d1", ops.Dense(r(10, 12), r(10)), ("a0",)),
                                           ("a1", ops.Relu(), ("d1",)), ("d2", ops.Dense(r(3, 10), r(3)), ("a1",))], "d2"),
        "transpose_pad_conv": Graph((2, 5, 5), [("t", ops.Transpose((0, 2, 1)), (INPUT,)), ("p", ops.Pad([(0, 0), (1, 0), (0, 1)], 0.2), ("t",)),
                                                ("c0", ops.Conv2d(r(3, 2, 3, 3), r(3), 1, 1), ("p",)), ("a0", ops.Relu(), ("c0",)),
                                                ("c1", ops.Conv2d(r(2, 3, 3, 3), r(2), 2), ("a0",)), ("a1", ops.Relu(), ("c1",)),
                                                ("f", ops.Reshape((8,)), ("a1",)), ("d", ops.Dense(r(3, 8), r(3)), ("f",))], "d"),
        "copies_dense": Graph((2, 5, 5), [("s", ops.Select(torch.cat([idx[:, 1:4].flatten(), idx[0, 2, 1:2]]), (31,), 50), (INPUT,)),
                                          ("d0", ops.Dense(r(9, 31), r(9)), ("s",)), ("a0", ops.Tanh(), ("d0",)),
                                          ("d1", ops.Dense(r(3, 9), r(3)), ("a0",))], "d1"),
        "normalised_conv": Graph((2, 5, 5), [("n", ops.ElementwiseAffine(torch.tensor([2.0, 0.5]).reshape(2, 1, 1), -0.3), (INPUT,)),
                                             ("c0", ops.Conv2d(r(3, 2, 3, 3), r(3), 1, 1), ("n",)), ("a0", ops.Relu(), ("c0",)),
                                             ("f", ops.Reshape((75,)), ("a0",)), ("d0", ops.Dense(r(6, 75), r(6)), ("f",)),
                                             ("a1", ops.Relu(), ("d0",)), ("d1", ops.Dense(r(3, 6), r(3)), ("a1",))], "d1"),
    }


def _edge_centres(gen: torch.Generator, n: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Centres in [0, 1] with a third of the entries exactly at a domain edge (MNIST's background): the ball is
    clipped there, which the ball ∩ box bounds use."""
    x = torch.rand((n,) + shape, generator=gen, dtype=torch.float64)
    pick = torch.rand(x.shape, generator=gen, dtype=torch.float64)
    return torch.where(pick < 0.2, torch.zeros_like(x), torch.where(pick < 0.33, torch.ones_like(x), x))


def _sample_clipped(x: torch.Tensor, eps: float, norm: str, n: int, gen: torch.Generator) -> torch.Tensor:
    """Points of the ball ∩ [0, 1]: sphere points / vertices and interior points (`sample_ball`), and points of the
    ball that sit on the domain's faces (the bound's optimum under clipping lies there)."""
    pts = sample_ball(x, eps, norm, n, (0.0, 1.0), gen)
    if norm == "1":  # spend the whole radius on the entries that can still move, then clip: still in the ball
        k = math.prod(x.shape[1:])
        sign = torch.where(torch.rand((x.shape[0], n, k), generator=gen) < 0.5, -1.0, 1.0).double()
        few = (torch.rand((x.shape[0], n, k), generator=gen) < 4 / k).double()
        d = sign * few * eps / few.sum(2, keepdim=True).clamp(min=1)
        extra = (x.unsqueeze(1) + d.reshape(pts.shape)).clamp(0, 1)
        pts = torch.cat([pts, extra], dim=1)
    return pts


@pytest.mark.parametrize("norm", ["2", "1"])
@pytest.mark.parametrize("name", ["reshape_dense", "transpose_pad_conv", "copies_dense", "normalised_conv"])
def test_bounds_over_clipped_balls_contain_samples(name: str, norm: str) -> None:
    """Soundness of the changed rules — the ball carried by `ball_image` (reshape, transpose, pad, copies), CROWN's
    first-layer refinement over the ball, the ball ∩ box concretisation (free coefficients, the exact dual on the
    spec's rows): sampled points of the ball ∩ domain (sphere points, L1 vertices, points on the domain's faces)
    inside every method's bounds, with no tolerance, in float64 and float32."""
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        graph = _chain_graphs(gen)[name]
        x = _edge_centres(gen, 3, graph.input_shape)
        eps = [0.05, 0.4, 1.5][seed] * (3.0 if norm == "1" else 1.0)
        pts = _sample_clipped(x, eps, norm, 300, gen)
        k = graph.num_classes
        g64 = graph.copy(dtype=torch.float64)
        with torch.no_grad():
            values = g64.logits(pts.reshape((-1,) + graph.input_shape)).reshape(3, pts.shape[1], -1)
        for dtype in (torch.float64, torch.float32):
            g = graph.copy(dtype=dtype)
            box = ball(x.to(dtype), eps, (0.0, 1.0), norm).to(dtype)
            for method in ("ibp", "crown-ibp", "crown", "alpha-crown"):
                with torch.no_grad() if method != "alpha-crown" else torch.enable_grad():
                    lb = METHODS[method](g, box, identity_spec(k, 3, dtype), alpha_iters=3).lower.detach()
                assert_contains(values, lb[:, :k], -lb[:, k:], f"{method} {name} L{norm} seed {seed} {dtype}")


@pytest.mark.parametrize("norm", ["2", "1"])
def test_ibp_uses_the_dual_norm_through_a_reshape(norm: str) -> None:
    """`--method ibp` on mnist_mlp (a Reshape before its first Dense) bounds the first layer over the ball: exactly
    W·c + b ± eps·‖W_i‖_q (up to rounding), far inside the bounding box's bounds, and the review's figure at L2 eps
    0.04 on sample 0 (+5.09 where the box gave −44)."""
    g = load_model(MLP).double()
    s = load_samples(SAMPLES, g.input_shape, 10, (0.0, 1.0), 4)
    x, spec = s.x.double(), margin_spec(s.y, 10)
    box = ball(x, 0.04, (0.0, 1.0), norm)
    with torch.no_grad():
        first = interval_bounds(g, box, keep=["dense_0"]).nodes["dense_0"]
    w, b = g.layers["dense_0"].weight.detach(), g.layers["dense_0"].bias.detach()
    centre = x.reshape(4, -1) @ w.T + b
    rad = 0.04 * torch.linalg.vector_norm(w, ord=2.0 if norm == "2" else math.inf, dim=1)
    assert torch.allclose(first.lower, centre - rad, rtol=0, atol=1e-9) and torch.allclose(first.upper, centre + rad, rtol=0, atol=1e-9)
    with torch.no_grad():
        lp = METHODS["ibp"](g, box, spec).lower
        linf = METHODS["ibp"](g, ball(x, 0.04, (0.0, 1.0), "inf"), spec).lower
    assert bool((lp >= linf).all())
    if norm == "2":
        assert abs(float(spec.worst_bound(lp)[0]) - 5.091) < 0.01


@pytest.mark.parametrize("norm", ["2", "1"])
@pytest.mark.parametrize("model", ["mnist_mlp", "mnist_cnn"])
def test_crown_is_at_least_as_tight_as_dual_norm_ibp(model: str, norm: str) -> None:
    """CROWN and CROWN-IBP never below IBP over the same L2/L1 ball (before, CROWN's first-layer bounds came from
    the bounding box: at L1 eps 0.5 on mnist_mlp its worst margin was −139 where dual-norm IBP proves +2.5)."""
    g = load_model(str(FIXTURES / f"{model}.onnx")).double()
    s = load_samples(str(FIXTURES / f"{model}.samples.npz"), g.input_shape, 10, (0.0, 1.0), 4)
    x, spec = s.x.double(), margin_spec(s.y, 10)
    eps = {"mnist_mlp": {"2": 0.3, "1": 0.5}, "mnist_cnn": {"2": 0.1, "1": 0.3}}[model][norm]
    box = ball(x, eps, (0.0, 1.0), norm)
    with torch.no_grad():
        ibp = METHODS["ibp"](g, box, spec).lower
        for method in ("crown-ibp", "crown"):
            assert bool((METHODS[method](g, box, spec).lower >= ibp - 1e-9).all()), method
    if model == "mnist_mlp" and norm == "1":
        with torch.no_grad():
            assert float(spec.worst_bound(METHODS["crown"](g, box, spec).lower).min()) > 0


@pytest.mark.parametrize("norm", ["2", "1"])
def test_ball_and_box_together_beat_each_alone_and_match_the_exact_optimum(norm: str) -> None:
    """min A·x over ball ∩ box, for rows A: the concretisation holds at the exact optimum (an LP / a convex
    program, solved here independently) and comes within 1e-6 of it; it beats the box alone and the ball alone
    when the box clips the ball (centres at the domain's edges)."""
    from scipy.optimize import linprog, minimize

    gen = torch.Generator().manual_seed(11)
    n, r, k = 3, 4, 12
    x = _edge_centres(gen, n, (k,))
    A = torch.randn(n, r, k, generator=gen, dtype=torch.float64)
    eps = 0.6 if norm == "2" else 1.1
    box = ball(x, eps, (0.0, 1.0), norm)
    tight = _concretise(A, box, tight=True, offset=torch.full((n, r), -1e9, dtype=torch.float64))  # every row ≤ 0
    loose = _concretise(A, box)
    plain = (A * x.unsqueeze(1)).sum(-1) - eps * torch.linalg.vector_norm(A, ord=2.0 if norm == "2" else math.inf, dim=-1)
    alone = _concretise(A, InputBox(box.lower, box.upper))
    assert bool((tight >= loose).all()) and bool((loose >= torch.maximum(plain, alone) - 1e-12).all())
    gain = 0.0
    for i in range(n):
        lo, hi, c = box.lower[i].numpy(), box.upper[i].numpy(), x[i].numpy()
        for j in range(r):
            a = A[i, j].numpy()
            if norm == "1":  # variables δ⁺, δ⁻ ≥ 0: x = c + δ⁺ − δ⁻, Σ(δ⁺ + δ⁻) ≤ eps
                res = linprog(np.concatenate([a, -a]), A_ub=np.ones((1, 2 * k)), b_ub=[eps],
                              bounds=[(0, h - m) for h, m in zip(hi, c)] + [(0, m - lw) for lw, m in zip(lo, c)], method="highs")
                best = float(a @ c + res.fun)
            else:
                cons = [{"type": "ineq", "fun": lambda d: eps**2 - d @ d, "jac": lambda d: -2 * d}]
                res = minimize(lambda d, a=a: a @ d, np.zeros(k), jac=lambda d, a=a: a, constraints=cons,
                               bounds=list(zip(lo - c, hi - c)), method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
                best = float(a @ c + res.fun)
            assert float(tight[i, j]) <= best + 1e-9, (i, j)
            assert float(tight[i, j]) >= best - 1e-6, (i, j, float(tight[i, j]), best)
            gain = max(gain, float(tight[i, j] - torch.maximum(plain[i, j], alone[i, j])))
    assert gain > 0.05, "the clipped ball was not used"


# ------------------------------------------------------------------------------------------- fixed batches


def _export_fixed_batch(tmp: Path, batch: int) -> str:
    """mnist_mlp's weights in a torch module, exported by torch's ONNX exporter with a fixed batch (no dynamic axis)."""
    g = load_model(MLP)
    dense = [n for _, n, _ in g.items() if n.op == "Dense"]
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                            torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()
    with torch.no_grad():
        for lin, d in zip([m[1], m[3], m[5]], dense):
            lin.weight.copy_(d.weight)
            lin.bias.copy_(d.bias)
    path = tmp / f"mlp_batch{batch}.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, torch.zeros(batch, 1, 28, 28), str(path), dynamo=False, input_names=["x"], output_names=["y"])
    return str(path)


def test_fixed_batch_of_4_is_certified_one_sample_per_slot(tmp_path: Path) -> None:
    """A torch export with a fixed batch of 4 (40 outputs: four copies of the scores). Read as one sample of 40
    classes every correct prediction tied with its own copy (falsified at radius 0); now each sample is scored by
    the first slot's 10 classes, with the same verdicts and radii as the batch-free model, in every norm."""
    path = _export_fixed_batch(tmp_path, 4)
    g4 = load_model(path)
    assert batch_slots(g4) == 4 and g4.num_classes == 40
    g1 = load_model(MLP)
    s = load_samples(SAMPLES, (1, 28, 28), 10, (0.0, 1.0), 6)
    for norm, eps in (("inf", 0.02), ("2", 0.3), ("1", 1.0)):
        opts = CertifyOptions(eps=eps, norm=norm, device="cpu")
        a, b = certify(g1, s.x, s.y, opts), certify(g4, s.x, s.y, opts)
        assert [t.verdict for t in a.samples] == [t.verdict for t in b.samples], norm
        assert [t.prediction for t in b.samples] == [t.label for t in b.samples] == s.y.tolist()
        for t, u in zip(a.samples, b.samples):
            assert abs(t.certified_radius - u.certified_radius) <= 2e-3 and u.attack_radius != 0.0, norm
        assert any("fixed batch of 4" in n for n in b.notes) and "other slots do not matter" in b.notes[0]
    wrapped, _ = one_sample_per_slot(g4, (1, 28, 28))
    assert wrapped.input_shape == (1, 28, 28) and wrapped.num_classes == 10 and batch_slots(wrapped) is None


def test_fixed_batch_cli_reads_ordinary_data_and_refuses_tiled_samples(tmp_path: Path) -> None:
    path = _export_fixed_batch(tmp_path, 4)
    r = CliRunner().invoke(main, ["certify", path, "--data", SAMPLES, "--eps", "0.02", "--limit", "4", "-q", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "note: the model has a fixed batch of 4" in r.stderr
    assert '"falsified": 0' in r.stdout
    d = np.load(SAMPLES)
    tiled = tmp_path / "tiled.npz"
    np.savez(tiled, x=np.repeat(d["x"][:4, None, None], 4, axis=1), y=d["y"][:4])
    r = CliRunner().invoke(main, ["certify", path, "--data", str(tiled), "--eps", "0.02", "-q"])
    _one_line_error(r, 2, "fixed batch of 4")
    r = CliRunner().invoke(main, ["robustify", path, "--data", SAMPLES, "--eps", "0.02", "-o", str(tmp_path / "o.onnx")])
    _one_line_error(r, 2, "fixed batch of 4")


# ---------------------------------------------------------------------------------------- radii that test nothing


def _one_line_error(r, code: int, pattern: str) -> None:
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and pattern in lines[0], r.stderr


@pytest.mark.parametrize("eps", ["0", "-0", "1e-400", "0.0", "-0.1", "1e-310", "0,0.01", "0.01,-0", "nan", "inf"])
def test_certify_refuses_a_radius_that_tests_nothing(eps: str) -> None:
    r = CliRunner().invoke(main, ["certify", MLP, "--eps", eps, "--limit", "2", "-q"])
    _one_line_error(r, 2, "--eps")


@pytest.mark.parametrize("eps", ["0", "-0", "1e-400"])
def test_robustify_refuses_a_radius_that_tests_nothing(tmp_path: Path, eps: str) -> None:
    r = CliRunner().invoke(main, ["robustify", MLP, "--data", SAMPLES, "--eps", eps, "-o", str(tmp_path / "o.onnx")])
    _one_line_error(r, 2, "--eps")


@pytest.mark.parametrize("eps", [0.0, -0.0, float("1e-400"), 5e-324, -1.0, math.nan])
def test_the_library_refuses_a_radius_that_tests_nothing(mlp8, eps: float) -> None:
    g, x, y = mlp8
    with pytest.raises(UsageError, match="positive radius"):
        certify(g, x[:2], y[:2], CertifyOptions(eps=eps, device="cpu"))
    with pytest.raises(UsageError, match="positive radius"):
        certify(g, x[:2], y[:2], CertifyOptions(eps=0.01, sweep=(eps, 0.01), device="cpu"))
    with pytest.raises(UsageError, match="positive radius"):
        RobustifyOptions(eps=eps).validate()
