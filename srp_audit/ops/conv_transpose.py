"""ConvTranspose2d: the transposed (fractionally strided) 2-D convolution of generators and decoders, with ONNX's
asymmetric pads and output_padding. Linear: IBP takes |W| for the radius, CROWN moves coefficients back through
the convolution that is its adjoint."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ir.node import Node, Shape
from ..ir.reading import OnnxNode, OnnxReading, Value, reads_onnx, spatial_input
from ..kernel.backward import Context, linear_transpose
from ..kernel.interval import Interval, abs_weight, linear_map_ibp
from ..kernel.patches import flat_sum
from ..kernel.rounding import dot_gamma
from ..kernel.window import pads4, pair


class ConvTranspose2d(Node):
    """Transposed 2-D convolution: weight (C_in, C_out / groups, kh, kw); output size (n − 1)·s + d·(k − 1) + 1 +
    output_padding − pads."""

    kind = "affine"
    crown_checkpoint = True

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int | Sequence[int] = 1,
                 padding: int | Sequence[int] = 0, output_padding: int | Sequence[int] = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        c_out = weight.shape[1] * int(groups)
        b = torch.zeros(c_out, dtype=weight.dtype) if bias is None else bias.detach().clone()
        self.bias = nn.Parameter(b.reshape(c_out))
        self.stride = pair(stride)
        self.padding = pads4(padding)
        self.output_padding = pair(output_padding)
        self.dilation = pair(dilation)
        self.groups = int(groups)

    def linear(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The map without bias, optionally with another weight of the same shape (e.g. |W|)."""
        w = self.weight if weight is None else weight
        y = F.conv_transpose2d(x, w, None, self.stride, 0, 0, self.groups, self.dilation)
        oh, ow = self.output_padding
        if oh or ow:
            y = F.pad(y, (0, ow, 0, oh))
        t, l, b, r = self.padding
        return y[..., t : y.shape[-2] - b, l : y.shape[-1] - r]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.bias.view(-1, 1, 1)

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) != 3 or shape[0] != self.weight.shape[0]:
            raise ValueError(f"ConvTranspose2d expects (C={self.weight.shape[0]}, H, W), got {shape}")
        t, l, b, r = self.padding
        kh, kw = self.weight.shape[2:]
        h = (shape[1] - 1) * self.stride[0] + self.dilation[0] * (kh - 1) + 1 + self.output_padding[0] - t - b
        w = (shape[2] - 1) * self.stride[1] + self.dilation[1] * (kw - 1) + 1 + self.output_padding[1] - l - r
        if h <= 0 or w <= 0:
            raise ValueError(f"ConvTranspose2d output would be empty for input {shape}")
        return (self.weight.shape[1] * self.groups, h, w)

    def describe(self) -> str:
        i, o, kh, kw = self.weight.shape
        return f"{i}→{o * self.groups} k{kh}x{kw} s{self.stride[0]} p{list(self.padding)}"

    def _terms(self) -> int:
        return (self.weight.shape[0] // self.groups) * math.prod(self.weight.shape[2:]) + 1

    def ibp(self, x: Interval) -> Interval:
        return linear_map_ibp(self, x, self._terms())

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        const = flat_sum(A * self.bias.view(1, 1, -1, 1, 1))
        return [linear_transpose(self.linear, A, ctx.shape(ctx.x(name)))], const

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        x = ctx.x(name)
        g = dot_gamma(math.prod(ctx.shape(name)) + self.weight.numel(), ctx.mag(x).dtype)
        w = abs_weight(self)
        return self.linear(ctx.err[x], w) + g * (self.linear(ctx.mag(x), w) + self.bias.abs().view(-1, 1, 1))

    def singleprop(self, centres, radii, variant):
        return self.linear(radii[0], self.weight.abs())

    def to_onnx(self, b, name, ins, out) -> None:
        b.add("ConvTranspose", [ins[0], b.const(f"{name}.weight", self.weight), b.const(f"{name}.bias", self.bias)], out,
              strides=list(self.stride), pads=list(self.padding), dilations=list(self.dilation), group=self.groups,
              output_padding=list(self.output_padding), kernel_shape=list(self.weight.shape[2:]))


# ---- reading: ConvTranspose in ONNX (ATen's transposed convolutions are read in `conv`)
@reads_onnx("ConvTranspose")
def _read_onnx_conv_transpose(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    x = spatial_input(ctx, node)
    w = ctx.weight(node.input[1], "weight")
    if w.dim() != 4:
        raise ctx.unsupported("only 2-D transposed convolutions are supported")
    b = ctx.weight(node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
    stride = tuple(attrs.get("strides", [1, 1]))
    dilation = tuple(attrs.get("dilations", [1, 1]))
    out_pad = list(attrs.get("output_padding", [0, 0]))
    group = int(attrs.get("group", 1))
    kh, kw = w.shape[2:]
    full = [(n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip(x.shape[1:], stride, dilation, (kh, kw))]
    if "output_shape" in attrs:  # pads follow from the requested size: the larger half at the end only for SAME_UPPER
        want = list(attrs["output_shape"])[-2:]
        totals = [f + op - o for f, op, o in zip(full, out_pad, want)]
        lower = attrs.get("auto_pad", "NOTSET") != "SAME_UPPER"  # the spec's rule, as onnxruntime applies it
        pads = [(t - t // 2 if lower else t // 2) for t in totals] + [(t // 2 if lower else t - t // 2) for t in totals]
    elif attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        totals = [f + op - n * s for f, op, n, s in zip(full, out_pad, x.shape[1:], stride)]
        lower = attrs["auto_pad"] == "SAME_LOWER"
        pads = [(t - t // 2 if lower else t // 2) for t in totals] + [(t // 2 if lower else t - t // 2) for t in totals]
    else:
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4 or any(p < 0 for p in pads):
        raise ctx.unsupported(f"pads {pads} (only 2-D, non-negative)")
    node_ = ConvTranspose2d(w, b, stride, (pads[0], pads[1], pads[2], pads[3]), out_pad, dilation, group)
    return [ctx.emit(node_, [x], "convT")]
