"""ONNX loader: numerics against onnxruntime on fixtures, torch exports (both exporters, opsets 11–21),
hand-built graphs for ops torch does not emit, the VNN-COMP models, and every load error."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import FIXTURE_MODELS, FIXTURES, VNNCOMP, ort_session, relative_error
from onnx import TensorProto, helper, numpy_helper
from zoo import zoo

from srp_audit.errors import ModelLoadError, UnsupportedOpError
from srp_audit.formats import load_model
from srp_audit.formats.onnx_read import load_onnx

RNG = np.random.default_rng(0)


def _compare_with_ort(path: Path, batch: int = 4, tol: float = 1e-5) -> None:
    sess = ort_session(path)
    for simplified in (False, True):
        g = load_model(str(path), simplified=simplified)
        inp = sess.get_inputs()[0]
        fixed_batch = isinstance(inp.shape[0], int) if g.meta.batched else True
        n = 1 if fixed_batch else batch
        shape = ((n,) if g.meta.batched else ()) + g.input_shape
        x = RNG.random(shape, dtype=np.float32)
        ref = sess.run(None, {inp.name: x})[0]
        with torch.no_grad():
            ours = g(torch.from_numpy(x).reshape((n,) + g.input_shape)).numpy()
        assert relative_error(ours.reshape(ref.shape), ref) <= tol, (path.name, simplified)


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_fixture_matches_onnxruntime(name: str) -> None:
    _compare_with_ort(FIXTURES / f"{name}.onnx", batch=7)


def _export(model: torch.nn.Module, shape: tuple[int, ...], path: Path, exporter: str, opset: int, external: bool = False) -> None:
    x = torch.rand((1,) + shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["x"],
                              dynamic_axes={"x": {0: "batch"}})
        else:
            torch.onnx.export(model, (x,), str(path), opset_version=opset, verbose=False, external_data=external,
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))


EXPORTS = [("torchscript", op) for op in (11, 13, 15, 17, 19, 21)] + [("dynamo", op) for op in (18, 20, 21)]


@pytest.mark.parametrize("exporter,opset", EXPORTS, ids=[f"{e}-opset{o}" for e, o in EXPORTS])
def test_torch_exports_match(tmp_path: Path, exporter: str, opset: int) -> None:
    for name, (model, shape) in zoo().items():
        path = tmp_path / f"{name}.onnx"
        _export(model, shape, path, exporter, opset)
        assert onnx.load(str(path)).opset_import[0].version == opset
        _compare_with_ort(path)
        g = load_model(str(path))
        x = torch.rand((5,) + shape)
        with torch.no_grad():
            assert relative_error(g(x).numpy(), model(x).numpy()) <= 1e-5, name


def test_external_data_loads(tmp_path: Path) -> None:
    model, shape = zoo()["cnn_pools"]
    path = tmp_path / "ext.onnx"
    _export(model, shape, path, "dynamo", 20, external=True)
    assert (tmp_path / "ext.onnx.data").exists()
    _compare_with_ort(path)


def test_external_data_missing_is_a_load_error(tmp_path: Path) -> None:
    model, shape = zoo()["cnn_pools"]
    path = tmp_path / "ext.onnx"
    _export(model, shape, path, "dynamo", 20, external=True)
    (tmp_path / "ext.onnx.data").unlink()
    with pytest.raises(ModelLoadError, match="external data|not a readable"):
        load_model(str(path))


VNN_MODELS = sorted(VNNCOMP.glob("*/onnx/*.onnx")) + sorted(VNNCOMP.glob("test/*.onnx")) if VNNCOMP.exists() else []


@pytest.mark.skipif(not VNN_MODELS, reason="../shared/benchmarks/vnncomp is absent")
@pytest.mark.parametrize("path", VNN_MODELS, ids=[p.name for p in VNN_MODELS])
def test_vnncomp_models_match_onnxruntime(path: Path) -> None:
    _compare_with_ort(path)


# ---------------------------------------------------------------------------------------- hand-built graphs


def _model(nodes, inits, in_shape, out_shape, opset, in_name="x", out_name="y") -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "t",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    return m


def _save(tmp_path: Path, m: onnx.ModelProto, name: str = "m.onnx") -> Path:
    p = tmp_path / name
    onnx.save(m, str(p))
    return p


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_legacy_shape_chain_reshape(tmp_path: Path) -> None:
    """Shape → Gather → Unsqueeze → Concat → Reshape, as older exporters wrote flatten (opset 11, attrs)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b"], ["b1"], axes=[0]),
        helper.make_node("Concat", ["b1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "bias"], ["y"]),
    ]
    inits = {"zero": np.array(0, dtype=np.int64), "minus1": np.array([-1], dtype=np.int64), "W": _w(12, 3), "bias": _w(3)}
    _compare_with_ort(_save(tmp_path, _model(nodes, inits, ["N", 3, 2, 2], ["N", 3], 11)))


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze_both_forms(tmp_path: Path, opset: int) -> None:
    if opset >= 13:
        nodes = [helper.make_node("Unsqueeze", ["x", "ax"], ["u"]), helper.make_node("Squeeze", ["u", "ax"], ["s"])]
        inits = {"ax": np.array([2], dtype=np.int64)}
    else:
        nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[2]), helper.make_node("Squeeze", ["u"], ["s"], axes=[2])]
        inits = {}
    nodes.append(helper.make_node("Gemm", ["s", "W"], ["y"], transB=1))
    inits["W"] = _w(4, 6)
    _compare_with_ort(_save(tmp_path, _model(nodes, inits, ["N", 6], ["N", 4], opset)))


@pytest.mark.parametrize("opset", [9, 11, 18])
def test_pad_constant_forms(tmp_path: Path, opset: int) -> None:
    pads = [0, 0, 1, 2, 0, 0, 2, 0]
    if opset < 11:
        nodes = [helper.make_node("Pad", ["x"], ["p"], pads=pads, value=0.5)]
        inits = {}
    else:
        nodes = [helper.make_node("Pad", ["x", "pads", "cv"], ["p"], mode="constant")]
        inits = {"pads": np.array(pads, dtype=np.int64), "cv": np.array(0.5, dtype=np.float32)}
    nodes += [helper.make_node("Conv", ["p", "W"], ["y"], kernel_shape=[3, 3])]
    inits["W"] = _w(2, 2, 3, 3)
    _compare_with_ort(_save(tmp_path, _model(nodes, inits, [1, 2, 5, 5], [1, 2, 6, 5], opset)))


def test_matmul_neg_transpose_globalpool_dropout(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Neg", ["t"], ["n"]),
        helper.make_node("Conv", ["n", "W", "B"], ["c"], kernel_shape=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Dropout", ["r", "ratio"], ["d"]),
        helper.make_node("GlobalAveragePool", ["d"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "M"], ["mm"]),
        helper.make_node("Sub", ["mm", "s"], ["y"]),
    ]
    inits = {"W": _w(4, 3, 2, 2), "B": _w(4), "ratio": np.array(0.3, dtype=np.float32), "M": _w(4, 2), "s": _w(1, 2)}
    _compare_with_ort(_save(tmp_path, _model(nodes, inits, ["N", 5, 5, 3], ["N", 2], 13)))


def test_reshape_allowzero(tmp_path: Path) -> None:
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"], allowzero=1), helper.make_node("Tanh", ["r"], ["y"])]
    inits = {"shape": np.array([1, 6, 2], dtype=np.int64)}
    _compare_with_ort(_save(tmp_path, _model(nodes, inits, [1, 3, 4], [1, 6, 2], 14)))


def test_unbatched_vector_model(tmp_path: Path) -> None:
    """VNN-COMP style: a 1-D input without batch axis, W @ x."""
    nodes = [helper.make_node("MatMul", ["W0", "x"], ["h"]), helper.make_node("Add", ["h", "b0"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("MatMul", ["r", "W1"], ["y"])]
    inits = {"W0": _w(4, 3), "b0": _w(4), "W1": _w(4, 2)}
    path = _save(tmp_path, _model(nodes, inits, [3], [2], 13))
    g = load_onnx(str(path))
    assert not g.meta.batched and g.input_shape == (3,)
    _compare_with_ort(path)


# ---------------------------------------------------------------------------------------- errors


def test_unsupported_op_names_node_op_and_opset(tmp_path: Path) -> None:
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], transB=1), helper.make_node("Hardmax", ["h"], ["y"], name="probs")]
    path = _save(tmp_path, _model(nodes, {"W": _w(3, 4)}, ["N", 4], ["N", 3], 13))
    with pytest.raises(UnsupportedOpError) as e:
        load_model(str(path))
    msg = str(e.value)
    assert "'probs'" in msg and "Hardmax" in msg and "opset 13" in msg and "\n" not in msg


def test_bilinear_products_load_and_match_onnxruntime(tmp_path: Path) -> None:
    """Mul and MatMul of two input-dependent tensors (once rejected) are Product / broadcast + Product + Reduce."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["x", "r"], ["y"], name="square")]
    _compare_with_ort(_save(tmp_path, _model(nodes, {}, ["N", 4], ["N", 4], 13)))
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]), helper.make_node("MatMul", ["x", "t"], ["y"])]
    _compare_with_ort(_save(tmp_path, _model(nodes, {}, ["N", 3, 2], ["N", 3, 3], 13)))


@pytest.mark.parametrize(
    "content,match",
    [(None, "does not exist"), (b"", "is empty"), (b"\x00\xffnot a protobuf at all" * 10, "not a readable ONNX"),
     (b"hello world\n", "not a readable ONNX|no graph nodes")],
)
def test_bad_files(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=match):
        load_model(str(path))


def test_truncated_model(tmp_path: Path) -> None:
    data = (FIXTURES / "mnist_mlp.onnx").read_bytes()
    path = tmp_path / "trunc.onnx"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError):
        load_model(str(path))


def test_nan_weights_are_rejected(tmp_path: Path) -> None:
    w = _w(3, 4)
    w[1, 2] = np.nan
    path = _save(tmp_path, _model([helper.make_node("Gemm", ["x", "W"], ["y"], transB=1, name="fc")], {"W": w}, ["N", 4], ["N", 3], 13))
    with pytest.raises(ModelLoadError, match="'W'.*'fc'.*NaN"):
        load_model(str(path))


def test_fixed_batch_above_one_is_the_sample(tmp_path: Path) -> None:
    """A fixed batch of 8 is one sample of shape (8, 4) (as VNN-COMP's pensieve_small_parallel means it)."""
    path = _save(tmp_path, _model([helper.make_node("Relu", ["x"], ["y"])], {}, [8, 4], [8, 4], 13))
    g = load_model(str(path))
    assert g.input_shape == (8, 4) and not g.meta.batched


def _clip_cases() -> dict[str, tuple[list, dict, list, list]]:
    c = lambda v: np.array(v, dtype=np.float32)  # noqa: E731
    return {
        "relu6": ([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], {"lo": c(0.0), "hi": c(6.0)}, ["N", 6], ["N", 6]),
        "min only": ([helper.make_node("Clip", ["x", "lo"], ["y"])], {"lo": c(-0.5)}, ["N", 6], ["N", 6]),
        "max only": ([helper.make_node("Clip", ["x", "", "hi"], ["y"])], {"hi": c(0.25)}, ["N", 6], ["N", 6]),
        "reflect pad": ([helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")], {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)},
                        ["N", 2, 4, 4], ["N", 2, 7, 7]),
        "edge pad": ([helper.make_node("Pad", ["x", "p"], ["y"], mode="edge")], {"p": np.array([0, 0, 0, 3, 0, 0, 1, 0], np.int64)},
                     ["N", 2, 4, 4], ["N", 2, 5, 7]),
    }


@pytest.mark.parametrize("case", list(_clip_cases()))
def test_clip_and_pad_modes_match_onnxruntime_and_are_bounded_soundly(tmp_path: Path, case: str) -> None:
    """Clip (ReLU6 and one-sided) becomes ReLUs around affine maps; reflect/edge padding a Select: both exact."""
    from soundness import assert_contains, evaluate, identity_spec, sample_box

    from srp_audit.bounds import get_method
    from srp_audit.spec import InputBox

    nodes, inits, ins, outs = _clip_cases()[case]
    path = _save(tmp_path, _model(nodes, inits, ins, outs, 13))
    _compare_with_ort(path)
    g = load_model(str(path)).double()
    g.requires_grad_(False)
    centre = torch.randn((2,) + g.input_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    box = InputBox(centre - 1.5, centre + 1.5)
    values = evaluate(lambda t: g(t).reshape(t.shape[0], -1), sample_box(box.lower, box.upper, 200, torch.Generator().manual_seed(1)))
    k = g.num_classes
    with torch.no_grad():
        for method in ("ibp", "crown"):
            lb = get_method(method)(g, box, identity_spec(k, 2, torch.float64)).lower
            assert_contains(values, lb[:, :k], -lb[:, k:], f"{method} on {case}")


def _tiny(nodes, x_shape, inits=(), opset=18):
    """A one-input float model: nodes over `x`, output `y` (its shape left to inference)."""
    from onnx import TensorProto, helper

    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_reduce_axes_read_as_onnxruntime_reads_them(tmp_path) -> None:
    """An axis named twice is reduced once; an empty axes input means none given (all axes, or the input itself
    with noop_with_empty_axes)."""
    import onnx
    from conftest import ort_session
    from onnx import helper, numpy_helper

    from srp_audit.formats import load_model

    cases = {
        "dup": ([helper.make_node("ReduceSum", ["x", "a"], ["y"], keepdims=1)], [numpy_helper.from_array(np.array([1, -2], np.int64), "a")]),
        "empty": ([helper.make_node("ReduceMean", ["x", "a"], ["y"], keepdims=1)], [numpy_helper.from_array(np.zeros(0, np.int64), "a")]),
        "noop": ([helper.make_node("ReduceMean", ["x", "a"], ["y"], keepdims=1, noop_with_empty_axes=1)],
                 [numpy_helper.from_array(np.zeros(0, np.int64), "a")]),
    }
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    for name, (nodes, inits) in cases.items():
        path = tmp_path / f"{name}.onnx"
        onnx.save(_tiny(nodes, (1, 3, 4), inits), str(path))
        ref = ort_session(path).run(None, {"x": x})[0]
        with torch.no_grad():
            ours = load_model(str(path)).logits(torch.from_numpy(x).double())
        assert np.allclose(ours.numpy().reshape(-1), ref.reshape(-1)), name


def test_models_onnxruntime_refuses_are_refused_by_name(tmp_path) -> None:
    import onnx
    from onnx import helper, numpy_helper

    from srp_audit.errors import SrpAuditError
    from srp_audit.formats import load_model

    pads = lambda *p: numpy_helper.from_array(np.array(p, np.int64), "p")  # noqa: E731
    cases = {
        "empty tensor": ([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[5, 5])], (1, 2, 3, 3), []),
        "axis 5 of a rank-3": ([helper.make_node("Softmax", ["x"], ["y"], axis=5)], (1, 3, 4), []),
        "reflect padding as wide": ([helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")], (1, 3), [pads(0, 3, 0, 3)]),
        "constant_value holds 0": ([helper.make_node("Pad", ["x", "p", "v"], ["y"])], (1, 3),
                                   [pads(0, 1, 0, 1), numpy_helper.from_array(np.zeros(0, np.float32), "v")]),
        "another rank": ([helper.make_node("Concat", ["x", "c"], ["y"], axis=1)], (1, 3), [numpy_helper.from_array(np.ones(2, np.float32), "c")]),
    }
    for message, (nodes, shape, inits) in cases.items():
        path = tmp_path / "m.onnx"
        onnx.save(_tiny(nodes, shape, inits, opset=13), str(path))
        with pytest.raises(SrpAuditError, match=message):
            load_model(str(path))
