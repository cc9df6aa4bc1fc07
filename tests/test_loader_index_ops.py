"""Ops read by mapping onto existing IR ops: DepthToSpace/SpaceToDepth/GatherElements/GatherND (entry picks),
CumSum (a triangular Dense), 1-D max/average/global pooling (as 2-D over a height of 1), Instance/Group
normalisation (a layer norm per group), LeakyRelu with a slope outside [0, 1] (a PRelu), Einsum, Celu, Softsign,
ThresholdedRelu and Shrink (compositions of ops with rules). Each form is read,
compared with onnxruntime, and bounded soundly by IBP and CROWN over boxes whose sampled points include the
corners; the index ops also fold on constants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import ort_session
from onnx import TensorProto, helper, numpy_helper
from soundness import assert_sound_around

from srp_audit.errors import UnsupportedOpError
from srp_audit.formats import load_model

N = helper.make_node
IMAGE = ["N", 8, 4, 4]
SEQ = ["N", 3, 10]
RNG = np.random.default_rng(0)


def _model(nodes: list, inits: dict, shape: list, opset: int = 18) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "index", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _flat(nodes: list, out: str = "p") -> list:
    return nodes + [N("Flatten", [out], ["y"], axis=1)]


CASES = {
    "depth_to_space_dcr": (_flat([N("DepthToSpace", ["x"], ["p"], blocksize=2)]), {}, IMAGE),
    "depth_to_space_crd": (_flat([N("DepthToSpace", ["x"], ["p"], blocksize=2, mode="CRD")]), {}, IMAGE),
    "space_to_depth": (_flat([N("SpaceToDepth", ["x"], ["p"], blocksize=2)]), {}, IMAGE),
    "gather_elements": (_flat([N("GatherElements", ["x", "i"], ["p"], axis=2)]),
                        {"i": RNG.integers(-4, 4, size=(1, 8, 3, 4)).astype(np.int64)}, IMAGE),
    "gather_elements_last": (_flat([N("GatherElements", ["x", "i"], ["p"], axis=-1)]),
                             {"i": RNG.integers(0, 10, size=(1, 3, 5)).astype(np.int64)}, SEQ),
    "gather_nd_batch_dims": (_flat([N("GatherND", ["x", "i"], ["p"], batch_dims=1)]),
                             {"i": np.array([[[0, 3], [2, -1], [1, 1]]], dtype=np.int64)}, SEQ),
    "cumsum": (_flat([N("CumSum", ["x", "a"], ["p"])]), {"a": np.int64(2)}, SEQ),
    "cumsum_exclusive_reverse": (_flat([N("CumSum", ["x", "a"], ["p"], exclusive=1, reverse=1)]), {"a": np.int64(-2)}, SEQ),
    "maxpool_1d": (_flat([N("MaxPool", ["x"], ["p"], kernel_shape=[3], strides=[2], pads=[1, 1])]), {}, SEQ),
    "avgpool_1d": (_flat([N("AveragePool", ["x"], ["p"], kernel_shape=[2], strides=[2])]), {}, SEQ),
    "global_pools_1d": (_flat([N("GlobalMaxPool", ["x"], ["m"]), N("GlobalAveragePool", ["x"], ["a"]),
                               N("Add", ["m", "a"], ["p"])]), {}, SEQ),
    "instance_norm": (_flat([N("InstanceNormalization", ["x", "s", "b"], ["p"], epsilon=1e-3)]),
                      {"s": RNG.normal(size=8).astype(np.float32), "b": RNG.normal(size=8).astype(np.float32)}, IMAGE),
    "group_norm": (_flat([N("GroupNormalization", ["x", "s", "b"], ["p"], num_groups=2, epsilon=1e-2)]),
                   {"s": RNG.normal(size=8).astype(np.float32), "b": RNG.normal(size=8).astype(np.float32)}, IMAGE, 21),
    "celu_softsign_thresholded_shrink": (_flat([N("Celu", ["x"], ["a"], alpha=1.3), N("Softsign", ["x"], ["b"]),
                                                N("ThresholdedRelu", ["x"], ["c"], alpha=0.5), N("Shrink", ["x"], ["d"], lambd=0.3, bias=0.1),
                                                N("Concat", ["a", "b", "c", "d"], ["p"], axis=1)]), {}, SEQ),
    "leaky_relu_negative_and_steep": (_flat([N("LeakyRelu", ["x"], ["l"], alpha=-0.5), N("LeakyRelu", ["l"], ["p"], alpha=2.0)]),
                                      {}, SEQ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_form_reads_matches_onnxruntime_and_bounds_soundly(name: str, tmp_path: Path) -> None:
    nodes, inits, shape, *opset = CASES[name]
    path = tmp_path / f"{name}.onnx"
    onnx.save(_model(nodes, inits, shape, *opset), str(path))
    graph = load_model(str(path)).copy(dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn((3,) + graph.input_shape, generator=gen, dtype=torch.float64)
    session = ort_session(path)  # one sample at a time: a model whose constant indices fix the batch to 1 runs so too
    ref = np.stack([session.run(None, {"x": x[i].numpy().astype(np.float32).reshape([1] + list(x.shape[1:])[-(len(shape) - 1):])})[0]
                    for i in range(3)])
    with torch.no_grad():
        ours = graph(x.float().double()).numpy()
    assert np.allclose(ours.reshape(3, -1), ref.reshape(3, -1).astype(np.float64), rtol=1e-5, atol=1e-5), name
    assert_sound_around(graph, x, (0.0, 0.05, 1.0, 1e6), gen, name)  # 1e6: boxes far past the data


@pytest.mark.parametrize("op,attrs,index", [("DepthToSpace", {"blocksize": 2}, None), ("SpaceToDepth", {"blocksize": 2}, None),
                                            ("GatherElements", {"axis": 1}, np.array([[[[1]]], [[[0]]]], dtype=np.int64).reshape(1, 2, 1, 1)),
                                            ("GatherND", {}, np.array([[0, 1, 1, 1], [0, 3, 0, 1]], dtype=np.int64))])
def test_index_ops_fold_on_constants(op: str, attrs: dict, index, tmp_path: Path) -> None:
    """On a stored constant the op folds (its numpy definition) and the result feeds the data path exactly."""
    c = np.arange(16, dtype=np.float32).reshape(1, 4, 2, 2) / 8
    ins = ["c"] + (["i"] if index is not None else [])
    inits = {"c": c, **({"i": index} if index is not None else {})}
    inits["shape"], inits["cols"] = np.array([1, -1], dtype=np.int64), np.array([0, 5, 11] if index is None else [0, 1, 0], dtype=np.int64)
    nodes = [N(op, ins, ["k"], **attrs), N("Reshape", ["k", "shape"], ["r"]), N("Gather", ["r", "cols"], ["s"], axis=1),
             N("Mul", ["x", "s"], ["y"])]
    path = tmp_path / f"{op}.onnx"
    onnx.save(_model(nodes, inits, ["N", 3]), str(path))
    graph = load_model(str(path)).double()
    x = np.array([[1.0, -2.0, 0.5]], dtype=np.float32)
    ref = ort_session(path).run(None, {"x": x})[0]
    with torch.no_grad():
        assert np.array_equal(graph(torch.from_numpy(x).double()).numpy(), ref.astype(np.float64))


def test_picks_whose_indices_hold_one_sample_are_read_with_the_batch_fixed_and_say_so(tmp_path: Path) -> None:
    """Constant indices with a batch axis of 1 (GatherElements, GatherND with batch_dims) or a running sum over the
    batch axis act on one sample only: the model is read with its batch fixed to 1, and its note says so."""
    for nodes, inits, what in (([N("GatherND", ["x", "i"], ["y"])], {"i": np.array([[0, 1]], dtype=np.int64)}, "GatherND"),
                               ([N("CumSum", ["x", "a"], ["y"])], {"a": np.int64(0)}, "CumSum"),
                               ([N("GatherElements", ["x", "i"], ["y"], axis=1)], {"i": np.array([[2, 0]], dtype=np.int64)},
                                "GatherElements")):
        path = tmp_path / f"{what}.onnx"
        onnx.save(_model(nodes, inits, ["N", 3]), str(path))
        graph = load_model(str(path))
        assert graph.meta.note and "batch" in graph.meta.note, what
        x = np.array([[0.5, -1.0, 2.0]], dtype=np.float32)
        with torch.no_grad():
            ours = graph(torch.from_numpy(x).reshape((1,) + graph.input_shape)).numpy().reshape(-1)
        assert np.array_equal(ours, ort_session(path).run(None, {"x": x})[0].reshape(-1)), what


def _einsum_model(equation: str, shapes: list[list], weight: np.ndarray | None) -> onnx.ModelProto:
    ins = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, s) for i, s in enumerate(shapes)]
    names = [f"x{i}" for i in range(len(shapes))] + (["w"] if weight is not None else [])
    if equation.startswith("W,"):  # the weight first
        names = ["w"] + names[:-1]
        equation = equation[2:]
    nodes = [N("Einsum", names, ["e"], equation=equation), N("Flatten", ["e"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "einsum", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(weight, "w")] if weight is not None else [])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


EINSUM = {  # equation, data input shapes, weight
    "attention_scores": ("bhqd,bhkd->bhqk", [["N", 2, 3, 4], ["N", 2, 5, 4]], None),
    "attention_values": ("bhqk,bhkd->bqhd", [["N", 2, 3, 5], ["N", 2, 5, 4]], None),
    "weight": ("bij,jk->bik", [["N", 3, 4]], RNG.normal(size=(4, 5)).astype(np.float32)),
    "weight_first_ellipsis": ("W,kj,...j->...k", [["N", 2, 4]], RNG.normal(size=(6, 4)).astype(np.float32)),
    "transpose_and_sum": ("bijk->bki", [["N", 2, 3, 4]], None),
    "implicit_output": ("...i,...j", [["N", 3], ["N", 2]], None),
    "outer_with_sum": ("bi,bjk->bij", [["N", 3], ["N", 2, 4]], None),
}


@pytest.mark.parametrize("name", sorted(EINSUM))
def test_einsum_reads_matches_onnxruntime_and_bounds_soundly(name: str, tmp_path: Path) -> None:
    equation, shapes, weight = EINSUM[name]
    path = tmp_path / f"{name}.onnx"
    onnx.save(_einsum_model(equation, shapes, weight), str(path))
    graph = load_model(str(path)).copy(dtype=torch.float64)
    assert graph.meta.batched, name
    gen = torch.Generator().manual_seed(5)
    x = torch.randn((3,) + graph.input_shape, generator=gen, dtype=torch.float64)
    feeds, start = {}, 0
    for i, s in enumerate(shapes):
        n = int(np.prod(s[1:]))
        feeds[f"x{i}"] = x[:, start : start + n].numpy().astype(np.float32).reshape([3] + s[1:])
        start += n
    ref = ort_session(path).run(None, feeds)[0]
    with torch.no_grad():
        ours = graph(x.float().double()).numpy()
    assert np.allclose(ours, ref.astype(np.float64), rtol=1e-5, atol=1e-5), name
    assert_sound_around(graph, x, (0.0, 0.3, 1e6), gen, name)


def test_einsum_forms_it_cannot_read_name_the_reason(tmp_path: Path) -> None:
    for equation, shapes, why in (("bii->bi", [["N", 3, 3]], "diagonal"), ("bi,bi,bi->bi", [["N", 3]] * 3, "operands")):
        path = tmp_path / "e.onnx"
        onnx.save(_einsum_model(equation, shapes, None), str(path))
        with pytest.raises(UnsupportedOpError, match=f"op Einsum.*{why}"):
            load_model(str(path))


@pytest.mark.parametrize("shape,attrs", [(["N", 4, 7], {"kernel_shape": [3], "strides": [3], "pads": [2, 2], "ceil_mode": 1}),
                                         (["N", 2, 7, 7], {"kernel_shape": [3, 3], "strides": [3, 3], "pads": [2, 2, 2, 2], "ceil_mode": 1})])
def test_ceil_mode_max_pool_with_padding_past_half_the_kernel_matches_onnxruntime(shape: list, attrs: dict, tmp_path: Path) -> None:
    """torch's ceil mode on the explicitly padded input added a window starting in the right padding, which the
    ONNX rule drops: the output had the wrong length and the forward failed after loading."""
    path = tmp_path / "mp.onnx"
    onnx.save(_model(_flat([N("MaxPool", ["x"], ["p"], **attrs)]), {}, shape), str(path))
    graph = load_model(str(path)).copy(dtype=torch.float64)
    x = torch.randn((2,) + graph.input_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = ort_session(path).run(None, {"x": x.numpy().astype(np.float32)})[0]
    with torch.no_grad():
        assert np.allclose(graph(x.float().double()).numpy(), ref, rtol=1e-6, atol=1e-6)
    assert_sound_around(graph, x, (0.5,), torch.Generator().manual_seed(2), "ceil-mode MaxPool")


def test_degenerate_attributes_are_refused_in_one_line(tmp_path: Path) -> None:
    """blocksize 0, 0 groups, and Shrink with a negative lambd (its branches would overlap) are load errors, not
    internal ones (or a silently different function)."""
    for nodes, inits, shape, what in (([N("DepthToSpace", ["x"], ["y"], blocksize=0)], {}, IMAGE, "DepthToSpace"),
                                      ([N("SpaceToDepth", ["x"], ["y"], blocksize=0)], {}, IMAGE, "SpaceToDepth"),
                                      ([N("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=0)],
                                       {"s": np.ones(0, np.float32), "b": np.ones(0, np.float32)}, IMAGE, "GroupNormalization"),
                                      ([N("Shrink", ["x"], ["y"], lambd=-0.5, bias=0.2)], {}, SEQ, "Shrink")):
        path = tmp_path / f"{what}.onnx"
        onnx.save(_model(nodes, inits, shape, 21 if what == "GroupNormalization" else 18), str(path))
        with pytest.raises(UnsupportedOpError, match=f"op {what}"):
            load_model(str(path))
