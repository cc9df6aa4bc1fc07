"""CROWN's rounding slack charged per pass at the weighted sums (`srp_audit.bounds.slack`): sound against the exact
value of the stored network where float32 rounding is large against the output, and negligible on a deep network
(carried a priori through |W|, it had grown about 6× per layer and dominated the bound).

The float32 networks make their outputs near zero at a point while their terms are large (large biases, or a last
layer whose rows cancel the last hidden value): the rounding of the bound's terms is then far above |output|, so a
missing charge shows as an exact value outside the bounds (the mutant below). The exact values come from tests/exact_onnx.py (arb
balls, reading the ONNX file with `onnx` alone).
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from arch_zoo import ResNet18, _calibrated, export
from exact_onnx import ExactOnnx, enclosure
from soundness import identity_spec

import srp_audit.bounds.crown as crown
from srp_audit import ops
from srp_audit.bounds import get_method
from srp_audit.formats import load_model
from srp_audit.ir.graph import Graph
from srp_audit.ir.walk import INPUT
from srp_audit.spec import InputBox, LinearSpec, ball, linf_ball, margin_spec

METHODS = ("crown", "crown-ibp", "alpha-crown")


class _Block(nn.Module):
    """conv → batch norm → ReLU with a residual add: patches coefficients, merges at the add's input."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x))) + x


def _deep_mlp() -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(12):
        layers += [nn.Linear(8 if i == 0 else 16, 16), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(16, 5)), (8,)


def _deep_convnet() -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, 1, 1), nn.ReLU(), *[_Block(4) for _ in range(5)], nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    g = torch.Generator().manual_seed(2)
    for b in m:
        if isinstance(b, _Block):
            b.bn.running_mean.copy_(torch.randn(4, generator=g) * 0.2)
            b.bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
    return m, (2, 6, 6)


NETWORKS = {"mlp_12_layers": _deep_mlp, "residual_convnet_6_layers": _deep_convnet}


def _near_zero_model(name: str, tmp: Path, how: str = "biases") -> tuple[Path, list[np.ndarray]]:
    """The network with outputs ~0 at the first of three float32 points. "biases": biases ×40 and the last layer's
    bias shifted (large constants cancel); "cancelling": no biases, each last-layer row made orthogonal to the last
    hidden value there (large coefficient terms cancel)."""
    m, shape = NETWORKS[name]()
    m.eval()
    rng = np.random.default_rng(3)
    points = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
    x0 = torch.from_numpy(points[0]).unsqueeze(0)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                mod.bias.data *= 40 if how == "biases" else 0
        if how == "biases":
            m[-1].bias.data -= m(x0)[0]
        else:
            h = m[:-1](x0).double()[0]
            w = m[-1].weight.data.double()
            m[-1].weight.data.copy_((w - (w @ h).unsqueeze(1) * h.unsqueeze(0) / (h @ h)).float())
    path = tmp / f"{name}_{how}.onnx"
    export(m, shape, "torchscript", path)
    return path, points


def _violations(path: Path, points: list[np.ndarray]) -> list[str]:
    """Every method's float32 bounds on [x, x] against the exact outputs; returns what is not enclosed."""
    ex = ExactOnnx(path)
    g = load_model(str(path)).copy(dtype=torch.float32).eval()
    g.requires_grad_(False)
    k = g.num_classes
    problems = []
    for i, x in enumerate(points):
        exact = np.concatenate([np.asarray(o, dtype=object).reshape(-1) for o in ex.run([x[None]])])
        t = torch.from_numpy(x).unsqueeze(0)
        for method in METHODS:
            with torch.no_grad():
                lb = get_method(method)(g, InputBox(t, t.clone()), identity_spec(k, 1, torch.float32)).lower.reshape(-1)
            lb64 = lb.double().numpy()
            enc = enclosure(exact, lb64[:k], -lb64[k:])
            if not enc.ok:
                problems.append(f"point {i}, {method}: {enc.summary()}")
    return problems


@pytest.mark.parametrize("how", ["biases", "cancelling"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_float32_bounds_contain_the_exact_value_where_rounding_dominates(name: str, how: str, tmp_path: Path) -> None:
    path, points = _near_zero_model(name, tmp_path, how)
    assert not _violations(path, points)


@pytest.mark.parametrize("where", ["every node", "no node"])
def test_any_choice_of_checkpoints_is_sound(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints are a choice of where to charge, not a claim: every rule bounds its own step plus what it carries,
    so charging at every node (ReLUs, batch norm, adds too) or carrying everything to the start must hold as well."""
    from srp_audit.ir.node import Node

    if where == "every node":
        monkeypatch.setattr(Node, "crown_checkpoint", True)
    else:
        for cls in (ops.Dense, ops.Conv2d, ops.ConvTranspose2d):
            monkeypatch.setattr(cls, "crown_checkpoint", False)
    for name in sorted(NETWORKS):
        for how in ("biases", "cancelling"):
            path, points = _near_zero_model(name, tmp_path, how)
            assert not _violations(path, points), (name, how)


def test_a_missing_charge_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: with the weighted sums' charges dropped, exact values fall outside the bounds."""
    path, points = _near_zero_model("mlp_12_layers", tmp_path, "cancelling")

    def nothing(ctx, A, key, err, factor):
        t = A if isinstance(A, torch.Tensor) else A.data
        return torch.zeros(t.shape[:2], dtype=t.dtype)

    monkeypatch.setattr(crown, "charge", nothing)
    assert _violations(path, points)


def test_deep_resnet_bound_gives_up_almost_nothing_to_rounding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CIFAR ResNet-18 at width 2 (16×16 inputs): CROWN's bound is within 1e-7 (relative; measured 1.1e-9) of the same computation
    with no rounding slack at all. Carried through |W| a priori, the slack took the margins from −0.01 to −26."""
    model = _calibrated(ResNet18(2), 3)
    export(model, (3, 16, 16), "torchscript", tmp_path / "r.onnx")
    g = load_model(str(tmp_path / "r.onnx")).copy(dtype=torch.float64).eval()
    g.requires_grad_(False)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        spec = margin_spec(g.logits(x).argmax(1), 10)
        box = linf_ball(x, 0.001, (0.0, 1.0))
        sound = get_method("crown")(g, box, spec).lower

        def no_rounding(ctx, name):
            err = ctx.graph.node(name).crown_rounding(ctx, name)
            ctx.err[name] = torch.zeros_like(err)

        monkeypatch.setattr(crown, "set_rounding", no_rounding)
        monkeypatch.setattr(crown, "merge_charge", lambda ctx, merged, name, factor: 0.0)
        free = get_method("crown")(g, box, spec).lower
    assert bool((sound <= free).all())
    gap = float(((free - sound) / free.abs().clamp(min=1)).max())
    assert gap < 1e-7, f"rounding slack {gap:.3g} relative"
    assert math.isfinite(float(sound.min()))


# ------------------------------------------------------------------------------ rounding the slack must also pay
# Found by an adversarial review: each builds a graph whose exact value is a rational computed here.


def _lowers(g: Graph, box: InputBox, d: float = 0.0) -> list[Fraction]:
    dt = box.lower.dtype
    spec = LinearSpec(torch.ones(1, 1, 1, dtype=dt), torch.full((1, 1), d, dtype=dt), [[0]])
    out = []
    for method in METHODS:
        with torch.no_grad():
            out.append(Fraction(float(get_method(method)(g, box, spec).lower[0, 0])))
    return out


def _dense(w: list[list[float]], b: list[float]) -> ops.Dense:
    return ops.Dense(torch.tensor(w, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_small_constants_lost_in_a_large_running_constant_are_paid_for(dtype: torch.dtype) -> None:
    """A spec constant d = 1 plus 128 layers' biases of −0.9 ulp(1)/2 each: every bias is lost whole when added to
    the running constant; the bound must still stay below the exact −128·eps. (The a-priori slack happened to cover
    it through |H|·|H/2|, which doubles every two layers; the checkpoint charges alone did not.)"""
    k, eps = 128, 0.9 * 2.0 ** (-25 if dtype == torch.float32 else -54)
    h = [[1.0, 1.0], [1.0, -1.0]]
    nodes = [("big", _dense([[1.0, 0.0]], [0.0]), (INPUT,)), ("z0", _dense([[0.0, 1.0], [0.0, 1.0]], [0.0, 0.0]), (INPUT,))]
    for i in range(k):
        w = h if i % 2 == 0 else [[v / 2 for v in row] for row in h]
        nodes.append((f"z{i + 1}", _dense(w, [-eps, -eps]), (nodes[-1][0],)))
    nodes += [("zk", _dense([[1.0, 0.0]], [0.0]), (f"z{k}",)), ("y", ops.Add(), ("big", "zk"))]
    g = Graph((2,), nodes, "y").copy(dtype=dtype)
    g.requires_grad_(False)
    e = Fraction(float(torch.tensor(-eps, dtype=dtype)))
    z = [Fraction(0), Fraction(0)]
    for i in range(k):
        s = Fraction(1) if i % 2 == 0 else Fraction(1, 2)
        z = [s * (z[0] + z[1]) + e, s * (z[0] - z[1]) + e]
    x = torch.tensor([[-1.0, 0.0]], dtype=dtype)
    exact = -1 + z[0] + 1
    assert all(lb <= exact for lb in _lowers(g, InputBox(x, x.clone()), 1.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_pad_constant_beside_a_large_coefficient_is_kept(dtype: torch.dtype) -> None:
    """y = [BIG, 1]·pad(x, −1) at x = 0 is exactly −1: the padded entries' sum is taken alone, not as Σ A − Σ inner
    (which lost the 1 beside BIG)."""
    big = 1e8 if dtype == torch.float32 else 1e17
    nodes = [("p", ops.Pad([(0, 1)], value=-1.0), (INPUT,)), ("d", _dense([[big, 1.0]], [0.0]), ("p",)), ("r", ops.Relu(), ("d",)),
             ("o", _dense([[1.0]], [0.0]), ("d",))]
    g = Graph((1,), nodes, "o").copy(dtype=dtype)
    g.requires_grad_(False)
    x = torch.zeros(1, 1, dtype=dtype)
    assert all(lb <= -1 for lb in _lowers(g, InputBox(x, x.clone())))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_coefficients_that_underflow_are_paid_for(dtype: torch.dtype) -> None:
    """y = w2·relu(w1·x) with w1 = −w2 = 2^-75 (float32) or 2^-540 (float64) and x = 2^100 or 2^1000: the product
    w2·w1 underflows to 0 in the backward pass, so the bound must carry underflow's absolute error."""
    e, xe = (-75, 100) if dtype == torch.float32 else (-540, 1000)
    w1, w2, xv = 2.0**e, -(2.0**e), 2.0**xe
    nodes = [("d1", _dense([[w1]], [0.0]), (INPUT,)), ("r", ops.Relu(), ("d1",)), ("d2", _dense([[w2]], [0.0]), ("r",))]
    g = Graph((1,), nodes, "d2").copy(dtype=dtype)
    g.requires_grad_(False)
    x = torch.full((1, 1), xv, dtype=dtype)
    exact_min = Fraction(w2) * Fraction(w1) * Fraction(xv)  # decreasing in x: at the upper end of either box
    for box in (InputBox(x, x.clone()), InputBox(x * 0.5, x.clone())):
        assert all(lb <= exact_min for lb in _lowers(g, box))


# --------------------------------------------------------------------- subnormal numbers times large coefficients
# Found by a second review. Halving the smallest subnormal gives 0, and a chord's intercept −s·l rounds to a
# subnormal: errors of 2^-1075 that a weight of 2^1000 makes visible. IBP is checked too (CROWN takes its floor).

ALL = ("ibp",) + METHODS


def _lowers_of(g: Graph, lo: torch.Tensor, hi: torch.Tensor) -> list[Fraction]:
    dt = lo.dtype
    spec = LinearSpec(torch.ones(1, 1, 1, dtype=dt), torch.zeros(1, 1, dtype=dt), [[0]])
    with torch.no_grad():
        return [Fraction(float(get_method(m)(g, InputBox(lo, hi), spec).lower[0, 0])) for m in ALL]


def _subnormal(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_relu_over_subnormal_bounds_before_a_huge_weight(dtype: torch.dtype) -> None:
    """y = −2^k·relu(x), x ∈ [−3d, 2d] and x ∈ [0, d] (d the smallest subnormal): the chord's intercept and IBP's
    halved inputs round by a subnormal, which the weight scales."""
    d, w = _subnormal(dtype), -(2.0 ** (100 if dtype == torch.float32 else 1000))
    nodes = [("r", ops.Relu(), (INPUT,)), ("o", _dense([[w]], [0.0]), ("r",))]
    g = Graph((1,), nodes, "o").copy(dtype=dtype)
    g.requires_grad_(False)
    for a, b in ((-3, 2), (0, 1)):
        lo, hi = torch.full((1, 1), a * d, dtype=dtype), torch.full((1, 1), b * d, dtype=dtype)
        assert all(lb <= Fraction(w) * Fraction(float(hi)) for lb in _lowers_of(g, lo, hi))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_subnormal_weight_before_a_huge_input(dtype: torch.dtype) -> None:
    """y = −relu(d·x) at x = 2^k: IBP's pre-halved weights made d/2 = 0, so the ReLU was relaxed over [~0, ~0]."""
    d, xv = _subnormal(dtype), 2.0 ** (100 if dtype == torch.float32 else 1000)
    nodes = [("a", _dense([[d]], [0.0]), (INPUT,)), ("r", ops.Relu(), ("a",)), ("o", _dense([[-1.0]], [0.0]), ("r",))]
    g = Graph((1,), nodes, "o").copy(dtype=dtype)
    g.requires_grad_(False)
    x = torch.full((1, 1), xv, dtype=dtype)
    assert all(lb <= -Fraction(d) * Fraction(xv) for lb in _lowers_of(g, x, x.clone()))


def test_a_pad_value_float32_cannot_hold() -> None:
    """Pad prepends 2^-160 (0 in float32) before a weight of −2^100 in a float32 graph: exactly −2^-60."""
    v, w = 2.0**-160, -(2.0**100)
    nodes = [("p", ops.Pad([(1, 0)], v), (INPUT,)), ("o", _dense([[w, 0.0]], [0.0]), ("p",))]
    g = Graph((1,), nodes, "o").copy(dtype=torch.float32)
    g.requires_grad_(False)
    lo, hi = torch.zeros(1, 1), torch.ones(1, 1)
    assert all(lb <= Fraction(w) * Fraction(v) for lb in _lowers_of(g, lo, hi))


@pytest.mark.parametrize("scale", [-1, 1])
@pytest.mark.parametrize("norm", ["2", "1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dual_norms_of_tiny_weights_do_not_underflow(dtype: torch.dtype, norm: str, scale: int) -> None:
    """min of w·x over the unit L2 (or L1) ball is −‖w‖₂ (−max|w_i|) exactly; with w_i = 2^-80 (float32) or 2^-600
    (float64) the squares underflow to 0, so an unscaled norm claimed the minimum was −tiny instead (unsound); with
    2^80 or 2^600 they overflow, and the bound was −inf (vacuous). The ReLU the output does not use also checks that
    alpha-CROWN stops when no slope reaches the bound (it raised before)."""
    e = scale * (80 if dtype == torch.float32 else 600)
    w = 2.0**e
    nodes = [("d", _dense([[w, w, w, w]], [0.0]), (INPUT,)), ("r", ops.Relu(), ("d",)), ("o", _dense([[1.0]], [0.0]), ("d",))]
    g = Graph((4,), nodes, "o").copy(dtype=dtype)
    g.requires_grad_(False)
    x = torch.zeros(1, 4, dtype=dtype)
    box = ball(x, 1.0, (-4.0, 4.0), norm)
    spec = LinearSpec(torch.ones(1, 1, 1, dtype=dtype), torch.zeros(1, 1, dtype=dtype), [[0]])
    exact_min = -2 * Fraction(w) if norm == "2" else -Fraction(w)
    lowers = {m: Fraction(float(get_method(m)(g, box, spec).lower[0, 0])) for m in ALL}
    assert all(lb <= exact_min for lb in lowers.values()), lowers
    assert all(lb >= 4 * exact_min for lb in lowers.values()), lowers  # not vacuous: about the norm, not −inf


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_a_folded_spec_row_that_underflows_is_covered_when_denormals_are_flushed(norm: str, shared: bool) -> None:
    """y0 − y1 with w0 − w1 ≈ −9e-313 (subnormal) and x = 1e300: where denormals are flushed, fl(C·W) reads 0 and
    IBP's fold took the row for the constant 0, above its exact value −9.1e-13 at the centre (every method took
    IBP's bound where it was higher). The fold now allows (k + 1)·tiny per entry times ‖x‖₁."""
    from extreme_cases import denormals

    w0 = 1e-300
    w1 = w0 * (1 + 2**-40)  # exact in float64
    g = Graph((1,), [("d", ops.Dense(torch.tensor([[w0], [w1]], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)),
                      (INPUT,))], "d")
    x = torch.tensor([[1e300]], dtype=torch.float64)
    exact = (Fraction(w0) - Fraction(w1)) * Fraction(1e300)  # the row's value at the centre, inside every ball
    spec = margin_spec(torch.tensor([0]), 2, torch.float64) if shared else \
        LinearSpec(torch.tensor([[[1.0, -1.0]]], dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64), [[0]])
    g.requires_grad_(False)
    with denormals(True):
        for method in ("ibp", "crown-ibp", "crown", "alpha-crown"):
            lower = float(get_method(method)(g, ball(x, 1e-300, (-1e308, 1e308), norm), spec, alpha_iters=2).lower[0, 0].detach())
            assert Fraction(lower) <= exact, (method, lower)
