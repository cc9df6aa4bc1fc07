"""The attack stops early: a row leaves the batch once it is broken, and (with `give_up`) once its margin stops
falling fast enough to reach zero in the steps left — while a row that is still on its way to zero keeps going."""

from __future__ import annotations

import torch

from srp_audit import ops
from srp_audit.attack import STALL_AFTER, STALL_CHECK, pgd
from srp_audit.ir.graph import Graph
from srp_audit.ir.walk import INPUT
from srp_audit.spec import InputBox, margin_spec

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


def _attack(offset: float, eps: float, steps: int, give_up: bool, n: int = 4) -> tuple[bool, int]:
    g = _margin_net(offset)
    count = _RowCounter(g)
    x = torch.full((n, N_IN), 0.5)
    spec = margin_spec(torch.zeros(n, dtype=torch.long), 2, torch.float32)
    res = pgd(g, InputBox(x - eps, x + eps), spec, steps=steps, restarts=2, seed=0, start=x, give_up=give_up)
    return bool(res.found.all()), count.rows


def test_a_sample_it_cannot_break_costs_a_few_steps_with_give_up() -> None:
    # margin Σx − 3 ≥ 10·0.4 − 3 = 1 anywhere in the box: unbreakable, though a first-order step could reach 0
    # (‖∇‖₁·width = 2 ≥ the margin 2); the corner is reached after 12 of 30 steps and the margin stalls there
    found, rows = _attack(-3.0, 0.1, 30, give_up=True)
    full_found, full_rows = _attack(-3.0, 0.1, 30, give_up=False)
    assert not found and not full_found
    per_restart = 4 * (STALL_AFTER + 3 * STALL_CHECK + 1)  # given up at most three checks in
    assert rows <= 4 + 2 * per_restart < full_rows == 4 + 2 * 4 * 31


def test_a_sample_out_of_first_order_reach_costs_one_gradient() -> None:
    # margin 10 at the start against ‖∇‖₁·width = 2: dropped after its first gradient, and not restarted
    found, rows = _attack(5.0, 0.1, 30, give_up=True)
    assert not found and rows == 4 + 4


def test_a_row_on_its_way_to_zero_is_not_given_up() -> None:
    # Σx − 4.1 falls by 10 · 2.5 · 0.1 / 100 = 0.025 a step from 0.9: it crosses zero after 36 of 100 steps
    found, _ = _attack(-4.1, 0.1, 100, give_up=True)
    assert found


def test_broken_rows_stop_even_without_give_up() -> None:
    # broken within the first steps: no row runs all 30 steps, and the second restart has nothing left to do
    found, rows = _attack(-4.95, 0.1, 30, give_up=False)  # the margin starts at 0.05 and falls 0.083 a step
    assert found and rows <= 4 + 4 * (STALL_AFTER + 1)
