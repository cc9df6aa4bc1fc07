"""Product: the elementwise product of two input-dependent tensors (attention scores, gates, x·y terms).

IBP: the product interval's ends are among the four corner products, each rounded outward. CROWN: McCormick's
planes over the box [l_x, u_x] × [l_y, u_y] — below, x·y ≥ l_y·x + l_x·y − l_x·l_y and ≥ u_y·x + u_x·y − u_x·u_y;
above, x·y ≤ u_y·x + l_x·y − l_x·u_y and ≤ l_y·x + u_x·y − u_x·l_y — one of each chosen per neuron (the pair that
is exact at the box's lower corner or its upper one, by which is nearer the midpoint's product). Each plane is
valid in exact arithmetic; the constant of the lower (upper) plane is rounded down (up) by its own allowance.
"""

from __future__ import annotations

import math

import torch

from ..ir.node import Node, Shape
from ..kernel.backward import Context, split_signs
from ..kernel.interval import Interval, outward
from ..kernel.patches import weighted_sum
from ..kernel.rounding import dot_gamma, tiny, unit_roundoff


def mccormick(lx: torch.Tensor, ux: torch.Tensor, ly: torch.Tensor, uy: torch.Tensor):
    """(lower (a, b, c), upper (a, b, c)): a·x + b·y + c below (above) x·y on the box, constants rounded outward."""
    use_low = (lx + ux) * (ly + uy) <= 0  # pick the planes exact at the corner nearer the centre's product sign
    la, lb = torch.where(use_low, ly, uy), torch.where(use_low, lx, ux)
    lc = -(la * lb)
    ua, ub = torch.where(use_low, uy, ly), torch.where(use_low, lx, ux)
    uc = -(ua * ub)
    u = unit_roundoff(lx.dtype)
    t = tiny(lx.dtype)
    return (la, lb, lc - 4 * u * lc.abs() - t), (ua, ub, uc + 4 * u * uc.abs() + t)


class Product(Node):
    """z = x ⊙ y for two tensors of the same shape."""

    arity = 2
    kind = "activation"
    nonlinear = True
    elementwise = True

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * y

    def out_shape(self, a: Shape, b: Shape) -> Shape:
        if tuple(a) != tuple(b):
            raise ValueError(f"Product needs equal shapes, got {a} and {b}")
        return a

    def ibp(self, x: Interval, y: Interval) -> Interval:
        """The hull of the four corner products, rounded outward. A corner 0·(±∞) — an end 0 against an unbounded
        end — counts as 0: every point of that edge has a finite partner, so its products are 0 there, and the
        unbounded side of the edge is another corner's (the product has one sign along it)."""
        lx, ux = x.bounds()
        ly, uy = y.bounds()
        corners = torch.stack([lx * ly, lx * uy, ux * ly, ux * uy])
        if bool(torch.isnan(corners.detach().sum())):
            zero_inf = torch.stack([(a == 0) | (b == 0) for a, b in ((lx, ly), (lx, uy), (ux, ly), (ux, uy))])
            corners = torch.where(zero_inf & torch.isnan(corners), torch.zeros_like(corners), corners)
        return outward(corners.amin(0), corners.amax(0))

    def crown_backward(self, A: torch.Tensor, ctx: Context, name: str):
        xn, yn = ctx.graph.inputs_of[name]
        la, lb, lc, ua, ub, uc = ctx.relaxation(name, (xn, yn), lambda *b: sum(mccormick(*b), ()))
        pos, neg = split_signs(A)
        A_x = pos * la.unsqueeze(1) + neg * ua.unsqueeze(1)
        A_y = pos * lb.unsqueeze(1) + neg * ub.unsqueeze(1)
        return [A_x, A_y], weighted_sum(pos, lc) + weighted_sum(neg, uc)

    def crown_rounding(self, ctx: Context, name: str) -> torch.Tensor:
        """Coefficients are scaled by up to max|y| (into x) and max|x| (into y); the constant is a product."""
        xn, yn = ctx.graph.inputs_of[name]
        mx, my = ctx.mag(xn), ctx.mag(yn)
        g = dot_gamma(math.prod(ctx.shape(name)), mx.dtype)
        return (ctx.err[xn] * my + ctx.err[yn] * mx) * (1 + 8 * unit_roundoff(mx.dtype)) + g * (4 * mx * my + tiny(mx.dtype))

    def singleprop(self, centres, radii, variant):
        (cx, cy), (vx, vy) = centres, radii
        return cx.abs() * vy + cy.abs() * vx + vx * vy

    def to_onnx(self, b, name, ins, out) -> None:
        b.add("Mul", ins, out)
