"""Certificates end to end: every verified verdict of `certify` and every cascade-proved unsat answer of `verify`
comes with a certificate the independent checker accepts; what the format cannot carry is listed, with the
reason; tampered certificates are rejected; `srp-audit check` maps outcomes to exit codes 0 / 1 / 2."""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import FIXTURES, VNNCOMP
from srp_audit_cli.main import main

from srp_audit.certificate_trees import certify_certificate
from srp_audit.certify import CertifyOptions, certify
from srp_audit.formats import load_model
from srp_check import CertificateError, check


def _certify(name: str, n: int, eps: float, tmp_path: Path, radius: bool = False, model: Path | None = None) -> tuple[Path, list]:
    path = str(model or FIXTURES / f"{name}.onnx")
    graph = load_model(path)
    data = np.load(FIXTURES / f"{name}.samples.npz")
    x, y = torch.from_numpy(data["x"][:n]).float() / 255.0, torch.from_numpy(data["y"][:n]).long()
    opts = CertifyOptions(eps=eps, radius=radius, attack_steps=5)
    result = certify(graph, x, y, opts)
    cert = certify_certificate(path, graph, x, result.samples, opts)
    out = tmp_path / f"{name}.cert.npz"
    cert.write(str(out))
    return out, result.samples


def _load(path: Path) -> tuple[dict, dict]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(bytes(arrays.pop("manifest.json")).decode()), arrays


def _save(path: Path, manifest: dict, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{"manifest.json": np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)})
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("name,n,eps", [("mnist_mlp", 16, 0.02), ("mnist_cnn", 4, 0.02)])
def test_every_verified_verdict_checks(tmp_path: Path, name: str, n: int, eps: float) -> None:
    cert, samples = _certify(name, n, eps, tmp_path)
    verified = [s for s in samples if s.verdict == "verified"]
    report = check(str(FIXTURES / f"{name}.onnx"), str(cert))
    assert verified and len(report.claims) == len(verified) and not report.uncertified
    assert report.ok, report.lines()


def test_the_certified_radius_is_certified(tmp_path: Path) -> None:
    """With the radius search, each sample's certified radius gets its own claim, which checks."""
    cert, samples = _certify("mnist_mlp", 3, 0.02, tmp_path, radius=True)
    manifest, _ = _load(cert)
    radii = {round(float(c["set"]["eps"]), 12) for c in manifest["claims"]}
    assert all(round(s.certified_radius, 12) in radii for s in samples if s.certified_radius > 0)
    assert check(str(FIXTURES / "mnist_mlp.onnx"), str(cert)).ok


def test_models_the_checker_cannot_read_are_listed_with_the_reason(tmp_path: Path) -> None:
    import onnx

    model = onnx.load(str(FIXTURES / "mnist_resnet.onnx"))  # its max-pooling in ceil mode: the same map on 28×28
    next(a for n in model.graph.node if n.op_type == "MaxPool" for a in n.attribute if a.name == "ceil_mode").i = 1
    onnx.save(model, str(tmp_path / "ceil.onnx"))
    cert, samples = _certify("mnist_resnet", 2, 0.002, tmp_path, model=tmp_path / "ceil.onnx")
    report = check(str(tmp_path / "ceil.onnx"), str(cert))
    assert not report.claims and len(report.uncertified) == sum(s.verdict == "verified" for s in samples) > 0
    assert all("MaxPool with ceil_mode 0" in reason for _, reason in report.uncertified)


def test_tampered_certificates_are_rejected(tmp_path: Path) -> None:
    """A slope past [0, 1], a tightened intermediate bound, a larger eps, another sample: each rejected."""
    cert, _ = _certify("mnist_cnn", 2, 0.02, tmp_path)
    model = str(FIXTURES / "mnist_cnn.onnx")
    manifest, arrays = _load(cert)
    claim = manifest["claims"][0]
    leaf = claim["leaves"][0]
    relu = list(leaf["bounds"])[-1]

    def rejected(edit) -> str:
        m, a = json.loads(json.dumps(manifest)), {k: v.copy() for k, v in arrays.items()}
        edit(m, a)
        bad = tmp_path / "bad.npz"
        _save(bad, m, a)
        try:
            report = check(model, str(bad))
        except CertificateError as e:
            return str(e)
        assert not report.claims[0].ok, "a tampered claim checked"
        return report.claims[0].reason

    def slope(m, a):
        a[m["claims"][0]["leaves"][0]["slopes"][relu]].flat[0] = 1.5

    def tighter(m, a):
        lo = a[m["claims"][0]["leaves"][0]["bounds"][relu]["lower"]]
        j = int(np.argmax(lo > -np.inf))
        lo[j] = np.nextafter(lo[j] + 1e-3 * max(1.0, abs(lo[j])), np.inf)

    def larger_eps(m, a):
        m["claims"][0]["set"]["eps"] = m["claims"][0]["set"]["eps"] * 4

    def other_sample(m, a):
        key = m["claims"][0]["set"]["x"]
        a[key] = a[m["claims"][1]["set"]["x"]].copy()

    assert "slope" in rejected(slope)
    assert "not derived" in rejected(tighter) or "not proven" in rejected(tighter)
    assert rejected(larger_eps)
    assert rejected(other_sample)


def test_check_command_exit_codes(tmp_path: Path) -> None:
    """0 every claim checks, 1 a claim does not, 2 a certificate of another model (one line on stderr)."""
    cert, _ = _certify("mnist_mlp", 4, 0.02, tmp_path)
    runner = CliRunner()
    ok = runner.invoke(main, ["check", str(FIXTURES / "mnist_mlp.onnx"), str(cert)])
    assert ok.exit_code == 0 and "claims check" in ok.output
    other = runner.invoke(main, ["check", str(FIXTURES / "mnist_cnn.onnx"), str(cert)])
    assert other.exit_code == 2 and "another model" in other.output
    manifest, arrays = _load(cert)
    manifest["claims"][0]["set"]["eps"] = 0.5  # a claim that is false
    bad = tmp_path / "false.npz"
    _save(bad, manifest, arrays)
    fails = runner.invoke(main, ["check", str(FIXTURES / "mnist_mlp.onnx"), str(bad)])
    assert fails.exit_code == 1 and "FAIL" in fails.output


def test_cli_certify_writes_a_certificate_the_checker_accepts(tmp_path: Path) -> None:
    out = tmp_path / "proofs.npz"
    runner = CliRunner()
    res = runner.invoke(main, ["certify", str(FIXTURES / "mnist_mlp.onnx"), "--eps", "0.02", "--limit", "6", "--no-radius",
                               "--certificate", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert runner.invoke(main, ["check", str(FIXTURES / "mnist_mlp.onnx"), str(out), "--data",
                                str(FIXTURES / "mnist_mlp.samples.npz")]).exit_code == 0


@pytest.mark.skipif(not (VNNCOMP / "mnist_fc").exists(), reason="../shared/benchmarks/vnncomp is absent")
def test_an_unsat_answer_comes_with_a_certificate(tmp_path: Path) -> None:
    spec = tmp_path / "prop_0.vnnlib"
    with gzip.open(VNNCOMP / "mnist_fc/vnnlib/prop_0_0.03.vnnlib.gz") as f, open(spec, "wb") as out:
        shutil.copyfileobj(f, out)
    model = str(VNNCOMP / "mnist_fc/onnx/mnist-net_256x2.onnx")
    cert = tmp_path / "proof.npz"
    runner = CliRunner()
    res = runner.invoke(main, ["verify", model, str(spec), "--certificate", str(cert), "--timeout", "60"])
    assert res.exit_code == 0 and res.output.startswith("unsat"), res.output
    report = check(model, str(cert), spec=str(spec))
    assert report.ok and len(report.claims) == 1, report.lines()
