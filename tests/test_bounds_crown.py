"""CROWN, CROWN-IBP and alpha-CROWN: sampling soundness for every rule (outputs and every refined
intermediate bound), exactness checks against scipy's MILP (HiGHS) and the triangle-relaxation LP, and
consistency between methods."""

from __future__ import annotations

import types
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from soundness import assert_contains, deep_graphs, evaluate, identity_spec, op_graphs, random_box, random_mlp, sample_box

from srp_audit import ops
from srp_audit.bounds import METHODS
from srp_audit.bounds.alpha import alpha_crown_bounds
from srp_audit.bounds.crown import crown_bounds, spec_backward, spec_form
from srp_audit.bounds.ibp import interval_bounds
from srp_audit.ir.graph import INPUT, Graph
from srp_audit.spec import InputBox

DEEP = sorted(deep_graphs(0))
OPS = sorted(op_graphs(0))


def _output_bounds(lb: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return lb[:, :k], -lb[:, k:]


def test_every_ir_op_has_a_crown_rule() -> None:
    assert all(t.supports("crown") for t in ops.ALL_OPS)
    covered = {type(g.node(n)) for g in deep_graphs(0).values() for n in g.order} | {
        type(g.node(g.output)) for g in op_graphs(0).values()}
    assert set(ops.ALL_OPS) - {ops.BatchNorm} <= covered | {ops.Identity}


@pytest.mark.parametrize("method", ["crown-ibp", "crown", "alpha-crown"])
@pytest.mark.parametrize("op", OPS)
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_rule_contains_samples(op: str, method: str, seed: int) -> None:
    graph = op_graphs(seed)[op].copy(dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    lower, upper = random_box(graph.input_shape, 3, gen, torch.float64)
    k = graph.num_classes
    lb = METHODS[method](graph, InputBox(lower, upper), identity_spec(k, 3, torch.float64), alpha_iters=5).lower
    lo, hi = _output_bounds(lb.detach(), k)
    values = evaluate(graph.logits, sample_box(lower, upper, 1000, gen))
    assert_contains(values, lo, hi, f"{method} {op}")


@pytest.mark.parametrize("name", DEEP)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_deep_graphs_outputs_and_refined_intermediates_contain_samples(name: str, seed: int) -> None:
    graph = deep_graphs(seed)[name].copy(dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    lower, upper = random_box(graph.input_shape, 3, gen, torch.float64)
    lower, upper = lower * 0.3, upper * 0.3  # a mix of stable and unstable neurons
    box = InputBox(lower, upper)
    points = sample_box(lower, upper, 1000, gen)
    flat = points.reshape((-1,) + graph.input_shape)
    with torch.no_grad():
        values = graph.run_all(flat)
    k = graph.num_classes
    spec = identity_spec(k, 3, torch.float64)
    for intermediate in ("ibp", "crown"):
        res = crown_bounds(graph, box, spec, intermediate, budget=1 << 12)  # tiny budget: exercise chunking
        for node, (lo, hi) in res.ctx.bounds.items():
            if node == INPUT:
                continue
            v = values[node].reshape((3, 1000) + values[node].shape[1:])
            assert_contains(v, lo, hi, f"{name}: {intermediate} bound of node {node}")
        assert_contains(values[graph.output].reshape(3, 1000, -1), *_output_bounds(res.lower, k), f"{name} {intermediate}")
    res = alpha_crown_bounds(graph, box, spec, iters=8)  # also optimises fully connected intermediate bounds
    for node, (lo, hi) in res.ctx.bounds.items():
        if node != INPUT:
            v = values[node].reshape((3, 1000) + values[node].shape[1:])
            assert_contains(v, lo, hi, f"{name}: alpha bound of node {node}")
    assert_contains(values[graph.output].reshape(3, 1000, -1), *_output_bounds(res.lower, k), f"{name} alpha")


@pytest.mark.parametrize("name", DEEP)
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_crown_with_prior_bounds_from_a_larger_box_contains_samples(name: str, seed: int) -> None:
    """CROWN handed the intermediate bounds of a pass over a larger box (`prior`, intersected before refining):
    every node's bounds and the outputs still contain sampled points (corners included) of the smaller box, and
    every node's bounds lie inside the prior's."""
    graph = deep_graphs(seed)[name].copy(dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    lower, upper = random_box(graph.input_shape, 3, gen, torch.float64)
    c, r = (lower + upper) * 0.15, (upper - lower) * 0.15
    box, big = InputBox(c - r, c + r), InputBox(c - 1.5 * r, c + 1.5 * r)
    k = graph.num_classes
    spec = identity_spec(k, 3, torch.float64)
    outer = crown_bounds(graph, big, spec, "crown", budget=1 << 12)
    prior = {n: b for n, b in outer.ctx.bounds.items() if n != INPUT}
    res = crown_bounds(graph, box, spec, "crown", budget=1 << 12, prior=prior)
    points = sample_box(box.lower, box.upper, 1000, gen)
    with torch.no_grad():
        values = graph.run_all(points.reshape((-1,) + graph.input_shape))
    for node, (lo, hi) in res.ctx.bounds.items():
        if node == INPUT:
            continue
        assert_contains(values[node].reshape((3, 1000) + values[node].shape[1:]), lo, hi, f"{name}: bound of {node}")
        assert (lo >= prior[node][0]).all() and (hi <= prior[node][1]).all(), node
    assert_contains(values[graph.output].reshape(3, 1000, -1), *_output_bounds(res.lower, k), f"{name} with prior")


@pytest.mark.parametrize("name", DEEP)
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_spec_form_bounds_every_box_inside_its_own(name: str, seed: int) -> None:
    """The radius search re-concretises a refuted CROWN pass's linear bound on smaller balls (no new pass):
    on the box itself it equals the pass's bound, and on random boxes inside it, it stays below sampled values."""
    graph = deep_graphs(seed)[name].copy(dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    lower, upper = random_box(graph.input_shape, 3, gen, torch.float64)
    lower, upper = lower * 0.3, upper * 0.3
    box = InputBox(lower, upper)
    k = graph.num_classes
    spec = identity_spec(k, 3, torch.float64)
    for intermediate in ("ibp", "crown"):
        ctx = crown_bounds(graph, box, spec, intermediate).ctx
        form = spec_form(ctx, spec)
        ref = spec_backward(ctx, spec, box)  # the same value by another path (summation orders may differ by CPU)
        torch.testing.assert_close(form.lower(box), ref, rtol=1e-12, atol=1e-12 * float(ref.abs().max()))
        for shrink in (0.0, 0.5, 1.0):
            t0, t1 = torch.rand(lower.shape, generator=gen, dtype=torch.float64), torch.rand(lower.shape, generator=gen, dtype=torch.float64)
            a = lower + (upper - lower) * torch.minimum(t0, t1) * shrink
            b = upper - (upper - lower) * (1 - torch.maximum(t0, t1)) * shrink
            values = evaluate(graph.logits, sample_box(a, b, 600, gen))
            assert_contains(values, *_output_bounds(form.lower(InputBox(a, b)), k), f"{name} {intermediate} inner box")


def test_sampler_catches_unsound_crown() -> None:
    """Not vacuous: the CROWN bound of an affine graph is exact, so nudging it inward is caught."""
    graph = op_graphs(4)["Dense"].copy(dtype=torch.float64)
    gen = torch.Generator().manual_seed(4)
    lower, upper = random_box(graph.input_shape, 3, gen, torch.float64)
    lb = crown_bounds(graph, InputBox(lower, upper), identity_spec(5, 3, torch.float64), "crown").lower
    lo, hi = _output_bounds(lb, 5)
    values = evaluate(graph.logits, sample_box(lower, upper, 1000, gen))
    with pytest.raises(AssertionError):
        assert_contains(values, lo + 1e-3 * (hi - lo), hi, "nudged")


def test_crown_is_never_looser_than_ibp_and_alpha_never_looser_than_crown(fixture_models) -> None:
    from conftest import FIXTURES

    from srp_audit.data import load_samples
    from srp_audit.spec import linf_ball, margin_spec

    g = fixture_models["mnist_mlp"].copy(dtype=torch.float64)
    g.requires_grad_(False)
    s = load_samples(str(FIXTURES / "mnist_mlp.samples.npz"), g.input_shape, 10)
    box = linf_ball(s.x[:16].double(), 0.015, (0.0, 1.0))
    spec = margin_spec(s.y[:16], 10)
    with torch.no_grad():
        ibp = interval_bounds(g, box, spec).lower
        cibp = METHODS["crown-ibp"](g, box, spec).lower
        crown = METHODS["crown"](g, box, spec).lower
    alpha = METHODS["alpha-crown"](g, box, spec, alpha_iters=10).lower
    assert torch.all(cibp >= ibp) and torch.all(crown >= ibp) and torch.all(alpha >= crown)
    assert (crown > ibp + 1e-3).any() and (alpha > crown + 1e-6).any()


def test_relu_refinement_skips_the_lower_pass_of_neurons_its_upper_pass_shows_dead(fixture_models, monkeypatch) -> None:
    """Before a ReLU, CROWN bounds upper bounds first and skips the lower-bound rows of neurons whose upper bound
    it shows ≤ 0: on the CNN fixture that is fewer rows, the same unstable neurons, and bounds equal to refining
    both sides wherever a neuron is live — dead ones keep IBP's lower bound, which moves later bounds only in the
    last bits (through the rounding magnitudes), and never tighter."""
    from conftest import FIXTURES

    import srp_audit.bounds.crown as crown
    from srp_audit.data import load_samples
    from srp_audit.spec import linf_ball, margin_spec

    g = fixture_models["mnist_cnn"].copy(dtype=torch.float64)
    g.requires_grad_(False)
    s = load_samples(str(FIXTURES / "mnist_cnn.samples.npz"), g.input_shape, 10)
    box, spec = linf_ball(s.x[:4].double(), 0.05, (0.0, 1.0)), margin_spec(s.y[:4], 10)
    rows, original = [0], crown._start

    def counting_start(ctx, target, idx, signs=(1, -1)):
        rows[0] += idx.shape[1] * len(signs)
        return original(ctx, target, idx, signs)

    monkeypatch.setattr(crown, "_start", counting_start)
    runs = {}
    for skip in (True, False):
        monkeypatch.setattr(ops.Relu, "zero_below_zero", skip)
        rows[0] = 0
        with torch.no_grad():
            res = crown.crown_bounds(g, box, spec)
        runs[skip] = (rows[0], res)
    (n_skip, fast), (n_both, full) = runs[True], runs[False]
    assert n_skip < 0.95 * n_both, (n_skip, n_both)
    assert torch.equal(fast.unstable, full.unstable)
    for _, pre in crown.relu_inputs(g):
        (lo_f, hi_f), (lo, hi) = fast.ctx.bounds[pre], full.ctx.bounds[pre]
        assert (hi_f >= hi).all() and torch.allclose(hi_f, hi, rtol=0, atol=1e-10) and (lo_f <= lo).all()
        assert torch.allclose(lo_f[hi > 0], lo[hi > 0], rtol=0, atol=1e-10)
    assert (fast.lower <= full.lower).all() and torch.allclose(fast.lower, full.lower, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------------ exact oracles


def _mip(graph: Graph, lo: np.ndarray, hi: np.ndarray, c: np.ndarray, bounds: dict, relax_binaries: bool):
    """min c·y over the box for a Dense/ReLU chain: big-M MILP (exact) or, with `relax_binaries`, the LP of
    the triangle relaxation, both using the given pre-activation bounds. Returns (value, x*)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    layers = [(n, graph.node(n)) for n in graph.order]
    # variables: x, then per hidden layer (z_pre, z_post, delta), then the output
    integrality = []
    lb_v, ub_v = [], []

    def new(k, lo_, hi_, integer=False):
        start = len(lb_v)
        lb_v.extend(lo_)
        ub_v.extend(hi_)
        integrality.extend([1 if integer else 0] * k)
        return list(range(start, start + k))

    x = new(len(lo), lo, hi)
    cur = x
    rows = []
    for name, node in layers:
        if isinstance(node, ops.Dense):
            W, b = node.weight.detach().numpy(), node.bias.detach().numpy()
            l, u = bounds[name]
            z = new(W.shape[0], l, u)
            for i in range(W.shape[0]):
                rows.append(({z[i]: 1.0, **{cur[j]: -W[i, j] for j in range(W.shape[1])}}, b[i], b[i]))
            cur = z
        else:  # ReLU on `cur` with bounds of its input
            l, u = bounds[graph.inputs_of[name][0]]
            a = new(len(cur), np.maximum(l, 0), np.maximum(u, 0))
            d = new(len(cur), [0] * len(cur), [1] * len(cur), integer=not relax_binaries)
            for i in range(len(cur)):
                if l[i] >= 0:
                    rows.append(({a[i]: 1.0, cur[i]: -1.0}, 0.0, 0.0))
                elif u[i] <= 0:
                    rows.append(({a[i]: 1.0}, 0.0, 0.0))
                else:  # a ≥ z, a ≤ z − l(1 − d), a ≤ u·d  (the LP relaxation of d gives the triangle)
                    rows.append(({a[i]: 1.0, cur[i]: -1.0}, 0.0, np.inf))
                    rows.append(({a[i]: 1.0, cur[i]: -1.0, d[i]: -l[i]}, -np.inf, -l[i]))
                    rows.append(({a[i]: 1.0, d[i]: -u[i]}, -np.inf, 0.0))
            cur = a
    nv = len(lb_v)
    A = np.zeros((len(rows), nv))
    rl, ru = np.zeros(len(rows)), np.zeros(len(rows))
    for r, (coef, l_, u_) in enumerate(rows):
        for j, v in coef.items():
            A[r, j] = v
        rl[r], ru[r] = l_, u_
    cost = np.zeros(nv)
    cost[cur] = c
    res = milp(cost, constraints=LinearConstraint(A, rl, ru), integrality=np.array(integrality),
               bounds=Bounds(np.array(lb_v), np.array(ub_v)), options={"mip_rel_gap": 1e-9})
    assert res.status == 0, res.message
    return res.fun, res.x[x]


@pytest.mark.parametrize("seed", range(6))
def test_bounds_below_exact_milp_and_crown_below_triangle_lp(seed: int) -> None:
    pytest.importorskip("scipy.optimize")
    graph = random_mlp(seed)
    graph.requires_grad_(False)
    gen = torch.Generator().manual_seed(100 + seed)
    centre = torch.rand(1, 4, generator=gen, dtype=torch.float64) * 2 - 1
    box = InputBox(centre - 0.4, centre + 0.4)
    c = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    from srp_audit.spec import LinearSpec

    spec = LinearSpec(c.view(1, 1, 3), torch.zeros(1, 1, dtype=torch.float64), [[0]])
    with torch.no_grad():
        res = crown_bounds(graph, box, spec, "crown")
        ibp = interval_bounds(graph, box, spec).lower
    alpha_res = alpha_crown_bounds(graph, box, spec, iters=30, lr=0.2)
    alpha = alpha_res.lower
    bounds = {n: (res.ctx.bounds[n][0][0].numpy(), res.ctx.bounds[n][1][0].numpy()) for n in graph.order}
    # alpha-CROWN tightens the fully connected intermediate bounds: still within CROWN's, and its final bound is
    # a feasible dual of the triangle LP over its own intermediate bounds
    alpha_bounds = {n: (alpha_res.ctx.bounds[n][0][0].numpy(), alpha_res.ctx.bounds[n][1][0].numpy()) for n in graph.order}
    for n in graph.order:
        assert (alpha_bounds[n][0] >= bounds[n][0]).all() and (alpha_bounds[n][1] <= bounds[n][1]).all()
    lo, hi = box.lower[0].numpy(), box.upper[0].numpy()
    exact, x_star = _mip(graph, lo, hi, c.numpy(), bounds, relax_binaries=False)
    lp, _ = _mip(graph, lo, hi, c.numpy(), bounds, relax_binaries=True)
    lp_alpha, _ = _mip(graph, lo, hi, c.numpy(), alpha_bounds, relax_binaries=True)
    # the margin actually achieved at the MILP's minimiser: a true value, no solver tolerance involved
    achieved = float(graph.logits(torch.from_numpy(x_star).view(1, -1).clamp(box.lower, box.upper)) @ c)
    for name, lb in (("ibp", ibp), ("crown", res.lower), ("alpha-crown", alpha)):
        assert float(lb) <= achieved, f"{name} bound {float(lb)} exceeds a value the network attains ({achieved})"
    assert abs(achieved - exact) <= 1e-6 * (1 + abs(exact))
    # CROWN is a feasible dual of the triangle LP over the same intermediate bounds: ≤ LP ≤ exact (solver tol.)
    assert float(res.lower) <= lp + 1e-7 and float(alpha) <= lp_alpha + 1e-7 and lp <= lp_alpha + 1e-7 and lp_alpha <= exact + 1e-7
    assert float(alpha) >= float(res.lower) >= float(ibp)


def test_alpha_crown_stops_at_its_deadline_with_the_crown_bound() -> None:
    """A deadline already passed stops the slope optimisation before its first step: the result is CROWN's
    bound exactly (a valid bound, returned in time), while without a deadline the optimisation improves it."""
    import time

    graph = random_mlp(3)
    graph.requires_grad_(False)
    box = InputBox(torch.full((1, 4), -0.5, dtype=torch.float64), torch.full((1, 4), 0.5, dtype=torch.float64))
    spec = identity_spec(3, 1, torch.float64)
    with torch.no_grad():
        crown = crown_bounds(graph, box, spec, "crown")
    late = alpha_crown_bounds(graph, box, spec, iters=30, base=crown, deadline=time.perf_counter() - 1.0)
    assert torch.equal(late.lower, crown.lower)
    free = alpha_crown_bounds(graph, box, spec, iters=30, base=crown)
    assert bool((free.lower >= crown.lower).all()) and bool((free.lower > crown.lower).any())


# ------------------------------------------------------------------------------------------ competition models

from conftest import VNNCOMP  # noqa: E402

VNN_MODELS = sorted(VNNCOMP.glob("*/onnx/*.onnx")) if VNNCOMP.exists() else []


@pytest.mark.skipif(not VNN_MODELS, reason="../shared/benchmarks/vnncomp is absent")
@pytest.mark.parametrize("path", VNN_MODELS, ids=[p.name for p in VNN_MODELS])
def test_crown_below_sampled_margins_on_vnncomp_models(path) -> None:
    from srp_audit.formats import load_model
    from srp_audit.spec import margin_spec

    graph = load_model(str(path)).copy(dtype=torch.float64)
    graph.requires_grad_(False)
    gen = torch.Generator().manual_seed(5)
    n = 2
    x = torch.rand((n,) + graph.input_shape, generator=gen, dtype=torch.float64)
    eps = 0.02 if "mnist" in str(path) else 0.002
    box = InputBox(x - eps, x + eps)
    with torch.no_grad():
        y = graph.logits(x).argmax(dim=1)
        spec = margin_spec(y, graph.num_classes)
        res = crown_bounds(graph, box, spec, "crown")
        points = sample_box(box.lower, box.upper, 200, gen)
        logits = graph.logits(points.reshape((-1,) + graph.input_shape)).reshape(n, 200, -1)
    margins = torch.einsum("nsk,npk->nps", spec.C, logits)
    assert_contains(margins, res.lower, torch.full_like(res.lower, torch.inf), f"CROWN on {path.name}")


@pytest.mark.parametrize("seed", range(4))
def test_beta_crown_bounds_hold_on_their_subdomain(seed: int) -> None:
    """Fix a random half of the unstable ReLUs active/inactive; the beta-CROWN bound (optimised slopes and
    multipliers) must hold at every sampled point that satisfies the pattern."""
    from srp_audit.bab import _bound_domains
    from srp_audit.bounds.crown import relu_inputs as _relu_inputs
    from srp_audit.spec import LinearSpec

    graph = random_mlp(seed, sizes=(3, 12, 12, 2))
    graph.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    lo = torch.rand(1, 3, generator=gen, dtype=torch.float64) - 1.0
    box = InputBox(lo, lo + 1.0)
    with torch.no_grad():
        base = crown_bounds(graph, box, identity_spec(2, 1, torch.float64), "crown")
    anchor = box.lower + torch.rand(box.lower.shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        anchor_values = graph.run_all(anchor)
    splits = {}  # fix half of the unstable neurons to the phase they take at a random point of the box
    for _, pre in _relu_inputs(graph):
        l, u = base.ctx.bounds[pre]
        unstable = ((l < 0) & (u > 0)).flatten()
        pick = unstable & (torch.rand(l.numel(), generator=gen) < 0.5)
        phase = torch.where(anchor_values[pre].flatten() >= 0, 1, -1).to(torch.int8)
        sign = torch.where(pick, phase, torch.zeros_like(phase))
        splits[pre] = sign.reshape((1,) + graph.shapes[pre])
    assert sum(int((s != 0).sum()) for s in splits.values()) > 0, "the test needs at least one split"
    spec = identity_spec(2, 1, torch.float64)
    lb, ctx, empty, _ = _bound_domains(graph, box, LinearSpec(spec.C, spec.d, spec.groups), splits)
    points = torch.cat([anchor, sample_box(box.lower, box.upper, 4000, gen)[0]])  # the anchor obeys the pattern
    with torch.no_grad():
        values = graph.run_all(points)
    keep = torch.ones(points.shape[0], dtype=torch.bool)
    for pre, sign in splits.items():
        z = values[pre].reshape(points.shape[0], -1)
        s = sign.reshape(1, -1).double()
        keep &= ((z * s) >= 0).all(dim=1) | (s == 0).all(dim=1)
    assert not empty.any(), "a pattern taken from a point of the box was declared infeasible"
    out = values[graph.output][keep]
    lo_b, hi_b = lb[0, :2], -lb[0, 2:]
    assert torch.all(out >= lo_b) and torch.all(out <= hi_b), "a beta-CROWN bound fails on its own sub-domain"


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), stride=st.sampled_from(["1", "2", "kernel"]), dilation=st.sampled_from([1, 2]),
       groups=st.sampled_from([1, 2]), dtype=st.sampled_from([torch.float64, torch.float32]), extra=st.integers(-1, 1),
       channels=st.sampled_from([1, 3, 6]))
def test_patch_conv_transpose_matches_torch(seed: int, stride: str, dilation: int, groups: int, dtype, extra: int,
                                            channels: int) -> None:
    """CROWN's own transpose of a convolution (in float64: products per kernel offset, or one product and strided
    additions, or a permutation when the windows tile the output) computes what torch's conv_transpose2d does,
    cut or padded to out_hw."""
    import torch.nn.functional as F

    from srp_audit.kernel.patches import conv_transpose

    gen = torch.Generator().manual_seed(seed)
    kh, kw = 1 + seed % 3, 1 + (seed // 3) % 4
    s = (kh, kw) if stride == "kernel" else (int(stride), int(stride))
    d = (1, 1) if stride == "kernel" else (dilation, dilation)
    x = torch.randn((3, 2 * groups, 1 + seed % 4, 2 + seed % 3), generator=gen, dtype=dtype)
    w = torch.randn((2 * groups, channels, kh, kw), generator=gen, dtype=dtype)
    ref = F.conv_transpose2d(x, w, None, s, 0, 0, groups, d)
    out_hw = (ref.shape[2] + extra, ref.shape[3] - extra)
    got = conv_transpose(x, w, s, d, groups, out_hw)
    want = F.pad(ref, (0, max(0, out_hw[1] - ref.shape[3]), 0, max(0, out_hw[0] - ref.shape[2])))[:, :, : out_hw[0], : out_hw[1]]
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-10 if dtype == torch.float64 else 1e-5, atol=1e-10 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("method", ["ibp", "crown-ibp", "crown", "alpha-crown"])
def test_an_overflowing_intermediate_never_gives_nan_or_a_false_bound(method: str) -> None:
    """exp overflows inside the box, so IBP's next layer computes ∞ − ∞: that NaN must neither come out as a bound
    nor reach a ReLU's relaxation (where a NaN interval reads as a dead neuron: a finite, wrong bound)."""
    g = torch.Generator().manual_seed(0)
    graph = Graph((2,), [("d0", ops.Dense(torch.tensor([[400.0, 0.0], [0.0, 1.0]]), torch.zeros(2)), (INPUT,)),
                         ("e", ops.Exp(), ("d0",)),
                         ("d1", ops.Dense(torch.tensor([[1.0, -1.0], [-1.0, 2.0], [1.0, 1.0]]), torch.zeros(3)), ("e",)),
                         ("r", ops.Relu(), ("d1",)),
                         ("d2", ops.Dense(torch.randn(2, 3, generator=g), torch.zeros(2)), ("r",))], "d2").double()
    graph.requires_grad_(False)
    lower = torch.tensor([[1.0, -1.0], [0.1, 0.0]], dtype=torch.float64)
    upper = torch.tensor([[2.0, 1.0], [0.2, 0.5]], dtype=torch.float64)  # sample 0 overflows exp (400·2 > 709)
    spec = identity_spec(2, 2, torch.float64)
    lb = METHODS[method](graph, InputBox(lower, upper), spec, alpha_iters=5).lower.detach()
    assert not bool(torch.isnan(lb).any()), f"{method}: NaN bound"
    values = evaluate(graph.logits, sample_box(lower, upper, 2000, g))
    finite = torch.isfinite(values).all(dim=2, keepdim=True)
    lo, hi = _output_bounds(lb, 2)
    below = torch.where(finite, lo.unsqueeze(1) - values, torch.zeros_like(values)).clamp(min=0)
    above = torch.where(finite, values - hi.unsqueeze(1), torch.zeros_like(values)).clamp(min=0)
    assert float(below.max()) == 0.0 and float(above.max()) == 0.0, f"{method}: a finite sampled value leaves the bounds"
    assert bool(torch.isfinite(lb[1]).all()), f"{method}: the sample without overflow should get finite bounds"


@pytest.mark.parametrize("grad", [False, True])
def test_sign_parts_are_a_clamps_values_and_gradients(grad: bool) -> None:
    """`split_signs` and `negative_part` (ReLUs, for cheap gradients) give exactly a clamp's parts, zeros and
    infinities included, and `negative_part` a clamp's gradient, also at 0 (alpha-CROWN's steps follow it)."""
    from srp_audit.kernel.backward import negative_part, split_signs

    g = torch.Generator().manual_seed(3)
    t = torch.cat([torch.randn(200, generator=g, dtype=torch.float64), torch.tensor([0.0, -0.0, 1e-300, -1e-300, -torch.inf])])
    a = t.clone().requires_grad_(grad)
    pos, neg = split_signs(a)
    assert torch.equal(pos, t.clamp(min=0)) and torch.equal(neg, t - t.clamp(min=0))
    assert torch.equal(negative_part(a), t.clamp(max=0))
    if grad:
        w = torch.randn(t.shape, generator=g, dtype=torch.float64)
        (got,) = torch.autograd.grad((negative_part(a) * w).sum(), a)
        b = t.clone().requires_grad_(True)
        (want,) = torch.autograd.grad((b.clamp(max=0) * w).sum(), b)
        assert torch.equal(got, want)


@pytest.mark.parametrize("shape, kernel, stride", [((40, 8, 6, 6), (8, 6, 3, 3), 1), ((40, 8, 6, 6), (8, 3, 4, 4), 2),
                                                   ((40, 8, 6, 6), (8, 6, 2, 2), 2)])
def test_conv_transpose_in_chunks_of_rows_equals_one_piece(monkeypatch, shape, kernel, stride) -> None:
    """Large float64 batches are transposed in chunks of rows that stay in cache (per-offset products, one product
    and strided additions, tiling windows): every row comes out as from one piece — to the last bits, not bit for
    bit: a BLAS may pick another kernel (and summation order) for another number of rows on another CPU."""
    import srp_audit.kernel.patches as patches

    gen = torch.Generator().manual_seed(sum(shape) + stride)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    w = torch.randn(kernel, generator=gen, dtype=torch.float64)
    whole = patches.conv_transpose(x, w, (stride, stride), (1, 1), 1)
    for budget in (1, 3 * 8 * 36 * 8):  # one row per chunk; a few rows per chunk, the last one short
        monkeypatch.setattr(patches, "PER_OFFSET_CHUNK", budget)
        monkeypatch.setattr(patches, "COLUMNS_CHUNK", budget)
        got = patches.conv_transpose(x, w, (stride, stride), (1, 1), 1)
        torch.testing.assert_close(got, whole, rtol=1e-13, atol=1e-13 * float(whole.abs().max()))


@pytest.mark.parametrize("shape, kernel, stride, dilation, out_hw", [
    ((5, 16, 4, 4), (16, 1, 4, 4), 2, 1, None), ((5, 32, 2, 2), (32, 16, 4, 4), 1, 1, None),
    ((5, 8, 3, 3), (8, 8, 3, 3), 1, 2, (6, 8)), ((5, 6, 3, 2), (6, 3, 2, 3), 2, 1, (8, 4))])
def test_unrolled_conv_transpose_matches_torch_and_holds_only_kernel_taps(shape, kernel, stride, dilation, out_hw) -> None:
    """Small windows take one product with the transpose unrolled into a matrix: it computes what torch's
    conv_transpose2d does, its entries are the kernel's own values or exact zeros (so the conv's rounding
    allowance, which counts the direct path's products, still holds), it is kept on the op while the weight is
    unchanged and rebuilt when the weight changes in place; a weight being trained takes the direct path (a matrix
    rebuilt per call would not pay), with the same gradient."""
    import torch.nn.functional as F

    import srp_audit.kernel.patches as patches

    gen = torch.Generator().manual_seed(sum(shape) + sum(kernel))
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    w = torch.randn(kernel, generator=gen, dtype=torch.float64)
    s, d = (stride, stride), (dilation, dilation)
    ref = F.conv_transpose2d(x, w, None, s, 0, 0, 1, d)
    if out_hw is not None:
        ref = F.pad(ref, (0, max(0, out_hw[1] - ref.shape[3]), 0, max(0, out_hw[0] - ref.shape[2])))[:, :, : out_hw[0], : out_hw[1]]
    owner = types.SimpleNamespace()
    with mock.patch.object(patches, "_unroll_pays", lambda *a: True):
        got = patches.conv_transpose(x, w, s, d, 1, out_hw, owner=owner)
        assert torch.allclose(got, ref, rtol=1e-12, atol=1e-12)
        (m,) = [v[2] for v in vars(owner).values()]
        taps = set(w.flatten().tolist()) | {0.0}
        assert set(m.flatten().tolist()) <= taps, "an unrolled entry is not a kernel tap"
        patches.conv_transpose(x, w, s, d, 1, out_hw, owner=owner)
        assert [v[2] for v in vars(owner).values()] == [m], "the unrolled matrix was rebuilt for an unchanged weight"
        w.mul_(2.0)
        assert torch.allclose(patches.conv_transpose(x, w, s, d, 1, out_hw, owner=owner), 2 * got, rtol=1e-12, atol=1e-12)
        wg = w.clone().requires_grad_(True)
        trained = types.SimpleNamespace()
        (grad,) = torch.autograd.grad(patches.conv_transpose(x, wg, s, d, 1, out_hw, owner=trained).square().sum(), wg)
        assert not vars(trained), "a matrix was built for a weight being trained"
        xg = x.clone().requires_grad_(True)  # coefficients with a gradient (alpha-CROWN) still use the kept matrix
        (gx,) = torch.autograd.grad(patches.conv_transpose(xg, w, s, d, 1, out_hw, owner=owner).square().sum(), xg)
        (want_x,) = torch.autograd.grad(F.conv_transpose2d(xg, w, None, s, 0, 0, 1, d).square().sum(), xg)
        if out_hw is None:
            assert torch.allclose(gx, want_x, rtol=1e-10, atol=1e-10)
    wr = w.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(patches.conv_transpose(x, wr, s, d, 1, out_hw).square().sum(), wr)
    assert torch.allclose(grad, want, rtol=1e-10, atol=1e-10)


def test_small_windows_unroll_and_large_ones_do_not() -> None:
    """The rule that picks the unrolled product: the MNIST CNN's first conv under 4×4 windows of 16 channels
    unrolls; a whole 32×11×11 map through a 32→16 4×4 kernel (12× the multiplications, 97 MB) does not."""
    from srp_audit.kernel.patches import _unroll_pays

    assert _unroll_pays(torch.zeros(16, 1, 4, 4), 4, 4, (10, 10))
    assert not _unroll_pays(torch.zeros(32, 16, 4, 4), 11, 11, (14, 14))
    assert not _unroll_pays(torch.zeros(32, 16, 4, 4), 6, 6, (9, 9))


def test_rounding_of_a_lines_op_without_a_line_family_on_a_sample_subset() -> None:
    """A sample subset of a CROWN context (alpha-CROWN reusing CROWN's bounds for the samples left) slices its root's
    relaxations; Floor has no alpha line family, and its slope cap used to be kept as None, which no subset can
    slice (TypeError)."""
    from srp_audit.spec import margin_spec

    g = torch.Generator().manual_seed(3)
    graph = Graph((4,), [("d", ops.Dense(torch.randn(4, 4, generator=g, dtype=torch.float64)), (INPUT,)), ("f", ops.Floor(), ("d",)),
                         ("o", ops.Dense(torch.randn(2, 4, generator=g, dtype=torch.float64)), ("f",))], "o")
    x = torch.rand(3, 4, generator=g, dtype=torch.float64)
    res = crown_bounds(graph, InputBox(x - 0.1, x + 0.1), margin_spec(torch.tensor([0, 1, 0]), 2), "crown")
    sub = res.ctx.select(torch.tensor([0, 2]))
    assert torch.equal(graph.node("f").crown_rounding(sub, "f"), graph.node("f").crown_rounding(res.ctx, "f")[[0, 2]])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_patches_dense_places_each_window_at_its_corner_and_drops_what_falls_off_the_map(seed: int) -> None:
    """`Patches.dense` against a loop over rows and window entries: windows larger than the map, corners far
    outside it (negative offsets, strides past its end) included."""
    from srp_audit.kernel.patches import Grid, Patches

    gen = torch.Generator().manual_seed(seed)
    n, r, c = (int(v) for v in torch.randint(1, 3, (3,), generator=gen))
    ph, pw, h, w, ht, wt, sh, sw = (int(v) for v in torch.randint(1, 9, (8,), generator=gen))
    oh, ow = (int(v) for v in torch.randint(-10, 6, (2,), generator=gen))
    data = torch.randn(n, r, c, ph, pw, generator=gen, dtype=torch.float64)
    pos = torch.randint(0, ht * wt, (n, r), generator=gen)
    got = Patches(data, pos, Grid(sh, sw, oh, ow, ht, wt), (c, h, w)).dense()
    want = torch.zeros(n, r, c, h, w, dtype=torch.float64)
    for i in range(n):
        for j in range(r):
            top, left = int(pos[i, j]) // wt * sh + oh, int(pos[i, j]) % wt * sw + ow
            for a in range(ph):
                for b in range(pw):
                    if 0 <= top + a < h and 0 <= left + b < w:
                        want[i, j, :, top + a, left + b] = data[i, j, :, a, b]
    assert torch.equal(got, want)


def test_windows_that_outgrow_their_map_go_dense_with_the_same_bounds(monkeypatch) -> None:
    """A residual CNN whose deepest windows outgrow the 6×6 maps: CROWN's passes switch to
    dense coefficients there (cheaper per row), and the bounds equal those of staying in windows up to the order
    of summation, which the rounding charges cover either way."""
    from srp_audit.kernel.patches import Patches

    gen = torch.Generator().manual_seed(3)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float64) * 0.6

    graph = Graph((2, 6, 6), [
        ("c0", ops.Conv2d(r(3, 2, 3, 3), r(3), 1, 1), (INPUT,)), ("r0", ops.Relu(), ("c0",)),
        ("c1", ops.Conv2d(r(3, 3, 3, 3), r(3), 1, 1), ("r0",)), ("r1", ops.Relu(), ("c1",)),
        ("c2", ops.Conv2d(r(3, 3, 3, 3), r(3), 1, 1), ("r1",)), ("add", ops.Add(), ("c2", "r0")), ("r2", ops.Relu(), ("add",)),
        ("c3", ops.Conv2d(r(3, 3, 3, 3), r(3), 2, 1), ("r2",)), ("r3", ops.Relu(), ("c3",)),
        ("c4", ops.Conv2d(r(2, 3, 2, 2), r(2)), ("r3",)), ("r4", ops.Relu(), ("c4",)),
        ("f", ops.Reshape((8,)), ("r4",)), ("d", ops.Dense(r(3, 8), r(3)), ("f",))], "d")
    lower, upper = random_box(graph.input_shape, 2, gen, torch.float64)
    box, spec = InputBox(lower * 0.3, upper * 0.3), identity_spec(graph.num_classes, 2, torch.float64)
    seen = []
    outgrown = Patches.outgrown

    def watching(self: Patches) -> bool:
        seen.append(outgrown.fget(self))  # type: ignore[attr-defined]
        return seen[-1]

    monkeypatch.setattr(Patches, "outgrown", property(watching))
    dense = crown_bounds(graph, box, spec, "crown")
    assert any(seen), "no window outgrew its map: the test no longer covers the dense switch"
    points = sample_box(box.lower, box.upper, 500, gen)
    with torch.no_grad():
        values = graph.run_all(points.reshape((-1,) + graph.input_shape))
    for node, (lo, hi) in dense.ctx.bounds.items():
        if node != INPUT:
            assert_contains(values[node].reshape((2, 500) + values[node].shape[1:]), lo, hi, f"dense CROWN bound of {node}")
    monkeypatch.setattr(Patches, "outgrown", property(lambda self: False))
    windows = crown_bounds(graph, box, spec, "crown")
    assert torch.allclose(dense.lower, windows.lower, rtol=1e-9, atol=1e-12)
    for node, (lo, hi) in windows.ctx.bounds.items():
        assert torch.allclose(dense.ctx.bounds[node][0], lo, rtol=1e-9, atol=1e-12), node
        assert torch.allclose(dense.ctx.bounds[node][1], hi, rtol=1e-9, atol=1e-12), node


def test_a_layer_mostly_unstable_has_its_live_stable_neurons_refined_too(monkeypatch) -> None:
    """Where at least `ALL_ABOVE` of a ReLU layer's neurons are unstable, CROWN also refines the stable ones that
    are live (an active neuron's IBP interval passes on to the next layer's IBP: refining them left ResNet-18's next
    layer with a third fewer unstable neurons); dead ones stay as they are. Sampled values stay inside."""
    import srp_audit.bounds.crown as crown

    graph = deep_graphs(5)["cnn_patches"].copy(dtype=torch.float64)
    gen = torch.Generator().manual_seed(5)
    lower, upper = random_box(graph.input_shape, 2, gen, torch.float64)
    box, spec = InputBox(lower * 0.3, upper * 0.3), identity_spec(graph.num_classes, 2, torch.float64)
    runs = {}
    for above in (2.0, 0.0):  # never, always
        monkeypatch.setattr(crown, "ALL_ABOVE", above)
        runs[above] = crown_bounds(graph, box, spec, "crown")
    never, always = runs[2.0].ctx.bounds, runs[0.0].ctx.bounds
    active = never["c1"][0] >= 0
    assert active.any(), "no stable active neuron: the case no longer tests the rule"
    assert torch.all(always["c1"][1][active] <= never["c1"][1][active])
    assert (always["c1"][1][active] < never["c1"][1][active]).any(), "the live stable neurons were not refined"
    points = sample_box(box.lower, box.upper, 500, gen)
    with torch.no_grad():
        values = graph.run_all(points.reshape((-1,) + graph.input_shape))
    for node, (lo, hi) in always.items():
        if node != INPUT:
            assert_contains(values[node].reshape((2, 500) + values[node].shape[1:]), lo, hi, f"bound of {node}")


def test_chunks_are_sized_by_the_largest_window_even_when_it_outgrows_its_map(monkeypatch) -> None:
    """A dilated kernel on a 1×1 map makes 21×21 windows that go dense at once: the probe that sizes CROWN's chunks
    must still see them (it measured only the 16-entry dense rows, and chunks ran 441× over the budget)."""
    import srp_audit.bounds.crown as crown
    from srp_audit.kernel import patches

    largest = [0]
    real_init = patches.Patches.__init__

    def watching(self, *args, **kwargs) -> None:
        real_init(self, *args, **kwargs)
        largest[0] = max(largest[0], self.data.numel())

    monkeypatch.setattr(patches.Patches, "__init__", watching)
    gen = torch.Generator().manual_seed(0)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float64) * 0.3

    c = 16
    graph = Graph((c, 1, 1), [
        ("c0", ops.Conv2d(r(c, c, 1, 1), r(c)), (INPUT,)), ("r0", ops.Relu(), ("c0",)),
        ("c1", ops.Conv2d(r(c, c, 3, 3), r(c), 1, 10, 10), ("r0",)), ("r1", ops.Relu(), ("c1",)),
        ("c2", ops.Conv2d(r(c, c, 1, 1), r(c)), ("r1",)), ("r2", ops.Relu(), ("c2",)),
        ("f", ops.Reshape((c,)), ("r2",)), ("d", ops.Dense(r(2, c), r(2)), ("f",))], "d")
    x = torch.randn(64, c, 1, 1, dtype=torch.float64, generator=gen)
    budget = 1 << 14
    crown.crown_bounds(graph, InputBox(x - 1, x + 1), identity_spec(2, 64, torch.float64), "crown", budget)
    assert crown._WIDTHS[graph]["c2"] >= 21 * 21 * c
    assert largest[0] <= budget, f"a chunk held {largest[0]} coefficients for a budget of {budget}"


@pytest.mark.parametrize("method", ["ibp", "crown"])
@pytest.mark.parametrize("name", ["mlp_relu", "cnn_patches", "resnet_merge"])
def test_gradients_through_crown_bounds_match_finite_differences(name: str, method: str) -> None:
    """Training through CROWN-IBP (and CROWN) needs the bound's true gradient, through the ReLU relaxations'
    dependence on the intermediate bounds too. A rounding rule, run without a gradient, used to compute and keep a
    relaxation first, so the pass read it without one: the gradient missed that whole path (−7.41 against −8.71)."""
    graph = deep_graphs(0)[name].copy(dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((2,) + tuple(graph.input_shape), dtype=torch.float64, generator=gen) * 0.5 + 0.25
    spec = identity_spec(graph.num_classes, 2, torch.float64)
    weight = next(p for p in graph.parameters() if p.dim() > 1)
    weight.requires_grad_(True)

    def bound(x: torch.Tensor) -> torch.Tensor:
        return crown_bounds(graph, InputBox(x - 0.05, x + 0.05), spec, method).lower.sum()

    xg = x.clone().requires_grad_(True)
    gx, gw = torch.autograd.grad(bound(xg), (xg, weight))
    dx = torch.randn(x.shape, dtype=torch.float64, generator=gen)
    dw = torch.randn(weight.shape, dtype=torch.float64, generator=gen)
    h = 1e-6
    with torch.no_grad():
        along_x = (bound(x + h * dx) - bound(x - h * dx)) / (2 * h)
        weight.add_(h * dw)
        up = bound(x)
        weight.sub_(2 * h * dw)
        down = bound(x)
        weight.add_(h * dw)
    assert float((gx * dx).sum()) == pytest.approx(float(along_x), rel=1e-5, abs=1e-7)
    assert float((gw * dw).sum()) == pytest.approx(float((up - down) / (2 * h)), rel=1e-5, abs=1e-7)
