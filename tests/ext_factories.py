"""Module definitions for the checkpoints others trained (../shared/docs/external-models.md), written from the
descriptions there; used through `--model-factory ext_factories:<name>` in tests."""

from __future__ import annotations

from torch import nn


def kw_mnist() -> nn.Module:
    """auto_LiRPA's kw_mnist / mnist_a_adv: keys 0, 2, 5, 7."""
    return nn.Sequential(nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(1568, 100), nn.ReLU(), nn.Linear(100, 10))


class FC3(nn.Module):
    input_shape = (1, 28, 28)

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 128), nn.Linear(128, 64), nn.Linear(64, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc3(self.fc2(self.fc1(x).relu()).relu())


def mnist_fc_3layer() -> nn.Module:
    return FC3()


def mnist_6_100() -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = 784
    for _ in range(5):
        layers += [nn.Linear(width, 100), nn.ReLU()]
        width = 100
    return nn.Sequential(*layers, nn.Linear(100, 10))


def mnist_conv_small() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 4, 2, 0), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 0), nn.ReLU(), nn.Flatten(),
                         nn.Linear(800, 100), nn.ReLU(), nn.Linear(100, 10))


def fixture_cnn() -> nn.Module:
    """The bundled CNN fixture's architecture (fixtures/make_fixtures.py), for parity tests."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fixtures"))
    from make_fixtures import make_cnn

    return make_cnn()


def broken() -> nn.Module:
    """A factory whose own code fails (the bad-input matrix checks the error names it)."""
    raise RuntimeError("this factory is broken on purpose")
