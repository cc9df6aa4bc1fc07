"""Model shapes beyond one float32 input and one output: several inputs (one concatenated input set, VNN-LIB's X
in order), several outputs (concatenated, Y in order), a fixed batch larger than 1 (part of the sample), float64
and integer inputs, a final LogSoftmax, and ONNX Resize in every supported mode — each against onnxruntime, and
bounded soundly where it is a network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from conftest import ort_session
from onnx import TensorProto, helper, numpy_helper
from soundness import assert_contains, evaluate, identity_spec, sample_box
from srp_audit_cli.main import main

from srp_audit.bounds import get_method
from srp_audit.certify import scores_before_final_softmax
from srp_audit.errors import ModelLoadError
from srp_audit.formats import load_model
from srp_audit.spec import InputBox
from srp_audit.verify import VerifyOptions, verify
from srp_audit.vnnlib import read_vnnlib

RNG = np.random.default_rng(7)


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _save(tmp: Path, nodes, inits, inputs, outputs, name="m.onnx", opset=17) -> Path:
    g = helper.make_graph(nodes, "t", inputs, outputs, [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(tmp / name))
    return tmp / name


def _sound(g, lower: torch.Tensor, upper: torch.Tensor) -> None:
    wide = g.copy(dtype=torch.float64)
    wide.requires_grad_(False)
    box = InputBox(lower.double(), upper.double())
    k = wide.num_classes
    values = evaluate(lambda t: wide(t).reshape(t.shape[0], -1), sample_box(box.lower, box.upper, 300, torch.Generator().manual_seed(0)))
    for method in ("ibp", "crown"):
        lb = get_method(method)(wide, box, identity_spec(k, box.lower.shape[0], torch.float64)).lower.detach()
        assert_contains(values, lb[:, :k], -lb[:, k:], method)


def _two_in_two_out(tmp: Path) -> Path:
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Concat", ["a", "b"], ["ab"], axis=1), helper.make_node("Gemm", ["ab", "W"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Gemm", ["r", "U"], ["y1"], transB=1),
             helper.make_node("Gemm", ["r", "V"], ["y2"], transB=1)]
    return _save(tmp, nodes, {"W": _w(6, 5), "U": _w(2, 6), "V": _w(3, 6)},
                 [helper.make_tensor_value_info("a", f, ["N", 3]), helper.make_tensor_value_info("b", f, ["N", 2])],
                 [helper.make_tensor_value_info("y1", f, ["N", 2]), helper.make_tensor_value_info("y2", f, ["N", 3])])


def test_several_inputs_and_outputs_are_one_concatenated_set_each(tmp_path: Path) -> None:
    path = _two_in_two_out(tmp_path)
    g = load_model(str(path))
    assert g.input_shape == (5,) and g.output_shape == (5,)
    assert [n for n, _ in g.meta.inputs] == ["a", "b"] and [n for n, _ in g.meta.outputs] == ["y1", "y2"]
    x = RNG.standard_normal((4, 5)).astype(np.float32)
    sess = ort_session(path)
    y1, y2 = sess.run(None, {"a": x[:, :3], "b": x[:, 3:]})
    with torch.no_grad():
        ours = g(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, np.concatenate([y1, y2], 1), rtol=1e-5, atol=1e-5)
    c = torch.from_numpy(x[:2]).double()
    _sound(g, c - 0.1, c + 0.1)


def test_verify_reads_x_and_y_across_inputs_and_outputs(tmp_path: Path) -> None:
    """A property on X_3 (the second input's first entry) and Y_3 (the second output's second entry)."""
    path = _two_in_two_out(tmp_path)
    g = load_model(str(path))
    x0 = np.zeros(5, dtype=np.float32)
    with torch.no_grad():
        y0 = g(torch.from_numpy(x0)[None])[0].numpy()
    decl = "".join(f"(declare-const X_{i} Real)\n" for i in range(5)) + "".join(f"(declare-const Y_{i} Real)\n" for i in range(5))
    box = "".join(f"(assert (>= X_{i} -0.01))\n(assert (<= X_{i} 0.01))\n" for i in range(5))
    spec = tmp_path / "p.vnnlib"
    spec.write_text(decl + box + f"(assert (<= Y_3 {float(y0[3]) + 10.0}))\n")  # sat: Y_3 is near y0[3]
    res = verify(g, read_vnnlib(spec), VerifyOptions(timeout=30))
    assert res.status == "sat"
    x, y = res.counterexample
    with torch.no_grad():
        assert abs(float(g(torch.from_numpy(np.asarray(x, dtype=np.float32))[None])[0, 3]) - float(y[3])) < 1e-4
    spec.write_text(decl + box + f"(assert (>= Y_3 {float(y0[3]) + 10.0}))\n")  # unsat: a box of radius 0.01 cannot move it by 10
    assert verify(g, read_vnnlib(spec), VerifyOptions(timeout=30)).status == "unsat"


def test_a_fixed_batch_above_one_is_part_of_the_sample(tmp_path: Path) -> None:
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("ReduceSum", ["r", "ax"], ["y"], keepdims=1)]
    path = _save(tmp_path, nodes, {"W": _w(4, 3), "ax": np.array([0], dtype=np.int64)},
                 [helper.make_tensor_value_info("x", f, [5, 3])], [helper.make_tensor_value_info("y", f, [1, 4])])
    g = load_model(str(path))
    assert g.input_shape == (5, 3) and not g.meta.batched
    x = RNG.standard_normal((5, 3)).astype(np.float32)
    ref = ort_session(path).run(None, {"x": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(g(torch.from_numpy(x)[None])[0].numpy(), ref, rtol=1e-5, atol=1e-5)
    c = torch.from_numpy(x)[None].double()
    _sound(g, c - 0.05, c + 0.05)


def test_inputs_whose_leading_sizes_differ_are_read_whole(tmp_path: Path) -> None:
    """A (1, 4) input beside a (2, 2) one used only for its shape: their leading sizes are not a shared batch axis,
    so both are read whole, as one flat input set (it was refused for 'different fixed batch sizes')."""
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Shape", ["m"], ["sm"]), helper.make_node("Reshape", ["x", "sm"], ["r"]),
             helper.make_node("Mul", ["r", "m"], ["p"]), helper.make_node("Relu", ["p"], ["y"])]
    path = _save(tmp_path, nodes, {}, [helper.make_tensor_value_info("x", f, [1, 4]), helper.make_tensor_value_info("m", f, [2, 2])],
                 [helper.make_tensor_value_info("y", f, [2, 2])])
    g = load_model(str(path))
    assert g.input_shape == (8,) and not g.meta.batched
    x, m = RNG.standard_normal((1, 4)).astype(np.float32), RNG.standard_normal((2, 2)).astype(np.float32)
    ref = ort_session(path).run(None, {"x": x, "m": m})[0]
    flat = torch.from_numpy(np.concatenate([x.reshape(-1), m.reshape(-1)]))[None]
    with torch.no_grad():
        np.testing.assert_allclose(g(flat)[0].numpy().reshape(-1), ref.reshape(-1), rtol=1e-6, atol=1e-6)
    _sound(g, flat.double() - 0.1, flat.double() + 0.1)


def test_an_input_used_as_a_shape_is_refused_with_the_fix(tmp_path: Path) -> None:
    """A second, integer input that gives a Reshape its target shape at run time: the message names it as a model
    input and says to store it in the model."""
    from srp_audit.errors import UnsupportedOpError

    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    path = _save(tmp_path, nodes, {}, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                                       helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    with pytest.raises(UnsupportedOpError, match="'s' is a model input.*export it as a constant"):
        load_model(str(path))


@pytest.mark.parametrize("elem", [TensorProto.DOUBLE, TensorProto.INT64], ids=["float64", "int64"])
def test_float64_and_integer_inputs_load_and_match(tmp_path: Path, elem: int) -> None:
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=f), helper.make_node("Gemm", ["xf", "W"], ["y"], transB=1)]
    path = _save(tmp_path, nodes, {"W": _w(3, 4)}, [helper.make_tensor_value_info("x", elem, ["N", 4])],
                 [helper.make_tensor_value_info("y", f, ["N", 3])])
    g = load_model(str(path))
    x = RNG.integers(-5, 5, (3, 4)) if elem == TensorProto.INT64 else RNG.standard_normal((3, 4))
    ref = ort_session(path).run(None, {"x": x.astype(np.int64 if elem == TensorProto.INT64 else np.float64)})[0]
    with torch.no_grad():
        np.testing.assert_allclose(g(torch.from_numpy(x.astype(np.float32))).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_a_final_log_softmax_is_certified_on_the_scores_and_kept_by_verify(tmp_path: Path) -> None:
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], transB=1), helper.make_node("LogSoftmax", ["h"], ["y"], axis=1)]
    path = _save(tmp_path, nodes, {"W": _w(3, 4)}, [helper.make_tensor_value_info("x", f, ["N", 4])],
                 [helper.make_tensor_value_info("y", f, ["N", 3])], opset=13)
    g = load_model(str(path))
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(g(torch.from_numpy(x)).numpy(), ort_session(path).run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)
    inner, note = scores_before_final_softmax(g)
    assert "LogSoftmax" in note and inner.output_shape == (3,)
    c = torch.from_numpy(x).double()
    _sound(g, c - 0.2, c + 0.2)  # the whole model, LogSoftmax included, as verify bounds it
    np.savez(tmp_path / "d.npz", x=x, y=g(torch.from_numpy(x)).argmax(1).numpy())
    r = CliRunner().invoke(main, ["certify", str(path), "--eps", "0.01", "--data", str(tmp_path / "d.npz"), "--domain", "-5,5"])
    assert r.exit_code == 0, r.output
    assert "LogSoftmax" in r.output or "Softmax and Log" in r.output



def test_a_final_log_of_scores_that_may_be_negative_is_kept(tmp_path: Path) -> None:
    """Log keeps the order of positive scores only: where a score can reach 0 inside the ball the model's output is
    NaN there, so certify bounds the whole model (and proves nothing) instead of the scores before the Log."""
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["h"], transB=1), helper.make_node("Log", ["h"], ["y"])]
    path = _save(tmp_path, nodes, {"W": np.eye(2, dtype=np.float32), "B": np.array([1.0, -0.45], dtype=np.float32)},
                 [helper.make_tensor_value_info("x", f, ["N", 2])], [helper.make_tensor_value_info("y", f, ["N", 2])])
    g = load_model(str(path))
    inner, note = scores_before_final_softmax(g)
    assert note is None and inner.output == g.output
    np.savez(tmp_path / "d.npz", x=np.array([[0.5, 0.5]], dtype=np.float32), y=np.array([0]))
    # x = (0.5, 0.4) is in the ball: h1 = −0.05, log(h1) NaN; certified before, on the scores h
    r = CliRunner().invoke(main, ["certify", str(path), "--eps", "0.1", "--data", str(tmp_path / "d.npz"), "--no-radius",
                                  "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["summary"]["verified"] == 0


def test_a_final_log_of_softmax_is_certified_on_the_scores(tmp_path: Path) -> None:
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], transB=1), helper.make_node("Softmax", ["h"], ["p"], axis=1),
             helper.make_node("Log", ["p"], ["y"])]
    path = _save(tmp_path, nodes, {"W": _w(3, 4)}, [helper.make_tensor_value_info("x", f, ["N", 4])],
                 [helper.make_tensor_value_info("y", f, ["N", 3])], opset=13)
    inner, note = scores_before_final_softmax(load_model(str(path)))
    assert note is not None and "Softmax and Log" in note and inner.output_shape == (3,)


def test_softplus_with_a_low_threshold_is_not_fused_into_mish(tmp_path: Path) -> None:
    """x·tanh(softplus(x)) with torch's threshold 3 (the dynamo exporter's Where(x > 3, x, Softplus(x))) computes
    x·tanh(x) past 3, about 1.4e-3 below Mish there: it stays a product, and every method's lower bound over
    [3.25, 3.5] is at most the exact minimum 3.25·tanh(3.25) (it was 3.2409562 above 3.2402423)."""
    import mpmath

    f = TensorProto.FLOAT
    nodes = [helper.make_node("Greater", ["x", "T"], ["c"]), helper.make_node("Softplus", ["x"], ["s"]),
             helper.make_node("Where", ["c", "x", "s"], ["sp"]), helper.make_node("Tanh", ["sp"], ["t"]),
             helper.make_node("Mul", ["x", "t"], ["y"])]
    path = _save(tmp_path, nodes, {"T": np.array(3.0, dtype=np.float32)}, [helper.make_tensor_value_info("x", f, ["N", 1])],
                 [helper.make_tensor_value_info("y", f, ["N", 1])])
    g = load_model(str(path))
    assert "Mish" not in {type(n).__name__ for _, n, _ in g.items()}
    mpmath.mp.prec = 200
    exact_min = mpmath.mpf(3.25) * mpmath.tanh(mpmath.mpf(3.25))  # increasing on the box: its minimum at 3.25
    wide = g.copy(dtype=torch.float64).requires_grad_(False)
    box = InputBox(torch.tensor([[3.25]], dtype=torch.float64), torch.tensor([[3.5]], dtype=torch.float64))
    for method in ("ibp", "crown-ibp", "crown", "alpha-crown"):
        lb = float(get_method(method)(wide, box, identity_spec(1, 1, torch.float64)).lower[0, 0])
        assert mpmath.mpf(lb) <= exact_min, (method, lb)


RESIZE_CASES = [("nearest", "asymmetric", "floor"), ("nearest", "half_pixel", "round_prefer_floor"),
                ("nearest", "align_corners", "round_prefer_ceil"), ("nearest", "pytorch_half_pixel", "ceil"),
                ("linear", "half_pixel", "round_prefer_floor"), ("linear", "align_corners", "floor"),
                ("linear", "asymmetric", "floor"), ("linear", "pytorch_half_pixel", "floor")]


@pytest.mark.parametrize("mode,coord,nearest", RESIZE_CASES)
@pytest.mark.parametrize("by", ["scales", "sizes"])
def test_onnx_resize_matches_onnxruntime(tmp_path: Path, mode: str, coord: str, nearest: str, by: str) -> None:
    f = TensorProto.FLOAT
    inits = {"roi": np.array([], dtype=np.float32)}
    if by == "scales":
        inits["scales"] = np.array([1, 1, 2.0, 1.5], dtype=np.float32)
        ins = ["x", "roi", "scales"]
    else:
        inits["scales"] = np.array([], dtype=np.float32)
        inits["sizes"] = np.array([1, 2, 7, 4], dtype=np.int64)
        ins = ["x", "roi", "scales", "sizes"]
    nodes = [helper.make_node("Resize", ins, ["y"], mode=mode, coordinate_transformation_mode=coord, nearest_mode=nearest)]
    path = _save(tmp_path, nodes, inits, [helper.make_tensor_value_info("x", f, [1, 2, 4, 5])],
                 [helper.make_tensor_value_info("y", f, [1, 2, "h", "w"])], opset=13)
    g = load_model(str(path))
    x = RNG.standard_normal((1, 2, 4, 5)).astype(np.float32)
    ref = ort_session(path).run(None, {"x": x})[0]
    with torch.no_grad():
        ours = g(torch.from_numpy(x)).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_a_moved_batch_axis_is_followed_until_a_pick_brings_it_back(tmp_path: Path) -> None:
    """Transpose (batch to axis 1) → Gather on axis 0 (batch back in front) loads and matches onnxruntime; a model
    with an op that needs the batch in front while it is moved is read with the batch fixed to 1, and says so,
    naming the node."""
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]), helper.make_node("Gather", ["t", "i"], ["g"], axis=0),
             helper.make_node("Relu", ["g"], ["y"])]
    path = _save(tmp_path, nodes, {"i": np.array(2, dtype=np.int64)}, [helper.make_tensor_value_info("x", f, ["N", 3, 4])],
                 [helper.make_tensor_value_info("y", f, ["N", 4])], opset=13)
    g = load_model(str(path))
    x = RNG.standard_normal((5, 3, 4)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(g(torch.from_numpy(x)).numpy(), ort_session(path).run(None, {"x": x})[0], rtol=1e-6)
    bad = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]), helper.make_node("Relu", ["t"], ["y"], name="act")]
    path = _save(tmp_path, bad, {}, [helper.make_tensor_value_info("x", f, ["N", 3, 4])],
                 [helper.make_tensor_value_info("y", f, [3, "N", 4])], name="bad.onnx", opset=13)
    g = load_model(str(path))
    assert "batch axis fixed to 1" in g.meta.note and "'act'" in g.meta.note and g.input_shape == (1, 3, 4)
    x = RNG.standard_normal((1, 3, 4)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(g(torch.from_numpy(x).unsqueeze(0)).numpy().reshape(-1),
                                   ort_session(path).run(None, {"x": x})[0].reshape(-1), rtol=1e-6)


@pytest.mark.parametrize("beta", [1.0, 2.0, 3.0])
def test_torch_softplus_from_the_dynamo_exporter_loads_with_its_threshold(tmp_path: Path, beta: float) -> None:
    """The dynamo exporter writes torch's Softplus as Where(x > 20, x, Softplus(x)), and with β ≠ 1 as
    Where(β·x > 20, x, Softplus(β·x) / β): read as one Softplus node with its β and threshold."""
    import contextlib
    import io
    import warnings

    m = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Softplus(beta=beta), torch.nn.Linear(5, 3)).eval()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.randn(2, 4),), str(tmp_path / "sp.onnx"), dynamo=True, input_names=["x"],
                          dynamic_shapes=({0: torch.export.Dim("b", min=1, max=64)},))
    g = load_model(str(tmp_path / "sp.onnx"))
    assert [(n.beta, n.threshold) for _, n, _ in g.items() if type(n).__name__ == "Softplus"] == [(beta, 20.0)]
    x = (RNG.standard_normal((6, 4)) * 30 / beta).astype(np.float32)  # both sides of the threshold
    with torch.no_grad():
        np.testing.assert_allclose(g(torch.from_numpy(x)).numpy(), ort_session(tmp_path / "sp.onnx").run(None, {"x": x})[0],
                                   rtol=1e-5, atol=1e-5)
    c = torch.from_numpy(x[:2]).double()
    _sound(g, c - 0.5, c + 0.5)


def test_torchscript_tanh_gelu_reads_its_cube_as_one_power(tmp_path: Path) -> None:
    """TorchScript (opset 17, no Gelu op) writes tanh-GELU with x·x·x: the chain fuses to one OddPower(3) (a tight
    rule, not two bilinear products), matches onnxruntime and is bounded soundly; x·x·x·x likewise becomes x⁴."""
    from arch_zoo import export

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.act = torch.nn.Linear(4, 5), torch.nn.GELU(approximate="tanh")

        def forward(self, x):
            z = self.lin(x)
            return torch.cat([self.act(z), z * z * z * z], 1)

    export(Net().eval(), (4,), "torchscript", tmp_path / "g.onnx")
    g = load_model(str(tmp_path / "g.onnx"))
    powers = sorted((type(n).__name__, float(n.exponent)) for _, n, _ in g.items() if hasattr(n, "exponent"))
    assert powers == [("OddPower", 3.0), ("Power", 4.0)], powers
    x = RNG.standard_normal((6, 4)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(g(torch.from_numpy(x)).numpy(), ort_session(tmp_path / "g.onnx").run(None, {"x": x})[0],
                                   rtol=1e-5, atol=1e-5)
    c = torch.from_numpy(x[:2]).double()
    _sound(g, c - 0.3, c + 0.3)


def _const_fold_case(case: str):
    """(nodes, initializers, input shape, output shape) of models whose constants once folded wrongly: each
    made verify answer unsat on a property with a counterexample."""
    f, i64 = TensorProto.FLOAT, lambda *a: np.array(a, dtype=np.int64)
    if case == "cast_of_derived":  # x · float(int64(10/3)) = 3x, not (10/3)x
        nodes = [helper.make_node("Div", ["ten", "three"], ["q"]), helper.make_node("Cast", ["q"], ["qi"], to=TensorProto.INT64),
                 helper.make_node("Cast", ["qi"], ["qf"], to=f), helper.make_node("Mul", ["x", "qf"], ["y"])]
        return nodes, {"ten": np.float32(10.0), "three": np.float32(3.0)}, [1, 1], [1, 1]
    if case == "integer_pow":  # int64: 3² = 9, 9 / 2 = 4 (truncating): y = 4x, not 4.5x
        nodes = [helper.make_node("Pow", ["three", "two"], ["p"]), helper.make_node("Div", ["p", "two"], ["d"]),
                 helper.make_node("Cast", ["d"], ["df"], to=f), helper.make_node("Mul", ["x", "df"], ["y"])]
        return nodes, {"three": np.int64(3), "two": np.int64(2)}, [1, 1], [1, 1]
    if case == "slice_negative_step":  # ONNX clamps the start −100 to 0: axes [1] (row sums), numpy's slice gave []
        nodes = [helper.make_node("Slice", ["ax", "s", "e", "a", "t"], ["axs"]),
                 helper.make_node("ReduceSum", ["x", "axs"], ["r"], keepdims=1), helper.make_node("Expand", ["r", "shp"], ["y"])]
        return nodes, {"ax": i64(1, 0), "s": i64(-100), "e": i64(-1000), "a": i64(0), "t": i64(-1), "shp": i64(2, 3)}, [2, 3], [2, 3]
    # castlike_to_data: CastLike(2.7, int64 data) = 2: y = 2x, not 2.7x
    nodes = [helper.make_node("Cast", ["x"], ["xi"], to=TensorProto.INT64), helper.make_node("CastLike", ["c", "xi"], ["ci"]),
             helper.make_node("Cast", ["ci"], ["cf"], to=f), helper.make_node("Mul", ["x", "cf"], ["y"])]
    return nodes, {"c": np.float32(2.7)}, [1, 1], [1, 1]


@pytest.mark.parametrize("case", ["cast_of_derived", "integer_pow", "slice_negative_step", "castlike_to_data"])
def test_constants_fold_as_onnxruntime_computes_them(tmp_path: Path, case: str) -> None:
    nodes, inits, x_shape, y_shape = _const_fold_case(case)
    f = TensorProto.FLOAT
    path = _save(tmp_path, nodes, inits, [helper.make_tensor_value_info("x", f, x_shape)], [helper.make_tensor_value_info("y", f, y_shape)])
    g = load_model(str(path))
    x = (RNG.random(x_shape) + 0.5).astype(np.float32)
    with torch.no_grad():
        ours = g(torch.from_numpy(x).reshape((1, *g.input_shape))).numpy().reshape(-1)
    np.testing.assert_allclose(ours, ort_session(path).run(None, {"x": x})[0].reshape(-1), rtol=1e-6)


@pytest.mark.parametrize("lo,hi", [(np.inf, 5.0), (None, -np.inf), (np.nan, 1.0)])
def test_clip_with_a_constant_output_is_refused(tmp_path: Path, lo, hi) -> None:
    """Clip(x, +inf, 5) is 5 everywhere (ONNX: min(max(x, lo), hi)); an infinite min used to be dropped (read as
    min(x, 5))."""
    f = TensorProto.FLOAT
    inits = {k: np.float32(v) for k, v in (("lo", lo), ("hi", hi)) if v is not None}
    nodes = [helper.make_node("Clip", ["x", "lo" if lo is not None else "", "hi"], ["y"])]
    path = _save(tmp_path, nodes, inits, [helper.make_tensor_value_info("x", f, [1, 1])], [helper.make_tensor_value_info("y", f, [1, 1])])
    with pytest.raises(ModelLoadError, match="Clip"):
        load_model(str(path))
