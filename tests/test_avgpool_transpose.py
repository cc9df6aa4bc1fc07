"""Average pooling's backward map (CROWN's Aᵀ product) is torch's pooling-backward kernel, not autograd: it must be
the exact transpose of the forward map for every padding form (torch's own, explicit and asymmetric, ceil mode,
padded cells counted or not)."""

from __future__ import annotations

import itertools

import torch

from srp_audit.ops.pool import AvgPool2d


def _vjp(op: AvgPool2d, g: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    x = torch.zeros((g.shape[0],) + shape, dtype=g.dtype, requires_grad=True)
    (gx,) = torch.autograd.grad(op(x), x, g)
    return gx


def test_transpose_is_the_vector_jacobian_product() -> None:
    gen = torch.Generator().manual_seed(0)
    checked = 0
    pads = [(0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 1, 0), (1, 0, 2, 1), (2, 2, 2, 2)]
    for k, stride, pad, include, ceil, h in itertools.product([1, 2, 3, 4], [1, 2, 3], pads, [True, False], [False, True], [5, 8]):
        if not include and (pad[0] != pad[2] or pad[1] != pad[3]):
            continue  # refused at construction
        op = AvgPool2d(k, stride, pad, include, ceil)
        shape = (2, h, h + 1)
        out = op.out_shape(shape)
        if min(out) <= 0:
            continue
        g = torch.randn((3,) + tuple(out), dtype=torch.float64, generator=gen)
        torch.testing.assert_close(op.transpose(g, shape), _vjp(op, g, shape), rtol=0, atol=0)
        checked += 1
    assert checked > 300
