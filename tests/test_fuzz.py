"""Fuzzing the three file formats srp-audit reads (hypothesis, derandomised, bounded): mutated ONNX protobufs,
mutated VNN-LIB text and mutated .npz samples. Every run must end in exit 0, 1 or 2 with at most one error line
— never exit 3, never a traceback — and a `verified` or `unsat` on a mutated input must survive an independent
check (onnxruntime on sampled points, corners included)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import onnx
from click.testing import CliRunner
from conftest import ort_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from srp_audit_cli.main import main

FUZZ = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def _tiny_model(n_in: int = 4, hidden: int = 6, n_out: int = 3, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = {"W1": rng.standard_normal((hidden, n_in)).astype(np.float32), "b1": rng.standard_normal(hidden).astype(np.float32),
             "W2": rng.standard_normal((n_out, hidden)).astype(np.float32), "b2": rng.standard_normal(n_out).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1, name="fc1"), helper.make_node("Relu", ["h"], ["r"], name="act"),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1, name="fc2")]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def _run(args: list[str]):
    r = CliRunner().invoke(main, args, catch_exceptions=True)
    assert r.exit_code in (0, 1, 2), (args, r.exit_code, r.output)
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error")]) <= 1, r.stderr
    return r


def _samples(tmp: Path, n_in: int = 4, n: int = 6) -> str:
    rng = np.random.default_rng(1)
    p = tmp / "s.npz"
    np.savez(p, x=rng.uniform(0.2, 0.8, (n, n_in)).astype(np.float32), y=rng.integers(0, 3, n))
    return str(p)


def _check_verified_with_ort(model_path: str, report: dict, data: str, eps: float) -> None:
    """Every `verified` sample keeps its label on sampled points of its ball (onnxruntime as the reference)."""
    try:
        sess = ort_session(model_path)
    except Exception:
        return
    d = np.load(data)
    rng = np.random.default_rng(0)
    for s in report["samples"]:
        if s["verdict"] != "verified":
            continue
        x = d["x"][s["index"]].astype(np.float64)
        lo, hi = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
        pts = np.concatenate([lo[None], hi[None], np.where(rng.random((200,) + x.shape) < 0.5, lo, hi),
                              lo + (hi - lo) * rng.random((200,) + x.shape)]).astype(np.float32)
        out = sess.run(None, {sess.get_inputs()[0].name: pts})[0].reshape(len(pts), -1)
        assert np.all(out.argmax(1) == s["label"]), "a verified sample has a counterexample"


MUTATIONS = ("drop node", "duplicate node", "attribute type", "weight shape", "truncate", "flip byte", "rename input")


@FUZZ
@given(kind=st.sampled_from(MUTATIONS), where=st.integers(0, 10_000), value=st.integers(0, 255))
def test_mutated_onnx_models(tmp_path_factory, kind: str, where: int, value: int) -> None:
    tmp = tmp_path_factory.mktemp("onnx")
    m = _tiny_model()
    g = m.graph
    if kind == "drop node":
        del g.node[where % len(g.node)]
    elif kind == "duplicate node":
        g.node.append(g.node[where % len(g.node)])
    elif kind == "attribute type":
        node = g.node[where % len(g.node)]
        node.attribute.append(helper.make_attribute("transB", [1.5, 2.5]) if where % 2 else helper.make_attribute("alpha", "x"))
    elif kind == "weight shape":
        t = g.initializer[where % len(g.initializer)]
        arr = numpy_helper.to_array(t)
        t.CopyFrom(numpy_helper.from_array(arr.reshape(-1)[: max(1, arr.size - 1 - where % 3)].copy(), t.name))
    elif kind == "rename input":
        g.node[where % len(g.node)].input[0] = "nowhere"
    data = m.SerializeToString()
    if kind == "truncate":
        data = data[: where % len(data)]
    elif kind == "flip byte":
        i = where % len(data)
        data = data[:i] + bytes([value]) + data[i + 1 :]
    path = tmp / "m.onnx"
    path.write_bytes(data)
    samples = _samples(tmp)
    r = _run(["certify", str(path), "--eps", "0.05", "--data", samples, "--method", "crown", "--no-radius", "--format", "json", "-q"])
    if r.exit_code == 0:
        _check_verified_with_ort(str(path), json.loads(r.stdout), samples, 0.05)


_SPEC = """; a small property
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const X_3 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (>= X_0 0.4))
(assert (<= X_0 0.5))
(assert (>= X_1 0.4))
(assert (<= X_1 0.45))
(assert (>= X_2 0.1))
(assert (<= X_2 0.2))
(assert (>= X_3 0.7))
(assert (<= X_3 0.75))
(assert (or (>= Y_1 (+ Y_0 40)) (and (>= Y_2 (+ Y_0 30)) (<= Y_1 3))))
"""


def _mutate_text(text: str, kind: str, where: int, junk: str) -> str:
    i = where % max(len(text), 1)
    if kind == "delete":
        return text[:i] + text[i + 1 + where % 7 :]
    if kind == "duplicate":
        return text[:i] + text[i : i + 12] + text[i:]
    if kind == "insert":
        return text[:i] + junk + text[i:]
    numbers = list(re.finditer(r"-?\d+(\.\d+)?", text))
    m = numbers[where % len(numbers)]
    return text[: m.start()] + junk + text[m.end() :]


@FUZZ
@given(kind=st.sampled_from(["delete", "duplicate", "insert", "number"]), where=st.integers(0, 10_000),
       junk=st.sampled_from(["(", ")", "X_9", "Y_7", "-1e308", "nan", "1/0", "\x00", "\x1b[2J", "é", "(or", "0.45", "-0.3", "1e-400"]))
def test_mutated_vnnlib_specs(tmp_path_factory, kind: str, where: int, junk: str) -> None:
    tmp = tmp_path_factory.mktemp("vnnlib")
    model = tmp / "m.onnx"
    onnx.save(_tiny_model(), str(model))
    spec = tmp / "p.vnnlib"
    spec.write_text(_mutate_text(_SPEC, kind, where, junk), encoding="utf-8")
    r = _run(["verify", str(model), str(spec), "--timeout", "5", "--format", "json"])
    if r.exit_code == 0 and json.loads(r.stdout)["result"] == "unsat":
        from srp_audit.vnnlib import read_vnnlib

        sess = ort_session(model)
        rng = np.random.default_rng(0)
        for c in read_vnnlib(spec).clauses:  # no sampled point of the input set may violate the property
            pts = (c.lower_in + (c.upper_in - c.lower_in) * rng.random((500, 4))).astype(np.float32)
            y = sess.run(None, {"x": pts})[0].astype(np.float64)
            h = y @ c.C.T + c.d
            violated = np.zeros(len(pts), dtype=bool)
            for group in c.groups:
                violated |= np.all(np.where(c.strict[group], h[:, group] < 0, h[:, group] <= 0), axis=1)
            assert not violated.any(), "unsat answered but a sampled point violates the property"


NPZ_MUTATIONS = ("x dtype", "x shape", "x values", "y dtype", "y shape", "drop key", "extra key", "truncate file")


@FUZZ
@given(kind=st.sampled_from(NPZ_MUTATIONS), which=st.integers(0, 10_000))
def test_mutated_npz_samples(tmp_path_factory, kind: str, which: int) -> None:
    tmp = tmp_path_factory.mktemp("npz")
    model = tmp / "m.onnx"
    onnx.save(_tiny_model(), str(model))
    rng = np.random.default_rng(which)
    x, y = rng.uniform(0.2, 0.8, (5, 4)).astype(np.float32), rng.integers(0, 3, 5)
    arrays: dict[str, np.ndarray] = {"x": x, "y": y}
    dtypes = [np.float16, np.float64, np.int8, np.uint8, np.bool_, np.complex64, np.int64, "U3"]
    if kind == "x dtype":
        arrays["x"] = x.astype(dtypes[which % len(dtypes)]) if dtypes[which % len(dtypes)] != "U3" else np.array([["a"] * 4] * 5)
    elif kind == "x shape":
        arrays["x"] = [x[None], x.reshape(5, 2, 2), x.reshape(-1), x.T, x[:, :3], np.float32(0.5)][which % 6]
    elif kind == "x values":
        bad = x.copy()
        bad[which % 5, which % 4] = [np.nan, np.inf, -np.inf, 1e30, -1.0, 2.0][which % 6]
        arrays["x"] = bad
    elif kind == "y dtype":
        arrays["y"] = [y.astype(np.float32) + 0.5, y.astype(np.uint8), np.array(["a"] * 5), y.astype(bool), y.astype(np.float64)][which % 5]
    elif kind == "y shape":
        arrays["y"] = [y[:, None], y[:3], np.int64(1), np.eye(3)[y], y.reshape(1, 5)][which % 5]
    elif kind == "drop key":
        arrays.pop(["x", "y"][which % 2])
    elif kind == "extra key":
        arrays["z"] = np.zeros(3)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    raw = buf.getvalue()
    if kind == "truncate file":
        raw = raw[: which % len(raw)]
    path = tmp / "d.npz"
    path.write_bytes(raw)
    r = _run(["certify", str(model), "--eps", "0.05", "--data", str(path), "--method", "ibp", "--no-radius", "-q"])
    if kind == "truncate file" and r.exit_code != 2:
        assert zipfile.is_zipfile(path)  # a cut that kept a readable archive can load
