"""Max-pool weights in alpha-CROWN's other paths: spec rows bounded in chunks take their own rows' weights, and
branch and bound (whose proofs become certificates) keeps CROWN's max-pool rule, so the checker re-derives its
root bounds."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from soundness import identity_spec

import srp_audit.bounds.crown as crown
from srp_audit import ops
from srp_audit.bounds.alpha import alpha_crown_bounds
from srp_audit.certificate import ProofWriter
from srp_audit.certificate_trees import relu_split_claim
from srp_audit.formats import load_model
from srp_audit.ir.graph import Graph
from srp_audit.ir.walk import INPUT
from srp_audit.spec import InputBox, LinearSpec
from srp_check import check


def test_spec_rows_in_chunks_take_their_own_weights(monkeypatch) -> None:
    gen = torch.Generator().manual_seed(0)
    g = Graph((1, 4, 4), [("mp", ops.MaxPool2d(2), (INPUT,)), ("r", ops.Reshape((4,)), ("mp",)),
                          ("d", ops.Dense(torch.randn(6, 4, generator=gen), torch.zeros(6)), ("r",))], "d").double()
    g.requires_grad_(False)
    lo = torch.randn(2, 1, 4, 4, dtype=torch.float64, generator=gen)
    box, spec = InputBox(lo, lo + 1), identity_spec(6, 2, torch.float64)
    whole = alpha_crown_bounds(g, box, spec, iters=3).lower.detach()
    monkeypatch.setattr(crown, "SPEC_BUDGET", 2 * 16 * 5)  # 5 of the 12 rows per chunk, then 5, then 2
    chunked = alpha_crown_bounds(g, box, spec, iters=3).lower.detach()
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)


def test_branch_and_bound_certificates_check_on_a_max_pool_network(tmp_path) -> None:
    rng = np.random.default_rng(1)
    n = helper.make_node
    inits = {"wc": rng.normal(size=(2, 1, 3, 3)) / 2, "w1": rng.normal(size=(20, 18)) / 4, "b1": rng.normal(size=20) * 0.1,
             "w2": rng.normal(size=(20, 20)) / 4.5, "b2": rng.normal(size=20) * 0.1, "w3": rng.normal(size=(3, 20)) / 4.5}
    nodes = [n("Conv", ["x", "wc"], ["c"]), n("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[1, 1]),
             n("Flatten", ["p"], ["f"]), n("Gemm", ["f", "w1", "b1"], ["h1"], transB=1), n("Relu", ["h1"], ["r1"]),
             n("Gemm", ["r1", "w2", "b2"], ["h2"], transB=1), n("Relu", ["h2"], ["r2"]), n("Gemm", ["r2", "w3"], ["y"], transB=1)]
    tensors = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], tensors)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    writer = ProofWriter(str(path), load_model(str(path)))
    x0 = torch.tensor(rng.uniform(-1, 1, size=(1, 1, 6, 6)))
    box = InputBox(x0 - 0.3, x0 + 0.3)
    gen = torch.Generator().manual_seed(1)
    C = torch.eye(3, dtype=torch.float64).unsqueeze(0)
    with torch.no_grad():
        mins = writer.graph(x0 + 0.3 * (torch.rand(2_000, 1, 6, 6, dtype=torch.float64, generator=gen) * 2 - 1)).min(0).values
        lower = crown.crown_bounds(writer.graph, box, LinearSpec(C, torch.zeros(1, 3, dtype=torch.float64), [[0], [1], [2]])).lower[0]
    target = lower + 0.3 * (mins - lower)  # true (sampled minimum above it), beyond CROWN: needs the search
    claim = relu_split_claim(writer, "c", box, LinearSpec(C, -target.unsqueeze(0), [[0], [1], [2]]), float("inf"))
    assert claim is not None
    cert = writer.certificate()
    cert.claims.append(claim)
    cert.write(str(tmp_path / "c.npz"))
    report = check(str(path), str(tmp_path / "c.npz"))
    assert report.ok, "\n".join(report.lines())[:1000]


def test_max_pool_bounds_over_every_window_geometry() -> None:
    """CROWN and alpha-CROWN through a max-pool whose windows start in the right padding (ONNX drops them), end
    before the last rows (read by none), or cover only padding (−∞ outputs): bounds of the right shape that
    contain the sampled outputs. (A 3×2 stride-3×1 pool padded by 2 on a 6×3 map used to crash.)"""
    import itertools

    from soundness import evaluate, sample_box

    from srp_audit.bounds.crown import crown_bounds

    gen = torch.Generator().manual_seed(0)
    checked = 0
    for k, st, pad, ceil, hw in itertools.product([(3, 2), (2, 2)], [(3, 1), (2, 2), (1, 1)], [(2, 2, 2, 2), (0, 1, 2, 0)],
                                                  [False, True], [(6, 3), (5, 4)]):
        op = ops.MaxPool2d(k, st, pad, 1, ceil)
        g = Graph((1,) + hw, [("op", op, (INPUT,))], "op").double()
        g.requires_grad_(False)
        lo = torch.randn((2, 1) + hw, dtype=torch.float64, generator=gen)
        box = InputBox(lo, lo + torch.rand(lo.shape, generator=gen, dtype=torch.float64))
        spec = identity_spec(g.num_classes, 2, torch.float64)
        values = evaluate(g.logits, sample_box(box.lower, box.upper, 200, gen))
        for lb in (crown_bounds(g, box, spec).lower, alpha_crown_bounds(g, box, spec, iters=2).lower.detach()):
            k_out = g.num_classes
            inside = (values >= lb[:, :k_out].unsqueeze(1)) & (values <= -lb[:, k_out:].unsqueeze(1))
            assert bool((inside | (values == -torch.inf)).all()), f"MaxPool2d{(k, st, pad, ceil)} on {hw}"
            checked += 1
    assert checked == 96
