"""Regressions from an adversarial review of the checker: false claims that once checked, and a crash.

* A model whose input is a vector without a batch axis is read as one row; an operator that sees that row axis
  (Shape, Flatten, Reshape) would be misread, so it is refused.
* With --spec, an L2/L1 ball claim covers a spec box only if the box lies inside the ball (its bounding box is
  not enough).
* A model too large to allocate is refused cleanly.
* A model of an opset before 7, where Add broadcasts along an `axis` attribute, is refused: read with numpy's
  broadcasting it proved y[2] > 200 at x = 0 where the model computes 100.
* An archive member that is not a .npy array (which numpy hands back as raw bytes) is a clean error, not a crash.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_srp_check_support import write_cert

from srp_check import UnsupportedModel, check, read_network


def _save(path: Path, nodes, inputs, outputs, inits=()) -> Path:
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("op", ["Shape", "Flatten", "Reshape"])
def test_row_axis_of_a_vector_model_is_never_seen(tmp_path: Path, op: str) -> None:
    vec = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    if op == "Shape":  # y = x · float(Shape(x)) = 2x; read with the row axis it would be (x0, 2·x1)
        nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("CastLike", ["s", "x"], ["sf"]),
                 helper.make_node("Mul", ["x", "sf"], ["y"])]
        inits, out = [], vec("y", [2])
    elif op == "Flatten":
        nodes, inits, out = [helper.make_node("Flatten", ["x"], ["y"], axis=1)], [], vec("y", [2, 1])
    else:
        nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
        inits, out = [numpy_helper.from_array(np.array([0, -1], np.int64), "shape")], vec("y", [2, 1])
    model = _save(tmp_path / "m.onnx", nodes, [vec("x", [2])], [out], inits)
    with pytest.raises(UnsupportedModel, match="vector without a batch axis"):
        read_network(model.read_bytes())


@pytest.mark.parametrize("norm", ["1", "2"])
def test_a_ball_claim_covers_only_spec_boxes_inside_the_ball(tmp_path: Path, norm: str) -> None:
    """y = (1.5 − x0 − x1, 0): y0 > y1 on the ball of radius 1 around 0 in L1 and L2, not on its bounding box
    [-1, 1]² (at (1, 1) y0 − y1 = −0.5): the ball claim checks, but does not prove the box's property."""
    W, b = np.array([[-1.0, -1.0], [0.0, 0.0]], np.float32), np.array([1.5, 0.0], np.float32)
    model = _save(tmp_path / "m.onnx", [helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                  [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")])
    claim = {"id": "c", "set": {"type": "robustness", "sample": 0, "x": "x", "eps": 1.0, "norm": norm, "domain": [-1.0, 1.0],
                                "label": 0, "classes": 2},
             "spec": {"C": "C", "d": "d", "groups": [[0]]}, "tree": {"leaf": 0}, "leaves": [{}]}
    cert = write_cert(tmp_path / "c.npz", model, [claim], {"x": np.zeros(2), "C": np.array([[1.0, -1.0]]), "d": np.array([0.0])})
    assert check(model, cert).ok
    head = "".join(f"(declare-const {v} Real)\n" for v in ("X_0", "X_1", "Y_0", "Y_1"))
    spec = tmp_path / "p.vnnlib"
    spec.write_text(head + "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= X_1 -1))\n(assert (<= X_1 1))\n(assert (>= Y_1 Y_0))\n")
    report = check(model, cert, spec=spec)
    assert not report.ok and "not inside the claim's" in report.claims[0].reason
    spec.write_text(head + "(assert (>= X_0 -0.25))\n(assert (<= X_0 0.25))\n(assert (>= X_1 0))\n(assert (<= X_1 0.5))\n(assert (>= Y_1 Y_0))\n")
    assert check(model, cert, spec=spec).ok  # a box inside both balls: |0.25| + |0.5| ≤ 1, 0.25² + 0.5² ≤ 1


def test_a_model_too_large_to_read_is_refused(tmp_path: Path) -> None:
    model = _save(tmp_path / "m.onnx", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 10_000_000, 10_000_000])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 9_999_999, 9_999_999])])
    with pytest.raises(UnsupportedModel):
        read_network(model.read_bytes())


def test_one_hot_rows_through_a_convolution_match_the_transposed_convolution() -> None:
    """A derivation's first step reads rows of the convolution's dense matrix: bit for bit the transposed
    convolution's single products (a row with one nonzero a gives a·w, summed with zeros only)."""
    from srp_check.linear import Conv

    rng = np.random.default_rng(0)
    conv = Conv(rng.standard_normal((4, 3, 3, 3)), None, (3, 9, 9), (2, 2), (1, 0, 1, 1), (1, 1), 1)
    A = np.zeros((40, conv.n_out))
    A[np.arange(40), rng.integers(0, conv.n_out, 40)] = rng.standard_normal(40) * 10.0 ** rng.integers(-200, 200, 40)
    assert np.array_equal(conv.back(A), conv._back(A)) and conv.dense is not None
    B = A.copy()
    B[0, 1 if B[0, 0] else 0] = 1.0  # two nonzeros in a row: the transposed convolution
    assert np.array_equal(conv.back(B), conv._back(B))


def test_a_model_of_an_opset_before_7_is_refused(tmp_path: Path) -> None:
    b = numpy_helper.from_array(np.array([100, 200, 300], np.float32), "b")
    g = helper.make_graph([helper.make_node("Add", ["x", "b"], ["y"], broadcast=1, axis=1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 3]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [3])],  # IR 3: initializers are inputs
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 3])], [b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 6)])
    m.ir_version = 3
    onnx.checker.check_model(m)
    with pytest.raises(UnsupportedModel, match="opset 6"):
        read_network(m.SerializeToString())


def test_an_archive_member_that_is_not_npy_is_a_clean_error(tmp_path: Path) -> None:
    import zipfile

    from click.testing import CliRunner
    from srp_audit_cli.main import main

    W = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    model = _save(tmp_path / "m.onnx", [helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [numpy_helper.from_array(W, "W")])
    claim = {"id": "c", "set": {"type": "robustness", "sample": 0, "x": "x", "eps": 0.1, "norm": "inf", "domain": [0.0, 1.0],
                                "label": 0, "classes": 2},
             "spec": {"C": "C", "d": "d", "groups": [[0]]}, "tree": {"leaf": 0}, "leaves": [{}]}
    good = write_cert(tmp_path / "c.npz", model, [claim], {"x": np.array([1.0, 0.0]), "C": np.array([[1.0, -1.0]]),
                                                           "d": np.array([0.0])})
    assert check(model, good).ok
    with zipfile.ZipFile(tmp_path / "raw.npz", "w") as z:
        z.writestr("manifest.json", np.load(good)["manifest.json"].tobytes())  # the JSON bytes, no .npy header
    np.savez(tmp_path / "data.npz", x=np.zeros((1, 2), np.float32), y=np.zeros(1, np.int64))
    with zipfile.ZipFile(tmp_path / "rawdata.npz", "w") as z:
        z.writestr("x", b"not an npy file")
        z.writestr("y", b"nor this")
    for args in (["check", str(model), str(tmp_path / "raw.npz")],
                 ["check", str(model), str(good), "--data", str(tmp_path / "rawdata.npz")]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and "npy" in r.output and "Traceback" not in r.output and "internal" not in r.output, r.output
