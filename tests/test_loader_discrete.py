"""Models nobody showed us: everyday torch exports with discrete ops (ArgMax → OneHot → Equal → ReduceSum, rounding,
integer casts, remainders), embeddings of integer inputs, stock transformer layers whose exporter moves the batch
axis, constants computed at run time (Shape → ConstantOfShape → Sin) — each exported by both torch exporters, read,
compared with onnxruntime, and bounded soundly by IBP and CROWN on sampled points (corners included)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ort_session
from soundness import assert_contains, evaluate, identity_spec, sample_box
from torch import nn

from srp_audit import ops
from srp_audit.bounds import METHODS
from srp_audit.errors import UnsupportedOpError
from srp_audit.formats import load_model
from srp_audit.formats.aten_read import graph_from_exported
from srp_audit.spec import InputBox


class SegmentCount(nn.Module):
    """A segmentation head whose output counts the pixels classified as a stored label map says."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.register_buffer("label", torch.randint(0, 3, (1, 6, 6), generator=torch.Generator().manual_seed(1)))

    def forward(self, x):
        classes = self.conv(x).argmax(1)
        hits = nn.functional.one_hot(classes, 3).argmax(-1) == self.label
        return hits.float().sum(dim=(1, 2)).unsqueeze(1)


class Quantised(nn.Module):
    """Rounding, an integer cast, floor, ceil and a remainder in the data path."""

    def __init__(self) -> None:
        super().__init__()
        self.f, self.g = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = self.f(x)
        q = torch.round(h * 4) / 4 + (h * 8).to(torch.int32).to(torch.float32) / 8
        return self.g(q + torch.floor(h) + torch.ceil(h) + torch.remainder(h, 1.5) + torch.maximum(h, -h.abs()))


class Embedded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.e, self.f = nn.Embedding(10, 4), nn.Linear(4, 2)

    def forward(self, i):
        return self.f(self.e(i).mean(1))


class SequenceFirst(nn.Module):
    """A stock encoder layer in its default sequence-first layout: the batch axis moved to position 1 and back."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=batch_first)
        self.batch_first, self.head = batch_first, nn.Linear(8, 3)

    def forward(self, x):
        y = self.layer(x) if self.batch_first else self.layer(x.transpose(0, 1)).transpose(0, 1)
        return self.head(y[:, 0])


class RunTimeConstant(nn.Module):
    """A constant computed from the input's shape and put through sin (Shape → ConstantOfShape → Sin)."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(4, 3)

    def forward(self, x):
        z = torch.full((x.shape[0], 4), 0.5)
        return self.f(torch.cos(x) + torch.sin(z) - torch.where(x > 0.2, x, 0.5 * x))


def _models() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    return {"segment_count": (SegmentCount(), torch.randn(1, 1, 6, 6)), "quantised": (Quantised(), torch.randn(1, 4)),
            "embedding": (Embedded(), torch.randint(0, 10, (1, 5))), "encoder_seq_first": (SequenceFirst(False), torch.randn(1, 4, 8)),
            "encoder_batch_first": (SequenceFirst(True), torch.randn(1, 4, 8)), "run_time_constant": (RunTimeConstant(), torch.randn(1, 4))}


MODELS = _models()
CASES = [(name, dynamo) for name in MODELS for dynamo in (False, True)
         if dynamo is False or name in ("segment_count", "encoder_seq_first", "run_time_constant")]


def _export(name: str, dynamo: bool, folder: Path) -> Path:
    module, x = MODELS[name]
    path = folder / f"{name}_{'dynamo' if dynamo else 'script'}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(module.eval(), (x,), str(path), dynamo=True, verbose=False)
        else:
            torch.onnx.export(module.eval(), (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}})
    return path


def _inputs(name: str, graph, n: int, gen: torch.Generator) -> torch.Tensor:
    if name == "embedding":
        return torch.randint(0, 10, (n,) + graph.input_shape, generator=gen).double()
    return torch.randn((n,) + graph.input_shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("name,dynamo", CASES, ids=[f"{n}-{'dynamo' if d else 'script'}" for n, d in CASES])
def test_everyday_export_reads_matches_onnxruntime_and_bounds_soundly(name: str, dynamo: bool, tmp_path: Path) -> None:
    path = _export(name, dynamo, tmp_path)
    graph = load_model(str(path)).copy(dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    x = _inputs(name, graph, 3, gen)
    sess = ort_session(path)
    feed = sess.get_inputs()[0]
    for xi in x:
        arr = xi.numpy().reshape([1 if not isinstance(d, int) else d for d in feed.shape])
        ref = sess.run(None, {feed.name: arr.astype(np.int64 if "int" in feed.type else np.float32)})[0]
        with torch.no_grad():
            ours = graph(xi.unsqueeze(0)).numpy().reshape(-1)
        assert np.allclose(ours, ref.reshape(-1), rtol=1e-4, atol=1e-4), name
    radius = 1.0 if name == "embedding" else 0.05
    lo, hi = x[:2] - radius, x[:2] + radius
    k = graph.num_classes
    values = evaluate(graph.logits, sample_box(lo, hi, 600, gen))
    for method in ("ibp", "crown"):
        lb = METHODS[method](graph, InputBox(lo, hi), identity_spec(k, 2, torch.float64)).lower.detach()
        assert_contains(values, lb[:, :k], -lb[:, k:], f"{name} {method}")


def test_a_moved_batch_axis_is_read_one_sample_at_a_time_and_says_so(tmp_path: Path) -> None:
    graph = load_model(str(_export("encoder_seq_first", False, tmp_path)))
    assert graph.input_shape == (1, 4, 8)
    assert "batch axis fixed to 1" in graph.meta.note and "MatMul" in graph.meta.note
    assert load_model(str(_export("quantised", False, tmp_path))).meta.note == ""


@pytest.mark.parametrize("name", ["quantised", "segment_count", "embedding"])
def test_the_aten_reader_builds_the_same_function(name: str) -> None:
    module, x = MODELS[name]
    ep = torch.export.export(module.eval(), (torch.cat([x, x]),), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    graph = graph_from_exported(ep, name).copy(dtype=torch.float64)
    gen = torch.Generator().manual_seed(5)
    xs = _inputs(name, graph, 4, gen)
    with torch.no_grad():
        ref = module.double()(xs.long() if name == "embedding" else xs.reshape((4,) + tuple(x.shape[1:])))
        module.float()
        assert torch.allclose(graph(xs).reshape(4, -1), ref.double().reshape(4, -1), rtol=1e-6, atol=1e-6)


def test_dropout_exported_in_training_mode_says_to_export_after_eval(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2)).train()
    path = tmp_path / "train.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 4),), str(path), dynamo=False, training=torch.onnx.TrainingMode.TRAINING)
    with pytest.raises(UnsupportedOpError, match=r"training mode .*model\.eval\(\)"):
        load_model(str(path))


@pytest.mark.parametrize("act", [nn.SELU(), nn.ELU(alpha=2.0)], ids=["selu", "elu2"])
def test_selu_and_elu_past_alpha_1_read_from_torch_exports_and_checkpoints(act: nn.Module, tmp_path: Path) -> None:
    module = nn.Sequential(nn.Linear(4, 5), act, nn.Linear(5, 3)).eval()
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    ep = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    path = tmp_path / "act.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x[:1],), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    for graph in (graph_from_exported(ep, "act"), load_model(str(path))):
        assert any(isinstance(n, ops.ScaledElu) for _, n, _ in graph.items())
        with torch.no_grad():
            assert torch.allclose(graph.double()(x.double()), module.double()(x.double()), rtol=1e-6, atol=1e-6)
            module.float()


class IntegerArithmetic(nn.Module):
    """int8 arithmetic that wraps around (100 + 100 = −56 in int8), which real arithmetic does not model."""

    def forward(self, x):
        i = (x * 40).to(torch.int8)
        return (i + torch.tensor(100, dtype=torch.int8)).to(torch.float32)


def test_integer_arithmetic_is_refused_by_the_aten_reader_too() -> None:
    ep = torch.export.export(IntegerArithmetic().eval(), (torch.randn(2, 4),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    with pytest.raises(UnsupportedOpError, match="integer-typed data"):
        graph_from_exported(ep, "int8")
