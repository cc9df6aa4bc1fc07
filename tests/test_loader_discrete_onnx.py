"""Hand-built ONNX graphs for each form of the discrete ops on data (comparisons in every direction, boolean logic,
Where with a data or constant condition, casts to integer and bool types, OneHot with its values and negative
indices, Mod, Abs, variadic Max/Min, ReduceMax/ReduceMin, constants lifted into the data): each is read, compared
with onnxruntime, and bounded soundly by IBP and CROWN over boxes whose sampled points include the corners."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import ort_session
from onnx import TensorProto, helper, numpy_helper
from soundness import assert_sound_around, identity_spec

from srp_audit import ops
from srp_audit.bounds import METHODS
from srp_audit.errors import UnsupportedOpError
from srp_audit.formats import load_model
from srp_audit.spec import InputBox

N = helper.make_node
C = np.float32([0.25, -0.5, 0.0, 1.5])


def _graph(nodes: list, inits: dict, opset: int = 17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "discrete", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _cast(src: str, dst: str, to: int = TensorProto.FLOAT):
    return N("Cast", [src], [dst], to=to)


CASES = {
    "less_or_equal": ([N("LessOrEqual", ["x", "c"], ["b"]), _cast("b", "y")], {"c": C}),
    "greater_or_equal_data": ([N("Neg", ["x"], ["n"]), N("GreaterOrEqual", ["x", "n"], ["b"]), _cast("b", "y")], {}),
    "equal_data": ([N("Floor", ["x"], ["f"]), N("Ceil", ["x"], ["e"]), N("Equal", ["f", "e"], ["b"]), _cast("b", "y")], {}),
    "logic": ([N("Greater", ["x", "c"], ["g"]), N("Less", ["x", "d"], ["l"]), N("And", ["g", "l"], ["a"]), N("Or", ["g", "l"], ["o"]),
               N("Xor", ["a", "o"], ["xo"]), N("Not", ["xo"], ["b"]), _cast("b", "y")], {"c": C, "d": C + 1}),
    "logic_constant": ([N("Greater", ["x", "c"], ["g"]), N("Or", ["g", "m"], ["o"]), N("Xor", ["o", "m2"], ["b"]), _cast("b", "y")],
                       {"c": C, "m": np.array([True, False, True, False]), "m2": np.array([False, True, True, False])}),
    "where_data": ([N("Greater", ["x", "c"], ["g"]), N("Mul", ["x", "half"], ["h"]), N("Where", ["g", "x", "h"], ["y"])],
                   {"c": np.float32(0.2), "half": np.float32(0.5)}),
    "where_constants": ([N("Less", ["x", "c"], ["g"]), N("Where", ["g", "a", "b"], ["y"])],
                        {"c": C, "a": np.float32([1, 2, 3, 4]), "b": np.float32(-1.25)}),
    "where_constant_mask": ([N("Neg", ["x"], ["n"]), N("Where", ["m", "x", "n"], ["y"])], {"m": np.array([True, False, False, True])}),
    "cast_int_and_bool": ([N("Mul", ["x", "k"], ["s"]), _cast("s", "i", TensorProto.INT8), _cast("i", "f"), _cast("x", "b", TensorProto.BOOL),
                           _cast("b", "g"), N("Add", ["f", "g"], ["y"])], {"k": np.float32(40.0)}),
    "one_hot_values": ([N("ArgMax", ["x"], ["a"], axis=1, keepdims=0), N("OneHot", ["a", "depth", "vals"], ["y"], axis=-1)],
                       {"depth": np.int64(4), "vals": np.float32([-0.5, 2.0])}),
    "one_hot_negative": ([N("Floor", ["x"], ["f"]), _cast("f", "i", TensorProto.INT64), N("OneHot", ["i", "depth", "vals"], ["o"], axis=1),
                          N("ReduceSum", ["o", "ax"], ["y"], keepdims=0)], {"depth": np.int64(3), "vals": np.float32([0, 1]),
                                                                              "ax": np.int64([2])}),
    "mod_integer": ([N("Mul", ["x", "k"], ["s"]), _cast("s", "i", TensorProto.INT32), N("Mod", ["i", "m"], ["r"]), _cast("r", "y")],
                    {"k": np.float32(5.0), "m": np.int32(3)}),
    "one_hot_float_indices": ([N("Mul", ["x", "k"], ["s"]), N("OneHot", ["s", "depth", "vals"], ["o"], axis=-1),
                               N("ReduceSum", ["o", "ax"], ["y"], keepdims=0)],
                              {"k": np.float32(1.5), "depth": np.float32(4), "vals": np.float32([0, 1]), "ax": np.int64([1])}),
    "cast_float16": ([N("Mul", ["x", "k"], ["s"]), _cast("s", "h", TensorProto.FLOAT16), _cast("h", "y")], {"k": np.float32(3000.0)}),
    "cast_bfloat16": ([_cast("x", "h", TensorProto.BFLOAT16), _cast("h", "y")], {}),
    "sub_broadcast_sum_mean": ([N("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1), N("Sub", ["x", "m"], ["c"]), N("Neg", ["x"], ["n"]),
                                N("Sum", ["c", "x", "k"], ["s"]), N("Mean", ["s", "n", "c"], ["y"])], {"k": C}),
    "reduce_norms": ([N("ReduceL1", ["x"], ["a"], axes=[1]), N("ReduceL2", ["x"], ["b"], axes=[1]), N("ReduceSumSquare", ["x"], ["c"], axes=[1]),
                      N("ReduceLogSumExp", ["x"], ["d"], axes=[1]), N("Concat", ["a", "b", "c", "d"], ["y"], axis=1)], {}),
    "selu_elu_atan": ([N("Selu", ["x"], ["s"]), N("Elu", ["x"], ["e"], alpha=1.5), N("Atan", ["x"], ["a"]), N("Add", ["s", "e"], ["t"]),
                       N("Add", ["t", "a"], ["y"])], {}),
    "mod_float": ([N("Mod", ["x", "m"], ["y"], fmod=1)], {"m": np.float32(0.75)}),
    "abs_max_min": ([N("Abs", ["x"], ["a"]), N("Max", ["x", "c", "a"], ["mx"]), N("Min", ["mx", "d"], ["y"])], {"c": C, "d": np.float32(1.0)}),
    "reduce_min_max": ([N("ReduceMax", ["x"], ["mx"], axes=[1], keepdims=1), N("ReduceMin", ["x"], ["mn"], axes=[-1], keepdims=0),
                        N("Unsqueeze", ["mn", "one"], ["m1"]), N("Sub", ["mx", "m1"], ["y"])], {"one": np.int64([1])}),
    "argmin_last": ([N("Round", ["x"], ["r"]), N("ArgMin", ["r"], ["a"], axis=1, keepdims=1, select_last_index=1), _cast("a", "y")], {}),
    "lifted_constant": ([N("Shape", ["x"], ["s"]), N("ConstantOfShape", ["s"], ["z"], value=numpy_helper.from_array(np.float32([0.7]))),
                         N("Exp", ["z"], ["e"]), N("Mul", ["x", "e"], ["y"])], {}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_discrete_form_reads_matches_onnxruntime_and_bounds_soundly(name: str, tmp_path: Path) -> None:
    nodes, inits = CASES[name]
    path = tmp_path / f"{name}.onnx"
    onnx.save(_graph(nodes, inits), str(path))
    graph = load_model(str(path)).copy(dtype=torch.float64)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn((4,) + graph.input_shape, generator=gen, dtype=torch.float64) * 1.5
    x[0] = torch.tensor([0.25, -0.5, 0.0, 1.5])  # ties with the constants, exact zeros
    ref = ort_session(path).run(None, {"x": x.numpy().astype(np.float32)})[0]
    with torch.no_grad():
        ours = graph(x).numpy()
    assert np.allclose(ours.reshape(4, -1), ref.reshape(4, -1).astype(np.float64), rtol=1e-5, atol=1e-5), name
    assert_sound_around(graph, x, (0.0, 0.1, 2.0), gen, name, n=400)


def test_global_max_pool_reads_as_a_max_over_each_channel(tmp_path: Path) -> None:
    g = helper.make_graph([N("GlobalMaxPool", ["x"], ["y"])], "gmp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / "gmp.onnx"
    onnx.save(m, str(path))
    graph = load_model(str(path)).double()
    x = torch.randn((3, 2, 3, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(graph(x).reshape(3, -1), x.amax(dim=(2, 3)), rtol=1e-14, atol=1e-14)
    lb = METHODS["crown"](graph, InputBox(x - 0.1, x + 0.1), identity_spec(2, 3, torch.float64)).lower
    assert bool((lb[:, :2] <= x.amax(dim=(2, 3)) - 0.1 + 1e-12).all())


def test_a_float64_model_casting_to_float32_keeps_the_rounding(tmp_path: Path) -> None:
    """Cast(double → float) rounds each value to float32: read as a rounding step, not the identity."""
    nodes = [N("Mul", ["x", "k"], ["s"]), _cast("s", "f", TensorProto.FLOAT), _cast("f", "y", TensorProto.DOUBLE)]
    g = helper.make_graph(nodes, "f64", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)], [numpy_helper.from_array(np.float64(1 / 3), "k")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / "f64.onnx"
    onnx.save(m, str(path))
    graph = load_model(str(path))
    assert any(isinstance(n, ops.RoundToFloat) and n.fmt == "float32" for _, n, _ in graph.items())
    x = np.array([[0.1, 1.0, 3.0, -7.0]])
    ref = ort_session(path).run(None, {"x": x})[0]
    with torch.no_grad():
        assert np.array_equal(graph.double()(torch.from_numpy(x)).numpy(), ref)
    lb = METHODS["ibp"](graph.double(), InputBox(torch.from_numpy(x), torch.from_numpy(x)), identity_spec(4, 1, torch.float64)).lower
    assert bool((lb[0, :4] <= torch.from_numpy(ref[0])).all() and (-lb[0, 4:] >= torch.from_numpy(ref[0])).all())


@pytest.mark.parametrize("like,rounded", [(np.float16, 1.0), (np.int64, 1.0)])
def test_cast_like_an_initializer_takes_its_type(like: type, rounded: float, tmp_path: Path) -> None:
    """CastLike(x, t) with t a stored float16 or int64 value rounds or truncates x (it was read as a float cast)."""
    nodes = [N("CastLike", ["x", "t"], ["c"]), _cast("c", "y")]
    path = tmp_path / "castlike.onnx"
    onnx.save(_graph(nodes, {"t": np.zeros(1, dtype=like)}), str(path))
    graph = load_model(str(path)).double()
    x = torch.tensor([[1.0001, 1.2, -0.7, 3.0]], dtype=torch.float64)
    ref = ort_session(path).run(None, {"x": x.numpy().astype(np.float32)})[0]
    assert float(ref[0, 0]) == rounded
    lb = METHODS["ibp"](graph, InputBox(x, x), identity_spec(4, 1, torch.float64)).lower.detach()
    assert bool((lb[0, :4] <= torch.from_numpy(ref[0]).double()).all() and (-lb[0, 4:] >= torch.from_numpy(ref[0]).double()).all())


def test_a_float64_model_whose_declared_types_disagree_is_not_read_as_float32(tmp_path: Path) -> None:
    """A value declared float but computed as float64, then cast to float: type inference cannot be trusted, so the
    cast (which may round) is refused rather than read as the identity."""
    nodes = [N("Relu", ["x"], ["r"]), _cast("r", "y")]
    g = helper.make_graph(nodes, "f64", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          value_info=[helper.make_tensor_value_info("r", TensorProto.FLOAT, ["N", 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "vi.onnx"))
    with pytest.raises(UnsupportedOpError, match="type inference"):
        load_model(str(tmp_path / "vi.onnx"))


def test_mod_by_data_integer_arithmetic_wrapping_casts_and_rounding_casts_are_refused_by_name(tmp_path: Path) -> None:
    """Integer data wraps around and divides by truncation: arithmetic on it (and a cast that may wrap) is refused
    rather than read as real arithmetic."""
    wide = np.zeros((4, 300), dtype=np.float32)
    for nodes, inits, what in (([N("Mod", ["x", "x"], ["y"], fmod=1)], {}, "Mod"),
                               ([_cast("x", "h", TensorProto.STRING)], {}, "Cast"),
                               ([_cast("x", "i", TensorProto.INT8), N("Add", ["i", "c"], ["a"]), _cast("a", "y")],
                                {"c": np.int8(100)}, "Add"),
                               ([_cast("x", "i", TensorProto.INT32), N("Div", ["i", "c"], ["a"]), _cast("a", "y")],
                                {"c": np.int32(2)}, "Div"),
                               ([N("MatMul", ["x", "w"], ["m"]), N("ArgMax", ["m"], ["a"], axis=1), _cast("a", "b", TensorProto.INT8),
                                 _cast("b", "y")], {"w": wide}, "Cast")):
        path = tmp_path / f"{what}.onnx"
        onnx.save(_graph(nodes, inits), str(path))
        with pytest.raises(UnsupportedOpError, match=f"op {what}"):
            load_model(str(path))
