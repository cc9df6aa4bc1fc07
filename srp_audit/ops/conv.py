"""Conv2d: 2-D convolution with explicit (top, left, bottom, right) zero padding, groups and dilation.

CROWN keeps its coefficients as `Patches` (windows over receptive fields) and transposes them window by window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..ir.node import Node, Shape
from ..ir.reading import (
    AtenReading,
    OnnxNode,
    OnnxReading,
    Tensor,
    Value,
    aten_ints,
    aten_tensor,
    aten_weight,
    onnx_pads,
    reads_aten,
    reads_onnx,
    spatial_input,
)
from ..kernel.backward import Context
from ..kernel.interval import Interval, abs_weight, dual_norm_ibp, linear_map_ibp, signed_rows
from ..kernel.patches import Grid, Patches, conv_transpose
from ..kernel.rounding import dot_gamma
from ..kernel.window import pads4, pair, pooled_size
from .conv_transpose import ConvTranspose2d
from .shape import Reshape


class Conv2d(Node):
    """2-D convolution with explicit (top, left, bottom, right) zero padding."""

    kind = "affine"
    crown_checkpoint = True
    crown_patches = True

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        b = torch.zeros(weight.shape[0], dtype=weight.dtype) if bias is None else bias.detach().clone()
        self.bias = nn.Parameter(b.reshape(weight.shape[0]))
        self.stride = pair(stride)
        self.padding = pads4(padding)
        self.dilation = pair(dilation)
        self.groups = int(groups)

    @property
    def symmetric_padding(self) -> tuple[int, int] | None:
        t, l, b, r = self.padding
        return (t, l) if (t == b and l == r) else None

    def pad_input(self, x: torch.Tensor, value: float = 0.0) -> torch.Tensor:
        t, l, b, r = self.padding
        return F.pad(x, (l, r, t, b), value=value)

    def linear(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The convolution without bias, optionally with another weight of the same shape (e.g. |W|)."""
        w = self.weight if weight is None else weight
        sym = self.symmetric_padding
        if sym is not None:
            return F.conv2d(x, w, None, self.stride, sym, self.dilation, self.groups)
        return F.conv2d(self.pad_input(x), w, None, self.stride, 0, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.bias.view(-1, 1, 1)

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) != 3 or shape[0] != self.weight.shape[1] * self.groups:
            raise ValueError(f"Conv2d expects (C={self.weight.shape[1] * self.groups}, H, W), got {shape}")
        kh, kw = self.weight.shape[2:]
        t, l, b, r = self.padding
        h = pooled_size(shape[1], kh, self.stride[0], t, b, self.dilation[0])
        w = pooled_size(shape[2], kw, self.stride[1], l, r, self.dilation[1])
        if h <= 0 or w <= 0:
            raise ValueError(f"Conv2d output would be empty for input {shape}")
        return (self.weight.shape[0], h, w)

    def describe(self) -> str:
        o, i, kh, kw = self.weight.shape
        return f"{i * self.groups}→{o} k{kh}x{kw} s{self.stride[0]} p{list(self.padding)}"

    def ibp(self, x: Interval) -> Interval:
        return linear_map_ibp(self, x, math.prod(self.weight.shape[1:]) + 1)

    def ibp_ball(self, ball) -> Interval:
        """Each output's weights are (part of) its channel's kernel: the kernel's dual norm bounds them all."""
        c = ball.centre.to(self.weight.dtype)
        return dual_norm_ibp(self, self.ibp(Interval(c, c)), self.weight, ball.eps, ball.q, (-1, 1, 1))

    def transpose_dense(self, A: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        """Aᵀ-product for dense coefficients A (N, R, *out): (N, R, *in)."""
        n, s = A.shape[:2]
        flat = A.reshape((n * s,) + tuple(A.shape[2:]))
        t, l, b, r = self.padding
        g = conv_transpose(flat, self.weight, self.stride, self.dilation, self.groups, (in_shape[1] + t + b, in_shape[2] + l + r),
                           owner=self)
        return g[:, :, t : t + in_shape[1], l : l + in_shape[2]].reshape((n, s) + tuple(in_shape))

    def crown_backward(self, A, ctx: Context, name: str):
        if isinstance(A, Patches):
            A = A.masked()
            n, r, c, ph, pw = A.data.shape
            const = torch.einsum("nrchw,c->nr", A.data, self.bias)  # one reduction, no product tensor
            data = conv_transpose(A.data.reshape(n * r, c, ph, pw), self.weight, self.stride, self.dilation, self.groups,
                                  owner=self)
            grid = A.grid.through_conv(self.stride, self.padding[0], self.padding[1])
            chw = cast(tuple[int, int, int], ctx.shape(ctx.x(name)))  # (C, H, W): out_shape accepts no other input
            out = Patches(data.reshape((n, r) + tuple(data.shape[1:])), A.pos, grid, chw)
            return [out], const
        const = torch.einsum("nrchw,c->nr", A, self.bias)
        return [self.transpose_dense(A, ctx.shape(ctx.x(name)))], const

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        x = ctx.x(name)
        o, _, kh, kw = self.weight.shape
        dt = ctx.mag(x).dtype
        # an entry of A_x sums at most o·kh·kw products; the constant A·b sums over the whole output
        g_w, g_b = dot_gamma(o * kh * kw, dt), dot_gamma(math.prod(ctx.shape(name)), dt)
        w = abs_weight(self)
        return self.linear(ctx.err[x] + g_w * ctx.mag(x), w) + g_b * self.bias.abs().view(-1, 1, 1)  # one product

    def crown_rows(self, idx: torch.Tensor, ctx: Context, name: str, signs: tuple[int, ...]):
        """s·y_i = s·(kernel of channel c · window + b_c), as 1×1-position patches on the input: one gather from
        the signed kernels (negation is exact)."""
        if self.groups != 1 or self.dilation != (1, 1):  # a dilated kernel is no contiguous patch of the input
            return None
        o, (_, h, w) = self.weight.shape[0], ctx.shape(name)
        ch, at = idx // (h * w), idx % (h * w)
        grid = Grid(1, 1, 0, 0, h, w).through_conv(self.stride, self.padding[0], self.padding[1])
        pick = torch.cat([ch + (0 if s > 0 else o) for s in signs], dim=1)
        weight, bias = signed_rows(self)
        chw = cast(tuple[int, int, int], ctx.shape(ctx.x(name)))  # (C, H, W): out_shape accepts no other input
        return Patches(weight[pick], torch.cat([at] * len(signs), dim=1), grid, chw), bias[pick]

    def singleprop(self, centres, radii, variant):
        return self.linear(radii[0], self.weight.abs())

    def to_onnx(self, b, name, ins, out) -> None:
        t, l, bo, r = self.padding
        b.add("Conv", [ins[0], b.const(f"{name}.weight", self.weight), b.const(f"{name}.bias", self.bias)], out,
              strides=list(self.stride), pads=[t, l, bo, r], dilations=list(self.dilation), group=self.groups,
              kernel_shape=list(self.weight.shape[2:]))


# ---- reading: Conv (1-D read as 2-D) in ONNX, convolutions of either kind in ATen
@reads_onnx("Conv")
def _read_onnx_conv(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    x = ctx.tensor(node.input[0])
    w = ctx.weight(node.input[1], "weight")
    if ctx.batched and len(x.shape) == 2 and w.dim() == 3:  # Conv1d: a 2-D convolution over a height of 1
        return [_conv1d(ctx, node, attrs, x, w)]
    x = spatial_input(ctx, node)
    if w.dim() != 4:
        raise ctx.unsupported("only 2-D convolutions are supported")
    b = ctx.weight(node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
    stride = tuple(attrs.get("strides", [1, 1]))
    dilation = tuple(attrs.get("dilations", [1, 1]))
    pads = onnx_pads(ctx, attrs, x.shape[1:], tuple(w.shape[2:]), stride, dilation)
    return [ctx.emit(Conv2d(w, b, stride, pads, dilation, int(attrs.get("group", 1))), [x], "conv")]


def _conv1d(ctx: OnnxReading, node: OnnxNode, attrs: dict, x: Tensor, w: torch.Tensor) -> Tensor:
    """(N, C, L) convolutions become (N, C, 1, L) ones with a 1×k kernel, between two reshapes: exact."""
    b = ctx.weight(node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None

    def one(key: str, default: int) -> list[int]:
        return [1] + list(attrs.get(key, [default]))

    attrs2 = {**attrs, "strides": one("strides", 1), "dilations": one("dilations", 1), "kernel_shape": [1, w.shape[2]]}
    if "pads" in attrs:
        p = list(attrs["pads"])
        attrs2["pads"] = [0, p[0], 0, p[1]]
    c, length = x.shape
    x2 = ctx.emit(Reshape((c, 1, length)), [x])
    w2 = w.unsqueeze(2)
    pads = onnx_pads(ctx, attrs2, (1, length), (1, w.shape[2]), tuple(attrs2["strides"]), tuple(attrs2["dilations"]))
    y = ctx.emit(Conv2d(w2, b, attrs2["strides"], pads, attrs2["dilations"], int(attrs.get("group", 1))), [x2], "conv")
    return ctx.emit(Reshape((y.shape[0], y.shape[2])), [y])


@reads_aten("aten.convolution.default")
def _read_aten_conv(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    x, w, b, stride, padding, dilation, transposed, output_padding, groups = a[:9]
    x = aten_tensor(ctx, x)
    wt = aten_weight(ctx, w)
    if wt.dim() != 4 or len(x.shape) != 3:
        raise ctx.unsupported("only 2-D convolutions are supported")
    bias = aten_weight(ctx, b) if b is not None else None
    if transposed:
        node = ConvTranspose2d(wt, bias, aten_ints(stride), aten_ints(padding), aten_ints(output_padding), aten_ints(dilation), int(groups))
        return ctx.emit(node, [x], "convT")
    return ctx.emit(Conv2d(wt, bias, aten_ints(stride), aten_ints(padding), aten_ints(dilation), int(groups)), [x], "conv")
