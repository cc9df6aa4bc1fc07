"""A network on which float32 bound arithmetic without rounding allowances proves a false property (in the
manner of Jia & Rinard, "Exploiting verified neural networks via floating point numerical error", 2020), and
srp-audit does not, in any bound method, in float32 or float64.

h = relu(x + B) with B = 2^20 (float32 spacing 0.125 there), margin = h₁ − h₂ + 1/16. Over
x₁ ∈ [0.19, 0.24], x₂ ∈ [0.26, 0.31] every bound on h rounds to B + 0.25, so plain float32 interval arithmetic
returns margin ≥ 1/16 > 0, while at the corner (0.19, 0.31) the exact margin is 0.19 − 0.31 + 1/16 < 0.
"""

from __future__ import annotations

import time

import pytest
import torch

from srp_audit import ops
from srp_audit.bounds import METHODS
from srp_audit.certify import CertifyOptions, certify
from srp_audit.ir import INPUT, Graph
from srp_audit.spec import InputBox, margin_spec

B = 2.0**20
C = 1 / 16
LO = torch.tensor([[0.19, 0.26]], dtype=torch.float32)
HI = torch.tensor([[0.24, 0.31]], dtype=torch.float32)


def _graph() -> Graph:
    f = torch.float32
    return Graph((2,), [
        ("lift", ops.Dense(torch.eye(2, dtype=f), torch.tensor([B, B], dtype=f)), (INPUT,)),
        ("relu", ops.Relu(), ("lift",)),
        ("out", ops.Dense(torch.tensor([[1.0, -1.0], [0.0, 0.0]], dtype=f), torch.tensor([C, 0.0], dtype=f)), ("relu",)),
    ], "out").eval()


@torch.no_grad()
def _naive_float32_ibp(g: Graph) -> float:
    """Interval arithmetic in float32 with round-to-nearest and no allowance (what an unsound verifier does)."""
    lo, hi = LO, HI
    for name in g.order:
        node = g.node(name)
        if isinstance(node, ops.Dense):
            wp, wn = node.weight.clamp(min=0), node.weight.clamp(max=0)
            lo, hi = lo @ wp.T + hi @ wn.T + node.bias, hi @ wp.T + lo @ wn.T + node.bias
        else:
            lo, hi = torch.relu(lo), torch.relu(hi)
    return float(lo[0, 0] - hi[0, 1])  # margin of class 0 over class 1


@torch.no_grad()
def _exact_margin(g: Graph, x: torch.Tensor) -> float:
    """The margin at x in float64 (exact here: every value is a float32 number plus B, well inside float64)."""
    out = g.copy(dtype=torch.float64)(x.double())
    return float(out[0, 0] - out[0, 1])


def test_the_construction_fools_float32_without_allowances() -> None:
    g = _graph()
    corner = torch.tensor([[float(LO[0, 0]), float(HI[0, 1])]])
    assert _naive_float32_ibp(g) > 0  # the unsound "proof"
    assert _exact_margin(g, corner) < 0  # a point of the box where the property is false


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", list(METHODS))
def test_no_bound_method_claims_the_false_proof(method: str, dtype: torch.dtype) -> None:
    g = _graph().copy(dtype=dtype)
    g.requires_grad_(False)
    corner = torch.tensor([[float(LO[0, 0]), float(HI[0, 1])]])
    box = InputBox(LO.to(dtype), HI.to(dtype), nonneg=True)
    spec = margin_spec(torch.tensor([0]), 2, dtype)
    lb = METHODS[method](g, box, spec, alpha_iters=5).lower
    assert float(lb.max()) <= _exact_margin(g, corner) < 0


def test_certify_does_not_verify_it() -> None:
    centre = (LO + HI) / 2
    res = certify(_graph(), centre, torch.tensor([0]), CertifyOptions(eps=0.025, device="cpu", radius=False))
    assert res.samples[0].verdict != "verified"
    assert res.samples[0].bound < 0


def _rounded_away_graph() -> Graph:
    """A float64 network whose float32 copy satisfies a property the network itself violates: h₂ = x₂ + (B + 0.06)
    rounds to x₂ + B in float32 (spacing 0.125), so the copy's margin h₁ − h₂ + 0.04 + relu(x₃)/1000 is ≥ 0.03 on
    the box while the network's is −0.03 at x = (0.5, 0.51, 0): bounds taken from a search on the copy could
    "prove" it. The third neuron is unstable, giving the slope
    search something to optimise."""
    f = torch.float64
    return Graph((3,), [
        ("lift", ops.Dense(torch.eye(3, dtype=f), torch.tensor([B, B + 0.06, 0.0], dtype=f)), (INPUT,)),
        ("relu", ops.Relu(), ("lift",)),
        ("out", ops.Dense(torch.tensor([[1.0, -1.0, 1e-3], [0.0, 0.0, 0.0]], dtype=f), torch.tensor([0.04, 0.0], dtype=f)),
         ("relu",)),
    ], "out").eval()


def test_float32_slope_search_never_lends_its_values_to_a_proof() -> None:
    """Branch and bound searches slopes and multipliers on a float32 copy of a float64 network; the bound it
    returns is the float64 network's, so a property only the rounded copy satisfies is never proved."""
    from srp_audit.bab import relu_bab, root_context
    from srp_audit.bounds.alpha import optimise_slopes

    g = _rounded_away_graph()
    g.requires_grad_(False)
    box = InputBox(torch.tensor([[0.5, 0.5, -0.01]], dtype=torch.float64), torch.tensor([[0.51, 0.51, 0.01]], dtype=torch.float64))
    spec = margin_spec(torch.tensor([0]), 2, torch.float64)
    copy32 = g.copy(dtype=torch.float32)
    worst = torch.tensor([[0.5, 0.51, 0.0]], dtype=torch.float64)
    exact = float((spec.C[0] @ g(worst)[0]) + spec.d[0])
    rounded = float((spec.C[0] @ copy32.copy(dtype=torch.float64)(worst)[0]) + spec.d[0])
    assert exact < 0 < rounded  # the copy's margin, exactly evaluated, is positive even at the network's worst point
    lb = optimise_slopes(root_context(g, box), spec, box, torch.full((1, 1), -float("inf"), dtype=torch.float64), 10, 0.1,
                         search=copy32)
    assert float(lb.max()) <= exact
    assert relu_bab(g, box, spec, time.perf_counter() + 30).status != "unsat"
