"""Torch side of the generated-model fuzz (tests/graph_fuzz.py): random small stacks of torch modules and functions
(vectors, sequences, images), exported with the TorchScript exporter (`dynamo=False`, opsets 11–21) or the dynamo
exporter (opsets 18–21), with a dynamic batch axis."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from graph_fuzz_onnx import MAX_VALUES, ort_session
from torch import nn


class Fn(nn.Module):
    """A function as a module (traced by both exporters)."""

    def __init__(self, name: str, fn: Callable) -> None:
        super().__init__()
        self.name, self.fn = name, fn

    def forward(self, x):
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class Residual(nn.Module):
    def __init__(self, inner: nn.Module, scale: float) -> None:
        super().__init__()
        self.inner, self.scale = inner, scale

    def forward(self, x):
        return x * self.scale + self.inner(x)


class Attention(nn.Module):
    """softmax(q kᵀ / √d) v over a (T, D) sequence, with linear projections."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, h), nn.Linear(d, h), nn.Linear(d, h)
        self.scale = 1 / math.sqrt(h)

    def forward(self, x):
        a = torch.softmax(self.q(x) @ self.k(x).transpose(-2, -1) * self.scale, dim=-1)
        return a @ self.v(x)


def _bn(bn: nn.Module, rng: np.random.Generator) -> nn.Module:
    c = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.from_numpy(rng.standard_normal(c) * 0.3))
        bn.running_var.copy_(torch.from_numpy(rng.uniform(0.3, 2.0, c)))
        bn.weight.copy_(torch.from_numpy(rng.standard_normal(c)))
        bn.bias.copy_(torch.from_numpy(rng.standard_normal(c) * 0.2))
    return bn


def _dim(rng: np.random.Generator, r: int) -> int:
    """A sample axis of x (1..r), written negative half the time."""
    d = int(rng.integers(1, r + 1))
    return d - (r + 1) if rng.random() < 0.5 else d


def _pointwise(rng: np.random.Generator, s: tuple[int, ...]) -> nn.Module:
    p = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    c = float(rng.uniform(0.3, 2.0))
    table = [
        lambda: nn.ReLU(), lambda: nn.LeakyReLU(p([0.01, 0.2])), lambda: nn.ELU(p([1.0, 0.5])), lambda: nn.GELU(p(["none", "tanh"])),
        lambda: nn.SiLU(), lambda: nn.Mish(), lambda: nn.Hardswish(), lambda: nn.Hardsigmoid(), lambda: nn.Sigmoid(), lambda: nn.Tanh(),
        lambda: nn.Softplus(p([1.0, 2.0, 0.5]), p([20.0, 1.0, 5.0])), lambda: nn.ReLU6(), lambda: nn.Hardtanh(-c, c),
        lambda: nn.Dropout(0.3), lambda: nn.Identity(), lambda: nn.PReLU(p([1, s[0]]) if len(s) >= 2 else 1),
        lambda: nn.Softmax(_dim(rng, len(s))), lambda: nn.LogSoftmax(_dim(rng, len(s))),
        lambda: Fn(f"affine({c:.2f})", lambda x: (x - 0.25) / c * 2.0),
        lambda: Fn("exp", lambda x: torch.exp(0.5 * x)), lambda: Fn("sin", torch.sin), lambda: Fn("cos", torch.cos),
        lambda: Fn("erf", torch.erf), lambda: Fn("square", lambda x: x.pow(2)), lambda: Fn("cube", lambda x: x * x * x),
        lambda: Fn("sqrt", lambda x: torch.sqrt(x * x + 1)), lambda: Fn("rsqrt", lambda x: torch.rsqrt(x * x + 0.5)),
        lambda: Fn("recip", lambda x: 1 / (x * x + 1)), lambda: Fn("log", lambda x: torch.log(x * x + 1)),
        lambda: Fn("clamp_min", lambda x: torch.clamp(x, min=-c)), lambda: Fn("abs", torch.abs), lambda: Fn("floor", torch.floor),
        lambda: Fn("sign", torch.sign), lambda: Fn("where", lambda x: torch.where(x > 0, x, 0.1 * x)),
        lambda: Fn("x*tanh(x)", lambda x: x * torch.tanh(x)), lambda: Fn("x/(1+x²)", lambda x: x / (1 + x * x)),
        lambda: Residual(p([nn.ReLU(), nn.Tanh(), nn.Linear(s[-1], s[-1])]), p([1.0, -0.5])),
    ]
    return table[int(rng.integers(len(table)))]()


def _shape_op(rng: np.random.Generator, s: tuple[int, ...]) -> nn.Module:
    r = len(s)
    d = _dim(rng, r)
    table = [
        lambda: nn.Flatten(), lambda: Fn("view(b,-1)", lambda x: x.reshape(x.shape[0], -1)),
        lambda: Fn(f"mean({d})", lambda x: x.mean(d, keepdim=True)), lambda: Fn(f"sum({d})", lambda x: x.sum(d)),
        lambda: Fn(f"unsqueeze({d})", lambda x: x.unsqueeze(d)), lambda: Fn("cat", lambda x: torch.cat([x, torch.relu(x)], d)),
        lambda: Fn("chunk-cat", lambda x: torch.cat(list(torch.chunk(x, 2, d))[::-1], d)),
        lambda: Fn("slice", lambda x: x[:, 1:] if x.shape[1] > 1 else x), lambda: Fn("step-slice", lambda x: x[..., ::2]),
        lambda: Fn("index", lambda x: x[:, -1] if r >= 2 else x[:, [0, -1, 1]]), lambda: Fn("repeat", lambda x: x.repeat(1, *([2] + [1] * (r - 1)))),
        lambda: Fn("flip-transpose", lambda x: x.transpose(-1, -2) if r >= 2 else -x), lambda: Fn("product", lambda x: x * x.mean(-1, keepdim=True)),
        lambda: Fn("expand", lambda x: x.unsqueeze(1).expand(x.shape[0], 2, *x.shape[1:])),
        lambda: Fn("squeeze", lambda x: x.unsqueeze(-1).squeeze(-1)), lambda: nn.Linear(s[-1], int(rng.integers(1, 10))),
    ]
    if r == 3:
        table += [lambda: Fn("permute", lambda x: x.permute(0, 2, 3, 1)),
                  lambda: Fn("nhwc-back", lambda x: x.permute(0, 3, 1, 2).permute(0, 2, 3, 1))]
    return table[int(rng.integers(len(table)))]()


def _layer(rng: np.random.Generator, s: tuple[int, ...]) -> nn.Module:
    """A layer for sample shape s: by rank (vector, (C, L) / sequence, image), or a pointwise or shape op."""
    p = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    ri = lambda a, b: int(rng.integers(a, b + 1))  # noqa: E731
    k = rng.random()
    if k < 0.35:
        return _pointwise(rng, s)
    if k < 0.55:
        return _shape_op(rng, s)
    if len(s) == 1:
        return p([lambda: nn.Linear(s[0], ri(2, 12)), lambda: _bn(nn.BatchNorm1d(s[0]), rng), lambda: nn.LayerNorm(s[0]),
                  lambda: Fn("unflatten", lambda x: x.reshape(x.shape[0], 2, -1) if s[0] % 2 == 0 else x)])()
    if len(s) == 2:
        c, n = s
        g = p([g for g in (1, 2) if c % g == 0])
        return p([lambda: nn.Conv1d(c, g * ri(1, 3), ri(1, 3), ri(1, 2), ri(0, 1), groups=g),
                  lambda: _bn(nn.BatchNorm1d(c), rng), lambda: nn.LayerNorm(n), lambda: Attention(n, ri(1, 6)),
                  lambda: nn.MaxPool1d(2) if n >= 2 else nn.Identity(), lambda: Fn("to-image", lambda x: x.unsqueeze(1))])()
    c, h, w = s
    g = p([g for g in (1, 2, 3) if c % g == 0])
    kk = ri(1, 3)
    return p([
        lambda: nn.Conv2d(c, g * ri(1, 3), kk, ri(1, 2), p([0, kk // 2]), p([1, 1, 2]), groups=g, bias=rng.random() < 0.7,
                          padding_mode=p(["zeros", "zeros", "reflect", "replicate", "circular"])),
        lambda: nn.Conv2d(c, ri(1, 4), kk, padding="same"),
        lambda: nn.ConvTranspose2d(c, ri(1, 3), kk, ri(1, 2), p([0, kk // 2]), output_padding=0),
        lambda: _bn(nn.BatchNorm2d(c), rng),
        lambda: nn.MaxPool2d(kk, ri(1, 2), p([0, kk // 2]), ceil_mode=rng.random() < 0.3),
        lambda: nn.AvgPool2d(kk, ri(1, 2), p([0, kk // 2]), ceil_mode=rng.random() < 0.3, count_include_pad=rng.random() < 0.5),
        lambda: nn.AdaptiveAvgPool2d(1), lambda: nn.Upsample(scale_factor=2, mode="nearest"),
        lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=rng.random() < 0.5),
        lambda: nn.ZeroPad2d((ri(0, 1), ri(0, 1), ri(0, 1), ri(0, 1))), lambda: nn.ReflectionPad2d(1) if min(h, w) >= 2 else nn.Identity(),
        lambda: nn.ReplicationPad2d((1, 0, 0, 1)), lambda: nn.LayerNorm(w), lambda: nn.InstanceNorm2d(c),
        lambda: nn.PixelShuffle(2) if c % 4 == 0 else nn.Identity(),
        lambda: Fn("crop", lambda x: x[:, :, 1:, : w - 1] if min(h, w) > 1 else x)])()


def random_model(rng: np.random.Generator) -> tuple[nn.Module, tuple[int, ...], list[str]]:
    """An eval-mode Sequential of 1–5 layers over a random input shape, every intermediate small and non-empty."""
    kind = int(rng.integers(3))
    shape = ((int(rng.integers(2, 17)),) if kind == 0 else (int(rng.integers(1, 5)), int(rng.integers(2, 9))) if kind == 1
             else (int(rng.integers(1, 4)), int(rng.integers(2, 7)), int(rng.integers(2, 7))))
    layers: list[nn.Module] = []
    s = shape
    for _ in range(int(rng.integers(1, 6))):
        for _try in range(10):
            try:
                layer = _layer(rng, s).eval()
                with torch.no_grad():
                    y = nn.Sequential(*layers, layer).eval()(torch.rand((2, *shape)))
                if y.dim() >= 2 and y.shape[0] == 2 and 0 < y[0].numel() <= MAX_VALUES:
                    layers.append(layer)
                    s = tuple(y.shape[1:])
                    break
            except Exception:  # a layer that does not fit the shape: draw another
                continue
    model = nn.Sequential(*layers).eval() if layers else nn.Sequential(nn.Linear(shape[-1], 3)).eval()
    return model, shape, [type(m).__name__ if not isinstance(m, Fn) else m.name for m in model]


def export(model: nn.Module, shape: tuple[int, ...], path: Path, exporter: str, opset: int) -> None:
    x = torch.rand((2, *shape))
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["x"], output_names=["y"],
                                  dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
            else:
                torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=opset, verbose=False,
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    finally:
        logging.disable(logging.NOTSET)


def torch_case(seed: int, index: int, exporter: str) -> tuple[onnx.ModelProto | None, int, str, str]:
    """(exported model or None, opset, description, why the export failed — '' when it did not)."""
    trace, drop = logging.getLogger("torch.__trace"), logging.Filter("-")  # torch's trace records stay out of pytest's log
    trace.addFilter(drop)
    try:
        return _torch_case(seed, index, exporter)
    finally:
        trace.removeFilter(drop)


def _torch_case(seed: int, index: int, exporter: str) -> tuple[onnx.ModelProto | None, int, str, str]:
    rng = np.random.default_rng([seed, index, 7])
    torch.manual_seed(seed * 100_003 + index)
    opset = int(rng.integers(11, 22)) if exporter == "torchscript" else int(rng.integers(18, 22))
    model, shape, names = random_model(rng)
    note = f"{exporter}, input (N, {', '.join(map(str, shape))}), layers {names}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        try:
            export(model, shape, path, exporter, opset)
            m = onnx.load(str(path))
            ort_session(str(path)).run(None, {m.graph.input[0].name: np.random.default_rng(0).random((3, *shape), dtype=np.float32)})
        except Exception as e:  # the exporter (or onnxruntime on its output) failed: not srp-audit's
            return None, opset, note, f"{type(e).__name__}: {str(e).strip().splitlines()[0][:100] if str(e).strip() else ''} ({note})"
    return m, opset, note, ""
