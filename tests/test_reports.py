"""Reports and gates: formats by suffix, the versioned JSON schema, JUnit XML, HTML with inline SVG, eps sweeps
reusing the radius search, Clopper–Pearson intervals, per-class tables, GitHub step summaries, compare,
inspect, and the commands docs/ci.md shows."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, ROOT
from srp_audit_cli.main import main

from srp_audit.certify import CertifyOptions, certify
from srp_audit.data import load_samples
from srp_audit.report import STEP_SUMMARY_LIMIT, append_step_summary, clopper_pearson
from srp_audit.report.compare import compare

MLP = str(FIXTURES / "mnist_mlp.onnx")


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env)


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    paths = {k: out / f"r.{k}" for k in ("json", "xml", "html", "md", "txt")}
    summary = out / "summary.md"
    args = ["certify", MLP, "--method", "crown-ibp", "--eps", "0.01,0.002,0.005", "--limit", "30", "--by-class", "-q",
            "--plot", str(out / "plot.svg")]
    for p in paths.values():
        args += ["-o", str(p)]
    r = run(*args, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.exit_code == 0, r.output
    return r, paths, summary, out


def test_every_format_is_written_from_its_suffix(sweep_run) -> None:
    r, paths, summary, out = sweep_run
    doc = json.loads(paths["json"].read_text())
    assert doc["schema_version"] == 3 and doc["run"]["norm"] == "inf" and doc["run"]["sweep"] == [0.002, 0.005, 0.01] and doc["run"]["eps"] == 0.01
    for key in ("model_sha256", "data_sha256", "method", "device", "seed", "started", "tool_version"):
        assert key in doc["run"]
    assert [row["eps"] for row in doc["sweep"]] == [0.002, 0.005, 0.01]
    acc = [row["certified_accuracy"] for row in doc["sweep"]]
    assert acc == sorted(acc, reverse=True), "certified accuracy cannot grow with eps"
    assert doc["sweep"][-1]["verified"] == doc["summary"]["verified"]
    for s in doc["samples"]:
        assert len(s["sweep_verdicts"]) == 3
        for e, v in zip(doc["run"]["sweep"], s["sweep_verdicts"]):
            assert (v == "verified") == (s["certified_radius"] >= e) or v == "verified"  # a direct proof may beat the radius
    lo, hi = doc["summary"]["certified_accuracy_ci95"]
    assert lo <= doc["summary"]["certified_accuracy"] <= hi
    assert sum(c["samples"] for c in doc["by_class"]) == 30
    assert paths["md"].read_text().startswith("### srp-audit certify") and "Certified accuracy vs eps" in paths["md"].read_text()
    html = paths["html"].read_text()
    assert html.startswith("<!doctype html>") and html.count("<svg") >= 2 and "<script" not in html
    assert "certified accuracy" in paths["txt"].read_text()
    assert (out / "plot.svg").read_text().count("<svg") == 3
    assert "Certified accuracy vs eps" in summary.read_text()


def test_junit_has_one_case_per_sample_with_failures_for_uncertified(sweep_run) -> None:
    _, paths, _, _ = sweep_run
    doc = json.loads(paths["json"].read_text())
    root = ET.parse(paths["xml"]).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 30
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == 30 - doc["summary"]["verified"]
    assert int(root.find("testsuite").get("failures")) == len(failures)
    msg = failures[0].find("failure").get("message")
    assert "certified radius" in msg and "bound" in msg


def test_sweep_matches_separate_runs(fixture_models) -> None:
    g = fixture_models["mnist_mlp"]
    s = load_samples(str(FIXTURES / "mnist_mlp.samples.npz"), g.input_shape, 10)
    x, y = s.x[:20], s.y[:20]
    swept = certify(g, x, y, CertifyOptions(eps=0.01, method="ibp", sweep=(0.002, 0.01), device="cpu"))
    for j, e in enumerate((0.002, 0.01)):
        single = certify(g, x, y, CertifyOptions(eps=e, method="ibp", device="cpu"))
        assert [v.sweep_verdicts[j] == "verified" for v in swept.samples] == [v.verdict == "verified" for v in single.samples]


def test_clopper_pearson_matches_known_values() -> None:
    lo, hi = clopper_pearson(8, 10)
    assert lo == pytest.approx(0.44390, abs=1e-4) and hi == pytest.approx(0.97479, abs=1e-4)
    assert clopper_pearson(0, 10)[0] == 0.0 and clopper_pearson(10, 10)[1] == 1.0


def test_step_summary_is_truncated_under_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    path.write_bytes(b"x" * (STEP_SUMMARY_LIMIT - 5000))
    append_step_summary(str(path), "y" * 100_000)
    assert path.stat().st_size <= STEP_SUMMARY_LIMIT and b"truncated" in path.read_bytes()


def test_gates_and_bad_suffix(tmp_path: Path) -> None:
    assert run("certify", MLP, "--method", "ibp", "--eps", "0.002", "--limit", "10", "--fail-under-radius", "0.5").exit_code == 1
    assert run("certify", MLP, "--method", "ibp", "--eps", "0.002", "--limit", "10", "--fail-under-radius", "0").exit_code == 0
    r = run("certify", MLP, "--eps", "0.01", "-o", str(tmp_path / "r.pdf"))
    assert r.exit_code == 2 and "unknown report type .pdf" in r.stderr
    r = run("certify", MLP, "--eps", "0.01,0.01")
    assert r.exit_code == 2 and "repeated radius" in r.stderr
    r = run("certify", MLP, "--eps", "0.01,0.02", "--no-radius")
    assert r.exit_code == 2 and "reuses the radius search" in r.stderr


def test_compare_flags_regressions(tmp_path: Path) -> None:
    base = {"schema_version": 2, "run": {"data_sha256": "ab12"},
            "summary": {"eps": 0.01, "method": "auto", "samples": 1, "clean_accuracy": 0.95, "certified_accuracy": 0.80,
                        "median_certified_radius": 0.02, "radius_search": True},
            "sweep": [{"eps": 0.005, "certified_accuracy": 0.9}], "samples": [{"index": 0, "verdict": "verified"}]}
    worse = json.loads(json.dumps(base))
    worse["summary"]["certified_accuracy"] = 0.70
    worse["samples"][0]["verdict"] = "unknown"
    assert compare(base, worse, 0.05).regressed and not compare(base, worse, 0.2).regressed
    assert not compare(base, base).regressed
    more = json.loads(json.dumps(base))
    base["run"].update(bab_domains=128, bab_time=2.0)
    more["run"].update(bab_domains=512, bab_time=2.0)
    assert any("branch-and-bound budgets differ" in line for line in compare(base, more).lines)
    assert not any("branch-and-bound" in line for line in compare(base, base).lines)
    (tmp_path / "a.json").write_text(json.dumps(base))
    (tmp_path / "b.json").write_text(json.dumps(worse))
    r = run("compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert r.exit_code == 1 and "REGRESSION" in r.stdout and "certified before but not now: 0" in r.stdout
    assert run("compare", str(tmp_path / "a.json"), str(tmp_path / "a.json")).exit_code == 0
    (tmp_path / "c.json").write_text("{}")
    r = run("compare", str(tmp_path / "a.json"), str(tmp_path / "c.json"))
    assert r.exit_code == 2 and "not an srp-audit JSON report" in r.stderr


def test_inspect_lists_ops_and_support() -> None:
    r = run("inspect", str(FIXTURES / "mnist_resnet.onnx"))
    assert r.exit_code == 0, r.output
    for op in ("Conv2d", "MaxPool2d", "Add", "AvgPool2d", "Dense"):
        assert op in r.stdout
    # batch-norm's γ/√(var + ε) is no float: the node stays (with its enclosure) instead of a rounded fold
    assert "NO" not in r.stdout and "BatchNorm" in r.stdout
    raw = run("inspect", str(FIXTURES / "mnist_resnet.onnx"), "--raw")
    assert "BatchNorm" in raw.stdout


def test_help_has_examples_and_completion_works() -> None:
    for cmd in ("certify", "robustify", "verify", "inspect", "compare", "check"):
        assert "Example" in run(cmd, "--help").stdout
    r = CliRunner().invoke(main, [], env={"_SRP_AUDIT_COMPLETE": "bash_source"}, prog_name="srp-audit")
    assert "complete" in r.output.lower()


def _doc_commands() -> list[str]:
    text = (ROOT / "docs" / "ci.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    return [m.strip().lstrip("- ").strip() for b in blocks for m in re.findall(r"^\s*-?\s*(srp-audit .*)$", b, re.M)]


def test_the_commands_in_docs_ci_run(tmp_path: Path, monkeypatch) -> None:
    cmds = _doc_commands()
    assert len(cmds) >= 3
    monkeypatch.chdir(ROOT)
    reports = tmp_path / "reports"
    reports.mkdir()
    for cmd in cmds:
        args = shlex.split(cmd.replace("reports/", f"{reports}/"))[1:]
        if args[0] == "compare":  # the baseline would come from the main branch: use this run's report
            (reports / "main.json").write_text((reports / "certify.json").read_text())
        r = run(*args)
        assert r.exit_code == 0, (cmd, r.output)
    assert {p.name for p in reports.iterdir()} >= {"certify.json", "certify.xml", "certify.html", "junit.xml", "summary.md"}
