"""SingleProp and robustify: the method's rules as written in the paper, training improves sound certification,
schedules, adaptive K, checkpoints/resume, atomic output, the CLI's before/after audit, and the guarantee that
nothing in certification uses the unsound estimator."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import FIXTURES, ort_session, relative_error
from soundness import op_graphs

from srp_audit import ops
from srp_audit.bounds.singleprop import relu_radius, singleprop, singleprop_loss, worst_case_logits
from srp_audit.certify import CertifyOptions, certify
from srp_audit.data import load_samples
from srp_audit.errors import UsageError
from srp_audit.formats import load_model
from srp_audit.ir.graph import INPUT, Graph
from srp_audit.robustify import Interrupted, RobustifyOptions, Schedule, Span, robustify

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------ the method


def test_relu_rules_match_the_paper_table() -> None:
    z = torch.linspace(-3, 3, 301, dtype=torch.float64).repeat(3)
    v = torch.cat([torch.full((301,), a, dtype=torch.float64) for a in (0.0, 0.4, 2.0)])
    active, dead = z - v >= 0, z + v <= 0
    paper = {
        "fastlin": 0.75 * v + 0.5 * z - z * z / (4 * v.clamp(min=1e-30)),
        "zero": 0.5 * (z + v),
        "adaptive": torch.where(z >= 0, v, 0.5 * (z + v)),
    }
    for variant, unstable in paper.items():
        expected = torch.where(active, v, torch.where(dead, torch.zeros_like(v), unstable))
        assert torch.allclose(relu_radius(z, v, variant), expected, atol=1e-12), variant


def test_singleprop_centre_is_the_forward_pass_and_affine_radius_is_abs_w(fixture_models) -> None:
    g = fixture_models["mnist_mlp"].copy(dtype=torch.float64)
    x = torch.rand(5, 1, 28, 28, dtype=torch.float64)
    c, v = singleprop(g, x, 0.0)
    assert torch.equal(c, g.logits(x)) and torch.all(v == 0)
    lin = Graph((4,), [("d", ops.Dense(torch.tensor([[1.0, -2.0, 0.5, 0.0]]).double()), (INPUT,))], "d")
    _, v = singleprop(lin, torch.zeros(2, 4, dtype=torch.float64), 0.1)
    assert torch.allclose(v, torch.full((2, 1), 0.35, dtype=torch.float64))


def test_maxpool_sigmoid_and_residual_rules() -> None:
    graphs = op_graphs(2)
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    g = graphs["MaxPool2d"].copy(dtype=torch.float64)
    node = g.node(g.output)
    _, v = singleprop(g, x, 0.2)
    assert torch.allclose(v, (0.5 * (node(x + 0.2) - node(x - 0.2))).reshape(3, -1))
    s = graphs["Sigmoid"].copy(dtype=torch.float64)
    z = torch.randn(4, 7, dtype=torch.float64)
    _, v = singleprop(s, z, 0.3)
    assert torch.allclose(v, 0.5 * (torch.sigmoid(z + 0.3) - torch.sigmoid(z - 0.3)))
    add = graphs["Add"].copy(dtype=torch.float64)
    c, v = singleprop(add, torch.randn(2, 6, dtype=torch.float64), 0.1)
    assert c.shape == v.shape == (2, 5) and torch.all(v > 0)


def test_every_ir_op_has_a_singleprop_rule() -> None:
    assert all(t.supports("singleprop") for t in ops.ALL_OPS)


def test_worst_case_logits_and_loss() -> None:
    c = torch.tensor([[2.0, 1.0, 0.0]])
    v = torch.tensor([[0.5, 0.25, 1.0]])
    y = torch.tensor([0])
    assert torch.equal(worst_case_logits(c, v, y), torch.tensor([[1.5, 1.25, 1.0]]))
    loss, _ = singleprop_loss(c, v, y, 1.0)
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(c, y))


def test_singleprop_is_not_sound_and_certify_never_uses_it() -> None:
    """The estimate can claim more than holds (so it must never certify), and no certification module imports
    it. y = relu(x − 0.25) on x ∈ [−0.75, 0.75]: the true maximum is 0.5, but the centre passed on is
    relu(−0.25) = 0, so c + V stays below 0.5 for every variant."""
    net = Graph((1,), [("d", ops.Dense(torch.ones(1, 1), torch.tensor([-0.25])), (INPUT,)), ("r", ops.Relu(), ("d",))], "r").double()
    net.requires_grad_(False)
    for variant in ("fastlin", "zero", "adaptive"):
        c, v = singleprop(net, torch.zeros(1, 1, dtype=torch.float64), 0.75, variant)
        assert float(c + v) < 0.5 == float(net(torch.tensor([[0.75]], dtype=torch.float64))), variant
    for module in ("certify.py", "radius.py", "bounds/__init__.py", "bounds/ibp.py", "bounds/crown.py", "bounds/alpha.py", "attack.py",
                   "verify.py", "bab.py"):
        tree = ast.parse((ROOT / "srp_audit" / module).read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        mods = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any("singleprop" in m for m in names | mods), module
    for path in (ROOT / "srp_audit" / "report").glob("*.py"):
        assert "singleprop" not in path.read_text().lower(), path


# ------------------------------------------------------------------------------------------ schedule


def test_spans_and_schedule() -> None:
    assert Span.parse("500") == Span(500, "steps") and Span.parse("3ep") == Span(3, "epochs") and Span.parse("40%") == Span(0.4, "fraction")
    with pytest.raises(UsageError):
        Span.parse("soon")
    s = Schedule(0.1, Span.parse("10%"), Span.parse("50%"), 0.5)
    assert s.at(0.05, 10, 1000) == (0.0, 1.0)
    eps, k = s.at(0.35, 10, 1000)
    assert eps == pytest.approx(0.05) and k == pytest.approx(0.75)
    assert s.at(0.9, 10, 1000) == pytest.approx((0.1, 0.5))
    assert not s.finishing(0.99, 10, 1000)
    f = Schedule(0.1, Span.parse("0"), Span.parse("50%"), 0.5, Span.parse("100"))  # the last 100 of 1 000 steps
    assert not f.finishing(0.89, 10, 1000) and f.finishing(0.9, 10, 1000)


# ------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def data(fixture_models):
    g = fixture_models["mnist_mlp"]
    tr = load_samples(str(FIXTURES / "mnist_train_4k.npz"), g.input_shape, 10)
    return tr.subset(slice(0, 600)), tr.subset(slice(3900, 4000))


@pytest.mark.parametrize("regularizer,variant", [("singleprop", "fastlin"), ("singleprop", "zero"), ("singleprop", "adaptive"),
                                                 ("ibp", "fastlin"), ("crown-ibp", "fastlin")])
def test_training_improves_sound_certification(fixture_models, data, regularizer: str, variant: str) -> None:
    g = fixture_models["mnist_mlp"]
    train, held = data
    epochs = 3 if regularizer == "crown-ibp" else 6
    # no shifts: this tests the regulariser in 18–36 steps, where shifted images only slow the fit down
    opts = RobustifyOptions(eps=0.02, epochs=epochs, regularizer=regularizer, variant=variant, ramp="60%", augment="none")
    res = robustify(g, train.x, train.y, opts)
    method = "crown-ibp" if regularizer == "crown-ibp" else "ibp"  # certify with the bound the model was trained for
    before = certify(g, held.x, held.y, CertifyOptions(eps=0.02, method=method, radius=False, device="cpu"))
    after = certify(res.graph, held.x, held.y, CertifyOptions(eps=0.02, method=method, radius=False, device="cpu"))
    assert after.certified_accuracy > before.certified_accuracy + 0.2
    assert res.steps == epochs * 6 and res.final_eps == pytest.approx(0.02)
    assert not torch.equal(next(res.graph.parameters()), next(g.parameters())), "the input graph must be untouched"


def test_finish_trains_the_last_span_with_its_regulariser(fixture_models, data, monkeypatch: pytest.MonkeyPatch) -> None:
    import srp_audit.robustify as rob

    used: list[str] = []
    real = rob.regularized_loss

    def spy(graph, x, y, eps, k, opt):
        used.append(opt.regularizer)
        return real(graph, x, y, eps, k, opt)

    monkeypatch.setattr(rob, "regularized_loss", spy)
    g = fixture_models["mnist_mlp"]
    train, _ = data
    res = robustify(g, train.x, train.y, RobustifyOptions(eps=0.02, epochs=2, finish="ibp:25%", augment="none"))
    assert res.steps == 12 and used == ["singleprop"] * 9 + ["ibp"] * 3
    used.clear()
    robustify(g, train.x, train.y, RobustifyOptions(eps=0.02, epochs=1, finish="crown-ibp:2", augment="none"))
    assert used == ["singleprop"] * 4 + ["crown-ibp"] * 2


@pytest.mark.parametrize(("counts", "finishes"), [((100.0, 400.0), True), ((450.0, 460.0), False)])
def test_finish_auto_decides_once_the_ramp_ends(fixture_models, data, monkeypatch: pytest.MonkeyPatch,
                                                counts: tuple[float, float], finishes: bool) -> None:
    """`--finish auto` (the default): at the first step past the ramp, IBP for the rest when IBP certifies far more
    than SingleProp estimates robust (here 80 % vs 20 %), SingleProp on when they are close."""
    import srp_audit.robustify as rob

    used: list[str] = []
    real = rob.regularized_loss

    def spy(graph, x, y, eps, k, opt):
        used.append(opt.regularizer)
        return real(graph, x, y, eps, k, opt)

    seen: list[float] = []

    def counted(graph, x, y, eps, variant, domain, batch):
        seen.append(eps)
        return counts

    monkeypatch.setattr(rob, "regularized_loss", spy)
    monkeypatch.setattr(rob, "robust_counts", counted)
    g = fixture_models["mnist_mlp"]
    train, _ = data
    res = robustify(g, train.x, train.y, RobustifyOptions(eps=0.02, epochs=2, augment="none"))  # 12 steps, ramp 50 %
    assert seen == [pytest.approx(0.02)], "chosen once, at the training eps"
    assert res.finish_choice is not None and res.finish_choice.step == 6 and res.finish_choice.finish is finishes
    assert used == ["singleprop"] * 6 + ["ibp" if finishes else "singleprop"] * 6
    assert ("the rest trained with IBP" if finishes else "SingleProp kept") in res.finish_choice.describe()
    for other in (RobustifyOptions(eps=0.02, epochs=2, regularizer="ibp"), RobustifyOptions(eps=0.02, epochs=2, finish="none"),
                  RobustifyOptions(eps=0.02, epochs=2, ramp="100%")):
        assert robustify(g, train.x, train.y, other).finish_choice is None


@pytest.mark.parametrize("schedule", [{"epochs": 2, "ramp": "0"}, {"epochs": 2, "warmup": "3", "ramp": "0"},
                                      {"max_time": 3.0, "ramp": "10"}, {"max_time": 3.0, "ramp": "1ep"}])
def test_finish_auto_chooses_at_the_target_eps_after_step_0(fixture_models, data, monkeypatch: pytest.MonkeyPatch,
                                                            schedule: dict) -> None:
    """A ramp of 0 reaches the target eps only after the warm-up's last step, and under --max-time a ramp in steps
    or epochs ends at an estimated step (unknown at step 0): the rule waits for both."""
    import srp_audit.robustify as rob

    seen: list[tuple[float, int]] = []
    monkeypatch.setattr(rob, "robust_counts", lambda graph, x, *a: (seen.append((a[1], 0)), (1.0, 1.0))[1])
    g = fixture_models["mnist_mlp"]
    train, _ = data
    res = robustify(g, train.x, train.y, RobustifyOptions(eps=0.02, augment="none", **schedule))
    assert seen == [(pytest.approx(0.02), 0)] and res.finish_choice is not None and res.finish_choice.step > 0


def test_finish_auto_interrupted_while_choosing_resumes_exactly(fixture_models, data, monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """The rule reads its samples ahead in the stream and rewinds it, on Ctrl-C too: a checkpoint saved then
    resumes to the uninterrupted run, which trains on those samples as usual."""
    import srp_audit.robustify as rob

    g = fixture_models["mnist_mlp"]
    train, _ = data
    full = robustify(g, train.x, train.y, RobustifyOptions(eps=0.05, epochs=2, seed=2))
    real, calls = rob.robust_counts, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(rob, "robust_counts", interrupted)
    ckpt = str(tmp_path / "run.ckpt")
    with pytest.raises(Interrupted):
        robustify(g, train.x, train.y, RobustifyOptions(eps=0.05, epochs=2, seed=2, checkpoint_every=100, checkpoint_path=ckpt))
    resumed = robustify(g, train.x, train.y, RobustifyOptions(eps=0.05, epochs=2, seed=2, checkpoint_path=ckpt, resume=True))
    assert len(calls) == 2 and resumed.finish_choice == full.finish_choice
    for a, b in zip(full.graph.parameters(), resumed.graph.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(Interrupted):  # and a checkpoint of other data is refused, naming the sizes
        calls.clear()
        robustify(g, train.x, train.y, RobustifyOptions(eps=0.05, epochs=2, seed=2, checkpoint_every=100, checkpoint_path=ckpt))
    with pytest.raises(UsageError, match="made with 600 training samples, --data now gives 30"):
        robustify(g, train.x[:30], train.y[:30], RobustifyOptions(eps=0.05, epochs=2, seed=2, checkpoint_path=ckpt, resume=True))


def test_finish_auto_counts_what_singleprop_and_ibp_say(fixture_models, data) -> None:
    """The rule's counts: at eps 0 both are the correctly classified samples; at any eps, IBP certifies only
    correctly classified samples and never more than a larger eps's superset would lose."""
    from srp_audit.finish_rule import robust_counts

    g = fixture_models["mnist_mlp"].copy()
    _, held = data
    x, y = held.x[:60].float(), held.y[:60]
    correct = float((g.logits(x).argmax(1) == y).sum())
    assert robust_counts(g, x, y, 0.0, "fastlin", (0.0, 1.0), 25) == (correct, correct)
    small, large = robust_counts(g, x, y, 0.01, "fastlin", (0.0, 1.0), 25), robust_counts(g, x, y, 0.05, "fastlin", (0.0, 1.0), 7)
    assert correct >= small[1] >= large[1] and correct >= small[0] >= large[0]
    assert small[1] > 0 and large[1] < correct, "the fixture is robust at 0.01 on some samples, not on all at 0.05"


@pytest.mark.parametrize("bad", ["ibp", "natural:10%", "ibp:soon", "ibp:150%"])
def test_finish_refuses_what_it_cannot_read(bad: str) -> None:
    with pytest.raises(UsageError, match="finish|span"):
        RobustifyOptions(eps=0.1, finish=bad).validate()


def test_max_time_stops_on_budget(fixture_models, data, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a clock that reads 10 ms later at every look (so the test does not depend on this machine's speed), a
    1.5 s budget ends the run at its first look past 1.5 s, with eps at its target."""
    import srp_audit.robustify as rob

    ticks = iter(range(10**9))
    monkeypatch.setattr(rob.time, "perf_counter", lambda: 0.01 * next(ticks))
    g = fixture_models["mnist_mlp"]
    train, _ = data
    res = robustify(g, train.x, train.y, RobustifyOptions(eps=0.05, max_time=1.5))
    assert res.stopped_by == "time" and 1.5 <= res.elapsed <= 1.6 and res.steps > 5
    assert res.final_eps == pytest.approx(0.05, rel=0.05)


def test_ada_k_adapts_after_the_first_epoch(fixture_models, data) -> None:
    g = fixture_models["mnist_mlp"]
    train, held = data
    res = robustify(g, train.x, train.y, RobustifyOptions(eps=0.05, epochs=3, ada=True), held.x, held.y)
    ks = [p.k for p in res.history]
    assert ks[0] == 1.0 and 0 < ks[-1] < 1


@pytest.mark.parametrize(("epochs", "every", "chosen"), [(4, 5, None), (2, 8, 6)])
def test_checkpoint_and_resume_match_an_uninterrupted_run(fixture_models, data, tmp_path: Path, epochs: int, every: int,
                                                          chosen: int | None) -> None:
    """Interrupted at the first progress report from step 9 on (step 12: reports come at epoch ends here), before
    `--finish auto`'s choice (4 epochs: chosen just after) or after it (2 epochs: chosen at step 6, kept in the
    checkpoint, not taken again)."""
    g = fixture_models["mnist_mlp"]
    train, _ = data
    full = robustify(g, train.x, train.y, RobustifyOptions(eps=0.05, epochs=epochs, seed=3))
    ckpt = str(tmp_path / "run.ckpt")

    def interrupt(p):
        if p.step >= 9:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        robustify(g, train.x, train.y, RobustifyOptions(eps=0.05, epochs=epochs, seed=3, checkpoint_every=every, checkpoint_path=ckpt),
                  progress=interrupt)
    saved = torch.load(ckpt, weights_only=True)["finish_choice"]
    assert (saved and saved["step"]) == chosen
    resumed = robustify(g, train.x, train.y, RobustifyOptions(eps=0.05, epochs=epochs, seed=3, checkpoint_path=ckpt, resume=True))
    assert resumed.finish_choice == full.finish_choice and full.finish_choice is not None
    for a, b in zip(full.graph.parameters(), resumed.graph.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_checkpoint_from_before_shifts_were_recorded_resumes_without_them(fixture_models, data, tmp_path: Path) -> None:
    """Checkpoints written before `augment` was a setting trained unshifted images: they resume with --augment none
    and are refused otherwise, naming the difference."""
    g = fixture_models["mnist_mlp"]
    train, _ = data
    ckpt = str(tmp_path / "old.ckpt")

    def interrupt(p):
        if p.step >= 5:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        robustify(g, train.x, train.y, RobustifyOptions(eps=0.05, epochs=2, augment="none", checkpoint_every=5, checkpoint_path=ckpt),
                  progress=interrupt)
    state = torch.load(ckpt, weights_only=True)
    del state["options"]["augment"]
    torch.save(state, ckpt)
    with pytest.raises(UsageError, match="--augment 'none' then, 'auto' now"):
        robustify(g, train.x, train.y, RobustifyOptions(eps=0.05, epochs=2, checkpoint_path=ckpt, resume=True))
    res = robustify(g, train.x, train.y, RobustifyOptions(eps=0.05, epochs=2, augment="none", checkpoint_path=ckpt, resume=True))
    assert res.steps == 2 * 6


def test_interrupt_saves_a_checkpoint_and_raises(fixture_models, data, tmp_path: Path) -> None:
    g = fixture_models["mnist_mlp"]
    train, _ = data
    calls = []

    def progress(p):
        calls.append(p)
        if len(calls) == 2:
            raise KeyboardInterrupt

    ckpt = str(tmp_path / "x.ckpt")
    with pytest.raises(Interrupted) as e:
        robustify(g, train.x, train.y, RobustifyOptions(eps=0.05, epochs=50, checkpoint_every=1000, checkpoint_path=ckpt), progress=progress)
    assert e.value.checkpoint == ckpt and Path(ckpt).exists()


# ------------------------------------------------------------------------------------------ the CLI


def test_cli_robustify_writes_a_model_that_onnxruntime_and_our_loader_agree_on(tmp_path: Path) -> None:
    from srp_audit_cli.main import main

    out = tmp_path / "robust.onnx"
    train = tmp_path / "train.npz"
    d = np.load(FIXTURES / "mnist_train_4k.npz")
    np.savez(train, x=d["x"][:500], y=d["y"][:500])
    r = CliRunner().invoke(main, ["robustify", str(FIXTURES / "mnist_mlp.onnx"), "--data", str(train), "--eps", "0.05",
                                  "--epochs", "3", "--method", "ibp", "--audit-samples", "50", "--no-audit-radius", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "before" in r.stdout and "after" in r.stdout and "certified accuracy" in r.stdout and f"wrote {out}" in r.stdout
    g = load_model(str(out))
    x = torch.rand(6, 1, 28, 28)
    sess = ort_session(out)
    ref = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert relative_error(g(x).numpy(), ref) <= 1e-5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".srp-audit-")] == []


def test_cli_robustify_pt2_and_bad_output(tmp_path: Path) -> None:
    from srp_audit_cli.main import main

    train = tmp_path / "train.npz"
    d = np.load(FIXTURES / "mnist_train_4k.npz")
    np.savez(train, x=d["x"][:300], y=d["y"][:300])
    args = ["robustify", str(FIXTURES / "mnist_mlp.onnx"), "--data", str(train), "--eps", "0.05", "--epochs", "1",
            "--method", "ibp", "--audit-samples", "20", "--no-audit-radius"]
    r = CliRunner().invoke(main, args + ["-o", str(tmp_path / "m.pt2")])
    assert r.exit_code == 0, r.output
    ep = torch.export.load(str(tmp_path / "m.pt2"))
    assert ep.module()(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    r = CliRunner().invoke(main, args + ["-o", str(tmp_path / "m.txt")])
    assert r.exit_code == 2 and "must end in .onnx or .pt2" in r.stderr
    r = CliRunner().invoke(main, args + ["-o", str(tmp_path / "m.onnx"), "--ramp", "later"])
    assert r.exit_code == 2 and "cannot read the span" in r.stderr
    r = CliRunner().invoke(main, args + ["-o", str(tmp_path / "m.onnx"), "--finish", "natural:10%"])
    assert r.exit_code == 2 and "--finish must be REGULARIZER:SPAN" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert json  # the module's JSON checks live in test_cli


def test_budgeted_audit_takes_as_many_samples_as_fit_and_keeps_their_order() -> None:
    """With a time share the audit certifies a pilot, then as many more samples as its measured cost per sample lets
    fit (never fewer than the pilot); without one, every sample. Joined results are those of one call."""
    from srp_audit.data import Samples
    from srp_audit.robustify_audit import PILOT, budgeted_audit

    graph = load_model(str(FIXTURES / "mnist_mlp.onnx"))
    d = np.load(FIXTURES / "mnist_train_4k.npz")
    audit = Samples(torch.from_numpy(d["x"][:40]).float(), torch.from_numpy(d["y"][:40]).long(), "test")
    opts = CertifyOptions(eps=0.01, method="ibp", radius=False, attack_steps=0, device="cpu")
    everything = budgeted_audit(graph, audit, opts, None)
    assert everything.n == 40
    tiny = budgeted_audit(graph, audit, opts, 1e-9)
    assert tiny.n == PILOT
    ample = budgeted_audit(graph, audit, opts, 1e6)
    assert ample.n == 40 and [s.index for s in ample.samples] == list(range(40))
    assert [(s.verdict, s.prediction) for s in ample.samples] == [(s.verdict, s.prediction) for s in everything.samples]


def test_cli_robustify_with_max_time_reports_the_interval_and_no_radius_by_default(tmp_path: Path) -> None:
    from srp_audit_cli.main import main

    train = tmp_path / "train.npz"
    d = np.load(FIXTURES / "mnist_train_4k.npz")
    np.savez(train, x=d["x"][:300], y=d["y"][:300])
    r = CliRunner().invoke(main, ["robustify", str(FIXTURES / "mnist_mlp.onnx"), "--data", str(train), "--eps", "0.05",
                                  "--max-time", "5", "--method", "ibp", "--audit-samples", "30", "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 0, r.output
    assert "95 % interval (exact binomial)" in r.stdout and "mean certified radius" not in r.stdout
    assert "held-out samples of" in r.stdout


# ------------------------------------------------------------------------------------------ data in shards


def _shards(tmp_path: Path, sizes: tuple[int, ...]) -> list[str]:
    d = np.load(FIXTURES / "mnist_train_4k.npz")
    paths, start = [], 0
    for i, n in enumerate(sizes):
        p = tmp_path / f"shard{i}.npz"
        np.savez(p, x=d["x"][start : start + n], y=d["y"][start : start + n])
        paths.append(str(p))
        start += n
    return paths


def test_batch_stream_visits_every_sample_once_per_pass_one_shard_in_memory(tmp_path: Path) -> None:
    """Sharded data: each pass reads every sample exactly once, shards in a random order, one shard loaded at a time."""
    from srp_audit.shards import BatchStream, open_shards

    shards = open_shards(_shards(tmp_path, (30, 7, 21)), (1, 28, 28), 10)
    assert len(shards) == 58 and shards.lengths == [30, 7, 21]
    loads: list[int] = []
    real = shards.load
    shards.load = lambda i: (loads.append(i), real(i))[1]  # type: ignore[method-assign]  # counts the loads
    stream = BatchStream(shards, 8, torch.Generator().manual_seed(0), torch.device("cpu"))
    seen = []
    while len(seen) < 2 * 58:
        xb, yb, n = stream.next(1, 0)
        assert xb.shape[0] == yb.shape[0] == n <= 8
        seen.extend(xb.reshape(n, -1).sum(1).tolist())
    first, second = sorted(seen[:58]), sorted(seen[58:116])
    assert first == second  # the same samples in each pass
    assert len(loads) == 6 and sorted(loads[:3]) == [0, 1, 2] and sorted(loads[3:]) == [0, 1, 2]


def test_sharded_data_is_checked_before_training(tmp_path: Path) -> None:
    from srp_audit.errors import DataError
    from srp_audit.shards import open_shards

    good = _shards(tmp_path, (10,))
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((5, 27, 28), dtype=np.uint8), y=np.zeros(5, dtype=np.int64))
    with pytest.raises(DataError, match="do not fit the model's input"):
        open_shards([*good, str(bad)], (1, 28, 28), 10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .npz files"):
        open_shards([str(tmp_path / "empty")], (1, 28, 28), 10)
    with pytest.raises(DataError, match="does not exist"):
        open_shards([str(tmp_path / "missing.npz")], (1, 28, 28), 10)


def test_cli_robustify_reads_a_folder_of_shards_and_resumes(tmp_path: Path) -> None:
    """A folder of shards trains one shard at a time; a checkpointed sharded run resumes where it stopped."""
    from srp_audit_cli.main import main

    folder = tmp_path / "shards"
    folder.mkdir()
    _shards(folder, (120, 80, 100))
    out = tmp_path / "m.onnx"
    args = ["robustify", str(FIXTURES / "mnist_mlp.onnx"), "--data", str(folder), "--eps", "0.05", "--epochs", "1",
            "--method", "ibp", "--audit-samples", "10", "--no-audit-radius", "-o", str(out), "--checkpoint-every", "1"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "held-out samples of" in r.stdout and "the first of 3 shards" in r.stdout and out.exists()
    graph = load_model(str(FIXTURES / "mnist_mlp.onnx"))
    from srp_audit.robustify_audit import split_shards
    from srp_audit.shards import open_shards

    split = split_shards(open_shards([str(folder)], graph.input_shape, graph.num_classes), 0.1, 0)
    assert len(split.val) == 12 and len(split.fit) == 288
    full = robustify(graph, split.fit, None, RobustifyOptions(eps=0.05, epochs=2, batch_size=50, seed=3))
    ckpt = str(tmp_path / "run.ckpt")

    def interrupt(p):
        if p.step >= 5:  # inside the second shard of the first pass: the resumed run must reload it and go on
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        robustify(graph, split.fit, None, RobustifyOptions(eps=0.05, epochs=2, batch_size=50, seed=3, checkpoint_every=1,
                                                           checkpoint_path=ckpt), progress=interrupt)
    resumed = robustify(graph, split.fit, None, RobustifyOptions(eps=0.05, epochs=2, batch_size=50, seed=3, checkpoint_path=ckpt,
                                                                 resume=True))
    assert resumed.steps == full.steps
    for a, b in zip(full.graph.parameters(), resumed.graph.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_batch_stream_resumes_mid_shard(tmp_path: Path) -> None:
    """A checkpoint taken inside a shard (its state and the generator's) continues with the same batches."""
    from srp_audit.shards import BatchStream, open_shards

    shards = open_shards(_shards(tmp_path, (30, 7, 21)), (1, 28, 28), 10)
    gen = torch.Generator().manual_seed(5)
    stream = BatchStream(shards, 8, gen, torch.device("cpu"))
    for _ in range(5):  # into the second shard of the first pass
        stream.next(1, 0)
    state, gen_state = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in stream.state().items()}, gen.get_state()
    after = [stream.next(1, 0)[1].tolist() for _ in range(12)]  # across the next pass's start
    gen2 = torch.Generator().manual_seed(99)
    again = BatchStream(shards, 8, gen2, torch.device("cpu"))
    gen2.set_state(gen_state)
    again.restore(state)
    assert [again.next(1, 0)[1].tolist() for _ in range(12)] == after
