"""Certificates over L2 and L1 balls: every verified verdict of `certify --norm 2/1` comes with a claim the checker
accepts (also against the user's data file); a larger eps, or another norm whose ball is not inside the proved
one, is rejected; and the checker's ball bound (`srp_check.ball`) holds at random and extreme points of the ball ∩
box, for random rows, where the box clips too."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES

from srp_audit.certificate_trees import certify_certificate
from srp_audit.certify import CertifyOptions, certify
from srp_audit.formats import load_model
from srp_check import CertificateError, check
from srp_check.ball import Ball, ball_bound
from srp_check.fp import down, up


def _certify(name: str, n: int, eps: float, norm: str, tmp_path: Path) -> tuple[Path, list]:
    path = str(FIXTURES / f"{name}.onnx")
    graph = load_model(path)
    data = np.load(FIXTURES / f"{name}.samples.npz")
    x, y = torch.from_numpy(data["x"][:n]).float() / 255.0, torch.from_numpy(data["y"][:n]).long()
    opts = CertifyOptions(eps=eps, norm=norm, radius=False, attack_steps=5)
    result = certify(graph, x, y, opts)
    out = tmp_path / f"{name}.L{norm}.cert.npz"
    certify_certificate(path, graph, x, result.samples, opts).write(str(out))
    return out, result.samples


def _edit(src: Path, dst: Path, **changes) -> Path:
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    man = json.loads(bytes(arrays.pop("manifest.json")).decode())
    for c in man["claims"]:
        c["set"].update({k: (v(c["set"]) if callable(v) else v) for k, v in changes.items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{"manifest.json": np.frombuffer(json.dumps(man).encode(), dtype=np.uint8)})
    dst.write_bytes(buf.getvalue())
    return dst


# the eps values verify most, not all, of the first samples (MLP L2 0.5: 23 of 32, L1 2.0: 28 of 32; CNN L2 0.2:
# 12 of 16, L1 0.3: 15 of 16); every verified verdict's claim checks (the final rows need the dual bound at L1 2.0)
@pytest.mark.parametrize("name,n,eps,norm", [("mnist_mlp", 16, 0.5, "2"), ("mnist_mlp", 16, 2.0, "1"), ("mnist_cnn", 2, 0.2, "2"),
                                             pytest.param("mnist_cnn", 4, 0.3, "1", marks=pytest.mark.slow)])
def test_every_verified_ball_verdict_checks(tmp_path: Path, name: str, n: int, eps: float, norm: str) -> None:
    cert, samples = _certify(name, n, eps, norm, tmp_path)
    verified = [s for s in samples if s.verdict == "verified"]
    report = check(str(FIXTURES / f"{name}.onnx"), str(cert), data=str(FIXTURES / f"{name}.samples.npz"))
    assert verified and len(report.claims) == len(verified) and not report.uncertified
    assert report.ok, report.lines()
    assert all(f"is robust at L{norm} eps {eps!r}" in c.statement for c in report.claims)


def test_a_larger_ball_or_another_norm_is_rejected(tmp_path: Path) -> None:
    model = str(FIXTURES / "mnist_mlp.onnx")
    cert, _ = _certify("mnist_mlp", 8, 0.3, "2", tmp_path)
    assert check(model, str(cert)).ok
    for tampered in (_edit(cert, tmp_path / "eps.npz", eps=1.2),
                     # not inside; at L1 eps 1.5 (also not inside) the L2 proof's bounds still hold: eps·max|W| < 0.3·‖W‖₂
                     _edit(cert, tmp_path / "l1.npz", norm="1", eps=3.0),
                     _edit(cert, tmp_path / "linf.npz", norm="inf")):
        report = check(model, str(tampered))
        assert report.claims and not any(c.ok for c in report.claims), report.lines()
    with pytest.raises(CertificateError, match="norm"):
        check(model, str(_edit(cert, tmp_path / "l3.npz", norm="3")))


def _points(rng: np.random.Generator, c: np.ndarray, eps: float, p: float, lo: np.ndarray, hi: np.ndarray, A: np.ndarray) -> list[np.ndarray]:
    """Random points of the ball ∩ box (inside and on the sphere), the ball's vertices (L1) or the rows' minimisers
    over the ball (L2), each clipped to the box — clipping towards c (in the box) keeps a point in the ball."""
    n, out = c.size, []
    for k in range(60):
        d = rng.standard_normal(n) if p == 2 else rng.laplace(size=n)
        d *= eps / np.linalg.norm(d, ord=p) * (1.0 if k % 2 else rng.uniform() ** (1 / n))
        out.append(d)
    if p == 1:
        out += [s * eps * np.eye(n)[i] for i in range(n) for s in (1, -1)]
    else:
        out += [-eps * a / np.linalg.norm(a) for a in A]
    return [np.clip(c + d * (1 - 1e-12), lo, hi) for d in out]  # (1 − 1e-12): rounding stays inside the ball


@pytest.mark.parametrize("norm", ["2", "1"])
def test_ball_bound_holds_on_the_ball_and_box(norm: str) -> None:
    rng = np.random.default_rng(0)
    p = float(norm)
    better = 0
    for trial in range(6):
        n = 12
        c = rng.uniform(0, 1, n).astype(np.float32).astype(np.float64)
        c[rng.uniform(size=n) < 0.3] = rng.choice([0.0, 1.0])  # pixels at the domain's edges: the box clips
        eps = [0.05, 0.3, 1.0][trial % 3] * (2 if p == 1 else 1)
        lo, hi = np.maximum(down(c - eps), 0.0), np.minimum(up(c + eps), 1.0)
        A = rng.standard_normal((10, n)) * rng.choice([1e-3, 1.0, 1e3], size=(10, 1))
        A[:3] = np.abs(A[:3]) * np.where(c > 0.5, 1, -1)  # rows the box blocks on many entries
        ball = Ball(c, eps, 2.0 if p == 2 else np.inf)
        val, err = ball_bound(A, ball, lo, hi, np.zeros(len(A)), np.zeros(len(A)))
        bound = [Fraction(float(v)) - Fraction(float(e)) for v, e in zip(val, err)]
        box = np.maximum(A, 0) @ lo + np.minimum(A, 0) @ hi
        better += int(np.sum(val - err > box + 1e-9 * np.abs(A).sum(1)))
        for x in _points(rng, c, eps, p, lo, hi, A):
            assert np.linalg.norm(x - c, ord=p) <= eps and np.all((x >= lo) & (x <= hi))
            for r in range(len(A)):
                exact = sum((Fraction(float(a)) * Fraction(float(t)) for a, t in zip(A[r], x)), Fraction(0))
                assert bound[r] <= exact, (trial, r, float(bound[r]), float(exact))
    assert better > 0  # the ball bound beats the box's somewhere
