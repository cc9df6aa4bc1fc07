"""The memory budget: sizes are read as people write them, a batch shrinks to what the budget allows (and the
report says so), and a budget below one sample is a clear usage error."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import FIXTURES

from cli.main import main
from srp_audit.certify import CertifyOptions, certify
from srp_audit.data import load_samples
from srp_audit.errors import UsageError
from srp_audit.formats import load_model
from srp_audit.memory import batch_within, fixed_bytes, parse_size, per_sample_bytes


def test_sizes() -> None:
    assert parse_size("8G") == 8 << 30 and parse_size("512M") == 512 << 20 and parse_size("1.5g") == 3 << 29
    assert parse_size("2048") == 2048 and parse_size("64KiB") == 64 << 10 and parse_size(" 2 GB ") == 2 << 30
    for bad in ("lots", "", "-1G", "0", "8X"):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_a_batch_takes_what_the_budget_allows() -> None:
    g = load_model(str(FIXTURES / "mnist_cnn.onnx"))
    one, fixed = per_sample_bytes(g, ["ibp", "crown"]), fixed_bytes(g)
    assert per_sample_bytes(g, ["alpha-crown"]) > one > per_sample_bytes(g, ["ibp"])
    assert batch_within(g, ["crown"], fixed + 5 * one + one // 2, 256) == 5
    assert batch_within(g, ["crown"], 1 << 40, 256) == 256
    with pytest.raises(UsageError, match="below the estimated"):
        batch_within(g, ["crown"], fixed + one - 1, 256)


def test_certify_shrinks_its_batches_and_says_so() -> None:
    g = load_model(str(FIXTURES / "mnist_cnn.onnx"))
    s = load_samples(str(FIXTURES / "mnist_cnn.samples.npz"), g.input_shape, g.num_classes)
    budget = fixed_bytes(g) + 3 * per_sample_bytes(g, ["ibp", "crown-ibp"])
    res = certify(g, s.x[:10], s.y[:10], CertifyOptions(eps=0.02, method="crown-ibp", radius=False, memory_budget=budget))
    assert [r.index for r in res.samples] == list(range(10))
    assert any(n.startswith("batches of 3 samples: the most the memory budget") for n in res.notes)


def test_the_cli_refuses_a_budget_below_one_sample_in_one_line() -> None:
    r = CliRunner().invoke(main, ["certify", str(FIXTURES / "mnist_cnn.onnx"), "--eps", "0.02", "--memory-budget", "1M"])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "--memory-budget 1 MiB is below" in r.output


def test_cpu_ranks_on_one_machine_share_the_default_budget(monkeypatch) -> None:
    import torch

    from srp_audit.memory import default_budget

    cpu = torch.device("cpu")
    monkeypatch.setattr("srp_audit.memory.available_bytes", lambda device: 8 << 30)
    assert default_budget(cpu) == 4 << 30
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_budget(cpu) == 1 << 30
