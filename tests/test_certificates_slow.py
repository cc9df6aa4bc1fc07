"""The slow suite's certificate checks: every verified verdict of the demo (the CNN fixture's 100 samples at eps
0.02, with the radius search's certified radii), of the MLP and ResNet fixtures, and every unsat answer srp-audit
gives on the shared VNN-COMP benchmarks (60 s per instance, branch and bound included) comes with a certificate
the independent checker accepts, checked against the VNN-LIB file."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, VNNCOMP

from srp_audit.certificate_trees import certify_certificate, verify_certificate
from srp_audit.certify import CertifyOptions, certify
from srp_audit.formats import load_model
from srp_audit.verify import VerifyOptions, verify
from srp_audit.vnnlib import read_vnnlib
from srp_check import check

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name,eps", [("mnist_cnn", 0.02), ("mnist_mlp", 0.02), ("mnist_resnet", 0.005)])
def test_every_verified_verdict_of_a_fixture_checks(tmp_path: Path, name: str, eps: float) -> None:
    path = str(FIXTURES / f"{name}.onnx")
    graph = load_model(path)
    data = np.load(FIXTURES / f"{name}.samples.npz")
    x, y = torch.from_numpy(data["x"]).float() / 255.0, torch.from_numpy(data["y"]).long()
    opts = CertifyOptions(eps=eps, radius=name == "mnist_cnn")
    result = certify(graph, x, y, opts)
    cert = certify_certificate(path, graph, x, result.samples, opts)
    out = tmp_path / "c.npz"
    cert.write(str(out))
    report = check(path, str(out), data=str(FIXTURES / f"{name}.samples.npz"))
    assert not cert.uncertified and len(report.claims) >= sum(s.verdict == "verified" for s in result.samples) > 0
    assert report.ok, [c.reason for c in report.claims if not c.ok][:3]


def _unsat_instances() -> list[tuple[str, str, str]]:
    known = VNNCOMP / "known_results.csv"
    if not known.exists():
        return []
    return [(r["benchmark"], r["onnx"].split("/", 1)[1], r["vnnlib"].split("/", 1)[1]) for r in csv.DictReader(open(known))
            if r["expected"] == "unsat" and r["benchmark"] in ("mnist_fc", "oval21", "eran", "cifar10_resnet")]


@pytest.mark.parametrize("family,onnx_rel,spec_rel", _unsat_instances())
def test_every_unsat_answer_on_vnncomp_checks(tmp_path: Path, family: str, onnx_rel: str, spec_rel: str) -> None:
    model = str(VNNCOMP / family / onnx_rel)
    spec_path = tmp_path / "p.vnnlib"
    opener = gzip.open if spec_rel.endswith(".gz") else open
    with opener(VNNCOMP / family / spec_rel, "rb") as f:
        spec_path.write_bytes(f.read())
    graph, spec = load_model(model), read_vnnlib(str(spec_path))
    if verify(graph, spec, VerifyOptions(timeout=60)).status != "unsat":
        pytest.skip("not proved within 60 s")
    cert = verify_certificate(model, graph, spec, timeout=120)
    out = tmp_path / "c.npz"
    cert.write(str(out))
    report = check(model, str(out), spec=str(spec_path))
    assert not cert.uncertified, cert.uncertified
    assert report.ok, report.lines()[:3]
