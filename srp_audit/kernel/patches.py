"""Patches: a compact form of backward coefficients for spatial (C, H, W) nodes.

When CROWN bounds neurons of a convolutional layer, their coefficients over an earlier feature map are
non-zero only inside the receptive fields. `Patches` stores, per sample n and objective row r, a window
`data[n, r]` of shape (C, ph, pw). Row r belongs to a neuron at position `pos[n, r]` of the *target* layer
(H_T × W_T positions); its window's top-left corner on this map is (h·S_h + O_h, w·S_w + O_w): every window
of a target layer lies on one regular grid, so the values of any map under all windows come from one `unfold`
and a gather by position. Positions outside the map stand for padding and must carry zero (`clean` says they
already do). Convolutions transpose windows into larger ones; an op that cannot stay local calls `dense`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .interval import cached_on


@dataclass(frozen=True)
class Grid:
    """Where windows sit: position (h, w) of the target layer → corner (h·sh + oh, w·sw + ow) on this map."""

    sh: int
    sw: int
    oh: int
    ow: int
    ht: int  # target layer's height and width (number of positions)
    wt: int

    def through_conv(self, stride: tuple[int, int], pad_top: int, pad_left: int) -> "Grid":
        return Grid(self.sh * stride[0], self.sw * stride[1], self.oh * stride[0] - pad_top, self.ow * stride[1] - pad_left, self.ht, self.wt)

    def shifted(self, dh: int, dw: int) -> "Grid":
        return Grid(self.sh, self.sw, self.oh + dh, self.ow + dw, self.ht, self.wt)


@dataclass
class Patches:
    data: torch.Tensor  # (N, R, C, ph, pw)
    pos: torch.Tensor  # (N, R) long: the row's neuron position h·W_T + w in the target layer
    grid: Grid
    shape: tuple[int, int, int]  # this map's (C, H, W)
    clean: bool = False  # entries outside the map are known to be zero

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def rows(self) -> int:
        return self.data.shape[1]

    @property
    def outgrown(self) -> bool:
        """Whether a window holds more entries than the whole map: dense coefficients then cost less per row, in
        every op after (a deep layer's receptive field on an early map: a 4×4 ResNet-18 stage seen on the 32×32
        stem is a 60×60 window)."""
        return self.data.shape[3] * self.data.shape[4] > self.shape[1] * self.shape[2]

    def with_data(self, data: torch.Tensor, clean: bool | None = None) -> "Patches":
        return Patches(data, self.pos, self.grid, self.shape, self.clean if clean is None else clean)

    def unfold(self, m: torch.Tensor) -> torch.Tensor:
        """A per-sample map m (N, C', H, W) under the window at every target position: (N, H_T·W_T, C'·ph·pw),
        zero outside the map. `pick` takes the rows' windows from it (callers may reuse it across row chunks)."""
        n = m.shape[0]
        ph, pw = self.data.shape[3:]
        h, w = m.shape[2:]
        g = self.grid
        top, left = max(0, -g.oh), max(0, -g.ow)
        bottom = max(0, (g.ht - 1) * g.sh + g.oh + ph - h)
        right = max(0, (g.wt - 1) * g.sw + g.ow + pw - w)
        mp = F.pad(m, (left, right, top, bottom))
        mp = mp[:, :, max(0, g.oh) :, max(0, g.ow) :]  # a positive offset: windows start inside the map
        cols = F.unfold(mp, (ph, pw), stride=(g.sh, g.sw))  # (N, C'·ph·pw, L ≥ H_T·W_T)
        lw = (mp.shape[3] - pw) // g.sw + 1
        if lw != g.wt:  # more columns than target positions: keep the first W_T of each row of windows
            cols = cols.reshape(n, -1, cols.shape[2] // lw, lw)[:, :, : g.ht, : g.wt].reshape(n, cols.shape[1], -1)
        return cols[:, :, : g.ht * g.wt].transpose(1, 2).contiguous()  # a row's window is contiguous: `pick` copies it

    def windows(self, m: torch.Tensor) -> torch.Tensor:
        """The values of a per-sample map m (N, C', H, W) under every row's window: (N, R, C', ph, pw), zero
        outside the map."""
        return self.pick(self.unfold(m))

    def pick(self, cols: torch.Tensor) -> torch.Tensor:
        """Each row's window from an unfolded map (`unfold`): (N, R, C', ph, pw)."""
        return self.pick_parts(cols, 1)[0]

    def on_map(self) -> torch.Tensor:
        """(N, R, 1, ph, pw) bool: the window entries that fall on the map (from the corners, no unfold)."""
        ph, pw = self.data.shape[3:]
        g, dev = self.grid, self.pos.device
        rows = ((self.pos // g.wt) * g.sh + g.oh).unsqueeze(2) + torch.arange(ph, device=dev)
        cols = ((self.pos % g.wt) * g.sw + g.ow).unsqueeze(2) + torch.arange(pw, device=dev)
        inside_h, inside_w = (rows >= 0) & (rows < self.shape[1]), (cols >= 0) & (cols < self.shape[2])
        return (inside_h.unsqueeze(3) & inside_w.unsqueeze(2)).unsqueeze(2)

    def pick_parts(self, cols: torch.Tensor, parts: int) -> list[torch.Tensor]:
        """`pick` of an unfolded map that stacks `parts` maps of equal channels, as one contiguous tensor per map:
        elementwise work on them runs at full speed (not on strided views), and no single gather is so large
        that the allocator maps fresh pages for it (a 3-map gather took 17 ms where three took 4)."""
        n, r, _, ph, pw = self.data.shape
        positions = cols.shape[1]
        at = (self.pos + torch.arange(n, device=self.pos.device).unsqueeze(1) * positions).reshape(-1)
        flat = cols.reshape(n * positions, parts, -1)
        return [flat[:, j].index_select(0, at).reshape(n, r, -1, ph, pw) for j in range(parts)]

    def masked(self) -> "Patches":
        """Zero the entries that fall outside the map (padding positions)."""
        if self.clean:
            return self
        return self.with_data(self.data.masked_fill(~self.on_map(), 0.0), clean=True)

    def dense(self) -> torch.Tensor:
        """(N, R, C, H, W) with every window placed at its corner (entries outside the map dropped): one gather per
        map entry from the windows with a zero appended, so the work is the dense tensor's size whatever the
        windows' (a zero-padded canvas around outgrown windows was up to 70× the map and took a third of a deep
        layer's CROWN pass)."""
        n, r, c, ph, pw = self.data.shape
        _, h, w = self.shape
        g, dev = self.grid, self.data.device
        ii = torch.arange(h, device=dev) - ((self.pos // g.wt) * g.sh + g.oh).unsqueeze(2)  # (N, R, H) row in the window
        jj = torch.arange(w, device=dev) - ((self.pos % g.wt) * g.sw + g.ow).unsqueeze(2)  # (N, R, W)
        inside = ((ii >= 0) & (ii < ph)).unsqueeze(3) & ((jj >= 0) & (jj < pw)).unsqueeze(2)
        at = torch.where(inside, ii.unsqueeze(3) * pw + jj.unsqueeze(2), ph * pw)  # ph·pw: the appended zero
        flat = torch.cat([self.data.reshape(n, r, c, ph * pw), self.data.new_zeros(n, r, c, 1)], dim=3)
        out = flat.gather(3, at.reshape(n, r, 1, h * w).expand(n, r, c, h * w))
        return out.reshape(n, r, c, h, w)

    def add(self, other: "Patches") -> "Patches | None":
        """Sum with patches of the same rows on the same map (the windows of one row differ by a fixed offset,
        so both fit one larger window); None when the grids do not match (the caller goes dense)."""
        a, b = self.grid, other.grid
        if (a.sh, a.sw, a.ht, a.wt) != (b.sh, b.sw, b.ht, b.wt) or not torch.equal(self.pos, other.pos):
            return None
        dh, dw = b.oh - a.oh, b.ow - a.ow
        ph1, pw1 = self.data.shape[3:]
        ph2, pw2 = other.data.shape[3:]
        top, left = min(0, dh), min(0, dw)
        bottom, right = max(ph1, dh + ph2), max(pw1, dw + pw2)
        x = F.pad(self.data, (-left, right - pw1, -top, bottom - ph1))
        y = F.pad(other.data, (dw - left, right - dw - pw2, dh - top, bottom - dh - ph2))
        return Patches(x + y, self.pos, a.shifted(top, left), self.shape, self.clean and other.clean)

    def signed(self, signs: tuple[int, ...]) -> "Patches":
        """Rows [s·A for s in signs] (e.g. (1, −1): lower and upper bounds of the same neurons in one pass)."""
        if signs == (1,):
            return self
        return Patches(torch.cat([self.data * s for s in signs], 1), torch.cat([self.pos] * len(signs), 1), self.grid,
                       self.shape, self.clean)


def flat_sum(A: torch.Tensor | Patches) -> torch.Tensor:
    """Σ over every axis after (N, R)."""
    t = A.data if isinstance(A, Patches) else A
    return t.reshape(t.shape[0], t.shape[1], -1).sum(dim=2)


def weighted_sum(A: torch.Tensor | Patches, v: torch.Tensor) -> torch.Tensor:
    """⟨A[n, r], v[n]⟩ for dense A (N, R, *shape) or patches, with v a per-sample map (N, *shape). With few rows, a
    product and a sum (per-sample matrix products of one row took 2.8× as long with their gradient, in
    branch and bound's beta-CROWN steps)."""
    if isinstance(A, Patches):
        return (A.data * A.windows(v)).reshape(A.data.shape[0], A.rows, -1).sum(dim=2)
    n, r = A.shape[:2]
    if r <= FEW_ROWS:
        return (A.reshape(n, r, -1) * v.reshape(n, 1, -1)).sum(dim=2)
    return torch.einsum("nrk,nk->nr", A.reshape(n, r, -1), v.reshape(v.shape[0], -1))


FEW_ROWS = 4  # rows of A up to which `weighted_sum` multiplies and sums instead of a matrix product


PER_OFFSET_CHUNK = 1 << 20  # bytes of input rows per chunk of the per-offset path (float64)
COLUMNS_CHUNK = 8 << 20  # bytes of columns per chunk of the one-product path (float64)


def conv_transpose(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int], dilation: tuple[int, int],
                   groups: int, out_hw: tuple[int, int] | None = None, owner: Any = None) -> torch.Tensor:
    """The transpose of a convolution (no padding), `out_hw` defaulting to the full size. In float64, where
    torch's conv_transpose2d and fold take slow per-sample paths: with ≥ 4 output channels, one matrix
    product per kernel offset added into a channels-last output (small products that stay in cache: 2–3.5×
    torch's on CROWN's shapes); with one, one product and kh·kw strided additions; a permutation when the
    windows tile the output (stride = kernel). Large batches go in chunks of rows whose temporaries stay in
    cache (every row is computed alone, so chunks change nothing): 2 000 rows of 32×11×11 through a 32→16
    4×4 kernel 148 → 82 ms, 384 of 8×16×16 through 8→3 4×4 9.6 → 7.7 ms. Small windows, given an `owner` (the
    op node) to keep it on, take one matrix product with the transpose unrolled into a matrix (`_unroll_pays`),
    unless the weight is being trained (the matrix could not be kept)."""
    b, c_out, h, w = x.shape
    _, c_in_g, kh, kw = weight.shape
    if groups == 1 and x.dtype == torch.float64:
        trained = torch.is_grad_enabled() and weight.requires_grad  # a matrix rebuilt per call would not pay
        out = tuple(out_hw) if out_hw is not None else _full_size(h, w, weight, stride, dilation)
        if owner is not None and not trained and _unroll_pays(weight, h, w, out):
            m = _unrolled(owner, weight, stride, dilation, (h, w), out)
            return (x.reshape(b, -1) @ m).reshape((b, c_in_g) + out)
        per_offset = _per_offset(weight, stride, dilation)
        per_row = (c_out if per_offset else c_in_g * kh * kw) * h * w * x.element_size()
        rows = max(1, (PER_OFFSET_CHUNK if per_offset else COLUMNS_CHUNK) // per_row)
        if rows < b:
            return torch.cat([_conv_transpose(x[i : i + rows], weight, stride, dilation, groups, out_hw)
                              for i in range(0, b, rows)])
    return _conv_transpose(x, weight, stride, dilation, groups, out_hw)


UNROLL_ENTRIES = 1 << 21  # entries of an unrolled transpose kept per op and shape (16 MiB in float64)


def _full_size(h: int, w: int, weight: torch.Tensor, stride: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    """The transpose's output height and width before any cut or padding."""
    kh, kw = weight.shape[2:]
    return (h - 1) * stride[0] + dilation[0] * (kh - 1) + 1, (w - 1) * stride[1] + dilation[1] * (kw - 1) + 1


def _unroll_pays(weight: torch.Tensor, h: int, w: int, out_hw: tuple[int, ...]) -> bool:
    """Whether one product with the unrolled (C_out·h·w) × (C_in·H·W) matrix beats the direct paths: its extra
    multiplications by zero cost less than the per-offset products and strided additions while they are at most
    4× the direct count (8× below 16 input channels, where per-offset products are narrow). Measured per
    window, float64, 2 threads: 16×4×4 through a 16→1 4×4 stride-2 kernel 1.95× faster, 32×2×2 through 32→16 4×4
    2.9×, 8×3×3 through 8→8 3×3 3.95×; 32×6×6 through 32→16 4×4 (5× the multiplications) 0.7×: not taken."""
    c_out, c_in, kh, kw = weight.shape
    rows, cols = c_out * h * w, c_in * out_hw[0] * out_hw[1]
    limit = 4 if c_in >= 16 else 8
    return rows * cols <= UNROLL_ENTRIES and cols <= limit * c_in * kh * kw


def _unrolled(owner: Any, weight: torch.Tensor, stride: tuple[int, int], dilation: tuple[int, int], hw: tuple[int, int],
              out_hw: tuple[int, ...]) -> torch.Tensor:
    """The transpose as a (C_out·h·w, C_in·H·W) matrix, kept on `owner` per shape while the weight is unchanged.
    Its entries are the kernel's own values or exact zeros (the transpose of a one-hot input copies one tap), so
    a product with it sums the direct path's products plus exact zeros: the op's rounding allowance still holds."""
    def build() -> torch.Tensor:
        k = weight.shape[0] * hw[0] * hw[1]
        eye = torch.eye(k, dtype=weight.dtype, device=weight.device).reshape((k, weight.shape[0]) + tuple(hw))
        return _conv_transpose(eye, weight, stride, dilation, 1, out_hw).reshape(k, -1)

    key = (tuple(stride), tuple(dilation), tuple(hw), tuple(out_hw))
    return cached_on(owner, f"_unrolled {key}", (weight,), (), build, build)


def _tiles(weight: torch.Tensor, stride: tuple[int, int], dilation: tuple[int, int]) -> bool:
    """Whether the kernel's windows tile the output (stride = kernel, no dilation)."""
    return tuple(stride) == tuple(weight.shape[2:]) and tuple(dilation) == (1, 1)


def _per_offset(weight: torch.Tensor, stride: tuple[int, int], dilation: tuple[int, int]) -> bool:
    """Whether float64 `conv_transpose` takes one product per kernel offset (≥ 4 channels, windows overlapping)."""
    return weight.shape[1] >= 4 and not _tiles(weight, stride, dilation)


def _conv_transpose(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int], dilation: tuple[int, int],
                    groups: int, out_hw: tuple[int, ...] | None) -> torch.Tensor:
    """`conv_transpose` on one chunk of rows (`out_hw` an (h, w) pair or None)."""
    b, c_out, h, w = x.shape
    o, c_in_g, kh, kw = weight.shape
    full = _full_size(h, w, weight, stride, dilation)
    tiles = _tiles(weight, stride, dilation)
    if groups != 1 or x.dtype != torch.float64:
        y = F.conv_transpose2d(x, weight, None, stride, 0, 0, groups, dilation)
    elif _per_offset(weight, stride, dilation):
        rows = x.permute(0, 2, 3, 1).reshape(-1, c_out)  # (B·h·w, C_out)
        per_offset = weight.permute(2, 3, 0, 1)  # (kh, kw, C_out, C_in)
        y = torch.zeros((b,) + full + (c_in_g,), dtype=x.dtype, device=x.device)
        for i in range(kh):
            for j in range(kw):
                r0, c0 = i * dilation[0], j * dilation[1]
                term = (rows @ per_offset[i, j]).reshape(b, h, w, c_in_g)
                y[:, r0 : r0 + (h - 1) * stride[0] + 1 : stride[0], c0 : c0 + (w - 1) * stride[1] + 1 : stride[1]] += term
        y = y.permute(0, 3, 1, 2)
    else:
        cols = weight.reshape(o, -1).t() @ x.transpose(0, 1).reshape(c_out, -1)  # (C_in·kh·kw, B·h·w)
        cols = cols.reshape(c_in_g, kh, kw, b, h, w)
        if tiles:  # windows tile the output: a permutation
            return _cut_or_pad(cols.permute(3, 0, 4, 1, 5, 2).reshape((b, c_in_g) + full), out_hw)
        y = torch.zeros((b, c_in_g) + full, dtype=x.dtype, device=x.device)
        for i in range(kh):
            for j in range(kw):
                r0, c0 = i * dilation[0], j * dilation[1]
                y[:, :, r0 : r0 + (h - 1) * stride[0] + 1 : stride[0], c0 : c0 + (w - 1) * stride[1] + 1 : stride[1]] += cols[:, i, j].transpose(0, 1)
    return _cut_or_pad(y, out_hw)


def _cut_or_pad(y: torch.Tensor, out_hw: tuple[int, ...] | None) -> torch.Tensor:
    """y (B, C, H, W) cut or zero-padded at the bottom and right to out_hw (None: as it is)."""
    if out_hw is not None and tuple(out_hw) != tuple(y.shape[2:]):
        hh, ww = out_hw
        y = F.pad(y, (0, max(0, ww - y.shape[3]), 0, max(0, hh - y.shape[2])))[:, :, :hh, :ww]
    return y
