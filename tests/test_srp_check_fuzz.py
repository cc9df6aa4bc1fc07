"""Fuzzing srp_check's input (hypothesis, derandomised, bounded): random byte flips of the archive and random
changes of manifest fields and arrays must give a `CertificateError` or a report — never another exception —
and on a FALSE claim (the user's own sample, with a label the model does not give it at the sample itself)
nothing may make a claim check."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_srp_check_support import crown_mlp, loosen, mlp_onnx, robustness_claim, sha256

from srp_check import CertificateError, Report, check, read_network
from srp_check.certificate import parse_claims, read_manifest
from srp_check.inputs import claim_box

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
PIXELS = [90, 200, 30, 140]


def _base(tmp: Path, true_claim: bool):
    """A model, the user's data file, and a certificate (manifest, arrays) with bounds, slopes, β, a ReLU split
    and an input split. With `true_claim` False the label is the model's worst class at the sample itself."""
    rng = np.random.default_rng(7)
    ws = [(rng.normal(size=(8, 4)) / 2, rng.normal(size=8) / 4), (rng.normal(size=(8, 8)) / 3, rng.normal(size=8) / 4),
          (rng.normal(size=(3, 8)) / 3, rng.normal(size=3) / 4)]
    model = mlp_onnx(tmp / "m.onnx", ws)
    x = (np.array(PIXELS, np.uint8).astype(np.float32) / np.float32(255)).astype(np.float64)
    y = read_network(model.read_bytes()).forward(x)[0]
    label = int(np.argmax(y)) if true_claim else int(np.argmin(y))
    data = tmp / "data.npz"
    np.savez(data, x=np.array([PIXELS], np.uint8), y=np.array([label]))
    eps = 0.005
    claim, arrays = robustness_claim("c", "c/x", eps, label, 3)
    arrays["c/x"] = x
    bounds, _ = crown_mlp(ws, np.maximum(x - eps, 0), np.minimum(x + eps, 1))
    leaves = []
    for i in range(3):
        leaf = {"bounds": {}, "slopes": {"relu0": f"s{i}", "relu1": f"S{i}"}, "beta": {"relu0": f"b{i}"}}
        for k, (l, u) in enumerate(bounds):
            arrays[f"l{i}{k}"], arrays[f"u{i}{k}"] = loosen(l, u)
            leaf["bounds"][f"relu{k}"] = {"lower": f"l{i}{k}", "upper": f"u{i}{k}"}
        arrays[f"s{i}"], arrays[f"S{i}"] = rng.random(8), rng.random((2, 8))
        arrays[f"b{i}"] = np.zeros(8)
        leaves.append(leaf)
    arrays["b0"][3] = 0.25  # β on the split neuron
    leaves[2]["stops"] = ["relu1"]  # one leaf's final pass stops at an interval (an IBP proof)
    claim["leaves"] = leaves
    claim["tree"] = {"relu": "relu0", "neuron": 3, "children": [{"leaf": 0},
                     {"input": 1, "at": float(x[1]), "children": [{"leaf": 1}, {"leaf": 2}]}]}
    manifest = {"format": "srp-audit certificate", "version": 1, "model": {"sha256": sha256(model), "file": "m.onnx"},
                "claims": [claim], "uncertified": [{"id": "other", "reason": "L2"}]}
    return model, data, manifest, arrays


def _serialise(manifest, arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{"manifest.json": np.frombuffer(json.dumps(manifest).encode(), np.uint8)}, **arrays)
    return buf.getvalue()


def _paths(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*path, i))


NAMES = ["relu0", "relu1", "stops", "c/x", "c/C", "c/d", "l00", "u00", "s0", "S0", "b0", "leaf", "children", "input", "at", "neuron"]
JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 10) | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.sampled_from(NAMES) | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(NAMES + ["lower", "upper"]), c, max_size=3), max_leaves=6)
FLOATS = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300, 5e-324, 1.0, -1.0, 0.5, 2.0, 1e-3]) | st.floats(-10, 10)


@st.composite
def mutation(draw, manifest, arrays):
    """Apply 1–3 random changes to a copy of (manifest, arrays)."""
    m, a = json.loads(json.dumps(manifest)), dict(arrays)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "delete", "array-entry", "array-shape", "array-dtype", "array-drop"]))
        if kind in ("set", "delete"):
            paths = [p for p in _paths(m) if p]
            path = draw(st.sampled_from(paths))
            parent = m
            for k in path[:-1]:
                parent = parent[k]
            try:
                if kind == "set":
                    parent[path[-1]] = draw(JSON)
                else:
                    del parent[path[-1]]
            except (KeyError, IndexError, TypeError):
                pass
        else:
            key = draw(st.sampled_from(sorted(a)))
            arr = np.array(a[key])
            if kind == "array-entry" and arr.size:
                arr.reshape(-1)[draw(st.integers(0, arr.size - 1))] = draw(FLOATS)
            elif kind == "array-shape":
                arr = arr.reshape(-1)[: draw(st.integers(0, arr.size))] if draw(st.booleans()) else arr.reshape(1, -1)
            elif kind == "array-dtype":
                with warnings.catch_warnings():  # complex → real after an earlier change: the cast is the point
                    warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
                    arr = arr.astype(draw(st.sampled_from([np.float32, np.int64, np.bool_, np.float16, np.complex128])))
            else:
                a.pop(key)
                continue
            a[key] = arr
    return m, a


def _outcome(model, cert, data=None):
    try:
        return check(model, cert, data=data)
    except CertificateError as e:
        return e


@pytest.fixture(scope="module")
def false_cert(tmp_path_factory):
    return _base(tmp_path_factory.mktemp("false"), true_claim=False)


@pytest.fixture(scope="module")
def true_cert(tmp_path_factory):
    return _base(tmp_path_factory.mktemp("true"), true_claim=True)


def test_the_bases_behave(false_cert, true_cert, tmp_path):
    model, data, m, a = false_cert
    (tmp_path / "f.npz").write_bytes(_serialise(m, a))
    r = check(model, tmp_path / "f.npz", data=data)
    assert isinstance(r, Report) and not r.claims[0].ok
    model, data, m, a = true_cert
    (tmp_path / "t.npz").write_bytes(_serialise(m, a))
    assert isinstance(check(model, tmp_path / "t.npz", data=data), Report)


def _assert_not_about_the_sample(model: Path, cert: Path, report: Report) -> None:
    """A claim that checks after a change must be another claim: its set (a changed eps or domain) leaves out
    the sample, where the label is false. (--data pins the sample and the label.)"""
    net = read_network(model.read_bytes())
    x = (np.array(PIXELS, np.uint8).astype(np.float32) / np.float32(255)).astype(np.float64)
    for claim, result in zip(parse_claims(read_manifest(str(cert)), net), report.claims):
        if result.ok:
            lo, hi = claim_box(claim)
            assert not np.all((lo <= x) & (x <= hi)), report.lines()


@FUZZ
@given(st.data())
def test_no_change_makes_a_false_claim_check(false_cert, tmp_path_factory, data):
    model, user_data, manifest, arrays = false_cert
    m, a = data.draw(mutation(manifest, arrays))
    cert = tmp_path_factory.mktemp("f") / "c.npz"
    cert.write_bytes(_serialise(m, a))
    out = _outcome(model, cert, user_data)
    assert isinstance(out, (CertificateError, Report))
    if isinstance(out, Report) and any(c.ok for c in out.claims):
        _assert_not_about_the_sample(model, cert, out)


@FUZZ
@given(st.data())
def test_byte_flips_give_an_error_or_a_report(true_cert, false_cert, tmp_path_factory, data):
    which = data.draw(st.sampled_from(["true", "false"]))
    model, user_data, manifest, arrays = true_cert if which == "true" else false_cert
    raw = bytearray(_serialise(manifest, arrays))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    cert = tmp_path_factory.mktemp("b") / "c.npz"
    cert.write_bytes(bytes(raw))
    out = _outcome(model, cert, user_data)
    assert isinstance(out, (CertificateError, Report))
    if which == "false" and isinstance(out, Report) and any(c.ok for c in out.claims):
        _assert_not_about_the_sample(model, cert, out)


@FUZZ
@given(st.data())
def test_member_level_changes_on_a_true_claim_never_crash(true_cert, tmp_path_factory, data):
    """Rebuilt archives (valid zips, so the changes reach the parser rather than the CRC check)."""
    model, user_data, manifest, arrays = true_cert
    m, a = data.draw(mutation(manifest, arrays))
    cert = tmp_path_factory.mktemp("t") / "c.npz"
    cert.write_bytes(_serialise(m, a))
    assert isinstance(_outcome(model, cert, user_data if data.draw(st.booleans()) else None), (CertificateError, Report))


def test_stored_zip_members_with_flipped_payload_bytes(true_cert, tmp_path):
    """An uncompressed member's payload changed with its CRC fixed up: the parser, not the CRC, must refuse it."""
    model, user_data, manifest, arrays = true_cert
    raw = _serialise(manifest, arrays)
    zin = zipfile.ZipFile(io.BytesIO(raw))
    rng = np.random.default_rng(0)
    for _ in range(40):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zout:
            for info in zin.infolist():
                body = bytearray(zin.read(info.filename))
                if rng.random() < 0.3 and body:
                    body[rng.integers(len(body))] ^= 1 << int(rng.integers(8))
                zout.writestr(info.filename, bytes(body))
        (tmp_path / "z.npz").write_bytes(out.getvalue())
        assert isinstance(_outcome(model, tmp_path / "z.npz", user_data), (CertificateError, Report))
