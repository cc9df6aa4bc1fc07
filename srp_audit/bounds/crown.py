"""CROWN: backward linear bound propagation over the IR, the driver. Each op's rules are its `crown_backward`
and `crown_rounding` methods (`srp_audit.ops`).

To lower-bound A·y for a node y (A: (N, R, *shape(y))), walk the graph backwards: an affine op maps A to A·W
exactly; an activation is replaced by one of its relaxation lines per coefficient (the lower line where the
coefficient is positive, the upper line where it is negative — `relax.py`); structural ops move A. At the
input, A·x is minimised over the box. Intermediate (pre-activation) bounds come from IBP (`crown-ibp`) or from
CROWN itself, layer by layer, on the neurons IBP leaves unstable (`crown`; in a layer `ALL_ABOVE` unstable, its live
stable ones too). alpha-CROWN optimises the ReLU lower slopes by projected Adam and keeps the best bound seen.

Representation: A is a dense tensor over the node's shape, or — for neurons of convolutional layers —
`Patches` (a window per neuron around its receptive field), so convolutions are transposed window by window
and never unrolled into matrices. Jobs are split into chunks of samples and rows that fit a memory budget.

Rounding: each op has a `crown_rounding` rule giving, forward and once per batch, a bound err_y on the
floating-point error a backward pass can accumulate per unit of |A| at y down to the next checkpoints (dense
layers and convolutions). A pass subtracts ⟨|A|, err⟩ at its start and at each checkpoint it crosses, on the
coefficients it computed there, plus the rounding of merged paths (`slack.py`), so the bounds hold exactly.
"""

# long-module: one job, the CROWN driver: backward walks, their starting rows, chunks by memory, layer-by-layer refinement

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import overload

import torch

from ..errors import BoundMethodError
from ..ir.graph import Graph
from ..ir.relevance import relevant_entries
from ..ir.walk import INPUT, walk_backward, walk_forward
from ..kernel.backward import Bounds, Coeffs, Context, dense, negative_part, zero_const
from ..kernel.interval import Interval
from ..kernel.patches import Grid, Patches, flat_sum, weighted_sum
from ..kernel.rounding import dot_gamma
from ..spec import InputBox, LinearSpec
from .ball import BallParts
from .context import graph_of
from .ibp import ball_rule_applies, ibp_step, input_balls, spec_interval
from .progress import WorkMeter
from .slack import addition_charge, charge, compounding, final, merge_charge, relaxation_underflow, rounding_slack, underflow_charge
from .targets import refine_targets

Widen = Callable[[str, torch.Tensor, torch.Tensor], "tuple[torch.Tensor, torch.Tensor] | None"]

ALL_ABOVE = 0.9  # share of a ReLU layer's neurons unstable from which CROWN refines its live stable ones too
DEFAULT_BUDGET = 1 << 21  # elements of A per chunk (16 MiB in float64: stays below glibc's mmap threshold)

__all__ = ["Bounds", "Context", "CrownResult", "backward", "crown_bounds", "intermediate_bounds", "refine", "spec_backward", "spec_form", "SpecForm",
           "unstable_count", "unstable_neurons", "relevant_unstable", "check_supported", "relu_inputs"]


# ============================================================================================ backward pass


def _merge(cur: Coeffs, A: Coeffs) -> Coeffs:
    """Coefficients from two paths into one value: patches stay patches when they share a grid."""
    if isinstance(cur, Patches) and isinstance(A, Patches):
        merged = cur.add(A)
        if merged is not None:
            return merged
    return dense(cur) + dense(A)


def _concretise(A: Coeffs, box: InputBox, ctx: Context | None = None, tight: bool = False,
                offset: torch.Tensor | None = None) -> torch.Tensor:
    """min over the box of A·x = A·lo + Σ_{A<0} A·(hi − lo); with an L2/L1 ball, the larger of that and a bound
    over the ball ∩ box (`BallParts`; both hold on the intersection). `ctx`'s memo keeps patches' input maps;
    `tight` (the spec's few rows): rows whose bound plus `offset` (the rest of the row's bound) is still ≤ 0 get the
    exact dual of the ball ∩ box (`_dual_l1`, `_dual_l2`), unless a gradient flows (alpha-CROWN's steps)."""
    lo, width = box.lower, box.upper - box.lower
    if isinstance(A, Patches):
        def maps() -> torch.Tensor:
            return torch.cat([lo, width], dim=1)

        cols = ctx.unfolded("input", A, (box.lower, box.upper), maps) if ctx is not None else A.unfold(maps())
        lo_w, width_w = A.pick_parts(cols, 2)
        value = flat_sum(A.data * lo_w + negative_part(A.data) * width_w)
    else:
        value = weighted_sum(A, lo) + weighted_sum(negative_part(A), width)
    if box.ball is None:
        return value
    parts = BallParts.of(A, box, box.ball, ctx)
    value = torch.fmax(value, parts.dual_norm_bound())
    if tight and not isinstance(A, Patches) and not (torch.is_grad_enabled() and parts.a.requires_grad):
        value = parts.tighten(value, offset)  # not inside alpha-CROWN's steps: it doubled the MLP's L2 certify time
    return value


class _Probe:
    """Records the largest coefficient tensor per objective row a pass creates (to size chunks)."""

    def __init__(self) -> None:
        self.width = 0

    def see(self, A: Coeffs) -> None:
        t = A.data if isinstance(A, Patches) else A
        self.width = max(self.width, t[0, 0].numel() if t.shape[0] and t.shape[1] else 0)


def _worked_form(A: Coeffs, node, probe: _Probe | None) -> Coeffs:
    """A in the form a step works on: dense where the op keeps no windows or they outgrew their map. The probe sees
    the windows as the step before made them (an outgrown one too, or chunks overrun the budget) and the result."""
    if probe:
        probe.see(A)
    if isinstance(A, Patches) and (not node.crown_patches or A.outgrown):
        A = A.dense()
        if probe:
            probe.see(A)
    return A


def _step_charge(ctx: Context, name: str, node, A: Coeffs, factor: float) -> torch.Tensor:
    """What a pass's step at `name` charges before it runs: a checkpoint's err on A, a relaxation's underflow."""
    amount = charge(ctx, A, "charge " + name, ctx.charge[name], factor) if name in ctx.charge else zero_const(A)
    return amount + relaxation_underflow(ctx, A, name) if node.nonlinear else amount


def backward_form(ctx: Context, pending: dict[str, Coeffs], const: torch.Tensor,
                  probe: _Probe | None = None) -> tuple[Coeffs | None, torch.Tensor]:
    """Σ_v A_v·v + const (the coefficients in `pending`, consumed) bounded below by A_in·x + c over the input:
    (A_in, c), A_in None when the objective does not depend on the input. It holds for every input inside the
    box the context's intermediate bounds were computed for; c has the rounding charged on the way (at
    checkpoints, merges and injected terms, `slack.py`) taken off — not the starting point's, which the caller
    subtracts."""
    graph = graph_of(ctx)
    total = {"const": const, "injected": torch.zeros_like(const)}
    factor = compounding(graph, const.dtype) if not ctx.steer_only else 0.0

    def charged(amount: torch.Tensor) -> None:
        total["injected"] = total["injected"] + amount

    def merge(name: str, cur: Coeffs, A: Coeffs) -> Coeffs:
        merged = _merge(cur, A)
        if factor:
            charged(merge_charge(ctx, merged, name, factor))
        return merged

    def step(name: str, node, A: Coeffs | None) -> list[Coeffs | None] | None:
        if name in ctx.beta:  # Lagrangian terms of split constraints (beta-CROWN), with their rounding slack
            extra = ctx.beta[name]
            charged(rounding_slack(ctx, extra, name))
            A = extra if A is None else merge(name, A, extra)
        if A is None:
            return None
        A = _worked_form(A, node, probe)
        if factor:
            charged(_step_charge(ctx, name, node, A, factor))
        outs, c = node.crown_backward(A, ctx, name)
        total["const"] = total["const"] + c
        if factor:
            charged(addition_charge(total["const"]) + underflow_charge(ctx, name, list(graph.inputs_of[name])))
        return outs

    A_in = walk_backward(graph, pending, step, merge)
    if A_in is not None:
        if factor:  # concretising over the input: its products and sums, as a step would
            charged(underflow_charge(ctx, INPUT, [INPUT]) * 2)
        if probe:
            probe.see(A_in)
        if ctx.record is not None and not isinstance(A_in, Patches):
            ctx.record["__input__"] = A_in.detach()
    # the charges are non-negative terms, their sum rounds down by at most (count)·u of it: compounding covers that
    return A_in, total["const"] - total["injected"] * (factor or 1.0)


def backward(ctx: Context, pending: dict[str, Coeffs], box: InputBox, const: torch.Tensor,
             probe: _Probe | None = None) -> torch.Tensor:
    """Lower bounds of Σ_v A_v·v + const for the coefficients in `pending` (consumed); the caller subtracts
    the rounding slack of its starting point (coefficients injected on the way, beta-CROWN's, carry their own)."""
    A_in, c = backward_form(ctx, pending, const, probe)
    return c if A_in is None else _concretise(A_in, box, ctx) + c


# ============================================================================================ intermediate bounds


def selected_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the flat indices where `mask` (N, *shape) holds, padded to the largest count: (idx, valid)."""
    flat = mask.reshape(mask.shape[0], -1)
    counts = flat.sum(dim=1)
    k = int(counts.max()) if flat.numel() else 0
    order = torch.argsort(flat.to(torch.int8), dim=1, descending=True, stable=True)[:, :k]
    valid = torch.arange(k, device=mask.device).unsqueeze(0) < counts.unsqueeze(1)
    return order, valid


@overload
def _signed(A: torch.Tensor, signs: tuple[int, ...]) -> torch.Tensor: ...
@overload
def _signed(A: Patches, signs: tuple[int, ...]) -> Patches: ...
def _signed(A: Coeffs, signs: tuple[int, ...]) -> Coeffs:
    """Rows [s·A for s in signs] (negation is exact)."""
    if isinstance(A, Patches):
        return A.signed(signs)
    return A if signs == (1,) else torch.cat([A * s for s in signs], dim=1)


def _start(ctx: Context, target: str, idx: torch.Tensor, signs: tuple[int, ...] = (1, -1)
           ) -> tuple[dict[str, Coeffs], torch.Tensor, torch.Tensor]:
    """Coefficients for the objectives s·x_i at `target` (rows :k for the first sign, k:2k for the second),
    their constant and rounding slack. Ops that can say so start from their own rows on their input
    (`crown_rows`: rows of W, or a conv kernel as 1×1 patches); other spatial targets start from unit patches,
    the rest from unit rows."""
    graph = graph_of(ctx)
    shape = graph.shapes[target]
    n, k = idx.shape
    dt = ctx.bounds[INPUT][0].dtype
    rows = graph.node(target).crown_rows(idx, ctx, target, signs)
    # rows on the input have passed the target's own step: its whole err (a checkpoint's, else what it carries)
    err = ctx.charge.get(target, ctx.err[target]) if rows is not None else ctx.err[target]
    slack = torch.cat([err.reshape(n, -1).gather(1, idx)] * len(signs), dim=1) * compounding(graph, dt)
    if rows is not None:
        return {ctx.x(target): rows[0]}, rows[1], slack
    zero = torch.zeros(n, len(signs) * k, dtype=dt, device=idx.device)
    if len(shape) == 3:
        c, h, w = shape
        ch, at = idx // (h * w), idx % (h * w)
        data = torch.zeros(n, k, c, 1, 1, dtype=dt, device=idx.device)
        data.scatter_(2, ch.view(n, k, 1, 1, 1), 1.0)
        return {target: Patches(data, at, Grid(1, 1, 0, 0, h, w), shape, clean=True).signed(signs)}, zero, slack
    A = torch.zeros(n, k, math.prod(shape), dtype=dt, device=idx.device)
    A.scatter_(2, idx.unsqueeze(2), 1.0)
    return {target: _signed(A, signs).reshape((n, len(signs) * k) + tuple(shape))}, zero, slack


_WIDTHS: "weakref.WeakKeyDictionary[Graph, dict[str, int]]" = weakref.WeakKeyDictionary()


def _row_width(ctx: Context, target: str, idx_all: torch.Tensor, box: InputBox) -> int:
    """The largest coefficient tensor one row of `target` creates on its way to the input, measured by a probe
    pass of one row of one sample. It depends only on the graph's structure (dense shapes, window sizes), so it
    is kept per graph and target: a graph bounded batch after batch probes each target once."""
    known = _WIDTHS.setdefault(graph_of(ctx), {})
    if target not in known:
        probe = _Probe()
        sub = ctx.subset(0, 1)
        pending, const, _ = _start(sub, target, idx_all[:1, :1])
        backward(sub, pending, box.select(slice(0, 1)), const, probe)
        known[target] = max(1, probe.width)
    return known[target]


def refine(ctx: Context, target: str, mask: torch.Tensor, box: InputBox, budget: int = DEFAULT_BUDGET,
           dead_skips_lower: bool = False) -> None:
    """Tighten ctx.bounds[target] by CROWN on the neurons where `mask` holds, in memory-bounded chunks. With
    `dead_skips_lower` (every consumer is 0 below 0: ReLU) upper bounds go first, and neurons they show dead
    (upper ≤ 0) get no lower-bound pass: their lower bound changes no relaxation and no later interval."""
    idx_all, valid_all = selected_rows(mask)
    if idx_all.shape[1] == 0:
        return
    n = mask.shape[0]
    width = _row_width(ctx, target, idx_all, box)
    n_chunk = max(1, min(n, budget // (2 * width)))
    lo, hi = (t.clone() for t in ctx.bounds[target])
    lo_flat, hi_flat = lo.reshape(n, -1), hi.reshape(n, -1)
    for s0 in range(0, n, n_chunk):
        s1 = min(n, s0 + n_chunk)
        sub, bounds = ctx.subset(s0, s1), (lo_flat[s0:s1], hi_flat[s0:s1])
        sub.memo = {}  # the row chunks below share this sample range's unfolded maps
        args = (sub, target, box.select(slice(s0, s1)), bounds, budget, width)
        _refine_rows(*args, idx_all[s0:s1], valid_all[s0:s1], (-1,) if dead_skips_lower else (1, -1))
        if dead_skips_lower:  # lower bounds of the neurons still live
            _refine_rows(*args, *selected_rows(mask.reshape(n, -1)[s0:s1] & (bounds[1] > 0)), (1,))
    ctx.bounds[target] = (lo, hi)


def _refine_rows(sub: Context, target: str, box: InputBox, bounds: tuple[torch.Tensor, torch.Tensor], budget: int,
                 width: int, idx_all: torch.Tensor, valid_all: torch.Tensor, signs: tuple[int, ...]) -> None:
    """One CROWN pass per chunk of rows for the objectives s·x_i (s in `signs`: +1 lower, −1 upper bounds),
    tightening `bounds` (flat views, in place) where the rows are valid."""
    n = idx_all.shape[0]
    k_chunk = max(1, budget // (len(signs) * width * n))
    for k0 in range(0, idx_all.shape[1], k_chunk):
        idx, valid = idx_all[:, k0 : k0 + k_chunk], valid_all[:, k0 : k0 + k_chunk]
        if not valid.any():
            continue
        pending, const, slack = _start(sub, target, idx, signs)
        lb = final(backward(sub, pending, box, const), slack)
        k = idx.shape[1]
        for j, s in enumerate(signs):
            # fmax/fmin: an IBP bound that is NaN (∞ − ∞ past an overflow) gives way to CROWN's, never NaN
            flat, new = (bounds[0], lb[:, j * k : (j + 1) * k]) if s == 1 else (bounds[1], -lb[:, j * k : (j + 1) * k])
            # (gather keeps its input for the gradient, which scatter_ then changes: under autograd it reads a copy)
            cur = (flat.clone() if flat.requires_grad and torch.is_grad_enabled() else flat).gather(1, idx)
            flat.scatter_(1, idx, torch.where(valid, torch.fmax(cur, new) if s == 1 else torch.fmin(cur, new), cur))


# ============================================================================================ methods


@dataclass
class CrownResult:
    lower: torch.Tensor  # (N, S)
    unstable: torch.Tensor  # (N,) unstable ReLU neurons under the final intermediate bounds
    ctx: Context


def check_supported(graph: Graph) -> None:
    """Raise `BoundMethodError` naming the first node CROWN (or IBP, which it starts from) cannot bound."""
    graph.check_supported("crown")
    graph.check_supported("ibp")


def relu_inputs(graph: Graph) -> list[tuple[str, str]]:
    """(node, its input) for every op kinked at zero (the ReLU family): what alpha-CROWN and BaB work on."""
    return [(n, graph.inputs_of[n][0]) for n in graph.order if graph.node(n).kinked_at_zero]


def _unstable(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    return (lo < 0) & (hi > 0)


def set_rounding(ctx: Context, name: str) -> None:
    """Node `name`'s err (its rule on its inputs' bounds and err): carried in ctx.err, or for a checkpoint kept in
    ctx.charge for the passes to charge on their coefficients, with ctx.err zero (`slack.py`). Constants, also
    when training through the bounds."""
    node = graph_of(ctx).node(name)
    with torch.no_grad():
        err = node.crown_rounding(ctx, name)
    if node.crown_checkpoint:
        ctx.charge[name], ctx.err[name] = err, torch.zeros_like(err)
    else:
        ctx.err[name] = err


def intermediate_bounds(graph: Graph, box: InputBox, refine_with_crown: bool, budget: int = DEFAULT_BUDGET,
                        prior: Bounds | None = None, widen: Widen | None = None) -> Context:
    """(lower, upper) and rounding magnitudes of every node: IBP, intersected with `prior` (bounds known to hold on
    this box), with the inputs of nonlinear ops tightened by CROWN when asked (only the neurons still unstable, for
    ops kinked at zero, and only those the output depends on: `ir.relevance`). Over an L2/L1 ball, IBP uses the ball
    wherever `input_balls` carries it to a first layer, and first layers are CROWN-refined over the ball ∩ box
    (`refined` below says when). `widen(name, lo, hi)`, when given, may replace a node's final bounds by wider ones
    before later nodes use them (a certificate's claims, which a checker re-derives from the earlier claims)."""
    check_supported(graph)
    ctx = Context(graph, {INPUT: (box.lower, box.upper)})
    mag_in = torch.maximum(box.lower.abs(), box.upper.abs()).detach()
    ctx.err[INPUT] = dot_gamma(math.prod(graph.input_shape), mag_in.dtype) * mag_in
    targets = refine_targets(graph)
    balls = input_balls(graph, box)
    relevant = relevant_entries(graph) if refine_with_crown or balls else {}
    relaxed = {i for n in graph.order if graph.node(n).nonlinear for i in graph.inputs_of[n]}
    meter = WorkMeter(graph, [t for t in graph.order if t in targets and not graph.first_layer(t)] if refine_with_crown else [])

    def refined(name: str) -> bool:
        """CROWN refines the targets past the first layer; over an L2/L1 ball also the first layer: one exact linear
        pass per neuron, concretised on the ball ∩ box (tighter than IBP's dual-norm rule, which ignores the box:
        mnist_mlp L2 eps 0.3, CROWN proved 51 → 54 of 64). CROWN-IBP (cheap by design: it cost 5× there for 4 more)
        refines a first layer only where IBP could not bound it over the ball itself — its ball rule out of reach
        (a normalisation before it) or only over a widened ball (entries copied before it)."""
        if name not in targets:
            return False
        if not graph.first_layer(name):
            return refine_with_crown
        if not balls:
            return False
        if refine_with_crown:
            return True
        return not ball_rule_applies(graph, balls, name) or balls[graph.inputs_of[name][0]].widened

    def step(name: str, node, args: list[Interval]) -> Interval:
        iv = ibp_step(graph, balls, name, node, args)
        lo, hi = iv.bounds()
        if name in relaxed and bool(torch.isnan(lo.sum() + hi.sum())):  # ∞ − ∞ past an overflow: no information
            # (a NaN would read as a dead ReLU); infinite ends stay infinite — nan_to_num's defaults would make them the
            # largest floats, bounds inside an exact value past them (a box's −∞ end becoming −max in float32)
            lo, hi = lo.nan_to_num(nan=-math.inf, neginf=-math.inf), hi.nan_to_num(nan=math.inf, posinf=math.inf)
            iv = Interval(lo, hi, nonneg=iv.nonneg)
        if prior is not None and name in prior:
            lo, hi = torch.fmax(lo, prior[name][0]), torch.fmin(hi, prior[name][1])
            iv = Interval(lo, hi, nonneg=iv.nonneg)
        ctx.bounds[name] = (lo, hi)
        if refined(name):
            set_rounding(ctx, name)  # the pass below starts here
            lo, hi = ctx.bounds[name]
            consumers = [graph.node(c) for c in graph.consumers(name)]
            # CROWN-IBP's first layer over a ball: every neuron, stable ones too — IBP's bounding-box bounds of an
            # active ReLU pass on to the next layer's IBP (CNN fixture, L1 eps 0.1: 0 → 6 of 32 proved). (CROWN
            # refines the next layers itself: there the unstable ones, and the live rest of a mostly unstable layer.)
            kinked = all(c.kinked_at_zero for c in consumers) and (refine_with_crown or not graph.first_layer(name))
            zero_below = all(c.zero_below_zero for c in consumers)
            mask = _unstable(lo, hi) if kinked else torch.ones_like(lo, dtype=torch.bool)
            if kinked and refine_with_crown:  # mostly unstable: refining the live rest costs little and tightens
                # the next layer's IBP (an active neuron's interval passes on; ResNet-18 w16: a third fewer unstable)
                frac = mask.reshape(mask.shape[0], -1).float().mean(dim=1)
                live = (hi > 0) if zero_below else torch.ones_like(mask)
                mask = torch.where((frac >= ALL_ABOVE).view((-1,) + (1,) * (mask.dim() - 1)), live, mask)
            refine(ctx, name, mask & relevant[name].to(mask.device), box, budget, zero_below)
            meter.finished(name)
            iv = Interval(*ctx.bounds[name], nonneg=iv.nonneg)
        if widen is not None:
            wider = widen(name, *ctx.bounds[name])
            if wider is not None:
                ctx.bounds[name] = wider
                iv = Interval(*wider, nonneg=iv.nonneg)
        set_rounding(ctx, name)
        return iv

    walk_forward(graph, Interval(box.lower, box.upper, nonneg=box.nonneg), step)
    return ctx


def unstable_neurons(graph: Graph, bounds: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Per sample, the neurons of ops kinked at zero whose input interval (from `bounds`) straddles 0."""
    total = None
    for _, pre in relu_inputs(graph):
        lo, hi = bounds[pre]
        count = _unstable(lo, hi).reshape(lo.shape[0], -1).sum(dim=1)
        total = count if total is None else total + count
    if total is None:
        lo = next(iter(bounds.values()))[0]
        total = torch.zeros(lo.shape[0], dtype=torch.long, device=lo.device)
    return total


def relevant_unstable(graph: Graph, bounds: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """As `unstable_neurons`, counting only the neurons the outputs depend on (`ir.relevance`: a fixed batch's other
    slots, a transformer's unused tokens read as stable)."""
    relevant = relevant_entries(graph)
    masked = dict(bounds)
    for _, pre in relu_inputs(graph):
        lo, hi = bounds[pre]
        masked[pre] = (torch.where(relevant[pre].to(lo.device), lo, torch.zeros_like(lo)), hi)
    return unstable_neurons(graph, masked)


def unstable_count(ctx: Context) -> torch.Tensor:
    """Unstable neurons per sample under the context's intermediate bounds."""
    return unstable_neurons(graph_of(ctx), ctx.bounds)


@dataclass
class SpecForm:
    """CROWN's lower bound of the spec rows as a linear function of the input, A·x + c − slack: a sound bound over
    any box inside the one its context's intermediate bounds hold for (their relaxations and rounding magnitudes
    cover every smaller box), so a smaller radius is bounded by concretising again, without a backward pass."""

    A: Coeffs | None
    const: torch.Tensor
    slack: torch.Tensor

    def lower(self, box: InputBox) -> torch.Tensor:
        value = self.const if self.A is None else _concretise(self.A, box, tight=True, offset=self.const - self.slack) + self.const
        return final(value, self.slack)


def spec_form(ctx: Context, spec: LinearSpec) -> SpecForm:
    """The spec rows' linear lower bound over the input, from one backward pass from the output."""
    graph = graph_of(ctx)
    n, s = spec.C.shape[:2]
    dt = ctx.bounds[INPUT][0].dtype
    A = spec.C.to(dt).reshape((n, s) + graph.output_shape)
    slack = rounding_slack(ctx, A, graph.output)
    A_in, const = backward_form(ctx, {graph.output: A}, spec.d.to(dt).clone())
    return SpecForm(A_in, const, slack)


SPEC_BUDGET = 1 << 26  # elements of one chunk of spec rows at the graph's widest value (512 MiB in float64)


def spec_backward(ctx: Context, spec: LinearSpec, box: InputBox) -> torch.Tensor:
    """Lower bounds of the spec rows by backward passes from the output, in chunks of rows within SPEC_BUDGET
    (an ImageNet VGG-16's 999 rows at once would hold 26 GB at its first layer; each row is bounded alone)."""
    n, s = spec.C.shape[:2]
    widest = max(math.prod(shape) for shape in ctx.graph.shapes.values())
    rows = max(1, SPEC_BUDGET // max(1, n * widest))
    if rows >= s:
        return spec_form(ctx, spec).lower(box)
    alpha, beta = ctx.alpha, ctx.beta  # per spec row (N, S, …): each chunk takes its own rows
    out = []
    try:
        for r in range(0, s, rows):
            ctx.alpha, ctx.beta = ({k: v[:, r : r + rows] for k, v in d.items()} for d in (alpha, beta))
            part = LinearSpec(spec.C[:, r : r + rows], spec.d[:, r : r + rows], [[i] for i in range(min(rows, s - r))])
            out.append(spec_form(ctx, part).lower(box))
    finally:
        ctx.alpha, ctx.beta = alpha, beta
    return torch.cat(out, dim=1)


def crown_bounds(graph: Graph, box: InputBox, spec: LinearSpec, intermediate: str = "crown",
                 budget: int = DEFAULT_BUDGET, prior: Bounds | None = None, widen: Widen | None = None) -> CrownResult:
    """CROWN (intermediate='crown') or CROWN-IBP ('ibp'), never looser than IBP; `prior` and `widen` as in
    `intermediate_bounds`."""
    if intermediate not in ("crown", "ibp"):
        raise BoundMethodError(f"unknown intermediate bounds {intermediate!r}")
    ctx = intermediate_bounds(graph, box, intermediate == "crown", budget, prior, widen)
    lb = torch.fmax(spec_backward(ctx, spec, box), spec_interval(graph, spec, ctx.bounds).lower)  # fmax: IBP's may be NaN
    return CrownResult(lb, unstable_count(ctx), ctx)
