"""srp_check on real operators and real models: its ONNX interpreter against onnxruntime, its bounds against
sampled points, certificates of the MNIST fixtures (bounds from a plain CROWN here, and from srp-audit's own
CROWN — the writer's numbers), and VNN-LIB specs read exactly."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ort_session
from onnx import TensorProto, helper, numpy_helper
from test_srp_check_support import crown_mlp, loosen, mlp_onnx, robustness_claim, write_cert

from srp_check import CertificateError, UnsupportedModel, check, read_network
from srp_check.bounds import backward, lower_bounds
from srp_check.certificate import Leaf
from srp_check.leaf import _derive, sweep
from srp_check.tree import LeafContext
from srp_check.vnnlib import read_vnnlib

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"


def _rich_model(path: Path, seed: int = 0) -> Path:
    """Every operator of format version 1: Sub (constant − data), Div by a per-channel constant, a grouped
    strided dilated Conv with asymmetric pads, BatchNormalization, Relu, a 1×1 Conv, Mul by a broadcast
    constant, Add of two data tensors, Flatten, Dropout, Identity, MatMul + Add, Relu, Gemm."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: numpy_helper.from_array(np.asarray(a, np.float32), None)  # noqa: E731
    inits = {
        "c_sub": rng.normal(size=(1, 2, 1, 1)), "c_div": rng.uniform(0.5, 2, size=(2, 1, 1)),
        "w1": rng.normal(size=(4, 1, 3, 3)), "b1": rng.normal(size=4),
        "bn_s": rng.uniform(0.5, 1.5, 4), "bn_b": rng.normal(size=4), "bn_m": rng.normal(size=4), "bn_v": rng.uniform(0.1, 2, 4),
        "w2": rng.normal(size=(4, 4, 1, 1)) / 2, "c_mul": rng.normal(size=(4, 1, 1)),
        "w3": rng.normal(size=(48, 10)) / 4, "b3": rng.normal(size=10) / 4, "w4": rng.normal(size=(3, 10)) / 3, "b4": rng.normal(size=3),
    }
    tensors = []
    for k, v in inits.items():
        t = f32(v)
        t.name = k
        tensors.append(t)
    n = helper.make_node
    nodes = [
        n("Sub", ["c_sub", "x"], ["s"]), n("Div", ["s", "c_div"], ["d"]),
        n("Conv", ["d", "w1", "b1"], ["c1"], group=2, strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2], kernel_shape=[3, 3]),
        n("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], epsilon=1e-3),
        n("Relu", ["bn"], ["r1"]), n("Conv", ["r1", "w2"], ["c2"]), n("Mul", ["c2", "c_mul"], ["m"]),
        n("Add", ["r1", "m"], ["res"]), n("Relu", ["res"], ["r2"]), n("Flatten", ["r2"], ["f"]),
        n("Dropout", ["f"], ["dr"]), n("Identity", ["dr"], ["id"]), n("MatMul", ["id", "w3"], ["mm"]),
        n("Add", ["mm", "b3"], ["a3"]), n("Relu", ["a3"], ["r3"]), n("Gemm", ["r3", "w4", "b4"], ["y"], transB=1),
    ]
    g = helper.make_graph(nodes, "rich", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], tensors)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("name", ["rich", "mnist_mlp", "mnist_cnn"])
def test_interpreter_matches_onnxruntime(tmp_path, name):
    path = _rich_model(tmp_path / "rich.onnx") if name == "rich" else FIX / f"{name}.onnx"
    net = read_network(path.read_bytes())
    rng = np.random.default_rng(0)
    x = rng.random((5, *net.input_shape)).astype(np.float32)
    ref = ort_session(path).run(None, {net.input: x})[0]
    ours = net.forward(x.astype(np.float64).reshape(5, -1))
    assert ours.shape == ref.reshape(5, -1).shape
    assert np.abs(ours - ref.reshape(5, -1)).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_bounds_contain_sampled_points(tmp_path):
    """Intervals, backward passes from ±every output, and CROWN-derived ReLU bounds hold at random points and
    at the box's corners, with a ReLU split imposed or not."""
    net = read_network(_rich_model(tmp_path / "rich.onnx", seed=3).read_bytes())
    rng = np.random.default_rng(1)
    n = net.sizes[net.input]
    for trial, split in ((0, None), (1, None), (1, 1), (1, -1)):
        x = np.random.default_rng(trial).random(n)
        lo, hi = x - 0.05 * (trial + 1), x + 0.05 * (trial + 1)
        pts = lo + (hi - lo) * np.concatenate([rng.random((400, n)), rng.integers(0, 2, (200, n))])
        vals = {net.input: pts}
        for nd in net.nodes:  # every tensor at the points, as `Network.forward` computes them
            a = vals[nd.inputs[0]]
            vals[nd.output] = (np.maximum(a, 0) if nd.kind == "relu" else a + vals[nd.inputs[1]] if nd.kind == "add"
                               else nd.op.apply(a) + (0 if nd.op.bias is None else nd.op.bias))
        splits = {}
        if split is not None:  # split a neuron both of whose signs the points reach; keep the points on its side
            name, j = next((r, int(np.flatnonzero((z.min(0) < 0) & (z.max(0) > 0))[0])) for r in ("r2", "r3", "r1")
                           if ((z := vals[net.nodes[net.relus[r]].inputs[0]]).min(0) < 0).any() and ((z.min(0) < 0) & (z.max(0) > 0)).any())
            splits = {name: {j: split}}
            keep = split * vals[net.nodes[net.relus[name]].inputs[0]][:, j] >= 0
            vals = {k: v[keep] for k, v in vals.items()}
        st = sweep(net, Leaf(), LeafContext(0, lo, hi, splits, "root"), "t")
        y = vals[net.output]
        K = y.shape[1]
        A = np.concatenate([np.eye(K), -np.eye(K)])
        lb = lower_bounds(*backward(net, st, net.output, A, np.zeros(2 * K)))
        tol = 1e-9 * (1 + np.abs(y).max())
        assert np.all(y.min(0) >= lb[:K] - tol) and np.all(-y.max(0) >= lb[K:] - tol)
        assert np.all(st.lo[net.output] <= y.min(0) + tol) and np.all(y.max(0) <= st.hi[net.output] + tol)
        for name, i in net.relus.items():
            z = net.nodes[i].inputs[0]
            idx = np.arange(net.sizes[z])
            low, up_ = _derive(net, st, z, idx, 1.0), -_derive(net, st, z, idx, -1.0)
            assert np.all(vals[z].min(0) >= low - tol) and np.all(vals[z].max(0) <= up_ + tol), name


def _mlp_weights(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    m = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}
    return [(init[f"{k}.weight"], init[f"{k}.bias"]) for k in (1, 3, 5)]


def _samples(name: str):
    d = np.load(FIX / f"{name}.samples.npz")
    return d, (d["x"].astype(np.float32) / np.float32(255)).astype(np.float64).reshape(len(d["x"]), -1)


def test_mnist_mlp_certificate_with_crown_bounds(tmp_path):
    model = FIX / "mnist_mlp.onnx"
    ws = _mlp_weights(model)
    d, xs = _samples("mnist_mlp")
    data = tmp_path / "data.npz"
    np.savez(data, x=d["x"], y=d["y"])
    net = read_network(model.read_bytes())
    claims, arrays, expect = [], {}, {}
    for i in range(4):
        x, label = xs[i], int(d["y"][i])
        if int(np.argmax(net.forward(x))) != label:
            continue
        cid = f"sample {i}"
        eps = 0.01
        claim, a = robustness_claim(cid, f"{cid}/x", eps, label, 10, sample=i)
        a[f"{cid}/x"] = x
        bounds, final = crown_mlp(ws, np.maximum(x - eps, 0), np.minimum(x + eps, 1), a[f"{cid}/C"], a[f"{cid}/d"])
        leaf = {"bounds": {}}
        for k, (l, u) in enumerate(bounds):
            a[f"{cid}/l{k}"], a[f"{cid}/u{k}"] = loosen(l, u)
            leaf["bounds"]["relu" if k == 0 else f"relu_{k}"] = {"lower": f"{cid}/l{k}", "upper": f"{cid}/u{k}"}
        claim["leaves"] = [leaf]
        claims.append(claim)
        arrays.update(a)
        expect[cid] = bool(final.min() > 1e-6)
    assert any(expect.values())
    r = check(model, write_cert(tmp_path / "c.npz", model, claims, arrays), data=data)
    assert {c.id: c.ok for c in r.claims} == expect, r.lines()


def test_mnist_cnn_certificate_with_srp_audit_bounds(tmp_path):
    """The writer's own intermediate bounds (srp-audit's CROWN, float32, used here in the test only) check."""
    torch = pytest.importorskip("torch")
    from srp_audit.bounds.crown import intermediate_bounds, relu_inputs
    from srp_audit.formats import load_model
    from srp_audit.spec import ball

    model = FIX / "mnist_cnn.onnx"
    d, xs = _samples("mnist_cnn")
    graph = load_model(str(model))
    eps = 0.02
    ctx = intermediate_bounds(graph, ball(torch.from_numpy(xs[:1].astype(np.float32)).reshape(1, 1, 28, 28), eps, (0.0, 1.0)), True)
    label = int(d["y"][0])
    claim, a = robustness_claim("s0", "s0/x", eps, label, 10)
    a["s0/x"] = xs[0]
    leaf = {"bounds": {}}
    for (_, pre), name in zip(relu_inputs(graph), ["relu", "relu_1", "relu_2"]):
        lo, hi = (t.detach().double().numpy().reshape(-1) for t in ctx.bounds[pre])
        a[f"{name}/l"], a[f"{name}/u"] = lo, hi
        leaf["bounds"][name] = {"lower": f"{name}/l", "upper": f"{name}/u"}
    claim["leaves"] = [leaf]
    r = check(model, write_cert(tmp_path / "c.npz", model, [claim], a))
    assert r.ok, r.lines()
    # one first-layer lower bound raised past the exact one: refused, naming it (and fast: the first ReLU)
    l0 = a["relu/l"].copy()
    j = int(np.flatnonzero(l0 < 0)[0])
    l0[j] = 0.5 * l0[j]
    a["relu/l"] = l0
    r = check(model, write_cert(tmp_path / "c2.npz", model, [claim], a))
    assert not r.ok and f"ReLU 'relu', neuron {j}: the claimed lower bound" in r.claims[0].reason


VNN = """; a test property
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const X_3 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (and (>= X_0 {a}) (<= X_0 0.36)))
(assert (<= X_1 0.81))
(assert (>= X_1 0.79))
(assert (and (>= X_2 0.09) (<= X_2 0.11) (>= X_3 0.54) (<= X_3 0.56)))
(assert (or (and (>= Y_1 Y_0)) (and (<= (- Y_0 {y2}) 0))))
"""


def test_vnnlib_reader_is_exact():
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".vnnlib", delete=False) as fh:
        fh.write(VNN.format(a="0.34", y2="(* 2 Y_2)"))
    s = read_vnnlib(fh.name)
    Path(fh.name).unlink()
    (case,) = s.cases
    assert case.lower == [Fraction(34, 100), Fraction(79, 100), Fraction(9, 100), Fraction(54, 100)]
    assert case.upper[1] == Fraction(81, 100) and s.n_y == 3 and s.n_x == 4
    assert case.groups == [[([Fraction(1), Fraction(-1), Fraction(0)], Fraction(0))], [([Fraction(1), Fraction(0), Fraction(-2)], Fraction(0))]]


MULTI = """(declare-const X_0 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= Y_0 -100))
(assert (or (and (>= X_0 -1) (<= X_0 0) (>= Y_0 Y_1)) (and (>= X_0 0) (<= X_0 1) (>= Y_1 Y_0))
            (and (>= X_0 -1) (<= X_0 0) (>= Y_0 3))))
"""


def test_vnnlib_reader_splits_input_disjunctions_into_cases(tmp_path):
    """Disjuncts with their own input boxes (as VNN-COMP's test and ACAS Xu files have) become one case per
    distinct box, each with the groups of its disjuncts and the shared constraints."""
    p = tmp_path / "m.vnnlib"
    p.write_text(MULTI)
    s = read_vnnlib(str(p))
    assert [(c.lower, c.upper) for c in s.cases] == [([-1], [0]), ([0], [1])]
    g0, g1 = s.cases[0].groups, s.cases[1].groups
    assert len(g0) == 2 and len(g1) == 1 and all(len(g) == 2 for g in g0 + g1)  # each disjunct also says Y_0 ≥ -100
    p.write_text(MULTI.replace("(>= Y_0 -100)", "(>= (+ X_0 Y_0) -100)"))
    with pytest.raises(CertificateError, match="single X variables"):
        read_vnnlib(str(p))


def test_certificate_against_a_vnnlib_spec(tmp_path):
    rng = np.random.default_rng(0)
    ws = [(rng.normal(size=(8, 4)) / 2, rng.normal(size=8) / 4), (rng.normal(size=(8, 8)) / 3, rng.normal(size=8) / 4),
          (rng.normal(size=(3, 8)) / 3, rng.normal(size=3) / 4)]
    ws[-1][1][0] += 2.0  # class 0 wins by a margin
    model = mlp_onnx(tmp_path / "m.onnx", ws)
    lo_q = [Fraction(34, 100), Fraction(79, 100), Fraction(9, 100), Fraction(54, 100)]
    hi_q = [Fraction(36, 100), Fraction(81, 100), Fraction(11, 100), Fraction(56, 100)]
    lo = np.array([np.nextafter(float(q), -1) for q in lo_q])
    hi = np.array([np.nextafter(float(q), 2) for q in hi_q])
    C = np.array([[1.0, -1.0, 0.0], [1.0, 0.0, -1.0]])
    bounds, final = crown_mlp(ws, lo, hi, C)
    assert final.min() > 0

    def cert(lo_arr, C_arr, name):
        arrays = {"lo": lo_arr, "hi": hi, "C": C_arr, "d": np.zeros(2)}
        leaf = {"bounds": {}}
        for k, (l, u) in enumerate(bounds):
            arrays[f"l{k}"], arrays[f"u{k}"] = loosen(l, u)
            leaf["bounds"][f"relu{k}"] = {"lower": f"l{k}", "upper": f"u{k}"}
        claim = {"id": "p", "set": {"type": "box", "lower": "lo", "upper": "hi"}, "spec": {"C": "C", "d": "d", "groups": [[0], [1]]},
                 "tree": {"leaf": 0}, "leaves": [leaf]}
        return write_cert(tmp_path / name, model, [claim], arrays)

    def spec(a="0.34", y2="Y_2"):
        p = tmp_path / "p.vnnlib"
        p.write_text(VNN.format(a=a, y2=y2))
        return p

    good = cert(lo, C, "good.npz")
    assert check(model, good, spec=spec()).ok
    assert check(model, cert(lo, C * np.array([[2.0], [0.5]]), "scaled.npz"), spec=spec()).ok  # positive multiples
    r = check(model, good, spec=spec(a="0.3399"))  # a wider box than the certificate's
    assert not r.ok and "does not contain" in r.claims[0].reason
    exact_lo = lo.copy()
    exact_lo[0] = 0.34  # the float 0.34 is above 34/100: one real point of the spec's box is left out
    assert Fraction(0.34) > Fraction(34, 100)
    r = check(model, cert(exact_lo, C, "float.npz"), spec=spec())
    assert not r.ok and "input 0" in r.claims[0].reason
    r = check(model, good, spec=spec(y2="(* 2 Y_2)"))  # another property
    assert not r.ok and "no group implies" in r.claims[0].reason


def test_unsupported_operators_are_named(tmp_path):
    g = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["y"])], "s", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    with pytest.raises(UnsupportedModel, match="Sigmoid"):
        read_network(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    g = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["y"])], "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    with pytest.raises(UnsupportedModel, match="Mul of two data"):
        read_network(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(UnsupportedModel, match="not a readable ONNX"):
        read_network(b"\x00garbage")


def test_derived_constants_are_enclosed(tmp_path):
    """Div's 1/c and BatchNormalization's γ/√(var + ε) lie within the radius the checker charges (checked to
    60 digits against the exact values)."""
    from decimal import Decimal, getcontext

    getcontext().prec = 60
    path = _rich_model(tmp_path / "rich.onnx", seed=5)
    net = read_network(path.read_bytes())
    init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in onnx.load(str(path)).graph.initializer}
    scaled = [nd.op for nd in net.nodes if nd.kind == "linear" and nd.op.rad is not None]
    assert len(scaled) == 2  # the Div and the BatchNormalization's scale
    div, bn = scaled
    c = np.broadcast_to(init["c_div"], (2, 6, 6)).reshape(-1)
    eps = Decimal(float(np.float32(1e-3)))
    bn_exact = [Decimal(g) / (Decimal(v) + eps).sqrt() for g, v in zip(init["bn_s"], init["bn_v"])]
    for op, exact in ((div, [1 / Decimal(v) for v in c]), (bn, [bn_exact[i // 12] for i in range(48)])):
        for s, r, e in zip(op.s, op.rad, exact):
            assert abs(Decimal(s) - e) <= Decimal(r) and Decimal(r) <= abs(Decimal(s)) * Decimal(2.0**-50)
