"""Branch and bound's warm starts and filtered branching: every bound they produce holds on its own sub-domain
(sampled points of the box that obey the domain's split pattern), and the kept parameters reproduce the bounds
they were kept for."""

from __future__ import annotations

import pytest
import torch
from soundness import identity_spec, random_mlp, sample_box

from srp_audit.bab import _bound_domains, root_context
from srp_audit.bounds.crown import relu_inputs
from srp_audit.branching import bound_with_state, branch_scores, filtered_choice
from srp_audit.spec import InputBox, LinearSpec


def _domain(seed: int, sizes=(3, 12, 12, 12, 2), fraction: float = 0.3):
    """A random MLP, a box, its root context and a split pattern fixing a random half of the unstable neurons to
    the phase they take at a random point of the box (the anchor, returned too)."""
    graph = random_mlp(seed, sizes)
    graph.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    lo = torch.rand(1, sizes[0], generator=gen, dtype=torch.float64) - 1.0
    box = InputBox(lo, lo + 1.0)
    root = root_context(graph, box)
    anchor = box.lower + torch.rand(box.lower.shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        values = graph.run_all(anchor)
    splits = {}
    for _, pre in relu_inputs(graph):
        l, u = root.bounds[pre]
        unstable = ((l < 0) & (u > 0)).flatten()
        pick = unstable & (torch.rand(l.numel(), generator=gen) < fraction)
        phase = torch.where(values[pre].flatten() >= 0, 1, -1).to(torch.int8)
        splits[pre] = torch.where(pick, phase, torch.zeros_like(phase)).reshape((1,) + graph.shapes[pre])
    return graph, box, root, splits, gen, anchor


def _obeys(values: dict, splits: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    for pre, sign in splits.items():
        z = values[pre].reshape(n, -1)
        s = sign.reshape(1, -1).double()
        keep &= ((z * s) >= 0).all(dim=1)
    return keep


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("sizes, fraction", [((3, 12, 12, 12, 2), 0.3), ((2, 8, 8, 2), 0.0)])
@pytest.mark.parametrize("search", [False, True], ids=["float64", "float32-search"])
def test_filtered_branching_children_bounds_hold_on_their_subdomains(seed: int, sizes, fraction: float, search: bool) -> None:
    """Bound a split domain with beta-CROWN (keeping its parameters; its search in float64 or, as branch and bound
    runs it, in float32), choose its next split by filtered branching, and check the domain's and both children's
    bounds at every sampled point obeying their patterns."""
    graph, box, root, splits, gen, anchor = _domain(seed, sizes, fraction)
    spec = identity_spec(2, 1, torch.float64)
    spec = LinearSpec(spec.C, spec.d, spec.groups)
    state: dict[str, torch.Tensor] = {}
    lb, ctx, empty, spec_d = _bound_domains(graph, box, spec, splits, None, root, state, _search(graph, search))
    assert (fraction == 0 or any(k.startswith("beta:") for k in state)) and any(k.startswith("alpha:") for k in state)
    scores = branch_scores(ctx, graph)
    choice = filtered_choice(root, box, spec_d, splits, state, scores, k=4)
    pres = list(splits)
    sizes = [scores[p].shape[1] for p in pres]
    k, at = int(choice.neuron[0]), 0
    for p, size in zip(pres, sizes):
        if k < at + size:
            chosen, index = p, k - at
            break
        at += size
    assert float(scores[chosen][0, index]) > 0, "the chosen neuron must be unstable and free"
    points = torch.cat([anchor, sample_box(box.lower, box.upper, 6000, gen)[0]])  # the anchor obeys the pattern
    with torch.no_grad():
        values = graph.run_all(points)
    base = _obeys(values, splits, points.shape[0])
    z = values[chosen].reshape(points.shape[0], -1)[:, index]
    out = values[graph.output]
    assert bool(base[0]) and not empty.any()
    assert torch.all(out[base] >= lb[0, :2]) and torch.all(out[base] <= -lb[0, 2:]), "the domain's bound fails on it"
    for c, side in enumerate((z >= 0, z <= 0)):
        keep = base & side
        if bool(choice.child_empty[0, c]):
            assert not keep.any(), "a child declared infeasible holds sampled points"
            continue
        lo_b, hi_b = choice.child_lower[0, c, :2], -choice.child_lower[0, c, 2:]
        assert torch.all(out[keep] >= lo_b) and torch.all(out[keep] <= hi_b), f"child {c}'s bound fails on its sub-domain"


def _search(graph, on: bool):
    """The float32 copy branch and bound searches slopes in (or None: search in the graph's own precision)."""
    return graph.copy(dtype=torch.float32) if on else None


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("search", [False, True], ids=["float64", "float32-search"])
def test_kept_parameters_reproduce_the_best_bounds(seed: int, search: bool) -> None:
    """optimise_slopes' state holds, per row, the parameters of the best bound it returned: one CROWN pass with
    them gives that bound again (a mix-up of rows or of iterates would not; with a float32 search, the bound
    returned is that float64 pass, never the search's own value)."""
    graph, box, root, splits, _, _ = _domain(seed)
    spec = identity_spec(2, 1, torch.float64)
    spec = LinearSpec(spec.C, spec.d, spec.groups)
    state: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        crown_lb = bound_with_state(root, box, spec, splits, {}, 1)[0]
    lb = _bound_domains(graph, box, spec, splits, None, root, state, _search(graph, search))[0]
    again = bound_with_state(root, box, spec, splits, state, 1)[0]
    improved = lb > crown_lb + 1e-9
    assert improved.any(), "the optimisation should improve some row"
    assert torch.equal(again[improved], lb[improved]) if search else torch.allclose(again[improved], lb[improved], rtol=1e-9, atol=1e-12)
    # warm-started from that state, the next optimisation starts at least as high
    state2 = dict(state)
    lb2 = _bound_domains(graph, box, spec, splits, None, root, state2, _search(graph, search))[0]
    assert torch.all(lb2 >= again - 1e-12)


def test_convolutional_networks_take_fewer_beta_steps_per_batch(fixture_models) -> None:
    """Networks with convolutional ReLU layers take `BETA_ITERS_CONV` steps per batch, fully connected ones
    `BETA_ITERS` (measured per kind: docs/methods.md)."""
    from srp_audit.bab import BETA_ITERS, BETA_ITERS_CONV, beta_iters

    assert beta_iters(fixture_models["mnist_mlp"]) == BETA_ITERS
    assert beta_iters(fixture_models["mnist_cnn"]) == BETA_ITERS_CONV
    assert beta_iters(random_mlp(0, (3, 12, 12, 2))) == BETA_ITERS
