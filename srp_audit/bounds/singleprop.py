"""SingleProp (Boopathy et al., AAAI 2021): one extra forward pass of a radius V beside the ordinary forward
pass, used as a *training signal only*. It is NOT a sound bound: the centre passed through each ReLU is the
ordinary ReLU(z), not the midpoint of a relaxation, so nothing may certify with it (`bounds.METHODS` does not
list it and `certify` never imports this module).

Each op's rule is its `singleprop` method (`srp_audit.ops`); for a pre-activation with centre z and radius v
(l = z − v, u = z + v):
- affine ops:             V' = |W|·V (|scale|·V, average pooling of V)
- ReLU, active (l ≥ 0):   V' = v;   dead (u ≤ 0): V' = 0;   unstable, by variant:
    fastlin   3v/4 + z/2 − z²/(4v)   (half the width of the Fast-Lin relaxation's output range)
    zero      (z + v)/2              (half the width of the zero-lower-slope relaxation)
    adaptive  v where z ≥ 0, (z + v)/2 where z < 0
- LeakyReLU (slope a):    a·v + (1 − a)·(the ReLU rule)
- sigmoid, tanh:          V' = ½(f(z + v) − f(z − v))   (half the width of the monotone image of [l, u])
- max-pool:               V' = ½(maxpool(c + V) − maxpool(c − V));   residual add: V_a + V_b
- reshape/transpose/pad:  the same op on V (padding with 0)
Worst-case logits z_adv = y ⊙ (c − V) + (1 − y) ⊙ (c + V); loss K·CE(c, y) + (1 − K)·CE(z_adv, y).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ir.graph import Graph
from ..ir.walk import walk_forward
from ..ops.relu import SINGLEPROP_VARIANTS as VARIANTS
from ..ops.relu import relu_radius

__all__ = ["VARIANTS", "relu_radius", "singleprop", "worst_case_logits", "singleprop_loss"]


def singleprop(graph: Graph, x: torch.Tensor, eps: torch.Tensor | float, variant: str = "fastlin") -> tuple[torch.Tensor, torch.Tensor]:
    """(centre logits, radius of the logits), both (N, K): the ordinary forward pass and, beside it, V.

    The centre *is* the forward pass (computed once and reused as the clean logits); eps is in the model's
    input units, a scalar or one per sample.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown SingleProp variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    graph.check_supported("singleprop")
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    # A scalar eps makes the radius sample-independent up to the first activation: propagate it with batch 1
    # and let the first rule that reads the centre broadcast it.
    v0 = e.reshape((-1,) + (1,) * (x.dim() - 1)).expand_as(x) if e.dim() else torch.full((1,) + x.shape[1:], float(e), dtype=x.dtype, device=x.device)

    def step(name, node, args):
        centres, radii = [a[0] for a in args], [a[1] for a in args]
        return node(*centres), node.singleprop(centres, radii, variant)

    c_out, v_out = walk_forward(graph, (x, v0), step)
    n = x.shape[0]
    centre = c_out.reshape(n, -1)
    return centre, v_out.reshape(v_out.shape[0], -1).expand_as(centre)


def worst_case_logits(centre: torch.Tensor, radius: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_adv = y ⊙ (c − V) + (1 − y) ⊙ (c + V) for one-hot y."""
    onehot = F.one_hot(y, centre.shape[1]).to(centre.dtype)
    return centre + radius * (1 - 2 * onehot)


def singleprop_loss(centre: torch.Tensor, radius: torch.Tensor, y: torch.Tensor, k: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(K·CE(c, y) + (1 − K)·CE(z_adv, y), z_adv)."""
    z_adv = worst_case_logits(centre, radius, y)
    return k * F.cross_entropy(centre, y) + (1 - k) * F.cross_entropy(z_adv, y), z_adv
