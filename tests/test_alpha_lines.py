"""alpha-CROWN's families of lines for the smooth activations (tangent points of convex, concave and S-shaped
functions, free slopes with their own intercepts for the others): every parameter in [0, 1] gives lines valid on
the whole input interval (sampled, ends included, no tolerance), no steeper than the rounding allowance assumes;
random parameters give sound bounds through whole graphs; and optimising them tightens CROWN."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from soundness import assert_contains, deep_graphs, evaluate, identity_spec, op_graphs, random_box, sample_box

from srp_audit.bounds.alpha import alpha_crown_bounds
from srp_audit.bounds.crown import crown_bounds, spec_backward
from srp_audit.bounds.ibp import interval_bounds
from srp_audit.kernel import relax
from srp_audit.ops.lines import LinesActivation
from srp_audit.ops.smooth import SShaped
from srp_audit.spec import InputBox

CASES = op_graphs(0)
FAMILIES = sorted(k for k, g in CASES.items()
                  if isinstance(g.node("op"), SShaped) or (isinstance(g.node("op"), LinesActivation)
                                                           and g.node("op").line_params(torch.zeros(1, 1), torch.ones(1, 1)) is not None))


def _family_lines(node, l, u, a_lo, a_up):
    if isinstance(node, SShaped):
        lines = relax.smooth_lines(node.shape_fn, l, u, a_lo, a_up)
        return lines.lower_slope, lines.lower_icpt, lines.upper_slope, lines.upper_icpt
    return node.lines_with(l, u, a_lo, a_up)


def test_every_smooth_activation_has_a_family() -> None:
    """Not vacuous: the convex, concave, S-shaped and grid-ruled activations all take part."""
    assert {"Exp", "Elu", "Sigmoid", "Tanh", "Erf", "Silu", "Gelu", "Softplus", "Sqrt", "Log", "Power", "Sin"} <= set(FAMILIES)
    assert "Sign" not in FAMILIES and "Floor" not in FAMILIES


@pytest.mark.parametrize("case", FAMILIES)
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_every_parameter_gives_valid_lines(case: str, seed: int) -> None:
    graph = op_graphs(seed)[case].double()
    node = graph.node("op")
    gen = torch.Generator().manual_seed(seed)
    lower, upper = random_box(graph.input_shape, 4, gen, torch.float64)
    pre = graph.inputs_of["op"][0]
    if pre == "input":
        l, u = lower, upper
    else:
        l, u = interval_bounds(graph, InputBox(lower, upper), keep=[pre]).nodes[pre].bounds()
    rows = 6
    a = torch.rand((l.shape[0], rows, 2) + l.shape[1:], generator=gen, dtype=torch.float64)
    a[:, 0], a[:, 1] = 0.0, 1.0  # the family's ends
    a[:, 2] = node.alpha_start(l, u, 1)[:, 0]  # CROWN's default lines
    ls, li, us, ui = (t.expand((l.shape[0], rows) + l.shape[1:]) for t in _family_lines(node, l.unsqueeze(1), u.unsqueeze(1), a[:, :, 0], a[:, :, 1]))
    t = torch.rand((l.shape[0], 64) + l.shape[1:], generator=gen, dtype=torch.float64)
    t[:, 0], t[:, 1] = 0.0, 1.0
    x = l.unsqueeze(1) + (u - l).unsqueeze(1) * t  # (N, 64, *shape), ends included
    with torch.no_grad():
        y = node(x.reshape((-1,) + l.shape[1:])).reshape(x.shape)
    ok = torch.isfinite(y)
    for r in range(rows):
        below = ls[:, r].unsqueeze(1) * x + li[:, r].unsqueeze(1)
        above = us[:, r].unsqueeze(1) * x + ui[:, r].unsqueeze(1)
        assert bool(((below <= y) | ~ok).all()), f"{case}: lower line of parameter row {r} passes above f"
        assert bool(((above >= y) | ~ok).all()), f"{case}: upper line of parameter row {r} passes below f"
    if isinstance(node, LinesActivation):  # the rounding allowance covers the default lines' slopes and slope_cap
        d_ls, _, d_us, _ = node.lines(l, u)
        cap = torch.maximum(node.slope_cap(l, u), torch.maximum(d_ls.abs(), d_us.abs())).unsqueeze(1)
        assert bool((torch.maximum(ls.abs(), us.abs()) <= cap).all()), f"{case}: a slope exceeds what the allowance covers"
    else:
        assert bool((torch.maximum(ls.abs(), us.abs()) <= node.max_slope()).all())


@pytest.mark.parametrize("name", ["mlp_sigmoid", "mlp_tanh", "mlp_exp", "mlp_elu", "pools_smooth", "tiled_pools_channel_affine"])
def test_random_parameters_give_sound_bounds(name: str) -> None:
    """Any point of the family, not only optimised ones, bounds the whole graph: random α at every op."""
    graph = deep_graphs(3)[name].double()
    graph.requires_grad_(False)
    gen = torch.Generator().manual_seed(3)
    lower, upper = random_box(graph.input_shape, 3, gen, torch.float64)
    box = InputBox(lower * 0.3, upper * 0.3)
    k = graph.num_classes
    spec = identity_spec(k, 3, torch.float64)
    ctx = crown_bounds(graph, box, spec).ctx
    for n in graph.order:
        node = graph.node(n)
        start = node.alpha_start(*ctx.bounds[graph.inputs_of[n][0]], 2 * k) if node.nonlinear and len(graph.inputs_of[n]) == 1 else None
        if start is not None:
            ctx.alpha[n] = torch.rand(start.shape, generator=gen, dtype=torch.float64)
    assert ctx.alpha, f"{name}: no op to optimise"
    lb = spec_backward(ctx, spec, box)
    values = evaluate(graph.logits, sample_box(box.lower, box.upper, 1000, gen))
    assert_contains(values, lb[:, :k], -lb[:, k:], f"{name} with random alpha")


@pytest.mark.parametrize("name", ["mlp_sigmoid", "mlp_tanh", "mlp_exp"])
def test_optimised_tangents_tighten_smooth_networks(name: str) -> None:
    """No ReLU in these: every gain comes from the smooth activations' families."""
    graph = deep_graphs(0)[name].double()
    graph.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn((4,) + graph.input_shape, generator=gen, dtype=torch.float64)
    box = InputBox(x - 0.1, x + 0.1)
    spec = identity_spec(graph.num_classes, 4, torch.float64)
    crown = crown_bounds(graph, box, spec)
    alpha = alpha_crown_bounds(graph, box, spec, iters=20, base=crown).lower.detach()
    assert bool((alpha >= crown.lower).all())
    assert float((alpha - crown.lower).mean()) > 1e-4, f"{name}: alpha-CROWN gained nothing"


POOLS = sorted(k for k, g in CASES.items() if k.startswith("MaxPool2d"))


@pytest.mark.parametrize("case", POOLS)
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_max_pool_weights_give_sound_bounds(case: str, seed: int) -> None:
    """A max-pool's alpha parameters (any weights in [0, 1], one set per spec row) give a valid lower line y ≥ Σ λ_i x_i:
    the bounds of the pool alone contain its sampled outputs (box corners included), padded windows too."""
    graph = op_graphs(seed)[case].double()
    graph.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    lower, upper = random_box(graph.input_shape, 3, gen, torch.float64)
    lower = lower + 2.0 * torch.rand(lower.shape, generator=gen, dtype=torch.float64) * (seed % 3 - 1)  # all signs
    upper = torch.maximum(upper, lower)
    box = InputBox(lower, upper)
    k = graph.num_classes
    spec = identity_spec(k, 3, torch.float64)
    ctx = crown_bounds(graph, box, spec).ctx
    start = graph.node("op").alpha_start(*ctx.bounds[graph.inputs_of["op"][0]], 2 * k)
    assert start is not None and bool((start.sum(dim=3) == 1).all())  # CROWN's choice: all weight on one input
    ctx.alpha["op"] = torch.rand(start.shape, generator=gen, dtype=torch.float64)
    lb = spec_backward(ctx, spec, box)
    values = evaluate(graph.logits, sample_box(box.lower, box.upper, 1000, gen))
    assert_contains(values, lb[:, :k], -lb[:, k:], f"{case} with random weights")
