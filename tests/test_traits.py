"""Every trait a node declares is a claim the drivers act on (CROWN skips refining an `ibp_exact` op's input,
certify drops a final `keeps_argmax` op, CROWN refines a `passes_bounds` op's input instead of its output, …).
Each claim is sampled here on every op of the sampling suite's op graphs that makes it, at random points."""

from __future__ import annotations

import pytest
import torch
from soundness import op_graphs

from srp_audit.kernel.interval import Interval

GRAPHS = {name: g.copy(dtype=torch.float64) for name, g in op_graphs(0).items()}
N = 5


def _inputs(name: str, seed: int = 0) -> list[torch.Tensor]:
    """The op's input values at N random points of its graph's input."""
    g = GRAPHS[name]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((N,) + g.input_shape, generator=gen, dtype=torch.float64) * 2
    with torch.no_grad():
        values = g.run_all(x)
    return [values[i] for i in g.inputs_of["op"]]


def _with(trait: str) -> list[str]:
    return sorted(n for n, g in GRAPHS.items() if getattr(g.node("op"), trait))


def _op(name: str):
    return GRAPHS[name].node("op")


@pytest.mark.parametrize("name", _with("elementwise"))
def test_elementwise_ops_map_each_entry_alone(name: str) -> None:
    node, ins = _op(name), _inputs(name)
    with torch.no_grad():
        y = node(*ins)
        for k, a in enumerate(ins):
            assert a.shape == y.shape, f"{name}: input {k} of shape {tuple(a.shape)} for an output of {tuple(y.shape)}"
            for j in range(0, a[0].numel(), max(1, a[0].numel() // 7)):
                moved = [t.clone() for t in ins]
                moved[k].reshape(N, -1)[:, j] += 0.37
                changed = (node(*moved) != y).reshape(N, -1)
                changed[:, j] = False
                assert not changed.any(), f"{name}: moving entry {j} of input {k} changed other entries"


@pytest.mark.parametrize("name", _with("ibp_exact"))
def test_ibp_exact_ops_enclose_no_more_than_their_range(name: str) -> None:
    """IBP's enclosure equals the range over the box (up to rounding): the range is sampled on a fine grid
    between each entry's ends (the op is elementwise), its ends included."""
    node = _op(name)
    assert node.elementwise, f"{name} claims ibp_exact but not elementwise"
    (a,) = _inputs(name)
    gen = torch.Generator().manual_seed(1)
    half = a.abs() / 2 + (a == 0)  # the box keeps each entry's sign: ops defined on x > 0 stay in their domain
    lo = a - torch.rand(a.shape, generator=gen, dtype=a.dtype) * half
    hi = a + torch.rand(a.shape, generator=gen, dtype=a.dtype) * half
    with torch.no_grad():
        elo, ehi = node.ibp(Interval(lo, hi)).bounds()
        ts = torch.linspace(0, 1, 2049, dtype=a.dtype)
        points = [lo + t * (hi - lo) for t in ts]
        # the points a step or a comparison jumps at: 0, and the integers and halves inside the box
        points += [torch.maximum(torch.minimum(torch.zeros_like(lo), hi), lo)]
        points += [torch.maximum(torch.minimum(torch.floor(lo) + k / 2, hi), lo) for k in range(1, 9)]
        vals = torch.stack([node(p) for p in points])
    vmin, vmax = vals.amin(0), vals.amax(0)
    scale = 1e-6 * (1 + vals.abs().amax(0)) + 1e-4 * (vmax - vmin)  # rounding, and what a grid may miss of a valley
    assert bool((elo >= vmin - scale).all() and (ehi <= vmax + scale).all()), f"{name}: IBP wider than the range"


@pytest.mark.parametrize("name", _with("keeps_argmax"))
def test_keeps_argmax_ops_keep_the_order_along_their_axis(name: str) -> None:
    node, (a,) = _op(name), _inputs(name)
    axis = getattr(node, "axis", -1)
    axis = axis + 1 if axis >= 0 else axis  # the node's axis counts sample axes; the batch axis comes first
    with torch.no_grad():
        y = node(a)
    assert torch.equal(a.argmax(axis), y.argmax(axis)), f"{name}: argmax changed"
    order_in = torch.sign(a.unsqueeze(axis) - a.unsqueeze(axis - 1 if axis < 0 else axis + 1))
    order_out = torch.sign(y.unsqueeze(axis) - y.unsqueeze(axis - 1 if axis < 0 else axis + 1))
    assert bool(((order_out == order_in) | (order_out == 0)).all()), f"{name}: the order along axis {axis} changed"


@pytest.mark.parametrize("name", _with("positive_output"))
def test_positive_output_ops_give_positive_values(name: str) -> None:
    """In exact arithmetic every output is > 0 (a final Log after it keeps the order); sampled in float64 on inputs
    where no output underflows."""
    node, (a,) = _op(name), _inputs(name)
    with torch.no_grad():
        y = node(a.clamp(-30, 30))
    assert bool((y > 0).all()), f"{name}: an output ≤ 0"


@pytest.mark.parametrize("name", _with("keeps_positive_order"))
def test_keeps_positive_order_ops_are_increasing_on_positive_inputs(name: str) -> None:
    node, (a,) = _op(name), _inputs(name)
    x = a.abs().reshape(-1).sort().values + 1e-3
    with torch.no_grad():
        y = node(x.reshape(a.shape)).reshape(-1)
    assert bool((y[1:] >= y[:-1]).all() and (y[1:] > y[:-1])[x[1:] > x[:-1] * (1 + 1e-12)].all()), f"{name}: not increasing"


@pytest.mark.parametrize("name", _with("passes_bounds"))
def test_passes_bounds_ops_copy_one_entry_scaled_and_shifted(name: str) -> None:
    """Each output entry depends on at most one input entry, affinely."""
    node, ins = _op(name), [t[:1] for t in _inputs(name)]
    sizes = [t.numel() for t in ins]

    def flat(v: torch.Tensor) -> torch.Tensor:  # every input's entries in one vector
        parts = torch.split(v, sizes)
        return node(*[p.reshape(t.shape) for p, t in zip(parts, ins)]).reshape(-1)

    a = torch.cat([t.reshape(-1) for t in ins])
    with torch.no_grad():
        jac = torch.autograd.functional.jacobian(flat, a)
        assert bool(((jac != 0).sum(1) <= 1).all()), f"{name}: an output entry reads several input entries"
        d = torch.randn(a.shape, generator=torch.Generator().manual_seed(3), dtype=a.dtype)
        step = flat(a + d) - flat(a)
    assert torch.allclose(step, jac @ d, rtol=1e-9, atol=1e-9), f"{name}: not affine"


@pytest.mark.parametrize("name", _with("zero_below_zero"))
def test_zero_below_zero_ops_are_zero_on_non_positive_inputs(name: str) -> None:
    node, (a,) = _op(name), _inputs(name)
    with torch.no_grad():
        assert bool((node(-a.abs()) == 0).all() and (node(torch.zeros_like(a)) == 0).all()), name


@pytest.mark.parametrize("name", _with("kinked_at_zero"))
def test_kinked_at_zero_ops_are_linear_on_each_side_of_zero(name: str) -> None:
    node, (a,) = _op(name), _inputs(name)
    with torch.no_grad():
        f0 = node(torch.zeros_like(a))
        for side in (a.abs() + 0.01, -a.abs() - 0.01):
            bend = node(2 * side) - 2 * node(side) + f0
            assert torch.allclose(bend, torch.zeros_like(bend), atol=1e-9 * (1 + float(side.abs().max()))), f"{name}: bends"


@pytest.mark.parametrize("name", sorted(n for n, g in GRAPHS.items() if not g.node("op").nonlinear))
def test_ops_not_marked_nonlinear_are_affine(name: str) -> None:
    """CROWN relaxes only ops marked nonlinear: every other op must be affine (f(x + d) + f(x − d) = 2 f(x))."""
    node, ins = _op(name), _inputs(name)
    gen = torch.Generator().manual_seed(4)
    ds = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in ins]
    with torch.no_grad():
        mid = node(*ins)
        bend = node(*[t + d for t, d in zip(ins, ds)]) + node(*[t - d for t, d in zip(ins, ds)]) - 2 * mid
    assert torch.allclose(bend, torch.zeros_like(bend), atol=1e-9 * (1 + float(mid.abs().max()))), f"{name}: not affine"


def test_ops_the_drivers_read_through_their_first_input_have_one() -> None:
    """The drivers read the input of a kinked (ReLU-family) op, of an op with free relaxation parameters
    (`alpha_start`) and of one with its own refinement rows (`crown_rows`) as `inputs_of[name][0]`: each such op
    has exactly one input."""
    from srp_audit import ops
    from srp_audit.ir.node import Node

    for cls in ops.ALL_OPS:
        reads_first = cls.kinked_at_zero or cls.alpha_start is not Node.alpha_start or cls.crown_rows is not Node.crown_rows
        if reads_first:
            assert cls.arity == 1, f"{cls.__name__} takes {cls.arity} inputs but a driver reads only its first"
