"""Affine ops: Dense (Gemm/MatMul), ElementwiseAffine (scale and shift by constants) and BatchNorm, and how they
are read.

Affine maps are exact in CROWN (A ↦ A·W) and cost two products in IBP (centre and radius); every rule carries
the rounding allowance of its dot products.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelLoadError
from ..ir.node import Node, Shape
from ..ir.reading import (
    AtenReading,
    OnnxNode,
    OnnxReading,
    Tensor,
    Value,
    aten_tensor,
    aten_weight,
    reads_aten,
    reads_onnx,
    stored_tensor,
)
from ..kernel.backward import Context, per_sample
from ..kernel.enclosure import Enclosed
from ..kernel.interval import Interval, abs_weight, affine_weights, cached_on, dual_norm_ibp, generic_linear, inflation, signed_rows
from ..kernel.patches import Patches, flat_sum
from ..kernel.rounding import as_float32, dot_gamma, tiny, unit_roundoff
from .shape import Reshape, Transpose


class Dense(Node):
    """y = x Wᵀ + b on the last axis (torch's Linear, ONNX Gemm/MatMul+Add)."""

    kind = "affine"
    crown_checkpoint = True

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        b = torch.zeros(weight.shape[0], dtype=weight.dtype) if bias is None else bias.detach().clone()
        self.bias = nn.Parameter(b.reshape(weight.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def out_shape(self, shape: Shape) -> Shape:
        if not shape or shape[-1] != self.weight.shape[1]:
            raise ValueError(f"Dense expects last dim {self.weight.shape[1]}, got shape {shape}")
        return shape[:-1] + (self.weight.shape[0],)

    def describe(self) -> str:
        return f"{self.weight.shape[1]}→{self.weight.shape[0]}"

    def ibp(self, x: Interval) -> Interval:
        n = self.weight.shape[1] + 1
        g = dot_gamma(n, x.dtype)
        w = affine_weights(self, g, n)
        m, v, halved = x.affine_inputs(g)
        if halved and not w.halves_exactly:  # a subnormal weight: halve the inputs instead
            m, v, halved = m * 0.5, v * 0.5, False
        c = F.linear(m, w.half if halved else self.weight, self.bias)
        return Interval(c=c, r=F.linear(v, w.abs_half if halved else w.abs, w.radius_bias))

    def ibp_ball(self, ball) -> Interval:
        c = ball.centre.to(self.weight.dtype)
        return dual_norm_ibp(self, self.ibp(Interval(c, c)), self.weight, ball.eps, ball.q, (1,) * (c.dim() - 2) + (-1,))

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        return [A.matmul(self.weight)], flat_sum(A.matmul(self.bias).unsqueeze(-1))

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        x = ctx.x(name)
        g = dot_gamma(math.prod(ctx.shape(name)), ctx.mag(x).dtype)
        w = abs_weight(self)
        return F.linear(ctx.err[x] + g * ctx.mag(x), w) + g * self.bias.abs()  # one product: |W| is linear

    def crown_rows(self, idx: torch.Tensor, ctx: Context, name: str, signs: tuple[int, ...]):
        if len(ctx.shape(name)) != 1:
            return None
        pick = torch.cat([idx + (0 if s > 0 else self.weight.shape[0]) for s in signs], dim=1)
        weight, bias = signed_rows(self)  # s·y_i = s·(W_i·x + b_i), copied exactly
        return weight[pick], bias[pick]

    def singleprop(self, centres, radii, variant):
        return F.linear(radii[0], self.weight.abs())

    def to_onnx(self, b, name, ins, out) -> None:
        w, bias = b.const(f"{name}.weight", self.weight), b.const(f"{name}.bias", self.bias)
        if len(b.graph.shapes[b.graph.inputs_of[name][0]]) == 1:
            b.add("Gemm", [ins[0], w, bias], out, transB=1)
        else:
            wt = b.const(f"{name}.weight_t", self.weight.detach().T)
            b.add("Add", [b.add("MatMul", [ins[0], wt], f"{name}.mm"), bias], out)


class ElementwiseAffine(Node):
    """y = x · scale + shift with constants broadcast over the sample (normalisation, Mul/Div/Add/Sub by constants).

    `scale` and `shift` are stored without a batch axis and must broadcast to the sample shape without enlarging it.
    """

    passes_bounds = True

    kind = "affine"
    crown_patches = True

    # buffers (`register_buffer` in __init__), declared so that they type as tensors, not `Tensor | Module`
    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, scale: Enclosed | torch.Tensor | float = 1.0, shift: Enclosed | torch.Tensor | float = 0.0) -> None:
        super().__init__()
        s = scale if isinstance(scale, Enclosed) else Enclosed.exact(scale)
        t = shift if isinstance(shift, Enclosed) else Enclosed.exact(shift)
        self.exact: tuple[Enclosed, Enclosed] = (s, t)
        """The exact constants' enclosures (float64, never cast): a derived constant (1/c, γ/√(var + ε)) is not a
        float, and the buffers hold it rounded to the graph's dtype — re-rounded from here whenever that changes."""
        self.register_buffer("scale", s.mid.to(torch.float32))
        self.register_buffer("shift", t.mid.to(torch.float32))

    def _apply(self, fn, recurse=True):
        """Casts and moves (`.to`, `.double()`, `Graph.copy`) round the buffers from the exact enclosures afresh, so a
        float64 copy of a float32 graph holds 1/3 to float64's precision, not float32's."""
        fresh = [self._fresh(name) for name in ("scale", "shift")]
        out = super()._apply(fn, recurse)
        for name, enc, keep in zip(("scale", "shift"), self.exact, fresh):
            if keep:
                setattr(self, name, fn(enc.mid).to(getattr(self, name).dtype))
        device, (s, t) = self.scale.device, self.exact
        self.exact = (Enclosed(s.mid.to(device), s.rad.to(device)), Enclosed(t.mid.to(device), t.rad.to(device)))
        return out

    def _fresh(self, name: str) -> bool:
        """Whether buffer `name` still holds its enclosure's mid (rounded to its dtype); if someone assigned it a new
        value, that value is the constant from now on (stored exactly)."""
        buf, i = getattr(self, name), ("scale", "shift").index(name)
        enc = self.exact[i]
        if enc.mid.shape == buf.shape and torch.equal(enc.mid.to(device=buf.device, dtype=buf.dtype), buf):
            return True
        rest = list(self.exact)
        rest[i] = Enclosed.exact(buf.detach().cpu())
        self.exact = (rest[0], rest[1])
        return False

    def enclosures(self) -> tuple[Enclosed, Enclosed]:
        """The exact scale's and shift's enclosures (float64), current with the buffers."""
        self._fresh("scale")
        self._fresh("shift")
        return self.exact

    def constant_rads(self, dtype: torch.dtype) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(scale_rad, shift_rad) in `dtype`: how far the exact constants may lie from the buffers the rules compute
        with (rounded up; None where a buffer holds its constant exactly — the common case, which costs nothing)."""
        return cached_on(self, "_constant_rads", (self.scale, self.shift), (dtype,), lambda: self._rads(dtype), lambda: self._rads(dtype))

    def _rads(self, dtype: torch.dtype) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        out: list[torch.Tensor | None] = []
        for name in ("scale", "shift"):
            buf = getattr(self, name)
            self._fresh(name)
            enc = self.exact[("scale", "shift").index(name)]
            gap = (buf.detach().to(torch.float64) - enc.mid.to(buf.device)).abs() + enc.rad.to(buf.device)
            if not bool(gap.any()):
                out.append(None)
                continue
            total = gap * (1 + 4 * unit_roundoff(torch.float64)) + tiny(torch.float64)
            r = total.to(dtype)
            out.append(torch.where(r.to(torch.float64) < total, torch.nextafter(r, torch.full_like(r, math.inf)), r))
        return out[0], out[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def out_shape(self, shape: Shape) -> Shape:
        for name, t in (("scale", self.scale), ("shift", self.shift)):
            if np.broadcast_shapes(tuple(t.shape), shape) != tuple(shape):
                raise ValueError(f"{name} of shape {tuple(t.shape)} would enlarge a sample of shape {shape}")
        return shape

    def describe(self) -> str:
        return f"scale{tuple(self.scale.shape)} shift{tuple(self.shift.shape)}"

    def ibp(self, x: Interval) -> Interval:
        g = dot_gamma(2, x.dtype)
        scale_abs = self.scale.abs() * inflation(g, x.dtype)
        out = generic_linear(x, 2, self, lambda v: v * scale_abs, self.shift.abs())
        srad, trad = self.constant_rads(x.dtype)
        if srad is None and trad is None:
            return out
        # the exact constants: x·s* + t* lies within |x|·|s* − s| + |t* − t| of x·s + t
        lo, hi = x.bounds()
        extra = _derived_error(torch.maximum(lo.abs(), hi.abs()), srad, trad)
        return Interval(c=out.c, r=(out.r + extra) * (1 + 2 * unit_roundoff(x.dtype)))

    def crown_backward(self, A, ctx: Context, name: str):
        shape = ctx.shape(name)
        if isinstance(A, Patches) and all(t.numel() == 1 or (t.dim() > 1 and t.shape[-2:] == (1, 1)) for t in (self.scale, self.shift)):
            # the same scale and shift at every position (input normalisation): per channel, no windows to gather
            A = A.masked()
            scale, shift = (torch.broadcast_to(t, (shape[0], 1, 1)).to(A.dtype) for t in (self.scale, self.shift))
            return [A.with_data(A.data * scale)], torch.einsum("nrchw,c->nr", A.data, shift.flatten())
        if isinstance(A, Patches):
            n = A.data.shape[0]
            maps = A.windows(torch.cat([per_sample(self.scale, shape, n), per_sample(self.shift, shape, n)], dim=1))
            scale, shift = maps.split(shape[0], dim=2)
            return [A.with_data(A.data * scale, clean=True)], flat_sum(A.data * shift)
        scale = torch.broadcast_to(self.scale, shape).unsqueeze(0).unsqueeze(0)
        shift = torch.broadcast_to(self.shift, shape).unsqueeze(0).unsqueeze(0)
        return [A * scale], flat_sum(A * shift)

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        x = ctx.x(name)
        dt = ctx.mag(x).dtype
        g = dot_gamma(math.prod(ctx.shape(name)), dt)
        s = self.scale.abs()
        # A_x = A·scale entry by entry (one rounding); only the constant A·shift sums over the whole value
        err = ctx.err[x] * s + 2 * unit_roundoff(dt) * ctx.mag(x) * s + g * self.shift.abs()
        srad, trad = self.constant_rads(dt)
        if srad is None and trad is None:
            return err
        # the backward pass uses the buffers for the exact constants: A·(x·s* + t*) − A·(x·s + t) ≤ |A|·(|x|·srad + trad)
        return err + _derived_error(ctx.mag(x), srad, trad)

    def singleprop(self, centres, radii, variant):
        return radii[0] * self.scale.abs()

    def to_onnx(self, b, name, ins, out) -> None:
        scaled = b.add("Mul", [ins[0], b.const(f"{name}.scale", self.scale)], f"{name}.scaled")
        b.add("Add", [scaled, b.const(f"{name}.shift", self.shift)], out)


def _derived_error(mag: torch.Tensor, scale_rad: torch.Tensor | None, shift_rad: torch.Tensor | None) -> torch.Tensor:
    """|x|·scale_rad + shift_rad, rounded up: the gap between the affine map with the exact constants and with the
    buffers, given |x| ≤ mag."""
    dt = mag.dtype
    out = torch.zeros_like(mag) if scale_rad is None else mag * scale_rad.to(dt)
    if shift_rad is not None:
        out = out + shift_rad.to(dt)
    return out * (1 + 4 * unit_roundoff(dt)) + tiny(dt)


class BatchNorm(ElementwiseAffine):
    """Inference-mode batch normalisation over axis 1 of the sample's batch (channel axis): an elementwise affine map.

    Kept as its own type so `inspect` and export can show it; `fold_batchnorm` merges it into the preceding layer.
    Every rule is ElementwiseAffine's.
    """

    passes_bounds = True

    def __init__(
        self,
        mean: torch.Tensor,
        var: torch.Tensor,
        gamma: torch.Tensor,
        beta: torch.Tensor,
        eps: float,
        sample_rank: int,
    ) -> None:
        # γ/√(var + ε) and β − mean·γ/√(var + ε), enclosed: neither is a float in general. ε is the float32 a model
        # stores (ONNX's epsilon attribute; torch casts its Python ε to float32 before adding it)
        eps = as_float32(eps)
        inv = Enclosed.exact(gamma) * (Enclosed.exact(var) + Enclosed.exact(eps)).sqrt().reciprocal()
        shift = Enclosed.exact(beta) - Enclosed.exact(mean) * inv
        view = (-1,) + (1,) * (sample_rank - 1)
        super().__init__(inv.reshape(*view), shift.reshape(*view))
        self.eps = float(eps)

    def describe(self) -> str:
        return f"{self.scale.numel()} channels"


# ---- reading: Gemm, MatMul with a stored weight, Neg and BatchNormalization, in ONNX and ATen
@reads_onnx("Neg")
def _read_onnx_neg(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    return [ctx.emit(ElementwiseAffine(-1.0, 0.0), [ctx.tensor(node.input[0])], "neg")]


def _scaled(w: torch.Tensor, factor: float) -> torch.Tensor:
    """α·W for Gemm's α (a float32 attribute): exact in float64, kept in float32 only where that holds it exactly."""
    if float(factor) == 1.0:
        return w
    product = Enclosed.exact(w) * float(factor)
    if not product.is_exact:
        raise ModelLoadError(f"Gemm's alpha/beta {factor} times a float64 weight is not a float64 number; fold it into the weights")
    return stored_tensor(product.mid.numpy())


@reads_onnx("Gemm")
def _read_onnx_gemm(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    a = ctx.tensor(node.input[0])
    if attrs.get("transA", 0):
        raise ctx.unsupported("transA=1 on the model's data is not supported")
    if len(ctx.onnx_shape(a)) != 2:
        raise ctx.unsupported(f"Gemm needs a 2-D input, got shape {ctx.onnx_shape(a)}")
    b = ctx.weight(node.input[1], "weight")
    w = b.T if not attrs.get("transB", 0) else b  # w: [out, in]
    w = _scaled(w, attrs.get("alpha", 1.0))
    out = w.shape[0]
    bias = None
    if len(node.input) > 2 and node.input[2]:
        c = _scaled(ctx.weight(node.input[2], "bias"), attrs.get("beta", 1.0))
        if c.numel() not in (1, out):
            raise ctx.unsupported(f"bias of shape {tuple(c.shape)} does not broadcast to {out} outputs")
        bias = c.reshape(-1).expand(out).clone()
    return [ctx.emit(Dense(w.contiguous(), bias), [a], "dense")]


@reads_onnx("MatMul")
def _read_onnx_matmul(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    a, b = ctx.get(node.input[0]), ctx.get(node.input[1])
    if isinstance(a, Tensor) and isinstance(b, np.ndarray):
        w = ctx.weight(node.input[1], "weight")
        if w.dim() == 1:  # x @ v: a dot product over the last axis
            t = ctx.emit(Dense(w.reshape(1, -1)), [a], "dense")
            return [ctx.emit(Reshape(t.shape[:-1] or (1,)), [t])] if t.shape[:-1] else [t]
        if w.dim() != 2:
            raise ctx.unsupported(f"a weight of rank {w.dim()} is not supported")
        return [ctx.emit(Dense(w.T.contiguous()), [a], "dense")]
    if isinstance(a, np.ndarray) and isinstance(b, Tensor):
        w = ctx.weight(node.input[0], "weight")
        if w.dim() == 2 and not ctx.batched and len(b.shape) == 1:  # W @ x on an unbatched vector
            return [ctx.emit(Dense(w.contiguous()), [b], "dense")]
        if w.dim() == 2 and len(b.shape) >= 2:  # W @ X = (Xᵀ Wᵀ)ᵀ over the last two sample axes
            swap = tuple(range(len(b.shape) - 2)) + (len(b.shape) - 1, len(b.shape) - 2)
            xt = ctx.emit(Transpose(swap), [b])
            return [ctx.emit(Transpose(swap), [ctx.emit(Dense(w.contiguous()), [xt], "dense")])]
        raise ctx.unsupported("constant @ data needs a matrix constant and data with two sample axes (or an unbatched vector)")
    return [ctx.matmul(a, b)]  # type: ignore[arg-type]  # data @ data: constant @ constant is folded before readers


@reads_onnx("BatchNormalization")
def _read_onnx_batchnorm(ctx: OnnxReading, node: OnnxNode, attrs: dict) -> list[Value]:
    if attrs.get("training_mode", 0):
        raise ctx.unsupported("training_mode=1; export the model in eval mode")
    if len(node.output) > 1 and any(node.output[1:]):
        raise ctx.unsupported("running-statistics outputs (training mode) are not supported")
    x = ctx.tensor(node.input[0])
    gamma = ctx.weight(node.input[1], "scale")
    beta = ctx.weight(node.input[2], "bias")
    mean = ctx.weight(node.input[3], "mean")
    var = ctx.weight(node.input[4], "var")
    return [ctx.emit(BatchNorm(mean, var, gamma, beta, float(attrs.get("epsilon", as_float32(1e-5))), len(x.shape)), [x], "batchnorm")]


@reads_aten("aten.addmm.default")
def _read_aten_addmm(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    bias, x, w_t = a[:3]
    if kw.get("beta", 1) != 1 or kw.get("alpha", 1) != 1:
        raise ctx.unsupported("addmm with alpha/beta other than 1")
    wt = aten_weight(ctx, w_t)
    return ctx.emit(Dense(wt.T.contiguous(), aten_weight(ctx, bias).reshape(-1).expand(wt.shape[1]).clone()), [aten_tensor(ctx, x)], "dense")


@reads_aten("aten.mm.default")
def _read_aten_mm(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    x, w_t = a[:2]
    return ctx.emit(Dense(aten_weight(ctx, w_t).T.contiguous()), [aten_tensor(ctx, x)], "dense")


@reads_aten("aten.linear.default")
def _read_aten_linear(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    x, w = a[:2]
    b = a[2] if len(a) > 2 else None
    return ctx.emit(Dense(aten_weight(ctx, w), aten_weight(ctx, b) if b is not None else None), [aten_tensor(ctx, x)], "dense")


@reads_aten("aten._native_batch_norm_legit_no_training.default", "aten.native_batch_norm.default", "aten._native_batch_norm_legit.default")
def _read_aten_batchnorm(ctx: AtenReading, a: list, kw: dict) -> tuple:
    if str(ctx.node.target) != "aten._native_batch_norm_legit_no_training.default" and len(a) > 5 and bool(a[5]):
        raise ctx.unsupported("batch-norm in training mode; call model.eval() before exporting")
    x, w, b, mean, var = a[:5]
    eps = float(a[-1])
    x = aten_tensor(ctx, x)
    m, v = aten_weight(ctx, mean), aten_weight(ctx, var)
    gamma = aten_weight(ctx, w) if w is not None else torch.ones_like(m)
    beta = aten_weight(ctx, b) if b is not None else torch.zeros_like(m)
    out = ctx.emit(BatchNorm(m, v, gamma, beta, eps, len(x.shape)), [x], "batchnorm")
    return (out, None, None)


@reads_aten("aten.neg.default")
def _read_aten_neg(ctx: AtenReading, a: list, kw: dict) -> Tensor:
    return ctx.emit(ElementwiseAffine(-1.0, 0.0), [aten_tensor(ctx, a[0])], "neg")
