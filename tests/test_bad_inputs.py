"""The bad-input matrix: one table of inputs × commands × expected exit code and message fragment. Every row
must end in its exit code with one clear line on stderr (never a traceback, never exit 3), and outputs are
checked before any work: rows that would fail late name a missing data file that the command never reaches.

The rows of `test_cli.py::_cases` (the original load/data/option errors) are part of the matrix too."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import FIXTURES
from onnx import TensorProto, helper, numpy_helper
from srp_audit_cli.main import main
from test_cli import CASE_NAMES
from test_cli import _cases as original_cases

MLP = str(FIXTURES / "mnist_mlp.onnx")
SAMPLES = str(FIXTURES / "mnist_mlp.samples.npz")
QUICK = ["--method", "ibp", "--limit", "4", "--no-radius", "-q"]


def run(*args: str, env: dict | None = None):
    return CliRunner(env=env).invoke(main, list(args), catch_exceptions=True)


def _npz(tmp: Path, name: str, **arrays) -> str:
    p = tmp / name
    np.savez(p, **arrays)
    return str(p)


def _onnx(tmp: Path, name: str, nodes, inits, out_shape=("N", 10), outputs=("y",), in_shape=("N", 1, 28, 28)) -> str:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, list(out_shape)) for o in outputs],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    p = tmp / name
    onnx.save(m, str(p))
    return str(p)


def _touch(p: Path) -> str:
    p.write_bytes(b"")
    return str(p)


def _report(tmp: Path, name: str, **changes) -> str:
    doc = {"schema_version": 2, "run": {"data_sha256": "aa"},
           "summary": {"eps": 0.01, "method": "ibp", "samples": 4, "clean_accuracy": 1.0, "certified_accuracy": 0.5}}
    for key, value in changes.items():
        section, field = key.split("__") if "__" in key else (None, key)
        (doc[section] if section else doc)[field] = value
    p = tmp / name
    p.write_text(json.dumps(doc))
    return str(p)


def _vnnlib(tmp: Path, name: str, text: str | bytes) -> str:
    p = tmp / name
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return str(p)


def _box_spec(lo: float, hi: float) -> str:
    decl = "".join(f"(declare-const X_{i} Real)\n" for i in range(784)) + "".join(f"(declare-const Y_{j} Real)\n" for j in range(10))
    box = "".join(f"(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n" for i in range(1, 784))
    return decl + f"(assert (>= X_0 {lo}))\n(assert (<= X_0 {hi}))\n" + box + "(assert (>= Y_0 Y_1))\n"


def _cases(tmp: Path) -> dict[str, tuple[list[str], int, str]]:
    d = np.load(SAMPLES)
    x, y = d["x"][:4], d["y"][:4]
    w = np.random.default_rng(0).standard_normal((10, 784)).astype(np.float32)
    flat = [helper.make_node("Flatten", ["x"], ["f"])]
    one_out = _onnx(tmp, "one.onnx", flat + [helper.make_node("Gemm", ["f", "W"], ["y"], transB=1)], {"W": w[:1]}, ("N", 1))
    bad_gemm = _onnx(tmp, "gemm.onnx", flat + [helper.make_node("Gemm", ["f", "W"], ["y"], transB=1)], {"W": w[:, :700]})
    no_producer = _onnx(tmp, "noprod.onnx", flat + [helper.make_node("Gemm", ["f", "W"], ["z"], transB=1)], {"W": w})
    softmax = _onnx(tmp, "sm.onnx", flat + [helper.make_node("Gemm", ["f", "W"], ["g"], transB=1),
                                             helper.make_node("Hardmax", ["g"], ["y"], name="prob")], {"W": w})
    missing = str(tmp / "never-read.npz")  # a command that got this far would fail on it: outputs come first
    a_file = tmp / "a.json"
    a_file.write_text("{}")
    binary = tmp / "blob.json"
    binary.write_bytes(bytes(range(256)) * 4)
    ckpt_dir = tmp / "ck"
    ckpt_dir.mkdir()
    (ckpt_dir / "out.onnx.ckpt").write_bytes(b"PK\x03\x04 truncated")
    good_spec = _vnnlib(tmp, "ok.vnnlib", _box_spec(0, 1))
    inst = tmp / "bench"
    inst.mkdir()
    (inst / "empty.csv").write_text("")
    (inst / "instances.csv").write_text(f"{MLP},{good_spec},5\n")
    (inst / "broken.csv").write_text(f"{tmp / 'absent.onnx'},{good_spec},5\n")
    (inst / "known.csv").write_text("onnx,vnnlib,expected\nother.onnx,other.vnnlib,unsat\n")
    return {
        # 2. user errors that were internal errors
        "one-output model": (["certify", one_out, "--eps", "0.01", "--data", _npz(tmp, "z.npz", x=x, y=np.zeros(4, int))] + QUICK,
                             2, "needs at least 2 outputs"),
        "scalar x": (["certify", MLP, "--eps", "0.01", "--data", _npz(tmp, "scalar.npz", x=np.array(3.0), y=np.array(0))], 2,
                     "one entry per sample"),
        "compare a binary file": (["compare", str(binary), str(binary)], 2, "not a JSON report"),
        "report into /proc": (["certify", MLP, "--eps", "0.01", "--data", missing, "-o", "/proc/srp-audit/r.json"], 2, "cannot write"),
        "report into /sys": (["certify", MLP, "--eps", "0.01", "--data", missing, "-o", "/sys/r.json"], 2, "cannot write"),
        "resume a foreign checkpoint": (["robustify", MLP, "--data", SAMPLES, "--eps", "0.01", "-o", str(ckpt_dir / "out.onnx"),
                                         "--resume", "--epochs", "1", "-q"], 2, "not a readable srp-audit checkpoint"),
        "factory that raises": (["certify", _touch(tmp / "w.pt"), "--model-factory", "ext_factories:broken", "--eps", "0.01",
                                 "--input-shape", "1,28,28", "--data", SAMPLES], 2, "raised RuntimeError"),
        # 3. outputs checked before any work
        "report under a file": (["certify", MLP, "--eps", "0.01", "--data", missing, "-o", str(a_file / "x.json")], 2,
                                "is a file, not a folder"),
        "plot of an unknown type": (["certify", MLP, "--eps", "0.01", "--data", missing, "--plot", str(tmp / "x.pdf")], 2,
                                    r"use a \.png or \.svg"),
        "report is a folder": (["certify", MLP, "--eps", "0.01", "--data", missing, "-o", str(tmp) + "/"], 2, "is a directory"),
        # 4. an input is never overwritten
        "robustify over its input": (["robustify", MLP, "--data", SAMPLES, "--eps", "0.01", "-o", MLP, "--epochs", "1"], 2,
                                     "is also an input"),
        "robustify over its data": (["robustify", MLP, "--data", SAMPLES, "--eps", "0.01", "-o", SAMPLES, "--epochs", "1"], 2,
                                    "must end in"),
        "result file over the spec": (["verify", MLP, good_spec, "--result-file", good_spec], 2, "is also an input"),
        # 5. gates that passed when they should not
        "compare different eps": (["compare", _report(tmp, "e1.json"), _report(tmp, "e2.json", summary__eps=0.02)], 2, "different eps"),
        "compare different data": (["compare", _report(tmp, "d1.json"), _report(tmp, "d2.json", run__data_sha256="bb")], 2,
                                   "different data"),
        "compare unknown schema": (["compare", _report(tmp, "v1.json"), _report(tmp, "v2.json", schema_version=999)], 2,
                                   "schema_version 999"),
        "tolerance above 1": (["compare", _report(tmp, "t1.json"), _report(tmp, "t2.json"), "--tolerance", "5"], 2, "between 0 and 1"),
        "empty instances": (["verify", "--instances", str(inst / "empty.csv")], 2, "holds no instances"),
        "known matches nothing": (["verify", "--instances", str(inst / "instances.csv"), "--known", str(inst / "known.csv"),
                                   "--timeout-cap", "5"], 2, "none of the instances appears"),
        "instances that error": (["verify", "--instances", str(inst / "broken.csv")], 1, "could not be run"),
        "empty known file": (["verify", "--instances", str(inst / "instances.csv"), "--known", _vnnlib(tmp, "k.csv", "")], 2,
                             "holds no rows"),
        # 6. vacuous proofs
        "empty input box": (["verify", MLP, _vnnlib(tmp, "empty.vnnlib", _box_spec(0.75, 0.25))], 2,
                            r"empty\.vnnlib:795: the input set is empty: the lower bound of X_0 \(line 795\) exceeds its upper bound \(line 796\)"),
        # 8. messages
        "click usage error": (["certify", MLP, "--eps", "abc"], 2, r"^error: Invalid value for '--eps'.*see '.*certify --help'"),
        "softmax hint": (["certify", softmax, "--eps", "0.01", "--data", SAMPLES], 2, "export the model without it"),
        "gemm shape mismatch": (["certify", bad_gemm, "--eps", "0.01", "--data", SAMPLES], 2, "does not fit the shapes"),
        "output with no producer": (["certify", no_producer, "--eps", "0.01", "--data", SAMPLES], 2, "produced by no node"),
        "binary vnnlib": (["verify", MLP, _vnnlib(tmp, "bin.vnnlib", b"(declare\x00\x1b[31m")], 2, "binary file"),
        "x/y mismatch with --limit": (["certify", MLP, "--eps", "0.01", "--limit", "2", "--data", _npz(tmp, "m.npz", x=x, y=y[:3])],
                                      2, "x has 4 samples but y has 3 labels"),
        "eps wider than the domain": (["certify", MLP, "--eps", "2"], 2, "wider than the input domain"),
        "pixels scaled past float32": (["certify", MLP, "--eps", "0.5", "--domain=0,1e39", "--data",
                                        _npz(tmp, "u8.npz", x=x, y=y)] + QUICK, 2, "passes float32's range"),
        "floats past float32": (["certify", MLP, "--eps", "0.5", "--domain=-1e300,1e300", "--data",
                                 _npz(tmp, "f64.npz", x=x.astype(np.float64) * 1e40, y=y)] + QUICK, 2,
                                "sample 0 .* holds values beyond float32's range"),
        "empty item in an eps list": (["certify", MLP, "--eps", "0.1,,0.2"], 2, "empty item"),
    }


def _all_cases(tmp: Path) -> dict[str, tuple[list[str], int, str]]:
    rows = {f"original: {k}": (args, 2, pattern) for k, (args, pattern) in original_cases(tmp).items()}
    return {**rows, **_cases(tmp)}


NAMES = [f"original: {k}" for k in CASE_NAMES] + [
    "one-output model", "scalar x", "compare a binary file", "report into /proc", "report into /sys",
    "resume a foreign checkpoint", "factory that raises", "report under a file", "plot of an unknown type", "report is a folder",
    "robustify over its input", "robustify over its data", "result file over the spec", "compare different eps",
    "compare different data", "compare unknown schema", "tolerance above 1", "empty instances", "known matches nothing",
    "instances that error", "empty known file", "empty input box", "click usage error", "softmax hint", "gemm shape mismatch",
    "output with no producer", "binary vnnlib", "x/y mismatch with --limit", "eps wider than the domain",
    "pixels scaled past float32", "floats past float32",
    "empty item in an eps list"]


@pytest.mark.parametrize("case", NAMES)
def test_bad_input_matrix(tmp_path: Path, case: str, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    args, code, pattern = _all_cases(tmp_path)[case]
    r = run(*args)
    assert r.exit_code == code, (case, r.output)
    assert "Traceback" not in r.output, r.output
    assert re.search(pattern, r.stderr, re.MULTILINE), (case, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len([ln for ln in lines if ln.startswith(("error", "gate failed"))]) == 1, (case, r.stderr)
    assert not any(c in r.stderr for c in "\x00\x1b"), "control bytes from a file reached the terminal"
