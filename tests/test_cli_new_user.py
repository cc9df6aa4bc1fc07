"""A new user's first runs: what the commands say must be true (the audit's sample count), and odd inputs — a
symlink loop as output, a folder as step summary, a header line in instances.csv, a model that is not a
classifier or has too many classes for certify — get one line on stderr and the documented exit code."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import FIXTURES
from srp_audit_cli.main import main

from srp_audit.data import load_samples
from srp_audit.robustify_audit import split_data
from srp_audit.verify import read_instances

MLP = str(FIXTURES / "mnist_mlp.onnx")
TRAIN = str(FIXTURES / "mnist_train_4k.npz")
CERTIFY = ("certify", MLP, "--eps", "0.01", "--method", "ibp", "--limit", "2", "--no-radius", "-q")


def run(*args: str, env: dict | None = None):
    return CliRunner(env=env).invoke(main, list(args), catch_exceptions=True)


def _one_error_line(r, code: int = 2) -> str:
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output, r.stderr
    return lines[0]


def test_the_audit_line_states_how_many_samples_are_audited() -> None:
    train = load_samples(TRAIN, (1, 28, 28), 10)
    split = split_data(train, 0.1, 0, "train.npz", audit_samples=20)
    assert len(split.audit) == 20 and split.audit_name == f"20 of {len(split.val)} held-out samples of train.npz"
    nothing_held = split_data(train, 0.0, 0, "train.npz", audit_samples=7)
    assert len(nothing_held.audit) == 7 and nothing_held.audit_name.startswith("7 training samples of train.npz")
    given = split_data(train, 0.1, 0, "train.npz", train.subset(slice(0, 5)), "audit.npz", 5)
    assert given.audit_name == "5 samples of audit.npz"


def test_robustify_reports_the_audited_count(tmp_path: Path) -> None:
    r = run("robustify", MLP, "--data", TRAIN, "--eps", "0.01", "--epochs", "0.02", "--audit-samples", "3", "--method", "ibp",
            "--no-audit-radius", "-o", str(tmp_path / "out.onnx"), "-q")
    assert r.exit_code == 0, r.output
    assert "audit: 3 of 400 held-out samples" in r.stdout


@pytest.mark.parametrize("option", ["report", "report-in-loop", "certificate", "plot", "model", "result-file"])
def test_an_output_through_a_symlink_loop_is_one_clear_error(tmp_path: Path, monkeypatch, option: str) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("loop", "loop.json", "loop.npz", "loop.svg", "loop.onnx", "loop.txt"):
        os.symlink(name, name)
    spec = tmp_path / "p.vnnlib"
    spec.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n")
    args = {
        "report": CERTIFY + ("-o", "loop.json"),
        "report-in-loop": CERTIFY + ("-o", "loop/r.json"),
        "certificate": CERTIFY + ("--certificate", "loop.npz"),
        "plot": CERTIFY + ("--plot", "loop.svg"),
        "model": ("robustify", MLP, "--data", TRAIN, "--eps", "0.01", "-o", "loop/out.onnx"),
        "result-file": ("verify", MLP, str(spec), "--result-file", "loop.txt"),
    }[option]
    line = _one_error_line(run(*args))
    assert "symlink loop" in line and "File exists" not in line, line
    assert all(os.path.islink(n) for n in ("loop", "loop.json", "loop.npz")), "the links are left alone"


def test_a_step_summary_that_is_a_folder_warns_once(tmp_path: Path) -> None:
    r = run(*CERTIFY, env={"GITHUB_STEP_SUMMARY": str(tmp_path)})
    assert r.exit_code == 0, r.output
    assert r.stderr.count("GITHUB_STEP_SUMMARY") == 1 and "is a folder" in r.stderr, r.stderr


def test_instances_accept_a_header_line_like_known_results(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("onnx,vnnlib,timeout\nm.onnx,p.vnnlib,60\n")
    (tmp_path / "b.csv").write_text("timeout, vnnlib ,ONNX\n30,q.vnnlib,n.onnx\n")
    (tmp_path / "c.csv").write_text("m.onnx,p.vnnlib,60\n")  # VNN-COMP's own files have no header
    a, b, c = (read_instances(str(tmp_path / f"{n}.csv")) for n in "abc")
    assert [(i.onnx, i.vnnlib, i.timeout) for i in a] == [(str(tmp_path / "m.onnx"), str(tmp_path / "p.vnnlib"), 60.0)]
    assert [(i.onnx, i.vnnlib, i.timeout) for i in b] == [(str(tmp_path / "n.onnx"), str(tmp_path / "q.vnnlib"), 30.0)]
    assert [(i.onnx, i.timeout) for i in c] == [(str(tmp_path / "m.onnx"), 60.0)]
    (tmp_path / "d.csv").write_text("model,property,seconds\nm.onnx,p.vnnlib,60\n")
    line = _one_error_line(run("verify", "--instances", str(tmp_path / "d.csv")))
    assert "d.csv:1" in line and "header" in line, line


def _export(module: torch.nn.Module, example: torch.Tensor, path: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example, str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return str(path)


def test_certify_refuses_a_model_whose_output_is_not_a_vector(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _export(torch.nn.Conv2d(1, 3, 3, padding=1), torch.zeros(1, 1, 28, 28), tmp_path / "seg.onnx")
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32), y=np.arange(4))
    line = _one_error_line(run("certify", model, "--eps", "0.01", "--data", str(tmp_path / "d.npz"), "-q"))
    assert "output has shape (3, 28, 28) per sample" in line and "srp-audit verify" in line, line


def test_certify_refuses_too_many_classes_instead_of_running_out_of_memory(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _export(torch.nn.Linear(4, 2352), torch.zeros(1, 4), tmp_path / "wide.onnx")
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((4, 4), dtype=np.float32), y=np.arange(4))
    line = _one_error_line(run("certify", model, "--eps", "0.01", "--data", str(tmp_path / "d.npz"), "-q"))
    assert "2352 classes" in line and "GiB" in line, line
