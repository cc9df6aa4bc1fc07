"""The network analysed is the network stored: constants the loader derives (1/c, batch-norm's γ/√(var + ε), merged
scales, interpolation weights, folded constant subgraphs) are enclosed rigorously or kept exact, never rounded.

Each property below has a counterexample exactly on its boundary (the exact model reaches it), so no sound method
may prove it: a constant rounded by one float32 ulp in the wrong direction was enough to make srp-audit answer
"unsat" on each of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from srp_audit.bounds import METHODS
from srp_audit.errors import ModelLoadError
from srp_audit.formats import load_model
from srp_audit.spec import InputBox
from srp_audit.verify import VerifyOptions, verify
from srp_audit.vnnlib import read_vnnlib

F32 = np.float32


def _model(path: Path, nodes: list, inits: list, n_in: int, n_out: int, elem: int = T.FLOAT) -> Path:
    g = h.make_graph(nodes, path.stem, [h.make_tensor_value_info("X", elem, [1, n_in])],
                     [h.make_tensor_value_info("Y", elem, [1, n_out])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def _spec(path: Path, n_in: int, n_out: int, box: list[tuple[str, str]], output: str) -> Path:
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)] + [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i, (lo, hi) in enumerate(box):
        lines += [f"(assert (>= X_{i} {lo}))", f"(assert (<= X_{i} {hi}))"]
    lines.append(f"(assert {output})")
    path.write_text("\n".join(lines) + "\n")
    return path


def _best_lower(model: Path, spec: Path) -> float:
    """The largest proof margin any bound method reaches (> 0 would mean 'proved')."""
    graph = load_model(str(model)).double().eval()
    graph.requires_grad_(False)
    clause = read_vnnlib(spec).clauses[0]
    box = InputBox(torch.from_numpy(clause.lower)[None], torch.from_numpy(clause.upper)[None])
    lin = clause.spec()
    return max(float(lin.worst_bound(METHODS[m](graph, box, lin).lower).max()) for m in METHODS)


def _never_unsat(model: Path, spec: Path) -> None:
    assert _best_lower(model, spec) <= 0, "a bound method proved a property that the exact model violates"
    res = verify(load_model(str(model)), read_vnnlib(spec), VerifyOptions(timeout=20))
    assert res.status != "unsat"


def test_division_by_three(tmp_path: Path) -> None:
    """Y = X/3 on X ∈ [1.5, 2]: X = 1.5 gives Y = 0.5 exactly, so Y ≤ 0.5 is reachable."""
    m = _model(tmp_path / "div.onnx", [h.make_node("Div", ["X", "c"], ["Y"])], [nh.from_array(np.array([3.0], F32), "c")], 1, 1)
    graph = load_model(str(m)).double()
    node = graph.node(graph.order[-1])
    assert float(node.scale) == 1 / 3 and node.constant_rads(torch.float64)[0] is not None
    _never_unsat(m, _spec(tmp_path / "p.vnnlib", 1, 1, [("1.5", "2")], "(<= Y_0 0.5)"))


def test_batchnorm_scale_one_over_sqrt_two(tmp_path: Path) -> None:
    """Gemm then batch-norm with var = 2, ε = 0: Y = X/√2, which reaches 0.70710678 at X = 1."""
    bn = [nh.from_array(np.array([v], F32), n) for n, v in (("g", 1.0), ("b", 0.0), ("m", 0.0), ("v", 2.0))]
    nodes = [h.make_node("Gemm", ["X", "W", "B"], ["H"]), h.make_node("BatchNormalization", ["H", "g", "b", "m", "v"], ["Y"], epsilon=0.0)]
    m = _model(tmp_path / "bn.onnx", nodes, [nh.from_array(np.ones((1, 1), F32), "W"), nh.from_array(np.zeros(1, F32), "B"), *bn], 1, 1)
    _never_unsat(m, _spec(tmp_path / "p.vnnlib", 1, 1, [("0", "1")], "(>= Y_0 0.70710678)"))


def test_input_normalisation(tmp_path: Path) -> None:
    """(X − 0.1307)/0.3081 on X ∈ [0.1307, 1] (the float32 value, written out exactly) is 0 at the lower end."""
    mean = F32(0.1307)
    nodes = [h.make_node("Sub", ["X", "mean"], ["C"]), h.make_node("Div", ["C", "std"], ["Y"])]
    m = _model(tmp_path / "norm.onnx", nodes, [nh.from_array(np.array([mean], F32), "mean"), nh.from_array(np.array([0.3081], F32), "std")], 1, 1)
    _never_unsat(m, _spec(tmp_path / "p.vnnlib", 1, 1, [(repr(float(mean)), "1")], "(<= Y_0 0)"))


def test_softmax_past_exp_underflow(tmp_path: Path) -> None:
    """z0 = 70.7·Σx − 707, z1 = −710 on x ∈ [0, 1]^10: at x = 0, softmax's Y_1 = 1/(1 + e³) ≈ 0.047 ≥ 0.04."""
    w = np.zeros((10, 2), F32)
    w[:, 0] = 70.7
    b = np.array([-707.0, -710.0], F32)
    nodes = [h.make_node("Gemm", ["X", "W", "B"], ["Z"]), h.make_node("Softmax", ["Z"], ["Y"], axis=1)]
    m = _model(tmp_path / "sm.onnx", nodes, [nh.from_array(w, "W"), nh.from_array(b, "B")], 10, 2)
    _never_unsat(m, _spec(tmp_path / "p.vnnlib", 10, 2, [("0", "1")] * 10, "(>= Y_1 0.04)"))


def test_softmax_bounds_hold_with_denormals_flushed() -> None:
    """The same corner with denormals flushed to zero (as the CLI runs): the upper bound stays above 0.047."""
    from srp_audit.ops.softmax import Softmax

    torch.set_flush_denormal(True)
    try:
        lo, hi = Softmax(0).bounds(torch.tensor([[-707.0, -710.0]], dtype=torch.float64), torch.tensor([[0.0, -710.0]], dtype=torch.float64))
    finally:
        torch.set_flush_denormal(False)  # (its return value says whether flushing is supported, not the old state)
    assert float(hi[0, 1]) >= 1 / (1 + np.exp(3.0)) and float(lo[0, 1]) >= 0


def test_resize_weights_are_exact(tmp_path: Path) -> None:
    """Linear resizing by 3 has weights k/3 (no float holds them): the IR applies integer numerators, then a
    division by 3 that it encloses; at integer inputs the float64 output is within its enclosure of the exact one."""
    nodes = [h.make_node("Resize", ["X", "", "scales"], ["Y"], mode="linear", coordinate_transformation_mode="asymmetric")]
    g = h.make_graph(nodes, "rs", [h.make_tensor_value_info("X", T.FLOAT, [1, 1, 1, 2])], [h.make_tensor_value_info("Y", T.FLOAT, [1, 1, 1, 6])],
                     [nh.from_array(np.array([1, 1, 1, 3], F32), "scales")])
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "rs.onnx")
    graph = load_model(str(tmp_path / "rs.onnx")).double()
    ops = [type(graph.node(n)).__name__ for n in graph.order]
    assert "Dense" in ops and "ElementwiseAffine" in ops
    dense = next(graph.node(n) for n in graph.order if type(graph.node(n)).__name__ == "Dense")
    assert torch.equal(dense.weight, dense.weight.round()), "the interpolation numerators are integers"
    y = graph(torch.tensor([[[[0.0, 3.0]]]], dtype=torch.float64)).reshape(-1)
    assert torch.allclose(y, torch.tensor([0.0, 1, 2, 3, 3, 3], dtype=torch.float64), rtol=0, atol=1e-15)


def test_constant_subexpressions_are_enclosed(tmp_path: Path) -> None:
    """Div(1, 3) and Pow(8, −½) computed from constants have no float value: they stay enclosed (never rounded)
    and may scale the data; used as a weight they are refused with the reason."""
    nodes = [h.make_node("Div", ["one", "three"], ["k"]), h.make_node("Mul", ["X", "k"], ["Y"])]
    inits = [nh.from_array(np.array([1.0], F32), "one"), nh.from_array(np.array([3.0], F32), "three")]
    graph = load_model(str(_model(tmp_path / "fold.onnx", nodes, inits, 1, 1))).double()
    node = graph.node(graph.order[-1])
    assert float(node.scale) == 1 / 3 and node.constant_rads(torch.float64)[0] is not None
    _never_unsat(_model(tmp_path / "fold.onnx", nodes, inits, 1, 1), _spec(tmp_path / "p.vnnlib", 1, 1, [("1.5", "2")], "(<= Y_0 0.5)"))
    pow_nodes = [h.make_node("Pow", ["eight", "half"], ["k"]), h.make_node("Mul", ["X", "k"], ["Y"])]
    pow_inits = [nh.from_array(np.array([8.0], F32), "eight"), nh.from_array(np.array([-0.5], F32), "half")]
    scale = load_model(str(_model(tmp_path / "pow.onnx", pow_nodes, pow_inits, 1, 1))).double().node("affine_0")
    assert abs(float(scale.scale) - 8 ** -0.5) <= 1e-16 and scale.constant_rads(torch.float64)[0] is not None
    weight_nodes = [h.make_node("Div", ["one", "three"], ["k"]), h.make_node("MatMul", ["X", "k"], ["Y"])]
    with pytest.raises(ModelLoadError, match="no float holds exactly"):
        load_model(str(_model(tmp_path / "w.onnx", weight_nodes, [nh.from_array(np.ones((1, 1), F32), "one"), inits[1]], 1, 1)))


def test_float64_models_keep_their_weights(tmp_path: Path) -> None:
    """A float64 model is analysed with its float64 weights, not float32 copies of them."""
    w = np.array([[0.1, 1 / 3]], dtype=np.float64)
    m = _model(tmp_path / "f64.onnx", [h.make_node("Gemm", ["X", "W"], ["Y"], transB=1)], [nh.from_array(w, "W")], 2, 1, elem=T.DOUBLE)
    graph = load_model(str(m))
    assert graph.dtype == torch.float64
    dense = graph.node(graph.order[0])
    assert dense.weight.detach().numpy().tolist() == w.tolist()


def test_gemm_alpha_is_applied_exactly(tmp_path: Path) -> None:
    """α·W of two float32 numbers is exact in float64 (not in float32): the weight is kept in float64."""
    w = np.array([[0.3, 0.7]], F32)
    m = _model(tmp_path / "alpha.onnx", [h.make_node("Gemm", ["X", "W"], ["Y"], transB=1, alpha=0.1)], [nh.from_array(w, "W")], 2, 1)
    dense = load_model(str(m)).node("dense_0")
    assert dense.weight.dtype == torch.float64
    assert dense.weight.detach().numpy().tolist() == (w.astype(np.float64) * float(F32(0.1))).tolist()


@pytest.mark.parametrize("text,row,const", [
    ("(>= Y_0 0.70710678)", [-50000000.0], 35355339.0),  # h = 0.70710678 − Y_0 = (35355339 − 5·10^7·Y_0)/(5·10^7)
    ("(<= Y_0 0.1)", [10.0], -1.0),  # h = Y_0 − 0.1, scaled by 10
    ("(>= Y_0 0.5)", [-1.0], 0.5),  # dyadic: kept as written
])
def test_vnnlib_output_constants_are_never_rounded(tmp_path: Path, text: str, row: list[float], const: float) -> None:
    """A decimal constant in an output constraint is kept exact by scaling its row to integers (a positive factor
    leaves the property unchanged), not rounded to the nearest float64."""
    clause = read_vnnlib(_spec(tmp_path / "p.vnnlib", 1, 1, [("0", "1")], text)).clauses[0]
    assert clause.C[0].tolist() == row and float(clause.d[0]) == const


def test_vnnlib_constants_too_long_to_scale_are_rounded_the_safe_way(tmp_path: Path) -> None:
    """0.1234567890123456789 needs a denominator of 10^19: the row keeps coefficient 1 and its constant is rounded
    down for proofs and up for confirming counterexamples, so neither direction is ever claimed wrongly."""
    from fractions import Fraction

    clause = read_vnnlib(_spec(tmp_path / "p.vnnlib", 1, 1, [("0", "1")], "(<= Y_0 0.1234567890123456789)")).clauses[0]
    exact = -Fraction("0.1234567890123456789")  # h = Y_0 − 0.123…
    assert clause.C[0].tolist() == [1.0]
    assert Fraction(float(clause.d[0])) < exact < Fraction(float(clause.d_check[0]))
    proof, hits = clause.spec(), clause.spec(counterexamples=True)
    assert float(proof.d[0, 0]) == float(clause.d[0]) and float(hits.d[0, 0]) == float(clause.d_check[0])
