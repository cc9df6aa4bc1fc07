"""Regressions from a review of the command line's promises for outputs and gates: an input is never written, two
outputs never share a file, and a report whose numbers are not numbers never passes `compare`'s gate."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from click.testing import CliRunner
from srp_audit_cli.main import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _copy_mlp(tmp: Path) -> tuple[Path, Path]:
    for suffix in (".onnx", ".samples.npz"):
        shutil.copy(FIXTURES / f"mnist_mlp{suffix}", tmp / f"mnist_mlp{suffix}")
    return tmp / "mnist_mlp.onnx", tmp / "mnist_mlp.samples.npz"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


BASE = ["--eps", "0.01", "--method", "ibp", "--limit", "4", "--no-radius", "-q"]


def test_the_default_samples_file_is_an_input(tmp_path: Path) -> None:
    model, samples = _copy_mlp(tmp_path)
    before = _digest(samples)
    r = CliRunner().invoke(main, ["certify", str(model), *BASE, "--certificate", str(samples)])
    assert r.exit_code == 2 and "also an input" in r.output, r.output
    assert _digest(samples) == before


def test_a_step_summary_that_is_an_input_is_skipped(tmp_path: Path) -> None:
    model, samples = _copy_mlp(tmp_path)
    digests = _digest(model), _digest(samples)
    for target in (model, samples):
        r = CliRunner().invoke(main, ["certify", str(model), *BASE], env={"GITHUB_STEP_SUMMARY": str(target)})
        assert r.exit_code == 0 and "one of the inputs" in r.output, r.output
    assert (_digest(model), _digest(samples)) == digests


def test_two_outputs_on_one_file_are_refused(tmp_path: Path) -> None:
    model, _ = _copy_mlp(tmp_path)
    r = CliRunner().invoke(main, ["certify", str(model), *BASE, "-o", str(tmp_path / "same.json"),
                                  "--certificate", str(tmp_path / "same.json")])
    assert r.exit_code == 2 and "two outputs" in r.output and not (tmp_path / "same.json").exists(), r.output


def test_compare_refuses_reports_whose_numbers_are_not_numbers(tmp_path: Path) -> None:
    model, _ = _copy_mlp(tmp_path)
    report = tmp_path / "r.json"
    assert CliRunner().invoke(main, ["certify", str(model), *BASE, "-o", str(report)]).exit_code == 0
    good = json.loads(report.read_text())
    for key, value in (("certified_accuracy", float("nan")), ("certified_accuracy", 5), ("clean_accuracy", None),
                       ("median_certified_radius", float("inf"))):
        bad = json.loads(json.dumps(good))
        bad["summary"][key] = value
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))  # json writes NaN and Infinity literals
        r = CliRunner().invoke(main, ["compare", str(report), str(path)])
        assert r.exit_code == 2 and "not a valid srp-audit JSON report" in r.output, (key, value, r.output)
    assert CliRunner().invoke(main, ["compare", str(report), str(report)]).exit_code == 0


def test_odd_data_files_and_option_values_are_usage_errors(tmp_path: Path) -> None:
    """Each of these ended in an internal error (exit 3)."""
    import zipfile

    import numpy as np

    model, _ = _copy_mlp(tmp_path)
    with zipfile.ZipFile(tmp_path / "raw.npz", "w") as z:
        z.writestr("x", b"not an npy file")
        z.writestr("y", b"nor this")
    np.savez(tmp_path / "nofeatures.npz", x=np.zeros((4, 0), np.float32), y=np.zeros(4, np.int64))
    np.savez(tmp_path / "hugelabel.npz", x=np.zeros((2, 784), np.float32), y=np.array([1e30, 0.0]))
    base = ["certify", str(model), "--eps", "0.01", "--method", "ibp", "--no-radius", "-q"]
    for extra in (["--data", str(tmp_path / "raw.npz")], ["--data", str(tmp_path / "nofeatures.npz")],
                  ["--data", str(tmp_path / "hugelabel.npz")], ["--seed", str(2**70)], ["--attack-steps", str(10**23)]):
        r = CliRunner().invoke(main, base + extra)
        assert r.exit_code == 2 and "internal" not in r.output and len(r.output.strip().splitlines()) == 1, (extra, r.output)
    spec = tmp_path / "p.vnnlib"
    spec.write_text("".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n" for i in range(784))
                    + "".join(f"(declare-const Y_{i} Real)\n" for i in range(10)) + "(assert (>= Y_0 1e9))\n")
    r = CliRunner().invoke(main, ["verify", str(model), str(spec), "--timeout", "1e12"])
    assert r.exit_code == 2 and "internal" not in r.output, r.output


def test_vnnlib_files_past_the_parser_s_limits_are_usage_errors(tmp_path: Path) -> None:
    model, _ = _copy_mlp(tmp_path)
    head = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n" for i in range(784))
    head += "".join(f"(declare-const Y_{i} Real)\n" for i in range(10))
    for tail in ("(assert " + "(and " * 800 + "(>= Y_0 0)" + ")" * 801 + "\n", "(assert (>= Y_0 1e400))\n",
                 "(assert (>= Y_0 " + "9" * 5001 + "))\n"):
        spec = tmp_path / "p.vnnlib"
        spec.write_text(head + tail)
        r = CliRunner().invoke(main, ["verify", str(model), str(spec)])
        assert r.exit_code == 2 and "internal" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
