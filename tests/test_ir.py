"""Graph IR: simplification passes preserve the function, export round-trips through onnxruntime and our loader,
and the graph is a differentiable torch module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURE_MODELS, FIXTURES, ort_session, relative_error
from soundness import op_graphs

from srp_audit import ops
from srp_audit.formats import load_model
from srp_audit.formats.onnx_write import save_onnx, to_onnx
from srp_audit.ir.graph import INPUT, Graph
from srp_audit.passes.simplify import simplify


def _close(a: Graph, b: Graph, shape: tuple[int, ...], tol: float = 1e-5) -> None:
    x = torch.rand((6,) + shape)
    with torch.no_grad():
        assert relative_error(a(x).numpy(), b(x).numpy()) <= tol


def _normalised_cnn() -> Graph:
    g = torch.Generator().manual_seed(0)
    bn = ops.BatchNorm(torch.randn(4, generator=g), torch.rand(4, generator=g) + 0.5, torch.randn(4, generator=g),
                      torch.randn(4, generator=g), 1e-5, 3)
    nodes = [
        ("sub", ops.ElementwiseAffine(1.0, -0.1307), (INPUT,)),
        ("div", ops.ElementwiseAffine(1 / 0.3081, 0.0), ("sub",)),
        ("conv", ops.Conv2d(torch.randn(4, 1, 3, 3, generator=g), torch.randn(4, generator=g)), ("div",)),
        ("bn", bn, ("conv",)),
        ("drop", ops.Identity(), ("bn",)),
        ("relu", ops.Relu(), ("drop",)),
        ("flat", ops.Reshape((4 * 6 * 6,)), ("relu",)),
        ("fc", ops.Dense(torch.randn(3, 144, generator=g), torch.randn(3, generator=g)), ("flat",)),
    ]
    return Graph((1, 8, 8), nodes, "fc")


def test_simplify_merges_and_keeps_derived_constants_enclosed() -> None:
    """Sub then Div by 0.3081 merge into one scale/shift, but 1/0.3081 and batch-norm's γ/√(var + ε) are no floats:
    folding them into a layer would round them, so those nodes stay (with their enclosures) and only the
    identity goes."""
    g = _normalised_cnn()
    s = simplify(g)
    assert [s.node(n).op for n in s.order] == ["ElementwiseAffine", "Conv2d", "BatchNorm", "Relu", "Reshape", "Dense"]
    assert s.node(s.order[0]).constant_rads(torch.float64)[0] is not None
    _close(g, s, g.input_shape)


def test_simplify_folds_exact_scales_and_batchnorm() -> None:
    """Folds whose weights are exactly the products they stand for still happen: a scale by 0.5 into the next
    conv, a batch-norm with var + ε = 4 and β = 0 (scale exactly ½, no shift) into the previous one."""
    g = torch.Generator().manual_seed(0)
    bn = ops.BatchNorm(torch.zeros(4), torch.full((4,), 4.0), torch.ones(4), torch.zeros(4), 0.0, 3)
    nodes = [
        ("scale", ops.ElementwiseAffine(0.5, 0.0), (INPUT,)),
        ("conv", ops.Conv2d(torch.randn(4, 1, 3, 3, generator=g), torch.randn(4, generator=g)), ("scale",)),
        ("bn", bn, ("conv",)),
        ("relu", ops.Relu(), ("bn",)),
    ]
    graph = Graph((1, 8, 8), nodes, "relu")
    s = simplify(graph)
    assert [s.node(n).op for n in s.order] == ["Conv2d", "Relu"]
    x = torch.rand((3,) + graph.input_shape, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(graph.copy(dtype=torch.float64)(x), s.copy(dtype=torch.float64)(x))


def test_normalisation_is_not_folded_into_a_padded_conv() -> None:
    """Zero padding happens after the shift, so folding would change the function: the pass must refuse."""
    g = torch.Generator().manual_seed(1)
    nodes = [("norm", ops.ElementwiseAffine(2.0, -0.5), (INPUT,)),
             ("conv", ops.Conv2d(torch.randn(2, 1, 3, 3, generator=g), padding=1), ("norm",))]
    graph = Graph((1, 5, 5), nodes, "conv")
    s = simplify(graph)
    assert [s.node(n).op for n in s.order] == ["ElementwiseAffine", "Conv2d"]
    _close(graph, s, graph.input_shape)


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_simplified_fixtures_compute_the_same_function(name: str) -> None:
    raw = load_model(str(FIXTURES / f"{name}.onnx"), simplified=False)
    s = load_model(str(FIXTURES / f"{name}.onnx"))
    assert len(s.order) <= len(raw.order)
    _close(raw, s, raw.input_shape)


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_export_round_trip(tmp_path: Path, name: str) -> None:
    g = load_model(str(FIXTURES / f"{name}.onnx"))
    out = tmp_path / "rt.onnx"
    save_onnx(g, out)
    x = torch.rand((5,) + g.input_shape)
    sess = ort_session(out)
    ref = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ours = g(x).numpy()
    assert relative_error(ref, ours) <= 1e-5
    back = load_model(str(out))
    _close(g, back, g.input_shape, tol=1e-6)


def test_every_op_exports(tmp_path: Path) -> None:
    for name, g in op_graphs(3).items():
        if isinstance(g.node(g.output), ops.Identity) and g.inputs_of[g.output] == (INPUT,):
            continue  # a bare identity has nothing to export
        path = tmp_path / f"{name}.onnx"
        if name == "Softplus_threshold":  # ONNX's Softplus has no threshold: a visible one is refused, with the reason
            with pytest.raises(NotImplementedError, match="threshold"):
                save_onnx(g, path)
            continue
        save_onnx(g, path)
        x = torch.rand((3,) + g.input_shape)
        sess = ort_session(path)
        ref = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            assert relative_error(ref, g(x).numpy()) <= 1e-5, name


def test_save_is_atomic_on_failure(tmp_path: Path, monkeypatch) -> None:
    """A failure while writing leaves neither a truncated target nor a temporary file behind."""
    g = load_model(str(FIXTURES / "mnist_mlp.onnx"))
    target = tmp_path / "out.onnx"
    target.write_bytes(b"previous")

    def boom(self):
        raise RuntimeError("disk full")

    import onnx

    monkeypatch.setattr(onnx.ModelProto, "SerializeToString", boom)
    with pytest.raises(RuntimeError):
        save_onnx(g, target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.onnx"]


def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    """Every writer (models, checkpoints, reports) goes through atomic_path: a write that fails half-way
    leaves the previous file intact and no temporary file behind; a complete write replaces it."""
    from srp_audit.atomic import atomic_path, write_text_atomic

    target = tmp_path / "report.json"
    target.write_text("previous")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            Path(tmp).write_text("half a rep")
            raise KeyboardInterrupt
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    write_text_atomic(target, "complete")
    assert target.read_text() == "complete" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_graph_is_differentiable_in_its_parameters() -> None:
    g = load_model(str(FIXTURES / "mnist_cnn.onnx"))
    x = torch.rand(4, 1, 28, 28)
    loss = torch.nn.functional.cross_entropy(g(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    grads = [p.grad for p in g.parameters()]
    assert grads and all(gr is not None and torch.isfinite(gr).all() for gr in grads)


def test_graph_rejects_malformed_structure() -> None:
    with pytest.raises(ValueError, match="before they are defined"):
        Graph((3,), [("a", ops.Add(), (INPUT, "b")), ("b", ops.Relu(), (INPUT,))], "a")
    with pytest.raises(ValueError, match="expects last dim"):
        Graph((3,), [("a", ops.Dense(torch.zeros(2, 4)), (INPUT,))], "a")


def test_onnx_model_is_valid_and_has_dynamic_batch() -> None:
    g = load_model(str(FIXTURES / "mnist_resnet.onnx"))
    m = to_onnx(g)
    dim0 = m.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "batch"
    assert np.prod([d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim[1:]]) == 784
