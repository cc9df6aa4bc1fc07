"""Random shifts of training images (`srp_audit.augment`): what --augment accepts, and that a shift moves pixels."""

from __future__ import annotations

import pytest
import torch

from srp_audit.augment import MAX_SHIFT, check_augment, parse_augment, random_offsets, shifted
from srp_audit.errors import UsageError


def test_auto_shifts_images_only() -> None:
    assert parse_augment("auto", (1, 28, 28)) == 1
    assert parse_augment("auto", (3, 32, 32)) == 1
    assert parse_augment("auto", (784,)) == 0
    assert parse_augment("auto", (1, 4, 4)) == 0
    assert parse_augment("none", (1, 28, 28)) == 0
    assert parse_augment("shift:3", (1, 28, 28)) == 3
    assert parse_augment(" Shift:0 ", (784,)) == 0


@pytest.mark.parametrize("text", ["shift", "shift:-1", f"shift:{MAX_SHIFT + 1}", "flip", "shift:1.5", ""])
def test_bad_values_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--augment"):
        check_augment(text)


def test_shifting_a_vector_is_refused() -> None:
    with pytest.raises(UsageError, match="use --augment none"):
        parse_augment("shift:2", (784,))


def test_each_image_moves_by_at_most_k_with_edges_replicated() -> None:
    n, k = 64, 2
    x = torch.arange(n * 2 * 9 * 9, dtype=torch.float32).reshape(n, 2, 9, 9)
    out = shifted(x, k, random_offsets(n, k, torch.Generator().manual_seed(0)))
    seen = set()
    for i in range(n):
        padded = torch.nn.functional.pad(x[i : i + 1], (k, k, k, k), mode="replicate")[0]
        hits = [(dy, dx) for dy in range(2 * k + 1) for dx in range(2 * k + 1) if torch.equal(padded[:, dy : dy + 9, dx : dx + 9], out[i])]
        assert len(hits) == 1, f"image {i} is not one shift of itself"
        seen.add(hits[0])
    assert len(seen) > 10, "offsets should vary across the batch"


def test_shifts_are_reproducible_and_zero_is_the_identity() -> None:
    x = torch.rand(16, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    a = shifted(x, 1, random_offsets(16, 1, torch.Generator().manual_seed(5)))
    b = shifted(x, 1, random_offsets(16, 1, torch.Generator().manual_seed(5)))
    assert torch.equal(a, b)
    assert shifted(x, 0, random_offsets(16, 0, torch.Generator())) is x


def test_robustify_shifts_image_batches_and_refuses_shifting_vectors(fixture_models) -> None:
    """Two steps on the same batches: shifted images train to other weights than unshifted ones; a model whose
    samples are vectors accepts only none/auto."""
    from conftest import FIXTURES

    from srp_audit.data import load_samples
    from srp_audit.robustify import RobustifyOptions, robustify

    g = fixture_models["mnist_cnn"]
    tr = load_samples(str(FIXTURES / "mnist_train_4k.npz"), g.input_shape, 10).subset(slice(0, 200))
    runs = {a: robustify(g, tr.x, tr.y, RobustifyOptions(eps=0.02, epochs=1, augment=a)).graph for a in ("none", "shift:1", "auto")}
    first = {a: next(m.parameters()).detach() for a, m in runs.items()}
    assert not torch.equal(first["none"], first["shift:1"])
    assert torch.equal(first["auto"], first["shift:1"])
    from soundness import random_mlp

    vector_model = random_mlp(0, sizes=(784, 16, 10))
    with pytest.raises(UsageError, match="use --augment none"):
        robustify(vector_model, tr.x.reshape(len(tr.x), -1), tr.y, RobustifyOptions(eps=0.02, epochs=1, augment="shift:1"))
