"""L2 and L1 balls (`--norm 2|1`): sound bounds (points sampled in the ball ∩ box, the L1 ball's vertices and
points on the L2 sphere included), bounds tighter than the L∞ box's, the attack's steps and projections stay
in the set, and certify reports the norm end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st
from soundness import assert_contains, deep_graphs, identity_spec
from srp_audit_cli.main import main

from srp_audit.attack import _into_ball, pgd
from srp_audit.bounds import METHODS
from srp_audit.certify import CertifyOptions, certify
from srp_audit.data import load_samples
from srp_audit.formats import load_model
from srp_audit.report.compare import incomparable
from srp_audit.spec import ball, inner_ball, inside_ball, margin_spec

DEEP = ["mlp_relu", "mlp_tanh", "cnn_patches", "resnet_merge", "pools_smooth"]


def sample_ball(x: torch.Tensor, eps: float, p: str, n: int, dom: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """(N, n, *shape) points of the p-ball ∩ domain: vertices (L1) or sphere points (L2), then interior points,
    clipped to the domain (clipping towards a centre inside the domain keeps a point in the ball)."""
    N, shape = x.shape[0], x.shape[1:]
    k = math.prod(shape)
    if p == "1":
        idx = torch.randint(0, k, (N, n), generator=gen)
        sign = torch.where(torch.rand((N, n), generator=gen) < 0.5, -1.0, 1.0).double()
        d = torch.zeros((N, n, k), dtype=torch.float64).scatter_(2, idx.unsqueeze(2), (sign * eps).unsqueeze(2))
        e = -torch.log(torch.rand((N, n, k), generator=gen, dtype=torch.float64))
        inner = e / e.sum(2, keepdim=True) * torch.where(torch.rand((N, n, k), generator=gen) < 0.5, -1.0, 1.0).double()
        inner = inner * eps * torch.rand((N, n, 1), generator=gen, dtype=torch.float64)
        d = torch.where(torch.arange(n).reshape(1, n, 1) < n // 2, d, inner)
    else:
        g = torch.randn((N, n, k), generator=gen, dtype=torch.float64)
        g = g / g.norm(dim=2, keepdim=True)
        r = torch.where(torch.arange(n).reshape(1, n, 1) < n // 2, torch.ones(1, dtype=torch.float64),
                        torch.rand((N, n, 1), generator=gen, dtype=torch.float64) ** (1 / k))
        d = g * r * eps * (1 - 1e-12)
    pts = x.unsqueeze(1) + d.reshape((N, n) + shape)
    return pts.clamp(dom[0], dom[1])


@pytest.mark.parametrize("norm", ["2", "1"])
@pytest.mark.parametrize("name", DEEP)
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_bounds_over_lp_balls_contain_samples(name: str, norm: str, seed: int) -> None:
    graph = deep_graphs(seed % 1000)[name].copy(dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((2,) + graph.input_shape, generator=gen, dtype=torch.float64) * 2 - 1
    eps = 0.05 + torch.rand((), generator=gen).item() * 0.5
    dom = (-1.2, 1.2)
    box = ball(x, eps, dom, norm)
    k = graph.num_classes
    pts = sample_ball(x, eps, norm, 400, dom, gen)
    with torch.no_grad():
        values = graph.logits(pts.reshape((-1,) + graph.input_shape)).reshape(2, 400, -1)
    for method in ("ibp", "crown-ibp", "crown", "alpha-crown"):
        lb = METHODS[method](graph, box, identity_spec(k, 2, torch.float64), alpha_iters=4).lower.detach()
        assert_contains(values, lb[:, :k], -lb[:, k:], f"{method} {name} L{norm}")


@pytest.mark.parametrize("norm", ["2", "1"])
def test_lp_ball_bounds_beat_the_bounding_box(norm: str) -> None:
    """Not vacuous: the dual-norm rules are used (an L1/L2 ball is much smaller than its L∞ bounding box)."""
    graph = deep_graphs(1)["cnn_patches"].copy(dtype=torch.float64)
    x = torch.rand((2,) + graph.input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    k = graph.num_classes
    spec = identity_spec(k, 2, torch.float64)
    for method in ("ibp", "crown"):
        with torch.no_grad():
            lp = METHODS[method](graph, ball(x, 0.3, (-9, 9), norm), spec).lower
            box = METHODS[method](graph, ball(x, 0.3, (-9, 9), "inf"), spec).lower
        assert bool((lp >= box).all()) and float((lp - box).mean()) > 0.1


@pytest.mark.parametrize("norm", ["2", "1"])
def test_projection_lands_in_the_ball_and_box(norm: str) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(5, 30, generator=gen, dtype=torch.float64)
    box = inner_ball(x, 0.4, (0.0, 1.0), norm)
    z = x + torch.randn(5, 30, generator=gen, dtype=torch.float64)
    y = _into_ball(z, box.lower, box.upper, box.ball)
    assert bool(inside_ball(y, x, 0.4, (0.0, 1.0), norm).all())
    if norm == "1":  # the L1 projection is the nearest point of the ball: no ball point is nearer to z (unclipped)
        w = _into_ball(z, torch.full_like(z, -9), torch.full_like(z, 9), box.ball)
        assert torch.allclose((w - x).abs().sum(1), box.ball.eps, rtol=1e-9)


@pytest.mark.parametrize("norm", ["2", "1"])
def test_the_attack_finds_counterexamples_inside_the_ball(norm: str) -> None:
    g = load_model(str(FIXTURES / "mnist_mlp.onnx")).eval()
    s = load_samples(str(FIXTURES / "mnist_mlp.samples.npz"), g.input_shape, 10, (0.0, 1.0), 16)
    x, y = s.x, s.y.long()
    eps = 3.0 if norm == "2" else 20.0
    box = inner_ball(x, eps, (0.0, 1.0), norm)
    res = pgd(g, box, margin_spec(y, 10, torch.float32), steps=40, restarts=1, start=x)
    assert int(res.found.sum()) >= 8
    assert bool(inside_ball(res.points, x, eps, (0.0, 1.0), norm).all())


def test_certify_in_l2_reports_the_norm_and_radii_at_least_the_linf_ones(tmp_path) -> None:
    g = load_model(str(FIXTURES / "mnist_mlp.onnx"))
    data = np.load(FIXTURES / "mnist_mlp.samples.npz")
    s = load_samples(str(FIXTURES / "mnist_mlp.samples.npz"), g.input_shape, 10, (0.0, 1.0), 6)
    x, y = s.x, s.y.long()
    linf = certify(g, x, y, CertifyOptions(eps=0.02, radius_tol=1e-3))
    l2 = certify(g, x, y, CertifyOptions(eps=0.02, radius_tol=1e-3, norm="2"))
    for a, b in zip(linf.samples, l2.samples):  # the L2 ball of radius r lies inside the L∞ ball of radius r
        assert b.certified_radius >= a.certified_radius - 2e-3
        if b.attack_radius is not None:
            assert b.certified_radius <= b.attack_radius
    out = tmp_path / "r.json"
    np.savez(tmp_path / "d.npz", x=data["x"][:6], y=data["y"][:6])
    r = CliRunner().invoke(main, ["certify", str(FIXTURES / "mnist_mlp.onnx"), "--eps", "0.5", "--norm", "2", "--data",
                                  str(tmp_path / "d.npz"), "-o", str(out), "--no-radius"])
    assert r.exit_code == 0, r.output
    assert "(L2)" in r.output
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 3 and doc["run"]["norm"] == "2" and doc["summary"]["norm"] == "2"
    other = json.loads(out.read_text())
    other["summary"]["norm"] = "inf"
    assert "different norms" in incomparable(doc, other)
