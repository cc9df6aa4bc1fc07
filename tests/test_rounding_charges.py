"""CROWN's rounding slack charged per pass at the weighted sums (`srp_audit.bounds.slack`): sound against the exact
value of the stored network where float32 rounding is large against the output, and negligible on a deep network
(carried a priori through |W|, it had grown about 6× per layer and dominated the bound).

The float32 networks put large biases through deep chains and shift the last layer so that the outputs are near
zero at the first point: the rounding of the bound's terms is then far above |output|, so a missing charge shows
as an exact value outside the bounds (the mutant below). The exact values come from tests/exact_onnx.py (arb
balls, reading the ONNX file with `onnx` alone).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from arch_zoo import ResNet18, _calibrated, export
from exact_onnx import ExactOnnx, enclosure
from soundness import identity_spec

import srp_audit.bounds.crown as crown
from srp_audit.bounds import get_method
from srp_audit.formats import load_model
from srp_audit.spec import InputBox, linf_ball, margin_spec

METHODS = ("crown", "crown-ibp", "alpha-crown")


class _Block(nn.Module):
    """conv → batch norm → ReLU with a residual add: patches coefficients, merges at the add's input."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x))) + x


def _deep_mlp() -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(12):
        layers += [nn.Linear(8 if i == 0 else 16, 16), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(16, 5)), (8,)


def _deep_convnet() -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, 1, 1), nn.ReLU(), *[_Block(4) for _ in range(5)], nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    g = torch.Generator().manual_seed(2)
    for b in m:
        if isinstance(b, _Block):
            b.bn.running_mean.copy_(torch.randn(4, generator=g) * 0.2)
            b.bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
    return m, (2, 6, 6)


NETWORKS = {"mlp_12_layers": _deep_mlp, "residual_convnet_6_layers": _deep_convnet}


def _near_zero_model(name: str, tmp: Path) -> tuple[Path, list[np.ndarray]]:
    """The network with its biases ×40 and its outputs shifted to ~0 at the first of three float32 points."""
    m, shape = NETWORKS[name]()
    m.eval()
    for mod in m.modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            mod.bias.data *= 40
    rng = np.random.default_rng(3)
    points = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
    with torch.no_grad():
        m[-1].bias.data -= m(torch.from_numpy(points[0]).unsqueeze(0))[0]
    path = tmp / f"{name}.onnx"
    export(m, shape, "torchscript", path)
    return path, points


def _violations(path: Path, points: list[np.ndarray]) -> list[str]:
    """Every method's float32 bounds on [x, x] against the exact outputs; returns what is not enclosed."""
    ex = ExactOnnx(path)
    g = load_model(str(path)).copy(dtype=torch.float32).eval()
    g.requires_grad_(False)
    k = g.num_classes
    problems = []
    for i, x in enumerate(points):
        exact = np.concatenate([np.asarray(o, dtype=object).reshape(-1) for o in ex.run([x[None]])])
        t = torch.from_numpy(x).unsqueeze(0)
        for method in METHODS:
            with torch.no_grad():
                lb = get_method(method)(g, InputBox(t, t.clone()), identity_spec(k, 1, torch.float32)).lower.reshape(-1)
            lb64 = lb.double().numpy()
            enc = enclosure(exact, lb64[:k], -lb64[k:])
            if not enc.ok:
                problems.append(f"point {i}, {method}: {enc.summary()}")
    return problems


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_float32_bounds_contain_the_exact_value_where_rounding_dominates(name: str, tmp_path: Path) -> None:
    path, points = _near_zero_model(name, tmp_path)
    assert not _violations(path, points)


@pytest.mark.parametrize("where", ["every node", "no node"])
def test_any_choice_of_checkpoints_is_sound(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints are a choice of where to charge, not a claim: every rule bounds its own step plus what it carries,
    so charging at every node (ReLUs, batch norm, adds too) or carrying everything to the start must hold as well."""
    from srp_audit import ops
    from srp_audit.ir.node import Node

    if where == "every node":
        monkeypatch.setattr(Node, "crown_checkpoint", True)
    else:
        for cls in (ops.Dense, ops.Conv2d, ops.ConvTranspose2d):
            monkeypatch.setattr(cls, "crown_checkpoint", False)
    for name in sorted(NETWORKS):
        path, points = _near_zero_model(name, tmp_path)
        assert not _violations(path, points), name


def test_a_missing_charge_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: with the weighted sums' charges dropped, exact values fall outside the bounds."""
    path, points = _near_zero_model("mlp_12_layers", tmp_path)

    def nothing(ctx, A, key, err, factor):
        t = A if isinstance(A, torch.Tensor) else A.data
        return torch.zeros(t.shape[:2], dtype=t.dtype)

    monkeypatch.setattr(crown, "charge", nothing)
    assert _violations(path, points)


def test_deep_resnet_bound_gives_up_almost_nothing_to_rounding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CIFAR ResNet-18 at width 2 (16×16 inputs): CROWN's bound is within 1e-7 (relative; measured 1.1e-9) of the same computation
    with no rounding slack at all. Carried through |W| a priori, the slack took the margins from −0.01 to −26."""
    model = _calibrated(ResNet18(2), 3)
    export(model, (3, 16, 16), "torchscript", tmp_path / "r.onnx")
    g = load_model(str(tmp_path / "r.onnx")).copy(dtype=torch.float64).eval()
    g.requires_grad_(False)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        spec = margin_spec(g.logits(x).argmax(1), 10)
        box = linf_ball(x, 0.001, (0.0, 1.0))
        sound = get_method("crown")(g, box, spec).lower

        def no_rounding(ctx, name):
            err = ctx.graph.node(name).crown_rounding(ctx, name)
            ctx.err[name] = torch.zeros_like(err)

        monkeypatch.setattr(crown, "set_rounding", no_rounding)
        monkeypatch.setattr(crown, "merge_charge", lambda ctx, merged, name, factor: 0.0)
        free = get_method("crown")(g, box, spec).lower
    assert bool((sound <= free).all())
    gap = float(((free - sound) / free.abs().clamp(min=1)).max())
    assert gap < 1e-7, f"rounding slack {gap:.3g} relative"
    assert math.isfinite(float(sound.min()))
