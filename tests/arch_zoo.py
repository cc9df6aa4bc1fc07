"""Everyday architectures in miniature (small random weights), written here because torchvision is not a
dependency: ResNet-18-style, MobileNetV2/V3-style, DenseNet-style, EfficientNet-style and a tiny ViT. Each is
what its family exports: BasicBlocks with batch norm and a strided 1×1 shortcut; depthwise convolutions, ReLU6,
HardSwish and inverted residuals; concatenated feature maps; SiLU and squeeze-excitation gates; patch embedding,
a class token, multi-head attention (per-head projections, and timm's fused qkv whose permute moves the batch axis),
LayerNorm, GELU and Softmax; nearest and bilinear upsampling and PReLU.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _bn(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), _bn(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.short(x))


class ResNetS(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), _bn(8), nn.ReLU())
        self.layers = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 12, 2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5))

    def forward(self, x):
        return self.head(self.layers(self.stem(x)))


class InvertedResidual(nn.Module):
    def __init__(self, c: int, expand: int, act: type[nn.Module]) -> None:
        super().__init__()
        h = c * expand
        self.body = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), _bn(h), act(),
                                  nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), _bn(h), act(),
                                  nn.Conv2d(h, c, 1, bias=False), _bn(c))

    def forward(self, x):
        return x + self.body(x)


class MobileNetS(nn.Module):
    def __init__(self, act: type[nn.Module] = nn.ReLU6) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3, 2, 1, bias=False), _bn(6), act(), InvertedResidual(6, 2, act),
                                 nn.Conv2d(6, 8, 1), nn.Hardsigmoid() if act is nn.Hardswish else nn.ReLU6(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8, 5))

    def forward(self, x):
        return self.net(x)


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.f = nn.Sequential(_bn(cin), nn.ReLU(), nn.Conv2d(cin, growth, 3, 1, 1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.f(x)], 1)


class DenseNetS(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3, 1, 1, bias=False), DenseLayer(6, 4), DenseLayer(10, 4),
                                 _bn(14), nn.ReLU(), nn.Conv2d(14, 8, 1, bias=False), nn.AvgPool2d(2),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        return self.net(x)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, r, 1), nn.SiLU(), nn.Conv2d(r, c, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.gate(x)


class EfficientNetS(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3, 2, 1, bias=False), _bn(6), nn.SiLU(),
                                 nn.Conv2d(6, 6, 3, 1, 1, groups=6, bias=False), _bn(6), nn.SiLU(), SqueezeExcite(6, 2),
                                 nn.Conv2d(6, 8, 1, bias=False), _bn(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        return self.net(x)


class Attention(nn.Module):
    """Multi-head self-attention written per sample: (N, T, D) → heads by reshape, scores by matmul."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.h, self.dh = heads, dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        n, t, d = x.shape
        split = lambda z: z.reshape(n, t, self.h, self.dh).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        a = torch.softmax(q @ k.transpose(-2, -1) / self.dh ** 0.5, dim=-1)
        return self.o((a @ v).transpose(1, 2).reshape(n, t, d))


class FusedAttention(nn.Module):
    """timm's attention: one qkv projection, reshaped and permuted so that q, k, v come first and the batch axis
    second (`permute(2, 0, 3, 1, 4)`), then unbound."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.h = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.h, c // self.h).permute(2, 0, 3, 1, 4).unbind(0)
        a = (q @ k.transpose(-2, -1) * (c // self.h) ** -0.5).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))


class TinyViT(nn.Module):
    def __init__(self, dim: int = 8, heads: int = 2, patch: int = 4, image: int = 8, fused: bool = False) -> None:
        super().__init__()
        tokens = (image // patch) ** 2
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.5)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = FusedAttention(dim, heads) if fused else Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, 5)

    def forward(self, x):
        z = self.embed(x).flatten(2).transpose(1, 2)
        z = torch.cat([self.cls.expand(z.shape[0], -1, -1), z], 1) + self.pos
        z = z + self.attn(self.ln1(z))
        z = z + self.mlp(self.ln2(z))
        return self.head(self.ln3(z)[:, 0])


class UpsampleNet(nn.Module):
    """A decoder-style net: nearest and bilinear upsampling (both corner conventions) between convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
                                 nn.Conv2d(4, 4, 3, 1, 1), nn.LeakyReLU(0.1), nn.Upsample(scale_factor=2, mode="bilinear"),
                                 nn.Conv2d(4, 2, 3, 2, 1), nn.Upsample(size=(6, 5), mode="bilinear", align_corners=True),
                                 nn.PReLU(2), nn.Flatten(), nn.Linear(60, 5))

    def forward(self, x):
        return self.net(x)


class ResNet18(nn.Module):
    """The CIFAR ResNet-18 (He et al., 2016, as trained on 32×32 inputs): a 3×3 stem, four stages of two
    BasicBlocks at widths w, 2w, 4w, 8w (w = 64 is the usual 11 M parameters), global average pooling, a linear head."""

    def __init__(self, width: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), _bn(width), nn.ReLU())
        blocks, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))

    def forward(self, x):
        return self.head(self.layers(self.stem(x)))


VGG16_LAYERS = (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M")  # channels in units of the width


class VGG16(nn.Module):
    """The CIFAR VGG-16 (Simonyan and Zisserman, 2015): thirteen 3×3 convolutions with batch norm and ReLU in five
    stages, each closed by a 2×2 max-pool, then a linear head on the 1×1 map (w = 64 is the usual 15 M parameters)."""

    def __init__(self, width: int = 64, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG16_LAYERS:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                cout = width * int(v)
                layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), _bn(cout), nn.ReLU()]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin, classes))

    def forward(self, x):
        return self.head(self.features(x))


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        if isinstance(m, nn.LayerNorm):
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def architectures() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """name → (eval-mode module with seeded weights, per-sample input shape)."""
    torch.manual_seed(0)
    return {
        "resnet18_style": (_randomise(ResNetS(), 1), (3, 8, 8)),
        "mobilenetv2_style": (_randomise(MobileNetS(), 2), (3, 8, 8)),
        "mobilenetv3_style": (_randomise(MobileNetS(nn.Hardswish), 3), (3, 8, 8)),
        "densenet_style": (_randomise(DenseNetS(), 4), (3, 8, 8)),
        "efficientnet_style": (_randomise(EfficientNetS(), 5), (3, 8, 8)),
        "tiny_vit": (_randomise(TinyViT(), 6), (3, 8, 8)),
        "tiny_vit_timm_attention": (_randomise(TinyViT(fused=True), 8), (3, 8, 8)),
        "upsampling_decoder": (_randomise(UpsampleNet(), 7), (3, 8, 8)),
    }


def full_size(seed: int = 11) -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """The full-size CIFAR networks people train, with seeded weights (He-initialised, batch norm statistics
    randomised): name → (eval-mode module, per-sample input shape)."""
    torch.manual_seed(seed)
    return {
        "resnet18_w16": (_calibrated(ResNet18(16), seed), (3, 32, 32)),
        "resnet18_w64": (_calibrated(ResNet18(64), seed + 1), (3, 32, 32)),
        "vgg16": (_calibrated(VGG16(64), seed + 2), (3, 32, 32)),
    }


def _calibrated(model: nn.Module, seed: int) -> nn.Module:
    """Batch norm statistics measured on 64 seeded random images (as a first training epoch would set them), so
    every layer sees unit-scale activations and the predictions depend on the input, not only on the biases."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(torch.rand((64, 3, 32, 32), generator=g))
    return model.eval()


def export(module: nn.Module, shape: tuple[int, ...], how: str, path) -> None:
    """Write `module` (batch axis dynamic) the way a user would: "torchscript" or "dynamo" ONNX, or "torch.export" .pt2."""
    x = torch.randn((2,) + shape)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if how == "torch.export":
            ep = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
            torch.export.save(ep, str(path))
        elif how == "dynamo":
            torch.onnx.export(module, (x,), str(path), dynamo=True, input_names=["x"],
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},), verbose=False)
        else:
            torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                              dynamic_axes={"x": {0: "b"}})
