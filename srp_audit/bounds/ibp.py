"""IBP: interval bound propagation — the driver. Each op's rule is its `ibp` method (`srp_audit.ops`).

Intervals (`srp_audit.kernel.interval.Interval`) flow forward through the one walker; margins of the spec are
bounded directly, with C folded into a final Dense layer (the one op this driver knows by name: folding the
spec table into its weights is what makes margin bounds as tight as the last layer allows).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..ir.graph import Graph
from ..ir.node import Node
from ..ir.walk import INPUT, walk_forward
from ..kernel.interval import Interval, cached_on, inflation
from ..kernel.rounding import dot_gamma, tiny, unit_roundoff
from ..ops.affine import Dense
from ..spec import InputBox, LinearSpec, LpBall

# ------------------------------------------------------------------------------------------ the spec layer


class _FoldedTable:
    """A shared spec table folded into the last Dense: rows C_u·W, constants, and whether every row has at most
    two ±1 entries (then fl(C W) is one correctly rounded subtraction, covered by the allowance g)."""

    def __init__(self, C: torch.Tensor, d: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> None:
        k = C.shape[-1]
        table = C.reshape(-1, k)
        dd = d.reshape(-1)
        self.w = table if weight is None else table @ weight  # (U·S, in)
        self.w_abs = self.w.abs()
        self.const = dd if bias is None else table @ bias + dd  # weight and bias are None together
        self.const_mag = dd.abs() if bias is None else table.abs() @ bias.abs() + dd.abs()
        self.simple = bool(((C == 0) | (C.abs() == 1)).all()) and int((C != 0).sum(-1).max()) <= 2


def _folded_table(sh, node: Dense | None) -> _FoldedTable:
    """Cached on the node per (table, weights) while nothing changes and no gradient is taken."""
    if node is None:
        return _FoldedTable(sh.C, sh.d, None, None)
    w, b = node.weight, node.bias
    return cached_on(node, "_ibp_spec_fold", (w, b), (), lambda: _FoldedTable(sh.C, sh.d, w.detach(), b.detach()),
                     lambda: _FoldedTable(sh.C, sh.d, w, b), same=(sh.C, sh.d))


def _spec_affine(spec: LinearSpec, x: Interval, node: Dense | None) -> Interval:
    """Interval of the spec rows C·(W x + b) + d (or C·x + d without a last Dense): (N, S).

    With shared rows (margin specs) C is folded into W once per table entry and the right rows are picked
    per sample; otherwise per sample. Rounding: Ŵ = fl(C W) differs from C W by at most γ_K |C||W|, which
    adds γ_K |C| |W| |x| to the radius, on top of the usual allowance for Ŵ c + C b + d.
    """
    dt = x.dtype
    k = spec.C.shape[-1]
    weight, bias = (node.weight, node.bias) if node is not None else (None, None)
    n_in = weight.shape[1] if weight is not None else k
    n = n_in + k + 2
    g = dot_gamma(n, dt)
    sh = spec.shared
    m, v, halved = x.affine_inputs(g)
    if halved:
        m, v = m * 0.5, v * 0.5
    simple = False
    if sh is not None:
        t = _folded_table(sh, node)
        simple = t.simple
        s_ = sh.C.shape[1]
        rows = sh.index.to(m.device).unsqueeze(1) * s_ + torch.arange(s_, device=m.device)  # (N, S)
        c = F.linear(m, t.w).gather(1, rows) + t.const[rows]
        r = F.linear(v, t.w_abs).gather(1, rows)
        const_mag = t.const_mag[rows]
    else:
        w_eff = spec.C if weight is None else torch.matmul(spec.C, weight)  # (N, S, in)
        const = spec.d if bias is None else torch.einsum("nsk,k->ns", spec.C, bias) + spec.d  # None with weight
        const_mag = spec.d.abs() if bias is None else torch.einsum("nsk,k->ns", spec.C.abs(), bias.abs()) + spec.d.abs()
        c = torch.bmm(w_eff, m.unsqueeze(2)).squeeze(2) + const
        r = torch.bmm(w_eff.abs(), v.unsqueeze(2)).squeeze(2)
    r = r * inflation(g, dt) + 4 * g * const_mag + tiny(dt) * n
    if weight is not None and not simple:
        mag = F.linear(m.abs() + v, weight.abs())  # ≥ |W| |x|, (N, K)
        r = r + 2 * dot_gamma(k, dt) * torch.einsum("nsk,nk->ns", spec.C.abs(), mag)
    if weight is not None:  # where denormals are flushed, an entry of fl(C W) that underflows reads 0, even a
        # subtraction's: up to (k + 1)·tiny per entry, which |x| (up to 1e308) multiplies — no relative allowance covers it
        r = r + (k + 1) * tiny(dt) * (m.abs() + v).sum(dim=1, keepdim=True)
    return Interval(c=c, r=r * (1 + 4 * unit_roundoff(dt)))


def input_balls(graph: Graph, box: InputBox) -> dict[str, LpBall]:
    """Where the input set has an L2/L1 ball: the ball of every value that is the model input moved, dropped,
    padded or copied by `Node.ball_image` ops (the input's own ball included) — a reshape or a transpose
    between the input and the first dense or convolutional layer keeps the ball for that layer's `ibp_ball`
    rule. Empty for a plain box."""
    if box.ball is None:
        return {}
    balls = {INPUT: box.ball}
    for name, node, ins in graph.items():
        if len(ins) == 1 and ins[0] in balls:
            image = node.ball_image(balls[ins[0]])
            if image is not None:
                balls[name] = image
    return balls


def ibp_step(graph: Graph, balls: dict[str, LpBall], name: str, node, args: list[Interval]) -> Interval:
    """`node.ibp`, intersected — for an op whose input lies in an L2/L1 ball (`input_balls`) — with its ball rule.
    (Whether the ball rule applied: `ball_rule_applies`.)"""
    iv = node.ibp(*args)
    b = node.ibp_ball(balls[graph.inputs_of[name][0]]) if ball_rule_applies(graph, balls, name) else None
    if b is not None:
        (lo, hi), (blo, bhi) = iv.bounds(), b.bounds()
        iv = Interval(torch.fmax(lo, blo), torch.fmin(hi, bhi), nonneg=iv.nonneg)
    return iv


def ball_rule_applies(graph: Graph, balls: dict[str, LpBall], name: str) -> bool:
    """Whether IBP bounds node `name` over the L2/L1 ball itself: one input, lying in a ball, and an `ibp_ball` rule."""
    ins = graph.inputs_of[name]
    return len(ins) == 1 and ins[0] in balls and type(graph.node(name)).ibp_ball is not Node.ibp_ball


@dataclass
class IntervalResult:
    """Bounds on the spec rows (or on the flat output when no spec) plus any kept node intervals."""

    out: Interval
    nodes: dict[str, Interval]

    @property
    def lower(self) -> torch.Tensor:
        return self.out.lower

    @property
    def upper(self) -> torch.Tensor:
        return self.out.upper


def _last_dense(graph: Graph, spec: LinearSpec | None) -> Dense | None:
    """The graph's last op if the spec table folds into it (a Dense with a flat output), else None."""
    if spec is None:
        return None
    last = graph.node(graph.output)
    return last if isinstance(last, Dense) and len(graph.output_shape) == 1 else None


def spec_interval(graph: Graph, spec: LinearSpec, bounds: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Interval:
    """IBP's bounds on the spec rows from node bounds already computed (e.g. CROWN's intermediate bounds,
    which hold every node: no second forward walk)."""
    last = _last_dense(graph, spec)
    if last is not None:
        return _spec_affine(spec, Interval(*bounds[graph.inputs_of[graph.output][0]]), last)
    lo, hi = bounds[graph.output]
    return _spec_affine(spec, Interval(lo.reshape(lo.shape[0], -1), hi.reshape(hi.shape[0], -1)), None)


def interval_bounds(
    graph: Graph,
    box: InputBox,
    spec: LinearSpec | None = None,
    keep: Iterable[str] | bool = False,
) -> IntervalResult:
    """Propagate the input box through `graph`; bounds on `spec` rows when given, else on the flat output.

    `keep`: node ids whose intervals to return (True: all); others are freed as soon as they are consumed.
    """
    last = _last_dense(graph, spec)
    fold_last = last is not None

    balls = input_balls(graph, box)

    def step(name: str, node, args: list[Interval]) -> Interval:
        if last is not None and spec is not None and name == graph.output:  # spec is not None where last is not
            return _spec_affine(spec, args[0], last)  # last is `node`
        return ibp_step(graph, balls, name, node, args)

    graph.check_supported("ibp")
    wanted = [n for n in (graph.order if keep is True else keep or ()) if not (fold_last and n == graph.output)]
    kept: dict[str, Interval] = {}
    out = walk_forward(graph, Interval(box.lower, box.upper, nonneg=box.nonneg), step, keep=wanted, kept=kept)
    if not fold_last:
        y = out.map(lambda t: t.reshape(t.shape[0], -1))
        out = y if spec is None else _spec_affine(spec, y, None)
    return IntervalResult(out, kept)
