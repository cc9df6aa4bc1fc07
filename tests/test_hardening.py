"""Hardening: each problem found by trying ~150 bad inputs, reproduced and fixed — code never runs without
trust, user errors are never internal errors, outputs are checked first and never clobber inputs, checkpoints
resume only what made them, deadlines hold in every phase."""

from __future__ import annotations

import json
import os
import pickle
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import FIXTURES
from srp_audit_cli.main import main

from srp_audit.errors import ModelLoadError, UsageError

MLP = str(FIXTURES / "mnist_mlp.onnx")
SAMPLES = str(FIXTURES / "mnist_mlp.samples.npz")


def run(*args: str, env: dict | None = None):
    return CliRunner(env=env).invoke(main, list(args), catch_exceptions=True)


class _Touch:
    """A pickle payload that creates a file when unpickled: proof of code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _small_pt2(path: Path) -> Path:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(torch.export.export(net, (torch.zeros(2, 1, 28, 28),), dynamic_shapes=({0: batch},)), path)
    return path


def _rewrite(src: Path, dst: Path, change) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info, data)


@pytest.mark.parametrize("attack", ["weight marked use_pickle", "sample inputs as a legacy pickle", "an extra member"])
def test_pt2_archives_never_unpickle_without_trust(tmp_path: Path, attack: str) -> None:
    """A .pt2 whose metadata makes torch unpickle a payload is refused from that metadata, before torch reads it."""
    good = _small_pt2(tmp_path / "good.pt2")
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Touch(marker))

    def change(name: str, data: bytes):
        if attack == "weight marked use_pickle" and name.endswith("model_weights_config.json"):
            doc = json.loads(data)
            next(iter(doc["config"].values()))["use_pickle"] = True
            return json.dumps(doc).encode()
        if attack == "weight marked use_pickle" and name.endswith("data/weights/weight_0"):
            return payload
        if attack == "sample inputs as a legacy pickle" and name.endswith("sample_inputs/model.pt"):
            return payload
        return data

    evil = tmp_path / "evil.pt2"
    _rewrite(good, evil, change)
    if attack == "an extra member":
        with zipfile.ZipFile(evil, "a") as z:
            z.writestr("good/data/aotinductor/model.so", b"\x7fELF")
    r = run("inspect", str(evil))
    assert r.exit_code == 2 and "--trust-checkpoint" in r.stderr, r.output
    assert not marker.exists(), "a payload ran"
    assert run("inspect", str(good)).exit_code == 0


def test_reports_and_models_get_normal_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        out = tmp_path / "reports" / "deep" / "r.json"  # a missing folder is created, as the CI recipe expects
        r = run("certify", MLP, "--eps", "0.01", "--method", "ibp", "--limit", "4", "--no-radius", "-q", "-o", str(out))
        assert r.exit_code == 0, r.output
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        out.chmod(0o600)  # a file we replace keeps its mode
        assert run("certify", MLP, "--eps", "0.01", "--method", "ibp", "--limit", "4", "--no-radius", "-q", "-o", str(out)).exit_code == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_verify_result_file_in_a_missing_folder_is_created_and_the_verdict_printed(tmp_path: Path) -> None:
    decl = "".join(f"(declare-const X_{i} Real)\n" for i in range(784)) + "".join(f"(declare-const Y_{j} Real)\n" for j in range(10))
    box = "".join(f"(assert (>= X_{i} 0.5))\n(assert (<= X_{i} 0.5))\n" for i in range(784))
    spec = tmp_path / "p.vnnlib"
    spec.write_text(decl + box + "(assert (>= Y_0 1000000))\n")
    out = tmp_path / "results" / "out.txt"
    r = run("verify", MLP, str(spec), "--timeout", "20", "--result-file", str(out))
    assert r.exit_code == 0, r.output
    assert r.stdout.split()[0] in ("sat", "unsat", "unknown", "timeout") and out.read_text().strip()


def test_a_broken_step_summary_never_hides_a_failed_gate(tmp_path: Path) -> None:
    env = {"GITHUB_STEP_SUMMARY": str(tmp_path / "missing" / "summary.md")}
    r = run("certify", MLP, "--eps", "0.01", "--method", "ibp", "--limit", "4", "--no-radius", "-q", "--fail-under", "1", env=env)
    assert r.exit_code == 1, r.output
    assert "gate failed" in r.stderr and "step summary" in r.stderr


def _robustify(tmp: Path, *extra: str):
    return run("robustify", MLP, "--data", str(FIXTURES / "mnist_train_4k.npz"), "--eps", "0.01", "--epochs", "0.05",
               "--audit-samples", "4", "--method", "ibp", "--no-audit-radius", "-o", str(tmp / "out.onnx"), "-q", *extra)


def test_checkpoints_resume_only_their_own_run_and_go_when_it_ends(tmp_path: Path) -> None:
    r = _robustify(tmp_path, "--checkpoint-every", "1")
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "out.onnx.ckpt").exists(), "a finished run leaves no checkpoint behind"
    # a checkpoint made with other settings is refused before any work
    from srp_audit.formats import load_model
    from srp_audit.robustify import RobustifyOptions, _Run

    opts = RobustifyOptions(eps=0.05, epochs=0.05, checkpoint_path=str(tmp_path / "out.onnx.ckpt"), checkpoint_every=1)
    graph = load_model(MLP)
    run_ = _Run(graph, 10, opts)
    run_.save()
    r = _robustify(tmp_path, "--resume")
    assert r.exit_code == 2 and "other settings" in r.stderr and "--eps 0.05 then, 0.01 now" in r.stderr, r.output
    # and one of the same settings made on other data (another number of training samples) too, in one line
    _Run(graph, 10, RobustifyOptions(eps=0.01, epochs=0.05, checkpoint_path=str(tmp_path / "out.onnx.ckpt"), checkpoint_every=1)).save()
    r = _robustify(tmp_path, "--resume")
    assert r.exit_code == 2 and "was made with 10 training samples, --data now gives 3600" in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1


def test_fine_tuning_that_wrecks_the_model_is_warned_about() -> None:
    from srp_audit.certify import CertifyOptions, CertifyResult, SampleResult
    from srp_audit.robustify_audit import _damage

    def result(correct: int) -> CertifyResult:
        rows = [SampleResult(i, 0, 0 if i < correct else 1, "unknown", 0.0, None, None, 0.0) for i in range(10)]
        return CertifyResult(rows, CertifyOptions(eps=0.1), "cpu", 0.0)

    assert _damage(result(10), result(9)) is None
    assert "smaller --lr" in _damage(result(10), result(2))


def test_verify_stops_at_the_deadline_in_any_phase(monkeypatch) -> None:
    """A phase that never checks the clock (here: an attack stuck in a loop) is interrupted at the deadline."""
    import srp_audit.verify as v
    from srp_audit.formats import load_model
    from srp_audit.vnnlib import Clause, VnnlibSpec

    def stuck(*args, **kwargs):
        for _ in range(3000):  # 30 s if nothing interrupts it; the deadline below is 1 s
            time.sleep(0.01)
        raise AssertionError("the deadline alarm did not interrupt the attack")

    monkeypatch.setattr(v, "property_attack", stuck)
    graph = load_model(MLP)
    clause = Clause(np.zeros(784), np.full(784, 0.1), np.eye(10)[:1], np.zeros(1), [[0]], np.zeros(1, dtype=bool))
    res = v.verify(graph, VnnlibSpec("p", 784, 10, [clause]), v.VerifyOptions(timeout=1.0, device="cpu"))
    assert res.status == "timeout" and res.detail == "stopped at the deadline during the attack"


def test_legacy_pickles_and_pt2_writes_print_one_line_or_none(tmp_path: Path, capfd) -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    legacy = tmp_path / "legacy.pt"
    torch.save(net, legacy, _use_new_zipfile_serialization=False)
    r = run("certify", str(legacy), "--eps", "0.01", "--data", SAMPLES)
    assert r.exit_code == 2 and len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr
    from srp_audit.formats import load_model
    from srp_audit.formats.torch_write import save_pt2

    capfd.readouterr()
    save_pt2(load_model(MLP), tmp_path / "m.pt2")
    assert capfd.readouterr().err == ""


def test_torchscript_with_the_wrong_shape_says_shape(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    ts = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 1, 28, 28)), ts)
    r = run("certify", str(ts), "--eps", "0.01", "--data", SAMPLES, "--input-shape", "3,5,5")
    assert r.exit_code == 2 and "--input-shape" in r.stderr, r.output


def test_a_factory_takes_its_input_shape_from_the_data(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from ext_factories import mnist_fc_3layer

    weights = tmp_path / "w.pt"
    net = mnist_fc_3layer()
    torch.save(net.state_dict(), weights)
    del type(net).input_shape  # the module no longer records its shape: only the data can tell
    try:
        r = run("certify", str(weights), "--model-factory", "ext_factories:mnist_fc_3layer", "--eps", "0.01", "--data", SAMPLES,
                "--method", "ibp", "--limit", "4", "--no-radius", "-q")
    finally:
        type(net).input_shape = (1, 28, 28)
    assert r.exit_code == 0, r.output


def test_a_trusted_pickle_finds_its_class_in_the_current_folder(tmp_path: Path, monkeypatch) -> None:
    import subprocess
    import sys

    (tmp_path / "mynets.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n    input_shape = (1, 28, 28)\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = torch.nn.Linear(784, 10)\n"
        "    def forward(self, x):\n        return self.fc(x.flatten(1))\n")
    made = subprocess.run([sys.executable, "-c", "import torch, mynets; torch.save(mynets.Net(), 'full.pt')"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    monkeypatch.chdir(tmp_path)
    args = ["certify", "full.pt", "--trust-checkpoint", "--eps", "0.01", "--data", SAMPLES, "--method", "ibp", "--limit", "4",
            "--no-radius", "-q"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    sys.modules.pop("mynets", None)
    os.remove("mynets.py")
    r = run(*args)
    assert r.exit_code == 2 and "cannot import" in r.stderr, r.output


def test_huge_files_are_refused_without_reading_them(tmp_path: Path) -> None:
    """Sparse multi-GB files: refused from their size or header alone (a full read would take minutes and GBs)."""
    from srp_audit.formats.onnx_read import load_onnx
    from srp_audit.formats.safetensors_io import read_safetensors
    from srp_audit.vnnlib import VnnlibError, read_vnnlib

    for name in ("big.onnx", "big.vnnlib", "big.safetensors"):
        with open(tmp_path / name, "wb") as f:
            f.truncate(3 << 30)
    with pytest.raises(ModelLoadError, match="2 GiB limit"):
        load_onnx(str(tmp_path / "big.onnx"))
    with pytest.raises(VnnlibError, match="larger than 1024 MiB"):
        read_vnnlib(tmp_path / "big.vnnlib")
    with pytest.raises(ModelLoadError, match="not a .safetensors file"):
        read_safetensors(str(tmp_path / "big.safetensors"))


def test_the_safetensors_robustify_writes_is_explained_when_certified(tmp_path: Path) -> None:
    from srp_audit.formats import load_model
    from srp_audit.formats.torch_write import save_state_dict

    save_state_dict(load_model(MLP), tmp_path / "m.safetensors")
    with pytest.raises(ModelLoadError, match="-o model.onnx or -o model.pt2"):
        load_model(str(tmp_path / "m.safetensors"))


def test_vnnlib_bounds_are_rounded_outward_for_proofs_and_inward_for_members(tmp_path: Path) -> None:
    from fractions import Fraction

    from srp_audit.vnnlib import read_vnnlib

    p = tmp_path / "third.vnnlib"
    p.write_text("(declare-const X_0 Real)(declare-const Y_0 Real)\n(assert (>= X_0 (* 1 0.1)))\n(assert (<= X_0 0.3))\n"
                 "(assert (>= Y_0 0))\n")
    c = read_vnnlib(p).clauses[0]
    assert Fraction(float(c.lower[0])) <= Fraction("0.1") <= Fraction(float(c.lower_in[0]))
    assert Fraction(float(c.upper_in[0])) <= Fraction("0.3") <= Fraction(float(c.upper[0]))
    assert UsageError  # (the module's error types are the user-facing ones)


def test_pgd_past_its_deadline_takes_no_step() -> None:
    """An attack whose deadline has passed returns its start points as they are (the first restart's start is
    evaluated, no gradient step is taken): `verify` gives its attacks a share of the timeout this way."""
    from srp_audit.attack import pgd
    from srp_audit.formats import load_model
    from srp_audit.spec import InputBox, margin_spec

    graph = load_model(MLP)
    data = np.load(SAMPLES)
    x = torch.from_numpy(data["x"][:3]).float()
    box = InputBox(x - 0.3, x + 0.3)
    spec = margin_spec(torch.from_numpy(data["y"][:3]).long(), 10, torch.float32)
    stopped = pgd(graph, box, spec, steps=50, restarts=4, seed=0, start=x, deadline=time.perf_counter() - 1.0)
    assert torch.equal(stopped.points, x)
    moved = pgd(graph, box, spec, steps=50, restarts=4, seed=0, start=x)
    assert not torch.equal(moved.points, x) and bool((moved.objective < stopped.objective).all())


def test_per_disjunct_attack_goes_in_memory_sized_batches(monkeypatch) -> None:
    """With room for one copy of the activations at a time, the per-disjunct attack runs one disjunct per batch
    and still finds the one disjunct that holds a counterexample."""
    import srp_audit.vnn_attacks as va
    from srp_audit.formats import load_model
    from srp_audit.spec import InputBox, LinearSpec

    graph = load_model(MLP)
    per_copy = sum(int(np.prod(s)) for s in graph.shapes.values())
    monkeypatch.setattr(va, "ATTACK_ELEMENTS", per_copy)
    x = torch.from_numpy(np.load(SAMPLES)["x"][:1]).float()
    box = InputBox(x - 0.2, x + 0.2)
    C = torch.zeros(1, 3, 10)
    d = torch.tensor([[1.0, -1.0, 1.0]])  # rows h = C·y + d, violated where h ≤ 0: only row 1, everywhere
    spec = LinearSpec(C, d, [[0], [1], [2]])
    batches = list(va._per_disjunct(graph, box, spec, (box.lower + box.upper) / 2, 5, 2, 0, None))
    assert len(batches) == 6 and all(b.points.shape[0] == 1 for b in batches)  # 3 disjuncts × 2 restarts, one at a time
    found = [bool(b.found.any()) for b in batches]
    assert found == [False, False, True, True, False, False]  # disjunct 1's two restarts
