"""PyTorch models in: .pt2, a factory plus a state dict (.pt, .safetensors, wrapped), TorchScript and ONNX give
the same IR function and the same bounds; checkpoints others trained load through the factory; pickles are
refused unless trusted; mismatched weights are named."""

from __future__ import annotations

import warnings
from pathlib import Path

import ext_factories
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import FIXTURES, SHARED, shared_path

from srp_audit.bounds import METHODS
from srp_audit.data import load_samples
from srp_audit.errors import ModelLoadError, UnsupportedOpError
from srp_audit.formats import load_model
from srp_audit.formats.safetensors_io import read_safetensors, write_safetensors
from srp_audit.formats.torch_write import save_state_dict
from srp_audit.spec import linf_ball, margin_spec

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    m = ext_factories.fixture_cnn().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1.5)
    return m


@pytest.fixture(scope="module")
def files(net, tmp_path_factory):
    d = tmp_path_factory.mktemp("torch")
    x = torch.zeros(2, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=({0: batch},)), d / "m.pt2")
    torch.save(net.state_dict(), d / "sd.pt")
    torch.save({"state_dict": [net.state_dict()], "acc": 0.9}, d / "wrapped.pth")
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}}, d / "dp.pth")
    write_safetensors(net.state_dict(), str(d / "sd.safetensors"))
    torch.jit.save(torch.jit.trace(net, x), d / "ts.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), d / "m.onnx", dynamo=False, opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "b"}})
    torch.save(net, d / "full.pt")
    return d


def _graphs(files: Path) -> dict:
    f = "ext_factories:fixture_cnn"
    return {
        "pt2": load_model(str(files / "m.pt2")),
        "factory.pt": load_model(str(files / "sd.pt"), factory=f, input_shape=(1, 28, 28)),
        "factory.wrapped": load_model(str(files / "wrapped.pth"), factory=f, input_shape=(1, 28, 28)),
        "factory.dataparallel": load_model(str(files / "dp.pth"), factory=f, input_shape=(1, 28, 28)),
        "factory.safetensors": load_model(str(files / "sd.safetensors"), factory=f, input_shape=(1, 28, 28)),
        "torchscript": load_model(str(files / "ts.pt"), input_shape=(1, 28, 28)),
        "onnx": load_model(str(files / "m.onnx")),
        "pickled (trusted)": load_model(str(files / "full.pt"), input_shape=(1, 28, 28), trust=True),
    }


def test_every_format_gives_the_same_function_and_bounds(net, files, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    graphs = _graphs(files)
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        ref = net(x)
    box = linf_ball(x.double(), 0.01, (0.0, 1.0))
    spec = margin_spec(ref.argmax(1), 10)
    bounds = {}
    for name, g in graphs.items():
        with torch.no_grad():
            assert torch.allclose(g(x), ref, atol=1e-5, rtol=1e-5), name
            g64 = g.copy(dtype=torch.float64)
            bounds[name] = {m: METHODS[m](g64, box, spec).lower for m in ("ibp", "crown")}
    base = bounds["onnx"]
    for name, b in bounds.items():
        for m in b:
            assert torch.allclose(b[m], base[m], atol=1e-6, rtol=0), (name, m)


def test_pickles_are_refused_unless_trusted(files) -> None:
    with pytest.raises(ModelLoadError, match=r"pickled module.*torch\.nn\.modules.*--trust-checkpoint"):
        load_model(str(files / "full.pt"), input_shape=(1, 28, 28))
    with pytest.raises(ModelLoadError, match="state dict .*--model-factory"):
        load_model(str(files / "sd.pt"))
    with pytest.raises(ModelLoadError, match="weights only"):
        load_model(str(files / "sd.safetensors"))
    with pytest.raises(ModelLoadError, match="TorchScript.*--input-shape"):
        load_model(str(files / "ts.pt"))


def test_a_payload_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"weight": torch.zeros(2), "evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ModelLoadError, match="--trust-checkpoint"):
        load_model(str(tmp_path / "evil.pt"), factory="ext_factories:kw_mnist", input_shape=(1, 28, 28))
    assert not marker.exists()


def test_mismatched_weights_are_named(files, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    with pytest.raises(ModelLoadError, match=r"missing 0\.weight, 0\.bias.*unexpected 1\.weight"):
        load_model(str(files / "sd.pt"), factory="ext_factories:kw_mnist", input_shape=(1, 28, 28))
    sd = ext_factories.kw_mnist().state_dict()
    sd["5.weight"] = torch.zeros(100, 1500)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(ModelLoadError, match=r"shape mismatch 5\.weight \(100, 1500\)"):
        load_model(str(tmp_path / "bad.pt"), factory="ext_factories:kw_mnist", input_shape=(1, 28, 28))
    with pytest.raises(ModelLoadError, match="cannot import"):
        load_model(str(files / "sd.pt"), factory="no_such_module:f", input_shape=(1, 28, 28))


def test_unsupported_aten_op_names_it(tmp_path: Path) -> None:
    class CumSum(torch.nn.Module):
        def forward(self, x):
            return torch.cumsum(x.flatten(1), 1)

    ep = torch.export.export(CumSum(), (torch.zeros(2, 4),), dynamic_shapes=({0: torch.export.Dim("b", min=1, max=64)},))
    torch.export.save(ep, tmp_path / "cumsum.pt2")
    with pytest.raises(UnsupportedOpError, match="aten.cumsum"):
        load_model(str(tmp_path / "cumsum.pt2"))


def test_safetensors_interoperate_with_the_reference_library(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch")
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64), "c": torch.randn(2, dtype=torch.float64)}
    st.save_file(tensors, str(tmp_path / "ref.safetensors"), metadata={"k": "v"})
    ours, meta = read_safetensors(str(tmp_path / "ref.safetensors"))
    assert meta == {"k": "v"} and all(torch.equal(ours[k], v) for k, v in tensors.items())
    write_safetensors(tensors, str(tmp_path / "ours.safetensors"), {"x": "y"})
    back = st.load_file(str(tmp_path / "ours.safetensors"))
    assert all(torch.equal(back[k], v) for k, v in tensors.items())


def test_graph_state_dict_round_trip(tmp_path: Path) -> None:
    g = load_model(str(FIXTURES / "mnist_cnn.onnx"))
    save_state_dict(g, tmp_path / "g.safetensors")
    tensors, meta = read_safetensors(str(tmp_path / "g.safetensors"))
    assert set(tensors) == set(g.state_dict()) and meta["input_shape"] == "1,28,28"
    assert all(torch.equal(tensors[k], v) for k, v in g.state_dict().items())


EXTERNAL = [("kw_mnist.pth", "kw_mnist", 0.982), ("mnist_a_adv.pth", "kw_mnist", 0.956), ("mnist_fc_3layer.pth", "mnist_fc_3layer", 0.973),
            ("mnist_6_100_nat.pth", "mnist_6_100", 0.960), ("mnist_conv_small_nat.pth", "mnist_conv_small", 0.981)]


@pytest.mark.parametrize("file,factory,acc", EXTERNAL, ids=[e[0] for e in EXTERNAL])
def test_checkpoints_others_trained_load_through_the_factory(file: str, factory: str, acc: float, monkeypatch) -> None:
    path = shared_path("models", file)
    data = shared_path("data", "mnist_test_1k.npz")
    monkeypatch.syspath_prepend(str(TESTS))
    g = load_model(str(path), factory=f"ext_factories:{factory}", input_shape=(1, 28, 28))
    s = load_samples(str(data), g.input_shape, 10)
    with torch.no_grad():
        got = float((g(s.x).argmax(1) == s.y).float().mean())
    assert got == pytest.approx(acc, abs=0.0051)


def test_cli_certifies_a_factory_checkpoint(monkeypatch) -> None:
    from srp_audit_cli.main import main

    path = shared_path("models", "kw_mnist.pth")
    monkeypatch.syspath_prepend(str(TESTS))
    r = CliRunner().invoke(main, ["certify", str(path), "--model-factory", "ext_factories:kw_mnist", "--input-shape", "1,28,28",
                                  "--data", str(FIXTURES / "mnist_cnn.samples.npz"), "--eps", "0.02", "--method", "crown-ibp",
                                  "--limit", "10", "--no-radius"])
    assert r.exit_code == 0, r.output
    assert "certified accuracy" in r.stdout
    assert np  # numpy is used by helpers above
    assert SHARED


def test_relu6_hardtanh_and_clamp_from_pt2(tmp_path: Path) -> None:
    """ATen clamp / hardtanh (ReLU6, Hardtanh, torch.clamp) load as ReLUs around affine maps and match torch."""
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(6, 8), torch.nn.Linear(8, 3)

        def forward(self, x):
            h = torch.nn.functional.relu6(self.a(x)) + torch.nn.functional.hardtanh(self.a(x), -0.5, 0.5)
            return self.b(torch.clamp(h, min=0.1))

    net = Net().eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(torch.export.export(net, (torch.zeros(2, 6),), dynamic_shapes=({0: batch},)), tmp_path / "c.pt2")
    g = load_model(str(tmp_path / "c.pt2"))
    x = torch.randn(16, 6) * 4
    with torch.no_grad():
        assert torch.allclose(g(x), net(x), atol=1e-5)
