"""SingleProp (Boopathy et al., AAAI 2021): one extra forward pass of a radius V beside the ordinary forward
pass, used as a *training signal only*. It is NOT a sound bound: the centre passed through each ReLU is the
ordinary ReLU(z), not the midpoint of a relaxation, so nothing may certify with it (`bounds.METHODS` does not
list it and `certify` never imports this module).

Rules (`SINGLEPROP`, one per op), for a pre-activation with centre z and radius v (l = z − v, u = z + v):
- affine ops:             V' = |W|·V (|scale|·V, average pooling of V)
- ReLU, active (l ≥ 0):   V' = v;   dead (u ≤ 0): V' = 0;   unstable, by variant:
    fastlin   3v/4 + z/2 − z²/(4v)   (half the width of the Fast-Lin relaxation's output range)
    zero      (z + v)/2              (half the width of the zero-lower-slope relaxation)
    adaptive  v where z ≥ 0, (z + v)/2 where z < 0
- sigmoid, tanh:          V' = ½(f(z + v) − f(z − v))   (half the width of the monotone image of [l, u])
- max-pool:               V' = ½(maxpool(c + V) − maxpool(c − V));   residual add: V_a + V_b
- reshape/transpose/pad:  the same op on V (padding with 0)
Worst-case logits z_adv = y ⊙ (c − V) + (1 − y) ⊙ (c + V); loss K·CE(c, y) + (1 − K)·CE(z_adv, y).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..ir import nodes as ir
from ..ir.graph import INPUT, Graph
from .rules import RuleTable

SINGLEPROP = RuleTable("singleprop")
VARIANTS = ("fastlin", "zero", "adaptive")


@SINGLEPROP.register(ir.Dense)
def _dense(node: ir.Dense, c: torch.Tensor, v: torch.Tensor, variant: str) -> torch.Tensor:
    return F.linear(v, node.weight.abs())


@SINGLEPROP.register(ir.Conv2d)
def _conv(node: ir.Conv2d, c: torch.Tensor, v: torch.Tensor, variant: str) -> torch.Tensor:
    return node.linear(v, node.weight.abs())


@SINGLEPROP.register(ir.ElementwiseAffine)
def _affine(node: ir.ElementwiseAffine, c: torch.Tensor, v: torch.Tensor, variant: str) -> torch.Tensor:
    return v * node.scale.abs()


@SINGLEPROP.register(ir.AvgPool2d)
def _avgpool(node: ir.AvgPool2d, c: torch.Tensor, v: torch.Tensor, variant: str) -> torch.Tensor:
    return node(v)


def relu_radius(z: torch.Tensor, v: torch.Tensor, variant: str) -> torch.Tensor:
    """The ReLU rule of the table above (z: pre-activation centre, v ≥ 0: its radius), written with ReLUs only,
    so that the same expression gives v on active and 0 on dead neurons and differentiates cheaply. With
    U = relu(z + v) = relu(u) and L = relu(v − z) = relu(−l):
    zero     ½(U − relu(z − v))                 (= (z + v)/2 when unstable: half the width of [relu(l), relu(u)])
    fastlin  U·(U + L − l) / (2(U + L))          (= 3v/4 + z/2 − z²/(4v) when unstable)
    adaptive zero + ½·relu(v − z)·[z ≥ 0]        (= v when z ≥ 0, (z + v)/2 when unstable with z < 0)
    """
    upper = torch.relu(z + v)
    if variant == "fastlin":
        neg_l = torch.relu(v - z)
        total = upper + neg_l
        return upper * (total - (z - v)) / (2 * total + 1e-30)
    zero = 0.5 * (upper - torch.relu(z - v))
    if variant == "zero":
        return zero
    if variant == "adaptive":
        return zero + 0.5 * torch.relu(v - z) * (z >= 0).to(z.dtype)
    raise ValueError(f"unknown SingleProp variant {variant!r}; choose one of {', '.join(VARIANTS)}")


@SINGLEPROP.register(ir.Relu)
def _relu(node: ir.Relu, c: torch.Tensor, v: torch.Tensor, variant: str) -> torch.Tensor:
    return relu_radius(c, v, variant)


def _half_image(fn: Callable[[torch.Tensor], torch.Tensor]):
    def rule(node: ir.Node, c: torch.Tensor, v: torch.Tensor, variant: str) -> torch.Tensor:
        return 0.5 * (fn(c + v) - fn(c - v))

    return rule


SINGLEPROP.register(ir.Sigmoid)(_half_image(torch.sigmoid))
SINGLEPROP.register(ir.Tanh)(_half_image(torch.tanh))


@SINGLEPROP.register(ir.MaxPool2d)
def _maxpool(node: ir.MaxPool2d, c: torch.Tensor, v: torch.Tensor, variant: str) -> torch.Tensor:
    return 0.5 * (node(c + v) - node(c - v))


@SINGLEPROP.register(ir.Reshape, ir.Transpose, ir.Identity)
def _shape_only(node: ir.Node, c: torch.Tensor, v: torch.Tensor, variant: str) -> torch.Tensor:
    return node(v)


@SINGLEPROP.register(ir.Pad)
def _pad(node: ir.Pad, c: torch.Tensor, v: torch.Tensor, variant: str) -> torch.Tensor:
    return node(v, value=0.0)


def singleprop(graph: Graph, x: torch.Tensor, eps: torch.Tensor | float, variant: str = "fastlin") -> tuple[torch.Tensor, torch.Tensor]:
    """(centre logits, radius of the logits), both (N, K): the ordinary forward pass and, beside it, V.

    The centre *is* the forward pass (computed once and reused as the clean logits); eps is in the model's
    input units, a scalar or one per sample.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown SingleProp variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    # A scalar eps makes the radius sample-independent up to the first activation: propagate it with batch 1
    # and let the first rule that reads the centre broadcast it.
    v0 = e.reshape((-1,) + (1,) * (x.dim() - 1)).expand_as(x) if e.dim() else torch.full((1,) + x.shape[1:], float(e), dtype=x.dtype, device=x.device)
    centres: dict[str, torch.Tensor] = {INPUT: x}
    radii: dict[str, torch.Tensor] = {INPUT: v0}
    last = graph._last_use
    for step, (name, node, inputs) in enumerate(graph.items()):
        cs = [centres[i] for i in inputs]
        centres[name] = node(*cs)
        if isinstance(node, ir.Add):
            radii[name] = radii[inputs[0]] + radii[inputs[1]]
        else:
            radii[name] = SINGLEPROP.lookup(type(node), graph.describe_node(name))(node, cs[0], radii[inputs[0]], variant)
        for i in inputs:
            if last.get(i) == step and i != graph.output:
                centres.pop(i, None)
                radii.pop(i, None)
    n = x.shape[0]
    centre = centres[graph.output].reshape(n, -1)
    return centre, radii[graph.output].reshape(radii[graph.output].shape[0], -1).expand_as(centre)


def worst_case_logits(centre: torch.Tensor, radius: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_adv = y ⊙ (c − V) + (1 − y) ⊙ (c + V) for one-hot y."""
    onehot = F.one_hot(y, centre.shape[1]).to(centre.dtype)
    return centre + radius * (1 - 2 * onehot)


def singleprop_loss(centre: torch.Tensor, radius: torch.Tensor, y: torch.Tensor, k: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(K·CE(c, y) + (1 − K)·CE(z_adv, y), z_adv)."""
    z_adv = worst_case_logits(centre, radius, y)
    return k * F.cross_entropy(centre, y) + (1 - k) * F.cross_entropy(z_adv, y), z_adv
