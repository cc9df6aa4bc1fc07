"""Sample loading: scaling, shape fitting, and the real shared MNIST arrays."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path

from srp_audit.data import load_samples, prepare_samples
from srp_audit.errors import DataError


def test_uint8_images_scale_onto_the_domain() -> None:
    x = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    s = prepare_samples({"x": x, "y": np.array([1])}, "m", (1, 2, 2), 3, (-1.0, 1.0))
    assert s.x.shape == (1, 1, 2, 2)
    assert np.allclose(s.x.numpy().ravel(), [-1, 1, -0.6, -0.2])


def test_flattening_and_singleton_axes_are_fitted() -> None:
    x = np.zeros((2, 28, 28), dtype=np.uint8)
    assert prepare_samples({"x": x, "y": np.array([0, 1])}, "m", (784, 1), 10).x.shape == (2, 784, 1)
    assert prepare_samples({"x": x, "y": np.array([0, 1])}, "m", (1, 28, 28), 10).x.shape == (2, 1, 28, 28)


def test_channels_last_images_get_a_precise_hint() -> None:
    x = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(DataError, match=r"channels last.*transpose\(0, 3, 1, 2\)"):
        prepare_samples({"x": x, "y": np.array([0, 1])}, "c.npz", (3, 32, 32), 10)


def test_real_shared_mnist_loads() -> None:
    path = shared_path("data", "mnist_test_1k.npz")
    s = load_samples(str(path), (1, 28, 28), 10)
    assert len(s) == 1000 and s.y[:5].tolist() == [7, 2, 1, 0, 4]
    assert 0.0 <= float(s.x.min()) and float(s.x.max()) <= 1.0
