"""Everyday architectures (tests/arch_zoo.py), exported by torch three ways — the TorchScript ONNX exporter, the
dynamo ONNX exporter, and torch.export (.pt2, read through ATen) — each loads, computes what onnxruntime (or torch)
computes, and is bounded soundly by IBP, CROWN and alpha-CROWN on a small box (sampling, corners included, no
tolerance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from arch_zoo import architectures, export
from conftest import ort_session
from soundness import assert_contains, evaluate, identity_spec, sample_box

from srp_audit.bounds import get_method
from srp_audit.formats import load_model
from srp_audit.spec import InputBox

ARCHS = architectures()
EXPORTERS = ("torchscript", "dynamo", "torch.export")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("arch")
    cache = {}

    def get(name: str, how: str):
        if (name, how) not in cache:
            module, shape = ARCHS[name]
            path = folder / f"{name}.{how}.{'pt2' if how == 'torch.export' else 'onnx'}"
            export(module, shape, how, path)
            cache[name, how] = path
        return cache[name, how]

    return get


@pytest.mark.parametrize("how", EXPORTERS)
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_architecture_loads_matches_the_reference_and_is_bounded_soundly(name: str, how: str, exported) -> None:
    module, shape = ARCHS[name]
    path = exported(name, how)
    g = load_model(str(path)).eval()
    assert g.input_shape == shape
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((4,) + shape).astype(np.float32)
    if how == "torch.export":
        with torch.no_grad():
            ref = module(torch.from_numpy(pts)).numpy()
    else:
        sess = ort_session(path)
        ref = sess.run(None, {sess.get_inputs()[0].name: pts})[0]
    with torch.no_grad():
        ours = g(torch.from_numpy(pts)).numpy()
    assert np.abs(ours - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max())), f"{name} ({how}) differs by {np.abs(ours - ref).max():.2e}"

    wide = g.double()
    wide.requires_grad_(False)
    centre = torch.from_numpy(pts[:1]).double()
    box = InputBox(centre - 0.002, centre + 0.002)
    k = wide.num_classes
    spec = identity_spec(k, 1, torch.float64)
    values = evaluate(lambda t: wide(t), sample_box(box.lower, box.upper, 200, torch.Generator().manual_seed(0)))
    for method in ("ibp", "crown", "alpha-crown"):
        kw = {"alpha_iters": 3} if method == "alpha-crown" else {}
        lb = get_method(method)(wide, box, spec, **kw).lower.detach()
        lo, hi = lb[:, :k], -lb[:, k:]
        assert_contains(values, lo, hi, f"{method} on {name} ({how})")
        assert bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()), f"{method} on {name} ({how}): infinite bounds"
        if method == "crown":  # informative, not vacuous: CROWN is tight on so small a box
            assert float((hi - lo).max()) < 10 * float((values.amax(1) - values.amin(1)).max()) + 1e-3
