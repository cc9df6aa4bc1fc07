"""srp_check's MaxPool and AveragePool: the ResNet fixture's certificates check, hand-built pooling models'
certificates check, the checker's interval and backward bounds hold at sampled points and corners, and claims
one ulp past what the checker derives through a max-pooling are rejected."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import FIXTURES, ort_session
from onnx import TensorProto, helper, numpy_helper

from srp_audit.certificate import ProofWriter
from srp_audit.certificate_trees import certify_certificate
from srp_audit.certify import CertifyOptions, certify
from srp_audit.formats import load_model
from srp_check import UnsupportedModel, check, read_network
from srp_check.bounds import backward, lower_bounds
from srp_check.certificate import Leaf, parse_claims, read_manifest
from srp_check.leaf import sweep
from srp_check.pool import MaxPool
from srp_check.tree import LeafContext

RESNET = FIXTURES / "mnist_resnet.onnx"


def _pool_model(path: Path, variant: str, seed: int = 0) -> Path:
    """'tiled': Conv, Relu, MaxPool 2×2/2, Conv, Relu, AveragePool 2×2/2, Gemm. 'overlap': Conv, MaxPool 3×3/1
    pad 1 (not after a ReLU), Relu, AveragePool 3×3/1 pad 1 (padding counted), Conv, Relu, MaxPool 2×2/1
    dilation 2, Gemm."""
    rng = np.random.default_rng(seed)
    n = helper.make_node
    if variant == "tiled":
        shape, inits = (2, 8, 8), {"w1": rng.normal(size=(4, 2, 3, 3)) / 2, "b1": rng.normal(size=4) / 4,
                                   "w2": rng.normal(size=(4, 4, 3, 3)) / 3, "b2": rng.normal(size=4) / 4, "w3": rng.normal(size=(3, 16))}
        nodes = [n("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), n("Relu", ["c1"], ["r1"]),
                 n("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
                 n("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]), n("Relu", ["c2"], ["r2"]),
                 n("AveragePool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]), n("Flatten", ["p2"], ["f"]),
                 n("Gemm", ["f", "w3"], ["y"], transB=1)]
    else:
        shape, inits = (2, 7, 7), {"w1": rng.normal(size=(3, 2, 3, 3)) / 2, "w2": rng.normal(size=(4, 3, 2, 2)) / 2,
                                   "b2": rng.normal(size=4) / 4, "w3": rng.normal(size=(3, 16))}
        nodes = [n("Conv", ["x", "w1"], ["c1"]), n("MaxPool", ["c1"], ["p1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                 n("Relu", ["p1"], ["r1"]), n("AveragePool", ["r1"], ["p2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
                 n("Conv", ["p2", "w2", "b2"], ["c2"]), n("Relu", ["c2"], ["r2"]),
                 n("MaxPool", ["r2"], ["p3"], kernel_shape=[2, 2], dilations=[2, 2]), n("Flatten", ["p3"], ["f"]),
                 n("Gemm", ["f", "w3"], ["y"], transB=1)]
    tensors = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()]
    g = helper.make_graph(nodes, variant, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], tensors)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def resnet_cert(tmp_path_factory) -> tuple[Path, list]:
    """`certify` on the ResNet fixture's first 8 samples at eps 0.005 (no radius), its certificate written."""
    graph = load_model(str(RESNET))
    data = np.load(FIXTURES / "mnist_resnet.samples.npz")
    x, y = torch.from_numpy(data["x"][:8]).float() / 255.0, torch.from_numpy(data["y"][:8]).long()
    opts = CertifyOptions(eps=0.005, radius=False)
    result = certify(graph, x, y, opts)
    out = tmp_path_factory.mktemp("resnet") / "resnet.cert.npz"
    certify_certificate(str(RESNET), graph, x, result.samples, opts).write(str(out))
    return out, result.samples


def test_every_verified_resnet_sample_checks(resnet_cert):
    cert, samples = resnet_cert
    report = check(str(RESNET), str(cert))
    verified = [s for s in samples if s.verdict == "verified"]
    assert verified and len(report.claims) == len(verified) and not report.uncertified
    assert report.ok, report.lines()


def _state(net, leaf: Leaf, lo: np.ndarray, hi: np.ndarray):
    return sweep(net, leaf, LeafContext(0, lo, hi, {}, "root"), "t")


def _tamper(model: Path, cert: Path, claim: int, relu: str, tmp: Path) -> None:
    """A claimed bound of the neuron of `relu` whose derivation (through a max-pooling) beats the interval pass
    most, set to the checker's own derived bound (read off its rejection of a much tighter claim), checks; one
    ulp tighter is rejected."""
    net = read_network(model.read_bytes())
    man = read_manifest(str(cert))
    c = parse_claims(man, net)[claim]
    with np.load(cert) as zf:
        man_bytes = zf["manifest.json"]
    x, eps = c.input_set["x"], c.input_set["eps"]
    lo, hi = np.maximum(x - eps, c.input_set["domain"][0]), np.minimum(x + eps, c.input_set["domain"][1])
    st = _state(net, Leaf(), lo, hi)
    z = net.nodes[net.relus[relu]].inputs[0]
    n = net.sizes[z]
    gain = lower_bounds(*backward(net, st, z, np.concatenate([np.eye(n), -np.eye(n)]), np.zeros(2 * n)))
    gain = gain - np.concatenate([st.lo[z], -st.hi[z]])
    assert gain.max() > 0
    j, side = int(gain.argmax()) % n, ("lower", "upper")[int(gain.argmax()) // n]
    key = man.raw_claims[claim]["leaves"][0]["bounds"][relu][side]
    claimed = man.arrays[key]
    toward = np.inf if side == "lower" else -np.inf

    def run(value: float):  # the certificate with this claim only
        manifest = json.loads(bytes(man_bytes).decode())
        manifest["claims"] = manifest["claims"][claim:claim + 1]
        arrays = {**man.arrays, key: claimed.copy(), "manifest.json": np.frombuffer(json.dumps(manifest).encode(), np.uint8)}
        arrays[key][j] = value
        np.savez(tmp / "tampered.npz", **arrays)
        return check(str(model), str(tmp / "tampered.npz")).claims[0]

    r = run(claimed[j] + (1.0 if side == "lower" else -1.0))
    assert not r.ok and f"ReLU {relu!r}, neuron {j}:" in r.reason, r.reason
    derived = float(re.search(rf"the checker's {side} bound is (\S+)$", r.reason).group(1))
    assert run(derived).ok
    r = run(np.nextafter(derived, toward))
    assert not r.ok and f"ReLU {relu!r}, neuron {j}: the claimed {side} bound" in r.reason, r.reason


def test_resnet_bound_one_ulp_past_the_maxpool_derivation_is_rejected(resnet_cert, tmp_path):
    _tamper(RESNET, resnet_cert[0], 0, "relu_1", tmp_path)


@pytest.mark.parametrize("variant", ["tiled", "overlap"])
def test_hand_built_pooling_models(tmp_path, variant):
    """The interpreter matches onnxruntime; srp-audit's certificates of a few samples check; a bound one ulp past
    the checker's derivation through a max-pooling is rejected."""
    path = _pool_model(tmp_path / f"{variant}.onnx", variant)
    net = read_network(path.read_bytes())
    rng = np.random.default_rng(1)
    xs = rng.random((6, *net.input_shape)).astype(np.float32)
    ref = ort_session(path).run(None, {"x": xs})[0]
    ys = net.forward(xs.astype(np.float64).reshape(6, -1))
    assert np.abs(ys - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    writer = ProofWriter(str(path), load_model(str(path)))
    assert writer.reason is None, writer.reason
    cert = writer.certificate()
    for i in range(6):
        claim = writer.robustness_claim(i, torch.from_numpy(xs[i]), int(ys[i].argmax()), 0.004, (0.0, 1.0), ("crown", "alpha-crown"))
        if claim is not None:
            cert.claims.append(claim)
    assert len(cert.claims) >= 3
    cert.write(str(tmp_path / "c.npz"))
    report = check(str(path), str(tmp_path / "c.npz"))
    assert report.ok and len(report.claims) == len(cert.claims), report.lines()
    _tamper(path, tmp_path / "c.npz", 0, "r2", tmp_path)


@pytest.mark.parametrize("variant,width", [("tiled", 0.05), ("overlap", 0.05), ("overlap", 0.3)])
def test_pool_bounds_contain_sampled_points(tmp_path, variant, width):
    """Intervals of every tensor and backward passes from ± every entry of each pooling's output, of the ReLUs'
    inputs and of the output hold at random points of the box and at its corners."""
    net = read_network(_pool_model(tmp_path / "m.onnx", variant, seed=2).read_bytes())
    n = net.sizes[net.input]
    rng = np.random.default_rng(3)
    x = rng.random(n)
    lo, hi = x - width, x + width
    pts = lo + (hi - lo) * np.concatenate([rng.random((300, n)), rng.integers(0, 2, (300, n))])
    vals = {net.input: pts}
    for nd in net.nodes:
        a = vals[nd.inputs[0]]
        vals[nd.output] = (np.maximum(a, 0) if nd.kind == "relu" else nd.op.forward(a) if nd.kind == "maxpool"
                           else nd.op.apply(a) + (0 if nd.op.bias is None else nd.op.bias))
    st = _state(net, Leaf(), lo, hi)
    pools = [nd.output for nd in net.nodes if nd.kind == "maxpool" or nd.output.endswith("#sum")]
    relu_in = [net.nodes[i].inputs[0] for i in net.relus.values()]
    for t in [*pools, *relu_in, net.output]:
        v, k = vals[t], net.sizes[t]
        tol = 1e-9 * (1 + np.abs(v).max())
        assert np.all(st.lo[t] <= v.min(0) + tol) and np.all(v.max(0) <= st.hi[t] + tol), t
        A = np.concatenate([np.eye(k), -np.eye(k)])
        lb = lower_bounds(*backward(net, st, t, A, np.zeros(2 * k)))
        assert np.all(v.min(0) >= lb[:k] - tol) and np.all(-v.max(0) >= lb[k:] - tol), t
    dom = np.concatenate([ln.dom for ln in st.pools.values()])
    assert (~dom).any() and (dom.any() or width > 0.1)  # both upper lines are exercised


def test_dominated_windows_are_exact():
    """A window whose chosen input dominates: y = x_j exactly, so a backward pass through it moves ±1 unchanged;
    elsewhere a negative coefficient meets the constant max u."""
    mp = MaxPool((1, 2, 2), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1))
    l, u = np.array([0.0, 2.0, 0.0, 1.0]), np.array([1.0, 3.0, 0.5, 1.5])
    ln = mp.lines(l, u, mp.forward(u[None])[0], "t")
    assert ln.j.tolist() == [1] and ln.dom.all()
    A_in, const, charge = mp.back(np.array([[-2.0], [3.0]]), ln, np.abs(u))
    assert A_in.tolist() == [[0, -2, 0, 0], [0, 3, 0, 0]] and const.tolist() == [0, 0] and charge.max() < 1e-300
    l[3] = 0.0
    u[3] = 2.5  # x_3 may exceed l_1: no dominance
    ln = mp.lines(l, u, mp.forward(u[None])[0], "t")
    A_in, const, _ = mp.back(np.array([[-2.0], [3.0]]), ln, np.abs(u))
    assert not ln.dom.any() and A_in.tolist() == [[0, 0, 0, 0], [0, 3, 0, 0]] and const.tolist() == [-6.0, 0.0]


def test_unsupported_pool_attributes_are_refused(tmp_path):
    def model(op: str, **attrs) -> bytes:
        g = helper.make_graph([helper.make_node(op, ["x"], ["y"], kernel_shape=[2, 2], **attrs)], "p",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()

    for op, attrs, what in (("MaxPool", {"ceil_mode": 1}, "ceil_mode"), ("MaxPool", {"auto_pad": "SAME_UPPER"}, "explicit"),
                            ("AveragePool", {"pads": [1, 1, 1, 1]}, "does not count"), ("MaxPool", {"pads": [2, 2, 2, 2]}, "padding only")):
        with pytest.raises(UnsupportedModel, match=what):
            read_network(model(op, **attrs))
    read_network(model("AveragePool", pads=[1, 1, 1, 1], count_include_pad=1))
