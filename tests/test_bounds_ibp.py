"""IBP soundness: every transfer function, in float32 and float64, against 1 000 sampled points per box
(corners included), with no tolerance; then whole fixture networks on margin specs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from soundness import assert_contains, evaluate, op_graphs, random_box, sample_box

from srp_audit import ops
from srp_audit.bounds import interval_bounds
from srp_audit.kernel.interval import Interval
from srp_audit.spec import InputBox, linf_ball, margin_spec

OPS = sorted(op_graphs(0))


@pytest.fixture(autouse=True)
def _no_grad():
    """Bounds here are evaluated, not trained through."""
    with torch.no_grad():
        yield


def test_every_ir_op_has_a_property_case() -> None:
    covered = {type(g.node(g.output)) for g in op_graphs(0).values()}
    assert set(ops.ALL_OPS) <= covered


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_ibp_rule_contains_samples(op: str, dtype: torch.dtype, seed: int) -> None:
    graph = op_graphs(seed)[op]
    gen = torch.Generator().manual_seed(seed)
    lower, upper = random_box(graph.input_shape, 4, gen, dtype)
    bounds = interval_bounds(graph.copy(dtype=dtype), InputBox(lower, upper))
    points = sample_box(lower.double(), upper.double(), 1000, gen)
    exact = graph.copy(dtype=torch.float64)
    values = evaluate(lambda p: exact.logits(p), points)
    try:
        assert_contains(values, bounds.lower, bounds.upper, f"IBP {op} ({dtype})")
    except AssertionError:
        _recheck_exactly(graph, points, values, bounds.lower, bounds.upper, f"IBP {op} ({dtype})")


def _recheck_exactly(graph, points, values, lower, upper, what: str) -> None:
    """The float64 reference is itself rounded (a log-sum-exp is a few ulps of its largest term off): a sample
    that leaves the bounds in float64 is evaluated again by the exactness oracle, and passes only when its exact
    value provably lies inside them."""
    import tempfile

    import onnx
    from graph_fuzz_check import exact_verdict

    from srp_audit.formats import save_model

    lo, hi = lower.detach().unsqueeze(1).to(values.dtype), upper.detach().unsqueeze(1).to(values.dtype)
    out = ((values < lo) | (values > hi)).flatten(2).any(dim=2).nonzero().tolist()
    with tempfile.TemporaryDirectory() as tmp:
        save_model(graph.copy(dtype=torch.float64), f"{tmp}/g.onnx")
        model = onnx.load(f"{tmp}/g.onnx")
    for n, k in out[:20]:
        verdict = exact_verdict(model, points[n, k].reshape(1, -1).numpy(), lower[n].detach().double().reshape(-1).numpy(),
                                upper[n].detach().double().reshape(-1).numpy())
        assert verdict == "cleared", f"{what}: sample {k} of box {n} leaves the bounds in float64, and exactly: {verdict}"


def test_sampler_catches_an_unsound_bound() -> None:
    """The check is not vacuous: shrinking an exact affine interval by 0.1 % is caught at the corners."""
    graph = op_graphs(1)["Dense"].copy(dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    lower, upper = random_box(graph.input_shape, 4, gen, torch.float64)
    b = interval_bounds(graph, InputBox(lower, upper))
    width = b.upper - b.lower
    points = sample_box(lower, upper, 1000, gen)
    values = evaluate(graph.logits, points)
    with pytest.raises(AssertionError, match="leaves the bounds"):
        assert_contains(values, b.lower + 1e-3 * width, b.upper, "shrunk")


def test_bounds_are_exact_for_a_point_box() -> None:
    graph = op_graphs(2)["Add"].copy(dtype=torch.float64)
    x = torch.randn(3, 6, dtype=torch.float64)
    b = interval_bounds(graph, InputBox(x, x))
    y = graph.logits(x)
    assert torch.all(b.lower <= y) and torch.all(y <= b.upper)
    assert torch.all(b.upper - b.lower <= 1e-12 * (1 + y.abs()))


def test_per_sample_eps_equals_separate_runs(fixture_models) -> None:
    g = fixture_models["mnist_cnn"].copy(dtype=torch.float64)
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    y = torch.tensor([1, 2, 3])
    eps = torch.tensor([0.0, 0.01, 0.03], dtype=torch.float64)
    spec = margin_spec(y, 10)
    together = interval_bounds(g, linf_ball(x, eps, (0, 1)), spec).lower
    for i in range(3):
        alone = interval_bounds(g, linf_ball(x[i : i + 1], eps[i : i + 1], (0, 1)), spec.select(torch.tensor([i]))).lower
        assert torch.allclose(together[i : i + 1], alone, rtol=1e-10, atol=1e-12)  # same maths, other BLAS blocking


@pytest.mark.parametrize("name", ["mnist_mlp", "mnist_cnn", "mnist_resnet"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_fixture_margin_bounds_contain_samples(fixture_models, name: str, dtype: torch.dtype) -> None:
    """Whole networks, margin spec folded into the last layer: 1 000 points per sample stay inside."""
    graph = fixture_models[name]
    gen = torch.Generator().manual_seed(7)
    x = torch.rand((4,) + graph.input_shape, generator=gen, dtype=torch.float64).to(torch.float32).double()
    y = torch.randint(0, 10, (4,), generator=gen)
    eps = torch.tensor([0.0, 0.002, 0.01, 0.05], dtype=torch.float64)
    spec = margin_spec(y, 10, torch.float64)
    box = linf_ball(x, eps, (0.0, 1.0))
    res = interval_bounds(graph.copy(dtype=dtype), box.to(dtype), spec.to(dtype))
    exact = graph.copy(dtype=torch.float64)
    points = sample_box(box.lower, box.upper, 1000, gen)
    flat = points.reshape((-1,) + graph.input_shape)
    logits = exact.logits(flat).reshape(4, 1000, -1)
    margins = torch.einsum("nsk,npk->nps", spec.C, logits) + spec.d.unsqueeze(1)
    assert_contains(margins, res.lower, res.upper, f"IBP margins on {name} ({dtype})")


def test_spec_folding_is_tighter_than_subtracting_logit_bounds(fixture_models) -> None:
    graph = fixture_models["mnist_mlp"].copy(dtype=torch.float64)
    x = torch.rand(5, 1, 28, 28, dtype=torch.float64)
    y = torch.arange(5)
    box = linf_ball(x, 0.01, (0, 1))
    spec = margin_spec(y, 10)
    folded = interval_bounds(graph, box, spec).lower
    logits = interval_bounds(graph, box)
    naive = torch.einsum("nsk,nk->ns", spec.C.clamp(min=0), logits.lower) - torch.einsum("nsk,nk->ns", (-spec.C).clamp(min=0), logits.upper)
    assert torch.all(folded >= naive) and torch.any(folded > naive + 1e-6)


@pytest.mark.parametrize("act", [ops.Silu(), ops.Gelu(), ops.Gelu("tanh"), ops.Mish(), ops.HardSwish(), ops.Power(2.0)],
                         ids=["silu", "gelu", "gelu_tanh", "mish", "hardswish", "square"])
def test_valley_bounds_hold_on_tiny_boxes_around_the_true_minimum(act) -> None:
    """Boxes of width 1e-12…1e-3 around the minimiser (found in float64 by ternary search): the IBP lower bound
    stays at or below the function's value there, although no endpoint is the minimum."""
    f = lambda t: act.f(torch.tensor([t], dtype=torch.float64)).item()  # noqa: E731
    lo, hi = -3.0, 1.0
    for _ in range(200):
        a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        lo, hi = (lo, b) if f(a) < f(b) else (a, hi)
    x_star = (lo + hi) / 2
    for w in (1e-12, 1e-9, 1e-6, 1e-3):
        for shift in (-0.5, -0.1, 0.0, 0.3):
            l = torch.tensor([x_star - w * (0.5 + shift)], dtype=torch.float64)
            u = torch.tensor([x_star + w * (0.5 - shift)], dtype=torch.float64)
            low = act.ibp(Interval(l, u)).lower
            assert float(low) <= f(x_star), (w, shift)
