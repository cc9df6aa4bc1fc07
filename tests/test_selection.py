"""`--select-split`: the selection set is disjoint from the training and audit samples, the model kept is the one
IBP certifies most of it for (a later one on ties), and the CLI says which it kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import FIXTURES

from srp_audit.data import load_samples
from srp_audit.errors import UsageError
from srp_audit.robustify import RobustifyOptions, robustify
from srp_audit.robustify_audit import split_data, split_shards
from srp_audit.selection import BestModel, ibp_certified
from srp_audit.shards import open_shards

TRAIN = FIXTURES / "mnist_train_4k.npz"


def _keys(samples) -> set[bytes]:
    return {x.tobytes() for x in samples.x.numpy()}


def test_the_selection_set_is_disjoint_from_the_training_held_out_and_audit_samples() -> None:
    train = load_samples(str(TRAIN), (1, 28, 28), 10).subset(slice(0, 400))
    split = split_data(train, 0.1, 0, "train.npz", audit_samples=20, select_split=0.05)
    assert split.select is not None and len(split.select) == 20 and len(split.val) == 40 and len(split.fit) == 340
    assert not _keys(split.select) & (_keys(split.fit) | _keys(split.val))
    assert split_data(train, 0.1, 0, "train.npz").select is None
    nothing_held = split_data(train, 0.0, 0, "train.npz", audit_samples=400, select_split=0.1)
    assert nothing_held.select is not None and not _keys(nothing_held.select) & _keys(nothing_held.audit)
    with pytest.raises(UsageError, match="--select-split"):
        split_data(train, 0.5, 0, "train.npz", select_split=0.5)


def test_sharded_data_sets_the_selection_aside_from_the_first_shard(tmp_path: Path) -> None:
    d = np.load(TRAIN)
    for i in range(2):
        np.savez(tmp_path / f"s{i}.npz", x=d["x"][i * 100 : (i + 1) * 100], y=d["y"][i * 100 : (i + 1) * 100])
    shards = open_shards([str(tmp_path)], (1, 28, 28), 10)
    split = split_shards(shards, 0.1, 0, select_split=0.2)
    assert split.select is not None and len(split.select) == 20 and len(split.val) == 10 and len(split.fit) == 170
    first = shards.load(0)
    kept = first.subset(np.asarray(split.fit.keep[0]))  # type: ignore[union-attr]
    assert not _keys(split.select) & (_keys(kept) | _keys(split.val))
    nothing_held = split_shards(shards, 0.0, 0, audit_samples=100, select_split=0.2)  # the audit takes training samples
    assert nothing_held.select is not None and not _keys(nothing_held.select) & _keys(nothing_held.audit)
    assert len(nothing_held.audit) == 80


def test_selection_shares_that_leave_no_training_sample_are_refused_naming_both() -> None:
    train = load_samples(str(TRAIN), (1, 28, 28), 10).subset(slice(0, 10))
    with pytest.raises(UsageError, match="--val-split 0.0 and --select-split 0.95 leave none of the 10 samples"):
        split_data(train, 0.0, 0, "train.npz", select_split=0.95)


def test_the_best_model_is_kept_and_a_tie_goes_to_the_later_one(fixture_models) -> None:
    g = fixture_models["mnist_mlp"].copy(dtype=torch.float32)
    s = load_samples(str(TRAIN), (1, 28, 28), 10)
    x, y = s.x[:60].float(), s.y[:60]
    good = ibp_certified(g, x, y, 0.005, (0.0, 1.0), 32)
    assert good > 10, "the fixture should certify some samples at eps 0.005"
    best = BestModel(x, y, 0.005, (0.0, 1.0), 32)
    assert best.score(g, 10) == good
    original = {k: v.clone() for k, v in g.state_dict().items()}
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.5)  # a damaged model
    damaged = ibp_certified(g, x, y, 0.005, (0.0, 1.0), 32)
    assert damaged < good
    chosen = best.finish(g, 20)
    assert (chosen.step, chosen.certified, chosen.last_step, chosen.last_certified, chosen.n, chosen.scored) == (10, good, 20, damaged, 60, 2)
    assert all(torch.equal(v, original[k]) for k, v in g.state_dict().items()), "the best state was not restored"
    assert "kept the model of step 10" in chosen.describe() and f"the last model (step 20) {damaged}" in chosen.describe()
    tie = BestModel(x, y, 0.005, (0.0, 1.0), 32)
    tie.score(g, 1)
    assert tie.finish(g, 2).step == 2  # the same model twice: the later wins
    once = BestModel(x, y, 0.005, (0.0, 1.0), 32)
    assert "(1 model scored)" in once.finish(g, 5).describe()


def test_robustify_returns_the_model_the_selection_set_chose(fixture_models, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scored at each epoch's end once eps is at its target, and at the end; the model returned certifies as many of
    the selection set as the best score."""
    import srp_audit.robustify as rob

    steps: list[int] = []
    real = rob.BestModel.score

    def spy(self, graph, step):
        steps.append(step)
        return real(self, graph, step)

    monkeypatch.setattr(rob.BestModel, "score", spy)
    g = fixture_models["mnist_mlp"]
    tr = load_samples(str(TRAIN), g.input_shape, 10)
    train, sel = tr.subset(slice(0, 300)), tr.subset(slice(3800, 3900))
    opts = RobustifyOptions(eps=0.02, epochs=4, ramp="50%", augment="none", lr=5e-3)
    res = robustify(g, train.x, train.y, opts, select=(sel.x, sel.y))
    assert res.steps == 12 and steps == [9, 12]  # epochs end at 3, 6, 9, 12 (step 6 still trained below 0.02); the
    chosen = res.selection  # run ends on an epoch's end, whose score is the last model's
    assert chosen is not None and chosen.last_step == 12 and chosen.scored == 2
    assert ibp_certified(res.graph, sel.x.float(), sel.y, 0.02, (0.0, 1.0), 100) == chosen.certified


def test_cli_select_split_says_which_model_it_kept(tmp_path: Path) -> None:
    from srp_audit_cli.main import main

    r = CliRunner().invoke(main, ["robustify", str(FIXTURES / "mnist_mlp.onnx"), "--data", str(TRAIN), "--eps", "0.02",
                                  "--epochs", "0.2", "--ramp", "10%", "--select-split", "0.02", "--method", "ibp",
                                  "--audit-samples", "20", "--no-audit-radius", "-o", str(tmp_path / "out.onnx")])
    assert r.exit_code == 0, r.output
    assert "IBP certified" in r.stdout and "of 80 selection samples" in r.stdout and "(1 model scored)" in r.stdout


def test_ctrl_c_while_the_last_model_is_scored_saves_a_checkpoint(fixture_models, monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    import srp_audit.robustify as rob

    def interrupted(self, graph, step):
        raise KeyboardInterrupt

    monkeypatch.setattr(rob.BestModel, "finish", interrupted)
    g = fixture_models["mnist_mlp"]
    tr = load_samples(str(TRAIN), g.input_shape, 10)
    ckpt = str(tmp_path / "x.ckpt")
    opts = RobustifyOptions(eps=0.02, epochs=0.5, augment="none", checkpoint_every=1000, checkpoint_path=ckpt)
    with pytest.raises(rob.Interrupted) as e:
        robustify(g, tr.x[:200], tr.y[:200], opts, select=(tr.x[3800:3850], tr.y[3800:3850]))
    assert e.value.checkpoint == ckpt and Path(ckpt).exists()


def test_a_resumed_run_keeps_the_scores_made_before_it(fixture_models, tmp_path: Path) -> None:
    """Interrupted just after the selection set scored step 9, then resumed: the model kept and every score are the
    uninterrupted run's, the score of step 9 included (it comes from the checkpoint, not from a second scoring)."""
    from srp_audit.robustify import Interrupted

    g = fixture_models["mnist_mlp"]
    tr = load_samples(str(TRAIN), g.input_shape, 10)
    train, sel = tr.subset(slice(0, 300)), tr.subset(slice(3800, 3900))
    ckpt = str(tmp_path / "run.ckpt")

    def opts(**kw) -> RobustifyOptions:
        return RobustifyOptions(eps=0.02, epochs=4, ramp="50%", augment="none", lr=5e-3, seed=1, **kw)

    full = robustify(g, train.x, train.y, opts(), select=(sel.x, sel.y)).selection

    def interrupt(p) -> None:
        if p.step >= 9:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        robustify(g, train.x, train.y, opts(checkpoint_every=100, checkpoint_path=ckpt), progress=interrupt, select=(sel.x, sel.y))
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] == 9 and saved["selection"]["scored"] == 1 and saved["selection"]["best"]["step"] == 9
    resumed = robustify(g, train.x, train.y, opts(checkpoint_path=ckpt, resume=True), select=(sel.x, sel.y)).selection
    assert full is not None and full.scored == 2
    assert resumed == full
