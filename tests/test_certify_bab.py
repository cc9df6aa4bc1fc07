"""certify's branch-and-bound stage (`--method auto`): it proves samples the bound cascade and the attack left
undecided, never one a stronger attack breaks; finds counterexamples the attack missed; stays off on request; and
its proofs come with trees the independent checker accepts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from soundness import sample_box

from srp_audit import ops
from srp_audit.attack import pgd
from srp_audit.certificate_trees import certify_certificate
from srp_audit.certify import CertifyOptions, certify
from srp_audit.certify_bab import BAB_METHOD, close_enough
from srp_audit.data import load_samples
from srp_audit.formats import load_model
from srp_audit.ir.graph import Graph
from srp_audit.ir.walk import INPUT
from srp_audit.spec import inner_linf_ball, margin_spec
from srp_check import check

EPS = 0.05  # the fixture CNN: about a tenth of its samples are proved by branch and bound alone at this radius


def _fixture(n: int = 20):
    graph = load_model(str(FIXTURES / "mnist_cnn.onnx"))
    samples = load_samples(str(FIXTURES / "mnist_cnn.samples.npz"), graph.input_shape, 10)
    return graph, samples.x[:n], samples.y[:n]


def _run(graph, x, y, **kw):
    # a generous time cap: the domain budget, not the clock, ends each search, so verdicts do not depend on speed
    return certify(graph, x, y, CertifyOptions(eps=EPS, radius=False, bab_time=60.0, **kw))


@pytest.fixture(scope="module")
def with_bab():
    graph, x, y = _fixture()
    return graph, x, y, _run(graph, x, y)


def test_branch_and_bound_proves_what_the_cascade_left_undecided_and_nothing_an_attack_breaks(with_bab) -> None:
    graph, x, y, on = with_bab
    off = _run(graph, x, y, bab_domains=0)
    assert all(s.method != BAB_METHOD for s in off.samples)
    by_bab = [s.index for s in on.samples if s.method == BAB_METHOD]
    assert by_bab, "no sample was proved by branch and bound: the stage did not run"
    for a, b in zip(off.samples, on.samples):
        assert a.verdict == b.verdict or (a.verdict == "unknown" and b.verdict == "verified" and b.method == BAB_METHOD)
    assert all(on.samples[i].bound > 0 for i in by_bab)
    # a much stronger attack, and the box's corners and random points, break none of them
    idx = torch.tensor(by_bab)
    xb, yb = x[idx], y[idx]
    spec = margin_spec(yb, 10, torch.float32)
    box = inner_linf_ball(xb, EPS, (0.0, 1.0))
    res = pgd(graph, box, spec, steps=200, restarts=8, seed=1, start=xb)
    assert not bool(res.found.any())
    pts = sample_box(box.lower.double(), box.upper.double(), 256, torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = graph.copy(dtype=torch.float64).logits(pts.reshape((-1,) + graph.input_shape)).reshape(len(by_bab), 256, 10)
    margins = z.gather(2, yb.view(-1, 1, 1).expand(-1, 256, 1)) - z
    assert bool((margins >= 0).all())


def test_close_enough_is_a_shortfall_below_the_clean_margin() -> None:
    bound = torch.tensor([-0.5, -2.0, 0.3, -0.1, -0.1], dtype=torch.float64)
    margin = torch.tensor([1.0, 1.0, 1.0, 0.0, -1.0], dtype=torch.float64)
    assert close_enough(bound, margin).tolist() == [True, False, False, False, False]


def _corner_network() -> Graph:
    """Class 0's margin over class 1 is 1.5 − 2·relu(x₁ − ½) − 2·relu(x₂ − ½) on [0, 1]²: 1.5 at the centre, −0.5
    at the corner (1, 1), and CROWN's bound −0.5 over the whole box — close enough for the search."""
    d = torch.float32
    nodes = [("h", ops.Dense(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=d), torch.tensor([-0.5, -0.5], dtype=d)), (INPUT,)),
             ("r", ops.Relu(), ("h",)),
             ("o", ops.Dense(torch.tensor([[-2.0, -2.0], [0.0, 0.0]], dtype=d), torch.tensor([1.5, 0.0], dtype=d)), ("r",))]
    g = Graph((2,), nodes, "o")
    g.requires_grad_(False)
    return g


def test_branch_and_bound_finds_a_counterexample_the_attack_did_not_look_for() -> None:
    g = _corner_network()
    x, y = torch.tensor([[0.5, 0.5]]), torch.tensor([0])
    opts = dict(eps=0.5, radius=False, attack_steps=0, bab_time=60.0)
    assert certify(g, x, y, CertifyOptions(bab_domains=0, **opts)).samples[0].verdict == "unknown"
    s = certify(g, x, y, CertifyOptions(**opts)).samples[0]
    assert s.verdict == "falsified" and s.counterexample is not None
    ce = torch.as_tensor(np.asarray(s.counterexample)).reshape(1, 2)
    assert bool((ce >= 0).all() and (ce <= 1).all())
    with torch.no_grad():
        z = g.logits(ce.float())
    assert float(z[0, 0] - z[0, 1]) < 0


def test_branch_and_bound_proofs_come_with_trees_the_checker_accepts(with_bab, tmp_path) -> None:
    graph, x, y, result = with_bab
    opts = CertifyOptions(eps=EPS, radius=False, bab_time=60.0)
    cert = certify_certificate(str(FIXTURES / "mnist_cnn.onnx"), graph, x, result.samples, opts)
    by_bab = {f"sample {s.index} at eps {EPS:g}" for s in result.samples if s.method == BAB_METHOD}
    trees = {c.id for c in cert.claims if "children" in str(c.tree)}
    assert by_bab and by_bab <= trees and not cert.uncertified
    out = tmp_path / "proofs.npz"
    cert.write(str(out))
    report = check(str(FIXTURES / "mnist_cnn.onnx"), str(out))
    assert report.ok and len(report.claims) == len(cert.claims)


def test_swept_radii_inside_a_branch_and_bound_proof_are_certified_too(with_bab) -> None:
    """A sample proved by branch and bound at eps is verified at every smaller swept eps; the certificate proves
    those again with a tree as well, rather than listing them as uncertified."""
    graph, x, y, _ = with_bab
    opts = CertifyOptions(eps=EPS, radius=False, bab_time=60.0, sweep=(EPS * 0.98, EPS))
    result = certify(graph, x, y, opts)
    by_bab = [s for s in result.samples if s.method == BAB_METHOD]
    assert by_bab and all(s.sweep_verdicts == ("verified", "verified") for s in by_bab)
    cert = certify_certificate(str(FIXTURES / "mnist_cnn.onnx"), graph, x, result.samples, opts)
    claimed = {c.id for c in cert.claims}
    assert not cert.uncertified
    assert all(f"sample {s.index} at eps {e:g}" in claimed for s in by_bab for e in opts.sweep)
