"""Pooling: AvgPool2d (a linear map with non-negative weights) and MaxPool2d (padding counts as −∞).

Max pooling is monotone, so IBP is exact on it; CROWN relaxes it per window (`MaxPool2d.crown_backward`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F

from ..ir.node import Node, Shape
from ..ir.reading import AtenReading, OnnxNode, OnnxReading, Tensor, Value, aten_ints, aten_tensor, onnx_pads, reads_aten, reads_onnx, spatial_input
from ..kernel.backward import Context, per_row, split_signs, zero_const
from ..kernel.interval import Interval, generic_linear, inflation
from ..kernel.patches import Patches
from ..kernel.rounding import dot_gamma
from ..kernel.window import pads4, pair, pooled_size
from .shape import Reshape


class _Pool2d(Node, abstract=True):
    """Window geometry shared by the pooling ops: kernel, stride (default: the kernel), padding, dilation."""

    def __init__(self, kernel: int | Sequence[int], stride: int | Sequence[int] | None, padding: int | Sequence[int],
                 dilation: int | Sequence[int], ceil_mode: bool) -> None:
        super().__init__()
        self.kernel = pair(kernel)
        self.stride = pair(stride if stride is not None else kernel)
        self.padding = pads4(padding)
        self.dilation = pair(dilation)
        self.ceil_mode = bool(ceil_mode)

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ValueError(f"{self.op} expects (C, H, W), got {shape}")
        t, l, b, r = self.padding
        h = pooled_size(shape[1], self.kernel[0], self.stride[0], t, b, self.dilation[0], self.ceil_mode)
        w = pooled_size(shape[2], self.kernel[1], self.stride[1], l, r, self.dilation[1], self.ceil_mode)
        return (shape[0], h, w)

    def describe(self) -> str:
        return f"k{self.kernel} s{self.stride} p{list(self.padding)}"

    def _crop(self, y: torch.Tensor, shape: Shape) -> torch.Tensor:
        """`y` cut to `out_shape`: on explicitly padded input torch's ceil mode may add a window that starts in the
        right padding, which the ONNX rule (`pooled_size`) drops."""
        _, h, w = self.out_shape(tuple(shape))
        return y[..., :h, :w]

    def _uncrop(self, g: torch.Tensor, padded: Shape) -> torch.Tensor:
        """The transpose of `_crop`: g zero-extended to the map torch's pooling gives on the padded input."""
        full = F.avg_pool2d(torch.zeros((1,) + tuple(padded)[1:]), self.kernel, self.stride, 0, self.ceil_mode).shape[-2:]
        return F.pad(g, (0, full[1] - g.shape[-1], 0, full[0] - g.shape[-2]))


class AvgPool2d(_Pool2d):
    """Average pooling; a linear map with non-negative weights."""

    kind = "affine"

    def __init__(
        self,
        kernel: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        count_include_pad: bool = True,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__(kernel, stride, padding, 1, ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        t, l, b, r = self.padding
        if not self.count_include_pad and (t != b or l != r):
            raise ValueError("asymmetric padding with count_include_pad=0 is not supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, l, b, r = self.padding
        if t == b and l == r and t <= self.kernel[0] // 2 and l <= self.kernel[1] // 2:
            return F.avg_pool2d(x, self.kernel, self.stride, (t, l), self.ceil_mode, self.count_include_pad)
        # Explicit zero padding is equivalent when padded cells count in the average; else each window's sum is
        # divided by the number of input cells it covers (torch's own padding stops at half the kernel).
        padded = F.pad(x, (l, r, t, b))
        if self.count_include_pad:
            return self._crop(F.avg_pool2d(padded, self.kernel, self.stride, 0, self.ceil_mode, True), x.shape[1:])
        sums = F.avg_pool2d(padded, self.kernel, self.stride, 0, self.ceil_mode, True, divisor_override=1)
        cells = F.avg_pool2d(F.pad(torch.ones_like(x[:1]), (l, r, t, b)), self.kernel, self.stride, 0, self.ceil_mode, True,
                             divisor_override=1)
        return self._crop(sums / cells.clamp(min=1), x.shape[1:])

    def ibp(self, x: Interval) -> Interval:
        n = self.kernel[0] * self.kernel[1] + 1
        k = inflation(dot_gamma(n, x.dtype), x.dtype)
        return generic_linear(x, n, self, lambda v: self(v) * k, None)

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        in_shape = tuple(ctx.shape(ctx.x(name)))
        n, s = A.shape[:2]
        return [self.transpose(A.reshape((n * s,) + tuple(A.shape[2:])), in_shape).reshape((n, s) + in_shape)], zero_const(A)

    def transpose(self, g: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        """Aᵀg for this linear map (g: (M, C, out_h, out_w)) by torch's own average-pool backward kernel — the same
        vector-Jacobian product as autograd's, without building a graph (autograd's first call imports sympy: half
        a second of a cold bound call)."""
        t, l, b, r = self.padding
        m = g.shape[0]

        def back(v: torch.Tensor, shape: tuple[int, ...], pad: tuple[int, int], include: bool, divisor: int | None) -> torch.Tensor:
            like = torch.zeros((), dtype=v.dtype, device=v.device).expand((m,) + shape)  # only its shape is read
            return torch.ops.aten.avg_pool2d_backward(v, like, list(self.kernel), list(self.stride), list(pad), self.ceil_mode,
                                                      include, divisor)

        if t == b and l == r and t <= self.kernel[0] // 2 and l <= self.kernel[1] // 2:
            return back(g, in_shape, (t, l), self.count_include_pad, None)
        c, h, w = in_shape
        padded = (c, h + t + b, w + l + r)
        g = self._uncrop(g, padded)
        if not self.count_include_pad:
            ones = F.pad(torch.ones((1,) + in_shape, dtype=g.dtype, device=g.device), (l, r, t, b))
            cells = F.avg_pool2d(ones, self.kernel, self.stride, 0, self.ceil_mode, True, divisor_override=1)
            g = g / cells.clamp(min=1)
        gx = back(g, padded, (0, 0), True, None if self.count_include_pad else 1)
        return gx[:, :, t : t + h, l : l + w]

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        x = ctx.x(name)
        g = dot_gamma(math.prod(ctx.shape(name)) + self.kernel[0] * self.kernel[1], ctx.mag(x).dtype)
        return self(ctx.err[x]) + g * self(ctx.mag(x))

    def singleprop(self, centres, radii, variant):
        return self(radii[0])

    def to_onnx(self, b, name, ins, out) -> None:
        b.add("AveragePool", ins, out, kernel_shape=list(self.kernel), strides=list(self.stride), pads=list(self.padding),
              count_include_pad=int(self.count_include_pad), ceil_mode=int(self.ceil_mode))


class MaxPool2d(_Pool2d):
    """Max pooling (padding counts as −∞)."""

    nonlinear = True

    def __init__(
        self,
        kernel: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__(kernel, stride, padding, dilation, ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, l, b, r = self.padding
        if t == b and l == r and t <= self.kernel[0] // 2 and l <= self.kernel[1] // 2:
            return F.max_pool2d(x, self.kernel, self.stride, (t, l), self.dilation, self.ceil_mode)
        y = F.max_pool2d(F.pad(x, (l, r, t, b), value=-math.inf), self.kernel, self.stride, 0, self.dilation, self.ceil_mode)
        return self._crop(y, x.shape[1:])

    def ibp(self, x: Interval) -> Interval:
        lo, hi = x.bounds()
        return Interval(self(lo), self(hi), nonneg=x.nonneg)  # monotone and exact

    crown_patches = True  # when the windows tile the input (stride = kernel, no dilation); else A goes dense

    def _tiles(self) -> bool:
        return tuple(self.stride) == tuple(self.kernel) and tuple(self.dilation) == (1, 1)

    def _geometry(self, in_shape: Shape) -> tuple[tuple[int, int, int, int], int, int, int, int]:
        """((top, left, bottom, right) padding, padded height, width, output height, width): exactly the
        (out − 1)·stride + dilation·(k − 1) + 1 cells the windows cover — more than the padding in ceil mode, fewer
        where a window would start in the right padding (ONNX drops it) or the last rows are read by none (a
        negative bottom or right pad: `F.pad` crops)."""
        _, h, w = in_shape
        t, le, _, _ = self.padding
        kh, kw = self.kernel
        out_h, out_w = self.out_shape(tuple(in_shape))[1:]
        b = (out_h - 1) * self.stride[0] + self.dilation[0] * (kh - 1) + 1 - (h + t)
        r = (out_w - 1) * self.stride[1] + self.dilation[1] * (kw - 1) + 1 - (w + le)
        return (t, le, b, r), h + t + b, w + le + r, out_h, out_w

    def _unfold(self, v: torch.Tensor, fill: float) -> torch.Tensor:
        """(N, C, H, W) → each window's cells (N·C, K, L), padding read as `fill`."""
        (t, le, b, r), ph, pw, _, _ = self._geometry(tuple(v.shape[1:]))
        padded = F.pad(v, (le, r, t, b), value=fill).reshape(v.shape[0] * v.shape[1], 1, ph, pw)
        return F.unfold(padded, tuple(self.kernel), self.dilation, 0, self.stride)

    def _lines(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(j, dominates, max u) per window, (N, C, L): the default lower line's input and the upper line."""
        m, c = l.shape[:2]
        lw, uw = self._unfold(l, -math.inf), self._unfold(u, -math.inf)
        tied = lw == lw.amax(dim=1, keepdim=True)  # among inputs sharing the largest lower bound (zeros after a
        # ReLU), the one that can reach highest; argmax over a contiguous last axis (over axis 1 torch takes a
        # path ~12× slower: 20 ms of the ResNet fixture's CROWN-IBP)
        j = torch.where(tied, uw, -math.inf).transpose(1, 2).contiguous().argmax(dim=2).unsqueeze(1)
        others = uw.scatter(1, j, -math.inf).amax(dim=1, keepdim=True)
        dom = lw.gather(1, j) >= others
        L = lw.shape[2]
        return j.reshape(m, c, L), dom.reshape(m, c, L), uw.amax(dim=1).reshape(m, c, L)

    def alpha_start(self, lo: torch.Tensor, hi: torch.Tensor, rows: int) -> torch.Tensor | None:
        """alpha-CROWN's lower line y ≥ Σ λ_i x_i over each window (any λ ≥ 0 normalised to sum 1 over the cells
        that are inputs, not padding, is valid: the max is at least any average): (N, rows, C, K, L), starting
        at CROWN's choice (all weight on x_j)."""
        j, _, _ = self._lines(lo, hi)
        n, c, L = j.shape
        k = self.kernel[0] * self.kernel[1]
        start = torch.zeros((n, c, k, L), dtype=lo.dtype, device=lo.device).scatter_(2, j.unsqueeze(2), 1.0)
        return per_row(start, rows)

    def _cells(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor]:
        """Which cells of each window are inputs, not padding: (N, 1, C, K, L)."""
        n, c = l.shape[:2]
        inputs = self._unfold(l, -math.inf) > -math.inf
        return (inputs.reshape((n, 1, c) + inputs.shape[1:]),)

    def _weights(self, lam: torch.Tensor, cells: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """alpha's λ (N, S, C, K, L) as convex weights over each window's input `cells`: padding gets none, and a
        window whose weights vanish falls back to x_j."""
        lam = torch.where(cells, lam, torch.zeros_like(lam))
        total = lam.sum(dim=3, keepdim=True)
        one = torch.zeros_like(lam).scatter_(3, j.unsqueeze(1).unsqueeze(3).expand(lam.shape[:3] + (1,) + lam.shape[4:]), 1.0)
        return torch.where(total > 0, lam / torch.where(total > 0, total, torch.ones_like(total)), one)

    def crown_backward(self, A: torch.Tensor | Patches, ctx: Context, name: str):
        """Lower line: y ≥ x_j at the window's largest lower bound j (alpha-CROWN: y ≥ Σ λ_i x_i, per spec row).
        Upper line: y ≤ x_j when x_j dominates the window (l_j ≥ u_i for all i ≠ j), else the constant max u."""
        lam = ctx.alpha.get(name)
        if isinstance(A, Patches) and (lam is not None or not self._tiles()):
            A = A.dense()
        x = ctx.x(name)
        c, h, w = ctx.shape(x)
        (t, le, _, _), ph, pw, out_h, out_w = self._geometry(ctx.shape(x))
        kh, kw = self.kernel
        L = out_h * out_w
        j, dom, umax = ctx.relaxation(name, (x,), self._lines)
        if isinstance(A, Patches):
            return self._patches_backward(A, ctx, name, (j, dom, umax), (t, le))
        n, s = A.shape[:2]
        jj, dom, umax = j.unsqueeze(1), dom.unsqueeze(1), umax.unsqueeze(1)
        pos, neg = split_signs(A.reshape(n, s, c, L))
        upper = torch.where(dom, neg, torch.zeros_like(neg))
        const = (torch.where(dom, torch.zeros_like(neg), neg) * umax).sum(dim=(2, 3))
        K = kh * kw
        if lam is None:
            windows = torch.zeros(n, s, c, K, L, dtype=A.dtype, device=A.device)
            windows.scatter_(3, jj.reshape(n, 1, c, 1, L).expand(n, s, c, 1, L), (pos + upper).unsqueeze(3))
        else:
            cells = ctx.relaxation(name + " cells", (x,), self._cells)[0]  # once per bound computation, not per iteration
            windows = pos.unsqueeze(3) * self._weights(lam, cells, j)
            windows = windows.scatter_add(3, jj.reshape(n, 1, c, 1, L).expand(n, s, c, 1, L), upper.unsqueeze(3))
        if self._tiles():  # windows tile: fold is a permutation
            tiled = windows.reshape(n * s * c, kh, kw, out_h, out_w).permute(0, 3, 1, 4, 2).reshape(n * s * c, out_h * kh, out_w * kw)
            folded = F.pad(tiled, (0, pw - out_w * kw, 0, ph - out_h * kh))
        else:
            folded = F.fold(windows.reshape(n * s * c, K, L), (ph, pw), (kh, kw), self.dilation, 0, self.stride)
        full = F.pad(folded.reshape(n, s, c, ph, pw), (0, max(0, le + w - pw), 0, max(0, t + h - ph)))  # rows no window read
        return [full[:, :, :, t : t + h, le : le + w]], const

    def _patches_backward(self, A: Patches, ctx: Context, name: str, lines: tuple[torch.Tensor, ...],
                          pads: tuple[int, int]) -> tuple[list[Patches], torch.Tensor]:
        """The same lines on each row's window when the pooling windows tile the input: an output window of
        (ph, pw) cells becomes an input window of (ph·kh, pw·kw), cell (a, b)'s coefficient going to its chosen
        input j — the ResNet fixture's refinements past its max-pool no longer go dense (25× larger rows)."""
        A = A.masked()  # the lines' maps are zero outside the output map, but A's entries there must be too
        x = ctx.x(name)
        kh, kw = self.kernel
        n, r, c, ph, pw = A.data.shape
        shape = (A.data.shape[0], c) + tuple(ctx.shape(name)[1:])

        def maps() -> torch.Tensor:
            return torch.cat([t.to(A.dtype).reshape(shape) for t in lines], dim=1)

        j_w, dom_w, umax_w = A.pick_parts(ctx.unfolded("maxpool " + name, A, ctx.bounds[x], maps), 3)
        pos, neg = split_signs(A.data)
        dom = dom_w > 0
        coef = pos + torch.where(dom, neg, torch.zeros_like(neg))
        const = (torch.where(dom, torch.zeros_like(neg), neg) * umax_w).sum(dim=(2, 3, 4))
        cells = torch.zeros((n, r, c, ph, pw, kh * kw), dtype=A.dtype, device=A.data.device)
        cells.scatter_(5, j_w.long().unsqueeze(5), coef.unsqueeze(5))
        data = cells.reshape(n, r, c, ph, pw, kh, kw).permute(0, 1, 2, 3, 5, 4, 6).reshape(n, r, c, ph * kh, pw * kw)
        chw = cast(tuple[int, int, int], ctx.shape(x))  # (C, H, W): out_shape accepts no other input
        return [Patches(data, A.pos, A.grid.through_conv(self.stride, *pads), chw)], const

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        x = ctx.x(name)
        g = dot_gamma(math.prod(ctx.shape(name)) + self.kernel[0] * self.kernel[1], ctx.mag(x).dtype)
        return self(ctx.err[x]) + g * self(ctx.mag(x))

    def singleprop(self, centres, radii, variant):
        c, v = centres[0], radii[0]
        return 0.5 * (self(c + v) - self(c - v))

    def to_onnx(self, b, name, ins, out) -> None:
        b.add("MaxPool", ins, out, kernel_shape=list(self.kernel), strides=list(self.stride), pads=list(self.padding),
              dilations=list(self.dilation), ceil_mode=int(self.ceil_mode))


# ---- reading: the 2-D (and 1-D) max and average pools, in ONNX and ATen
def _pool_common(ctx: OnnxReading, node: OnnxNode, attrs: dict, x: Tensor) -> tuple:
    if len(node.output) > 1 and node.output[1]:
        raise ctx.unsupported("the indices output is not supported")
    kernel = tuple(attrs["kernel_shape"])
    if len(kernel) != 2:
        raise ctx.unsupported("only 2-D pooling is supported")
    stride = tuple(attrs.get("strides", [1, 1]))
    dilation = tuple(attrs.get("dilations", [1, 1]))
    pads = onnx_pads(ctx, attrs, x.shape[1:], kernel, stride, dilation)
    return kernel, stride, pads, dilation, bool(attrs.get("ceil_mode", 0))


def _pool_1d_as_2d(pool: Callable[[OnnxReading, OnnxNode, dict, Tensor], Tensor]) -> Callable[[OnnxReading, OnnxNode, dict], list[Value]]:
    """A 2-D pooling handler that also reads (N, C, L) pooling as (N, C, 1, L) with a 1×k window, between two
    reshapes (exact)."""
    def handler(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
        x = ctx.tensor(node.input[0])
        if not (ctx.batched and len(x.shape) == 2 and len(attrs.get("kernel_shape", ())) == 1):
            return [pool(ctx, node, attrs, spatial_input(ctx, node))]
        one = {key: [1 if key != "pads" else 0] + list(attrs[key]) for key in ("kernel_shape", "strides", "dilations") if key in attrs}
        if "pads" in attrs:
            one["pads"] = [0, int(attrs["pads"][0]), 0, int(attrs["pads"][1])]
        c, length = x.shape
        y = pool(ctx, node, {**attrs, **one}, ctx.emit(Reshape((c, 1, length)), [x]))
        return [ctx.emit(Reshape((y.shape[0], y.shape[2])), [y])]
    return handler


@reads_onnx("MaxPool")
@_pool_1d_as_2d
def _read_onnx_maxpool(ctx: OnnxReading, node: OnnxNode, attrs: dict, x: Tensor) -> Tensor:
    kernel, stride, pads, dilation, ceil = _pool_common(ctx, node, attrs, x)
    if ceil and (pads[0] != pads[2] or pads[1] != pads[3]):
        raise ctx.unsupported("ceil_mode with asymmetric padding")
    return ctx.emit(MaxPool2d(kernel, stride, pads, dilation, ceil), [x], "maxpool")


@reads_onnx("AveragePool")
@_pool_1d_as_2d
def _read_onnx_avgpool(ctx: OnnxReading, node: OnnxNode, attrs: dict, x: Tensor) -> Tensor:
    kernel, stride, pads, dilation, ceil = _pool_common(ctx, node, attrs, x)
    if dilation != (1, 1):
        raise ctx.unsupported("dilated average pooling")
    include = bool(attrs.get("count_include_pad", 0))
    if ceil and any(pads):
        raise ctx.unsupported("ceil_mode together with padding")
    try:
        pool = AvgPool2d(kernel, stride, pads, include, ceil)
    except ValueError as e:
        raise ctx.unsupported(str(e)) from None
    return ctx.emit(pool, [x], "avgpool")


@reads_aten("aten.avg_pool2d.default")
def _read_aten_avgpool(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    kernel = aten_ints(a[1])
    stride = aten_ints(a[2]) if len(a) > 2 and a[2] else kernel
    padding = aten_ints(a[3]) if len(a) > 3 else [0, 0]
    ceil = bool(a[4]) if len(a) > 4 else False
    include = bool(a[5]) if len(a) > 5 else True
    if len(a) > 6 and a[6] is not None:
        raise ctx.unsupported("divisor_override")
    return ctx.emit(AvgPool2d(kernel, stride, padding, include, ceil), [x], "avgpool")


@reads_aten("aten.max_pool2d_with_indices.default", "aten.max_pool2d.default")
def _read_aten_maxpool(ctx: AtenReading, a: list, kw: dict):
    x = aten_tensor(ctx, a[0])
    kernel = aten_ints(a[1])
    stride = aten_ints(a[2]) if len(a) > 2 and a[2] else kernel
    padding = aten_ints(a[3]) if len(a) > 3 else [0, 0]
    dilation = aten_ints(a[4]) if len(a) > 4 else [1, 1]
    ceil = bool(a[5]) if len(a) > 5 else False
    out = ctx.emit(MaxPool2d(kernel, stride, padding, dilation, ceil), [x], "maxpool")
    return (out, None) if "indices" in str(ctx.node.target) else out
