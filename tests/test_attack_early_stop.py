"""The attack stops early: a row leaves the batch once it is broken, and (with `give_up`) once its margin stops
falling fast enough to reach zero in the steps left — while a row that is still on its way to zero keeps going.
With `give_up` the first step also tries the linear model's minimiser, so a nearly linear margin is settled in one
step, not a dozen."""

from __future__ import annotations

import torch

from srp_audit import ops
from srp_audit.attack import STALL_AFTER, _linear_minimiser, pgd
from srp_audit.ir.graph import Graph
from srp_audit.ir.walk import INPUT
from srp_audit.spec import InputBox, LpBall, margin_spec

N_IN = 10


def _margin_net(offset: float) -> Graph:
    """y0 − y1 = Σx + offset: each L∞ sign step moves every input by the same amount, so the margin falls at a
    constant rate until the box's corner, then stays."""
    w = torch.zeros(2, N_IN, dtype=torch.float32)
    w[0] = 1.0
    b = torch.tensor([offset, 0.0])
    return Graph((N_IN,), [("d", ops.Dense(w, b), (INPUT,))], "d")


class _RowCounter:
    """Rows of forward passes the graph evaluates (the attack's cost)."""

    def __init__(self, graph: Graph) -> None:
        self.rows = 0
        graph.layers["d"].register_forward_hook(self._seen)  # (Graph.logits calls forward, not the module)

    def _seen(self, _module, args, _out) -> None:
        self.rows += args[0].shape[0]


def _valley_net(bottom: float, offset: float, left_slope: float) -> Graph:
    """y0 − y1 = relu(Σx − bottom) + left_slope · relu(bottom − Σx) + offset: a valley whose floor is at Σx = bottom,
    falling at slope 1 from the right and rising at `left_slope` to its left."""
    w1 = torch.stack([torch.ones(N_IN), -torch.ones(N_IN)])
    w2 = torch.tensor([[1.0, left_slope], [0.0, 0.0]])
    layers = [("d1", ops.Dense(w1, torch.tensor([-bottom, bottom])), (INPUT,)), ("r", ops.Relu(), ("d1",)),
              ("d", ops.Dense(w2, torch.tensor([offset, 0.0])), ("r",))]
    return Graph((N_IN,), layers, "d")


def _attack(offset: float, eps: float, steps: int, give_up: bool, n: int = 4, graph: Graph | None = None) -> tuple[bool, int]:
    g = _margin_net(offset) if graph is None else graph
    count = _RowCounter(g)
    x = torch.full((n, N_IN), 0.5)
    spec = margin_spec(torch.zeros(n, dtype=torch.long), 2, torch.float32)
    res = pgd(g, InputBox(x - eps, x + eps), spec, steps=steps, restarts=2, seed=0, start=x, give_up=give_up)
    return bool(res.found.all()), count.rows


def test_a_sample_it_cannot_break_costs_a_few_steps_with_give_up() -> None:
    # margin Σx − 3 ≥ 10·0.4 − 3 = 1 anywhere in the box: unbreakable, though a first-order step could reach 0
    # (‖∇‖₁·width = 2 ≥ the margin 2); the first step's probe lands on the corner and the margin stalls there
    found, rows = _attack(-3.0, 0.1, 30, give_up=True)
    full_found, full_rows = _attack(-3.0, 0.1, 30, give_up=False)
    assert not found and not full_found
    per_restart = 4 * (STALL_AFTER + 2)  # a gradient a step up to the first check, and the probe
    assert rows <= 4 + 2 * per_restart < full_rows == 4 + 2 * 4 * 31


def test_a_linear_margin_is_broken_by_the_first_step() -> None:
    # Σx − 4.1 has its minimum −0.1 at the box's corner, which small steps reach after 36 of 100: the probe at once
    found, rows = _attack(-4.1, 0.1, 100, give_up=True)
    assert found and rows == 4 + 4 + 4  # the start, one gradient, the probe


def test_a_sample_out_of_first_order_reach_costs_one_gradient() -> None:
    # margin 10 at the start against ‖∇‖₁·width = 2: dropped after its first gradient, and not restarted
    found, rows = _attack(5.0, 0.1, 30, give_up=True)
    assert not found and rows == 4 + 4


def test_a_row_on_its_way_to_zero_is_not_given_up() -> None:
    # Σx − 4.1 falls by 10 · 2.5 · 0.1 / 100 = 0.025 a step from 0.9: it crosses zero after 36 of 100 steps
    found, _ = _attack(-4.1, 0.1, 100, give_up=False)
    assert found


def test_a_row_the_probe_overshoots_keeps_going_from_it() -> None:
    # The valley's floor −0.005 is at Σx = 4.9; from Σx = 5 (margin 0.095) the probe lands on the corner Σx = 4
    # (margin 0.085, lower), and the steps climb back from there by 0.025 in Σx, 0.0025 in margin, a step: zero is
    # crossed after 35 of 100 steps, long after the first progress checks
    valley = _valley_net(4.9, -0.005, 0.1)
    found, rows = _attack(0.0, 0.1, 100, give_up=True, graph=valley)
    assert found and rows > 4 * 30


def test_broken_rows_stop_even_without_give_up() -> None:
    # broken within the first steps: no row runs all 30 steps, and the second restart has nothing left to do
    found, rows = _attack(-4.95, 0.1, 30, give_up=False)  # the margin starts at 0.05 and falls 0.083 a step
    assert found and rows <= 4 + 4 * (STALL_AFTER + 1)


def test_the_l1_probe_is_the_linear_minimum_over_ball_and_box() -> None:
    # The L1 probe spends the radius greedily on the entries of largest |∇| (a fractional knapsack, exact for the
    # linear model): compared with the linear program's optimum on random boxes clipped by a domain
    from scipy.optimize import linprog

    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        n = 12
        c = torch.rand(1, n, generator=gen, dtype=torch.float64)
        eps = float(torch.rand((), generator=gen)) * 2
        lo, hi = (c - eps).clamp(min=0.0), (c + eps).clamp(max=1.0)
        g = torch.randn(1, n, generator=gen, dtype=torch.float64)
        g[0, 0] = 0.0
        box = InputBox(lo, hi, ball=LpBall(c, torch.tensor([eps], dtype=torch.float64), 1.0))
        x = _linear_minimiser(box, c, g, torch.tensor([[2 * eps]], dtype=torch.float64))
        assert (x - c).abs().sum() <= eps * (1 + 1e-12) and (x >= lo).all() and (x <= hi).all()
        # min g·d over d = d⁺ − d⁻, d± ≥ 0, Σ(d⁺ + d⁻) ≤ eps, lo − c ≤ d ≤ hi − c
        gd = g[0].numpy()
        res = linprog(list(gd) + list(-gd), A_ub=[[1.0] * (2 * n)], b_ub=[eps],
                      bounds=[(0, float(hi[0, i] - c[0, i])) for i in range(n)] + [(0, float(c[0, i] - lo[0, i])) for i in range(n)])
        assert float((g * (x - c)).sum()) <= res.fun + 1e-9
