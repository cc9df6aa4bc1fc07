"""The CLI end to end through click's runner (and once through the installed console script): reports,
gates, and every bad input producing one clear line with exit code 2 and no traceback."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import FIXTURES
from onnx import TensorProto, helper, numpy_helper
from srp_audit_cli.main import main

MLP = str(FIXTURES / "mnist_mlp.onnx")
SAMPLES = FIXTURES / "mnist_mlp.samples.npz"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


def test_certify_table_with_default_samples_beside_model() -> None:
    r = run("certify", MLP, "--method", "ibp", "--eps", "0.004", "--limit", "12", "-q")
    assert r.exit_code == 0, r.output
    assert "certified accuracy" in r.stdout and "samples                  12" in r.stdout


def test_certify_json_contract(tmp_path: Path) -> None:
    r = run("certify", MLP, "--method", "ibp", "--eps", "0.004", "--limit", "8", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    for key in ("samples", "clean_accuracy", "certified_accuracy", "eps", "method"):
        assert key in doc["summary"]
    assert doc["summary"]["samples"] == 8 and doc["summary"]["method"] == "ibp"
    row = doc["samples"][0]
    for key in ("index", "label", "prediction", "verdict", "certified_radius", "attack_radius", "method"):
        assert key in row
    for row in doc["samples"]:
        assert row["verdict"] in ("verified", "falsified", "unknown")
        assert (row["method"] is not None) == (row["verdict"] == "verified")
        assert row["certified_radius"] >= 0


def test_output_file_markdown_and_per_sample(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    r = run("certify", MLP, "--method", "ibp", "--eps", "0.004", "--limit", "5", "--format", "markdown", "--per-sample", "-o", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.startswith("### srp-audit certify") and "| verdict" in text.replace("|  ", "| ") or "verdict" in text
    assert "certified accuracy" in r.stdout  # the summary still reaches the terminal


@pytest.mark.parametrize("threshold,code", [("1.0", 1), ("0", 0)])
def test_fail_under_gate(threshold: str, code: int) -> None:
    r = run("certify", MLP, "--method", "ibp", "--eps", "0.004", "--limit", "6", "--fail-under", threshold)
    assert r.exit_code == code, r.output
    if code == 1:
        assert "gate failed" in r.stderr


def test_help_and_version() -> None:
    assert "Examples" in run("certify", "--help").stdout
    assert run("--version").stdout.startswith("srp-audit, version")


def test_console_script_is_installed() -> None:
    exe = shutil.which("srp-audit") or str(Path(sys.executable).parent / "srp-audit")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "srp-audit" in out.stdout


# ------------------------------------------------------------------------------------------------ errors


def _data(tmp_path: Path, name: str = "d.npz", **arrays) -> str:
    p = tmp_path / name
    np.savez(p, **arrays)
    return str(p)


def _good():
    d = np.load(SAMPLES)
    return d["x"][:4], d["y"][:4]


def _model_with(tmp_path: Path, nodes, inits, name="m.onnx") -> str:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    p = tmp_path / name
    onnx.save(m, str(p))
    return str(p)


def _cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    x, y = _good()
    w = np.random.default_rng(0).standard_normal((10, 784)).astype(np.float32)
    w_nan = w.copy()
    w_nan[0, 0] = np.nan
    flat = [helper.make_node("Flatten", ["x"], ["f"])]
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 50)
    text = tmp_path / "model.txt"
    text.write_text("not a model")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object), y=np.array([1]))
    xf = x.astype(np.float32) / 255
    xnan, xinf = xf.copy(), xf.copy()
    xnan[1, 0, 3, 3] = np.nan
    xinf[2, 0, 0, 0] = np.inf
    cases = {
        "missing model": (["certify", str(tmp_path / "nope.onnx"), "--eps", "0.1"], "does not exist"),
        "corrupt model": (["certify", str(corrupt), "--eps", "0.1", "--data", str(SAMPLES)], "not a readable ONNX"),
        "not onnx": (["certify", str(text), "--eps", "0.1", "--data", str(SAMPLES)], "is neither ONNX nor a PyTorch file"),
        "unsupported op": (["certify", _model_with(tmp_path, flat + [helper.make_node("Gemm", ["f", "W"], ["g"], transB=1),
                                                                      helper.make_node("Hardmax", ["g"], ["y"], name="lsm")],
                                                      {"W": w}), "--eps", "0.1", "--data", str(SAMPLES)], r"'lsm' \(op Hardmax, opset 13\)"),
        "nan weights": (["certify", _model_with(tmp_path, flat + [helper.make_node("Gemm", ["f", "W"], ["y"], transB=1)],
                                                   {"W": w_nan}, "nanw.onnx"), "--eps", "0.1", "--data", str(SAMPLES)], "NaN or inf"),
        "shape mismatch": (["certify", MLP, "--eps", "0.1", "--data", _data(tmp_path, "s.npz", x=x[:, :, :20, :], y=y)],
                           r"shape \(1, 20, 28\) but the model expects \(1, 28, 28\)"),
        "nan data": (["certify", MLP, "--eps", "0.1", "--data", _data(tmp_path, "n.npz", x=xnan, y=y)], "sample 1 .* NaN or inf"),
        "inf data": (["certify", MLP, "--eps", "0.1", "--data", _data(tmp_path, "i.npz", x=xinf, y=y)], "sample 2 .* NaN or inf"),
        "out of domain": (["certify", MLP, "--eps", "0.1", "--data", _data(tmp_path, "o.npz", x=x.astype(np.float32), y=y)],
                          "outside the input domain .*0–255 pixels"),
        "negative eps": (["certify", MLP, "--eps", "-0.1"], "must be a finite positive radius, got -0.1"),
        "non-numeric eps": (["certify", MLP, "--eps", "abc"], "is not a number"),
        "nan eps": (["certify", MLP, "--eps", "nan"], "must be a finite positive radius, got nan"),
        "label out of range": (["certify", MLP, "--eps", "0.1", "--data", _data(tmp_path, "l.npz", x=x, y=np.array([1, 2, 10, 3]))],
                               "label 10 of sample 2 .* 10 classes"),
        "negative label": (["certify", MLP, "--eps", "0.1", "--data", _data(tmp_path, "l2.npz", x=x, y=np.array([1, -1, 0, 3]))],
                           "label -1 of sample 1"),
        "empty data": (["certify", MLP, "--eps", "0.1", "--data", _data(tmp_path, "e.npz", x=x[:0], y=y[:0])], "holds no samples"),
        "missing keys": (["certify", MLP, "--eps", "0.1", "--data", _data(tmp_path, "k.npz", images=x, y=y)], "lacks array"),
        "pickled data": (["certify", MLP, "--eps", "0.1", "--data", str(pickled)], "unpickling, which is unsafe"),
        "not npz": (["certify", MLP, "--eps", "0.1", "--data", str(text)], "not a readable .npz"),
        "missing data": (["certify", MLP, "--eps", "0.1", "--data", str(tmp_path / "none.npz")], "does not exist"),
        "no samples beside": (["certify", str(_copy_model(tmp_path)), "--eps", "0.1"], "no samples given"),
        "bad domain": (["certify", MLP, "--eps", "0.1", "--domain", "1,0"], "need finite LO < HI"),
        "bad fail-under": (["certify", MLP, "--eps", "0.1", "--fail-under", "80"], "between 0 and 1"),
        "unknown method": (["certify", MLP, "--eps", "0.1", "--method", "magic"], "Invalid value for '--method'"),
        "one-hot labels": (["certify", MLP, "--eps", "0.1", "--data", _data(tmp_path, "oh.npz", x=x, y=np.eye(10)[y])], "look one-hot"),
    }
    return cases


def _copy_model(tmp_path: Path) -> Path:
    p = tmp_path / "lonely.onnx"
    shutil.copy(MLP, p)
    return p


CASE_NAMES = [
    "missing model", "corrupt model", "not onnx", "unsupported op", "nan weights", "shape mismatch",
    "nan data", "inf data", "out of domain", "negative eps", "non-numeric eps", "nan eps", "label out of range",
    "negative label", "empty data", "missing keys", "pickled data", "not npz", "missing data", "no samples beside",
    "bad domain", "bad fail-under", "unknown method", "one-hot labels",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_gives_one_clear_line_and_exit_2(tmp_path: Path, case: str) -> None:
    args, pattern = _cases(tmp_path)[case]
    r = run(*args)
    assert r.exit_code == 2, (case, r.output)
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
    import re

    assert re.search(pattern, r.stderr), (case, r.stderr)
    error_lines = [ln for ln in r.stderr.splitlines() if ln.lower().startswith(("error", "usage", "try"))]
    assert error_lines, r.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--debug", "certify", str(tmp_path / "nope.onnx"), "--eps", "0.1"])
    assert r.exit_code != 0 and r.exception is not None and not isinstance(r.exception, SystemExit)
    r = CliRunner().invoke(main, ["certify", str(tmp_path / "nope.onnx"), "--eps", "0.1", "--debug"])
    assert r.exception is not None and not isinstance(r.exception, SystemExit)


def test_unsafe_pickle_is_never_loaded(tmp_path: Path) -> None:
    """Refusal happens before any object is built: a payload that would run code is not executed."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    p = tmp_path / "evil.npz"
    with open(p, "wb") as f:
        np.savez(f, x=np.array([Payload()], dtype=object), y=np.array([0]))
    r = run("certify", MLP, "--eps", "0.1", "--data", str(p))
    assert r.exit_code == 2 and not marker.exists()
    assert pickle  # imported for clarity of intent: the npz above holds a pickle


def test_check_runs_the_checker_in_ieee_arithmetic(monkeypatch, tmp_path: Path) -> None:
    """The CLI flushes subnormals for speed (`perf.tune_process`); the independent checker's arithmetic must be
    IEEE's, subnormals included, so `check` runs it with them kept. The checker is replaced by a probe that
    records the mode it runs in."""
    import srp_audit_cli.check_cmd as check_cmd

    from srp_audit import perf
    from srp_check import CertificateError

    seen: list[bool] = []

    def probe(*args, **kwargs):
        seen.append(perf.flushing())
        raise CertificateError("probe")

    monkeypatch.setattr(check_cmd, "check", probe)
    monkeypatch.setattr(perf, "_done", False)  # the command tunes the process as on a fresh start
    r = CliRunner().invoke(main, ["check", str(FIXTURES / "mnist_mlp.onnx"), str(tmp_path / "c.npz")])
    assert r.exit_code == 2 and seen == [False], (r.output, seen)
