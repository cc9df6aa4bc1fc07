"""Small torch modules that together use every op the loader maps, for export round-trip tests."""

from __future__ import annotations

import torch
from torch import nn


class Normalise(nn.Module):
    def forward(self, x):
        return (x - 0.25) / 0.5 * 2.0


class PermuteBack(nn.Module):
    """NHWC input permuted to NCHW (a layout-only Transpose)."""

    def forward(self, x):
        return x.permute(0, 3, 1, 2)


class Residual(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(ch, ch, 3, padding=1)
        self.bn = nn.BatchNorm2d(ch)

    def forward(self, x):
        return torch.relu(self.bn(self.a(x)) + x) - 0.5 * x


class ViewFlatten(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)


def _init_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


def zoo() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """name → (eval-mode module, per-sample input shape)."""
    torch.manual_seed(0)
    models = {
        "mlp_sigmoid_tanh": (nn.Sequential(nn.Flatten(), nn.Linear(20, 16), nn.Sigmoid(), nn.Linear(16, 12), nn.Tanh(),
                                           nn.Dropout(0.5), nn.Linear(12, 5)), (4, 5)),
        "cnn_pools": (nn.Sequential(Normalise(), nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                    nn.MaxPool2d(2, padding=1), nn.Conv2d(4, 6, 2), nn.ReLU(),
                                    nn.AvgPool2d(2, count_include_pad=False), ViewFlatten(), nn.Linear(6, 3)), (2, 12, 12)),
        "resnet_block": (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), Residual(4), nn.AdaptiveAvgPool2d(1),
                                       nn.Flatten(), nn.Linear(4, 3)), (3, 8, 8)),
        "nhwc_pad": (nn.Sequential(PermuteBack(), nn.ZeroPad2d((1, 0, 2, 1)), nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(),
                                   nn.Linear(2 * 9 * 5, 4)), (8, 6, 3)),
    }
    return {k: (_init_bn(m), s) for k, (m, s) in models.items()}
