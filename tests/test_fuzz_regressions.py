"""Regressions the generated-model fuzz (tests/graph_fuzz.py) found: each failed before its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import ort_session
from onnx import TensorProto, helper
from soundness import assert_contains, evaluate, identity_spec, sample_box

from srp_audit import ops
from srp_audit.bounds import METHODS
from srp_audit.formats import load_model
from srp_audit.ir.graph import INPUT, Graph
from srp_audit.spec import InputBox


def _model_file(path: Path, nodes: list, shape: list, opset: int) -> Path:
    """An ONNX file of `nodes` from float input 'x' of `shape` to output 'y'."""
    g = helper.make_graph(nodes, path.stem, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("after", [ops.Sigmoid, ops.Relu, ops.Round])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crown_after_a_dilated_convolution_contains_samples(after: type, seed: int) -> None:
    """CROWN bounded a dilated convolution's outputs from its input as if the kernel were a contiguous patch."""
    gen = torch.Generator().manual_seed(seed)
    graph = Graph((1, 5, 5), [("r", ops.Relu(), (INPUT,)), ("c", ops.Conv2d(torch.randn(2, 1, 2, 2, generator=gen), None, 1, 0,
                                                                          dilation=(2, 1 + seed % 2)), ("r",)),
                              ("a", after(), ("c",))], "a").double()
    lo = torch.randn((2, 1, 5, 5), generator=gen, dtype=torch.float64)
    hi = lo + 0.6
    k = graph.num_classes
    values = evaluate(graph.logits, sample_box(lo, hi, 1000, gen))
    for method in ("crown", "crown-ibp", "alpha-crown"):
        lb = METHODS[method](graph, InputBox(lo, hi), identity_spec(k, 2, torch.float64), alpha_iters=5).lower.detach()
        assert_contains(values, lb[:, :k], -lb[:, k:], f"{method} after a dilated conv")


@pytest.mark.parametrize("axis", [-2, -1, -3])
def test_flatten_with_a_negative_axis_counts_from_the_back(axis: int, tmp_path: Path) -> None:
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=axis), helper.make_node("Softmax", ["f"], ["y"], axis=-1)]
    path = _model_file(tmp_path / "flatten.onnx", nodes, ["N", 5, 2], 13)
    graph = load_model(str(path)).double()
    x = np.random.default_rng(0).standard_normal((1, 5, 2)).astype(np.float32)
    ref = ort_session(path).run(None, {"x": x})[0]
    with torch.no_grad():
        ours = graph(torch.from_numpy(x).double().reshape((1,) + graph.input_shape)).numpy()
    assert np.allclose(ours.reshape(-1), ref.reshape(-1), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("pads", [[0, 2, 0, 2], [1, 2, 1, 2]])
def test_average_pool_past_half_the_kernel_without_counting_the_padding(pads: list[int], tmp_path: Path) -> None:
    """Padding past half the kernel with count_include_pad=0 averaged over the whole window (padding counted)."""
    nodes = [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 3], pads=pads, strides=[1, 3], count_include_pad=0)]
    path = _model_file(tmp_path / "avg.onnx", nodes, ["N", 3, 3, 5], 14)
    graph = load_model(str(path)).double()
    x = np.random.default_rng(0).standard_normal((2, 3, 3, 5)).astype(np.float32)
    ref = ort_session(path).run(None, {"x": x})[0]
    with torch.no_grad():
        assert np.allclose(graph(torch.from_numpy(x).double()).numpy().reshape(ref.shape), ref, rtol=1e-6, atol=1e-6)
    lo, hi = torch.from_numpy(x).double() - 0.1, torch.from_numpy(x).double() + 0.1
    k = graph.num_classes
    values = evaluate(graph.logits, sample_box(lo, hi, 300, torch.Generator().manual_seed(0)))
    for method in ("ibp", "crown"):
        lb = METHODS[method](graph, InputBox(lo, hi), identity_spec(k, 2, torch.float64)).lower.detach()
        assert_contains(values, lb[:, :k], -lb[:, k:], method)
