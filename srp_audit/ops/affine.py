"""Affine ops: Dense (Gemm/MatMul), ElementwiseAffine (scale and shift by constants) and BatchNorm.

Affine maps are exact in CROWN (A ↦ A·W) and cost two products in IBP (centre and radius); every rule carries
the rounding allowance of its dot products.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ir.node import Node, Shape
from .backward import Context, per_sample
from .interval import Interval, abs_weight, affine_weights, dual_norm_ibp, generic_linear, inflation, signed_rows
from .patches import Patches, flat_sum
from .rounding import dot_gamma, unit_roundoff


class Dense(Node):
    """y = x Wᵀ + b on the last axis (torch's Linear, ONNX Gemm/MatMul+Add)."""

    kind = "affine"

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

    def __init__(self, scale: torch.Tensor | float = 1.0, shift: torch.Tensor | float = 0.0) -> None:
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).detach().clone())
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32).detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def out_shape(self, shape: Shape) -> Shape:
        for name, t in (("scale", self.scale), ("shift", self.shift)):
            if torch.broadcast_shapes(tuple(t.shape), shape) != tuple(shape):
                raise ValueError(f"{name} of shape {tuple(t.shape)} would enlarge a sample of shape {shape}")
        return shape

    def describe(self) -> str:
        return f"scale{tuple(self.scale.shape)} shift{tuple(self.shift.shape)}"

    def ibp(self, x: Interval) -> Interval:
        g = dot_gamma(2, x.dtype)
        scale_abs = self.scale.abs() * inflation(g, x.dtype)
        return generic_linear(x, 2, self, lambda v: v * scale_abs, self.shift.abs())

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
        return ctx.err[x] * s + 2 * unit_roundoff(dt) * ctx.mag(x) * s + g * self.shift.abs()

    def singleprop(self, centres, radii, variant):
        return radii[0] * self.scale.abs()

    def to_onnx(self, b, name, ins, out) -> None:
        scaled = b.add("Mul", [ins[0], b.const(f"{name}.scale", self.scale)], f"{name}.scaled")
        b.add("Add", [scaled, b.const(f"{name}.shift", self.shift)], out)


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
        inv = gamma.double() / torch.sqrt(var.double() + eps)
        shift = beta.double() - mean.double() * inv
        view = (-1,) + (1,) * (sample_rank - 1)
        super().__init__(inv.float().reshape(view), shift.float().reshape(view))
        self.eps = float(eps)

    def describe(self) -> str:
        return f"{self.scale.numel()} channels"
