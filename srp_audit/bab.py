"""Complete verification by branch and bound on top of the sound bounds.

- ReLU splitting (`relu_bab`): a domain fixes some unstable ReLUs to be active (z ≥ 0) or inactive (z ≤ 0).
  Its bound is CROWN with those neurons' pre-activation intervals cut to [0, u] or [l, 0]; every relaxation
  then holds on the part of the input box where the pattern holds, so a positive bound proves the property on
  that part (and an empty interval proves it vacuously). The domains cover the box, so proving all proves it.
- Input splitting (`input_bab`): for low-dimensional inputs, halve the box along its widest side.
Both batch many domains through one bound computation and stop at a deadline. A domain whose every ReLU is
fixed is linear: its minimiser over the box is checked as a counterexample.
ReLU splitting starts from alpha-CROWN's intermediate bounds at the root (fully connected layers); each domain
keeps its optimised slopes and multipliers, which warm-start its children's beta-CROWN; the next split is chosen
by `branching.filtered_choice`, whose children bounds are sound, so children they prove are never queued.
On a float64 network the slopes and multipliers are searched on a float32 copy (cheaper steps); every bound is
a float64 pass with the rounding allowances, of the best parameters found.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field

import torch

from .bounds.alpha import optimise_intermediate, optimise_slopes
from .bounds.crown import Context, Widen, intermediate_bounds, relu_inputs, spec_backward
from .branching import branch_scores, filtered_choice, split_context
from .ir.graph import Graph
from .spec import InputBox, LinearSpec


@dataclass
class BabProof:
    """A domain branch and bound proved, as a certificate needs it: its splits in the order made, as
    (pre-activation node, flat neuron, sign), and the parameters its bound used — α per ReLU node and β per split
    pre-activation, each (S, *shape) for the searched group's S rows (none: CROWN's slopes, no β); `empty` when its
    splits contradict the root bounds."""

    path: tuple[tuple[str, int, int], ...]
    alpha: dict[str, torch.Tensor] = field(default_factory=dict)
    beta: dict[str, torch.Tensor] = field(default_factory=dict)
    empty: bool = False


@dataclass
class BabTrace:
    """What `relu_bab` records for a certificate: the root's bounds (`root`), the slopes its optimised intermediate
    bounds were derived with (`islopes`, as `optimise_intermediate`'s record) and, per spec group (its index in
    spec.groups), the domains that together prove it."""

    root: Context | None = None
    islopes: dict = field(default_factory=dict)
    proofs: dict[int, list[BabProof]] = field(default_factory=dict)


@dataclass
class BabResult:
    status: str  # 'unsat' (proved), 'sat' (counterexample), 'unknown' (stuck), 'timeout' (deadline or domain budget)
    domains: int
    counterexample: torch.Tensor | None = None
    lower: float = -math.inf  # when 'unsat': the least bound of a proved domain's proving row (> 0), a floor of the property's value


ROOT_ALPHA_ITERS = 100  # mnist_fc 256x4, prop_14 at 0.05: root margin −6.43 (CROWN) → −1.78, for 4.5 s once


def root_context(graph: Graph, box: InputBox, deadline: float | None = None, search: Graph | None = None,
                 widen: Widen | None = None, record: dict | None = None) -> Context:
    """CROWN intermediate bounds of the whole box, tightened by alpha-CROWN on fully connected layers, computed once
    per branch and bound: they stay valid on every sub-domain, where the split constraints only cut them further.
    `widen` and `record`: a certificate's hooks (`intermediate_bounds`, `optimise_intermediate`)."""
    with torch.no_grad():
        ctx = intermediate_bounds(graph, box, True, widen=widen)
    return optimise_intermediate(ctx, box, ROOT_ALPHA_ITERS, 0.5, deadline, search=search, widen=widen, record=record,
                                 pools=False)  # the checker re-derives these bounds with CROWN's max-pool rule


def _bound_domains(graph: Graph, box: InputBox, spec: LinearSpec, splits: dict[str, torch.Tensor],
                   deadline: float | None = None, root: Context | None = None, state: dict | None = None,
                   search: Graph | None = None, optimised: list | None = None):
    """Bounds of the spec rows for D domains (the box repeated, split constraints applied to the root's
    intermediate bounds): CROWN, then beta-CROWN on the domains it leaves open (their mask is appended to
    `optimised`, if given; `state` then holds their parameters).
    Returns (lower (D, S), context, empty (D,) — infeasible domains, the spec repeated D times)."""
    root = root if root is not None else root_context(graph, box)
    d = next(iter(splits.values())).shape[0] if splits else 1
    boxes = InputBox(box.lower.expand((d,) + box.lower.shape[1:]), box.upper.expand((d,) + box.upper.shape[1:]), box.nonneg)
    ctx, empty = split_context(root, splits, d)
    spec_d = spec.repeated(d, copy=True)
    ctx.record = {}
    with torch.no_grad():
        lb = spec_backward(ctx, spec_d, boxes)
    open_ = ~(spec_d.proved(lb) | empty)
    if open_.any() and splits:
        # beta-CROWN on the domains still open: optimise slopes and the split constraints' multipliers
        # (max-pools keep CROWN's lower line: the proofs go into certificates, whose checker uses that rule)
        better = optimise_slopes(ctx, spec_d, boxes, lb, beta_iters(graph), 0.1, splits, deadline, state, search, pools=False)
        lb = torch.where(open_.unsqueeze(1), better, lb)
        if optimised is not None:
            optimised.append(open_)
    return lb, ctx, empty, spec_d


BETA_ITERS = 20  # fully connected (mnist_fc 256x4 prop_10 at 0.05: 12 steps unfinished after 90 s, 30 steps 72.6 s)
BETA_ITERS_CONV = 3  # with convolutional ReLU layers (oval21 cifar_base img3568 / cifar_deep img4168: 20 steps
# 64.0 / 57.0 s, 10 steps 44.1 / 38.5 s, 5 steps 34.5 / 30.5 s, 3 steps 29.7 / 28.4 s, 1 step 35.3 / 45.0 s)


def beta_iters(graph: Graph) -> int:
    """beta-CROWN steps per batch of domains: a step through convolutional layers costs several times one through
    dense layers, and on those networks more domains with fewer steps each prove sooner (measured, above)."""
    return BETA_ITERS if all(len(graph.shapes[p]) == 1 for _, p in relu_inputs(graph)) else BETA_ITERS_CONV


def relu_bab(graph: Graph, box: InputBox, spec: LinearSpec, deadline: float, batch: int = 256,
             check=None, widen: Widen | None = None, trace: BabTrace | None = None, max_domains: int | None = None) -> BabResult:
    """ReLU-splitting branch and bound for one box (box.n == 1). `check(x)`, if given, confirms a candidate
    counterexample (returns True when it is one). The property holds when every disjunct (group of rows) is
    refuted, so each group still open under the root's CROWN bound gets its own search, hardest first: a
    domain then carries only that group's rows, and its splits serve that group alone. `trace`, when given, records
    the proof for a certificate (its root bounds then widened by `widen` as they are computed). `max_domains`: a
    budget of domains bounded over all groups (reaching it ends the search as 'timeout', like the deadline)."""
    search = graph.copy(dtype=torch.float32) if graph.dtype == torch.float64 else None
    root = root_context(graph, box, deadline, search, widen, None if trace is None else trace.islopes)
    with torch.no_grad():
        lb = spec_backward(root, spec, box)[0]
    if trace is not None:
        trace.root = root
        trace.proofs = {g: [BabProof(())] for g, rows in enumerate(spec.groups) if bool((lb[rows] > 0).any())}
    open_groups = [(g, rows) for g, rows in enumerate(spec.groups) if not bool((lb[rows] > 0).any())]
    open_groups.sort(key=lambda gr: float(lb[gr[1]].max()) if gr[1] else -float("inf"))
    closed = [float(lb[rows].max()) for rows in spec.groups if rows and bool((lb[rows] > 0).any())]
    lowest = min(closed, default=math.inf)
    total = 0
    for g, rows in open_groups:
        if not rows:  # a disjunct without constraints holds everywhere: nothing to refute
            return BabResult("unknown", total)
        strict = None if spec.strict is None else spec.strict[rows]
        sub = LinearSpec(spec.C[:, rows], spec.d[:, rows], [list(range(len(rows)))], None, strict)
        proofs: list[BabProof] | None = None if trace is None else trace.proofs.setdefault(g, [])
        budget = None if max_domains is None else max_domains - total
        res = _relu_bab_group(graph, box, sub, deadline, batch, check, root, search, proofs, budget)
        total += res.domains
        if res.status != "unsat":
            return BabResult(res.status, total, res.counterexample)
        lowest = min(lowest, res.lower)
    return BabResult("unsat", total, lower=lowest)


def _relu_bab_group(graph: Graph, box: InputBox, spec: LinearSpec, deadline: float, batch: int, check,
                    root: Context, search: Graph | None = None, proofs: list[BabProof] | None = None,
                    max_domains: int | None = None) -> BabResult:
    """The branch and bound of `relu_bab` for one spec (typically one disjunct), from the root's bounds; every
    domain it proves is appended to `proofs`, if given. Its `lower` is the least worst-row bound of a domain proved
    by a bound (one proved empty has none; one proved by the all-fixed optimisation counts as the smallest positive
    float)."""
    pres = [p for _, p in relu_inputs(graph)]
    shapes = {p: graph.shapes[p] for p in pres}
    counter = itertools.count()
    unsplit = {p: torch.zeros((1,) + shapes[p], dtype=torch.int8, device=box.lower.device) for p in pres}
    queue: list = [(-float("inf"), next(counter), unsplit, {}, ())]  # (priority, tie, splits, warm start, path)
    domains, lowest = 0, math.inf
    while queue:
        if time.perf_counter() > deadline or (max_domains is not None and domains >= max_domains):
            return BabResult("timeout", domains)
        picked = [heapq.heappop(queue) for _ in range(min(batch, len(queue)))]
        splits = {p: torch.cat([dom[p] for _, _, dom, _, _ in picked]) for p in pres}
        state = _stack_states([st for _, _, _, st, _ in picked])
        optimised: list[torch.Tensor] = []
        lb, ctx, empty, spec_d = _bound_domains(graph, box, spec, splits, deadline, root, state, search, optimised)
        states = _unstack_states(state, len(picked))
        domains += len(picked)
        proved = spec_d.proved(lb) | empty
        if proofs is not None:
            _record(proofs, [d[4] for d in picked], proved, empty, optimised[0] if optimised else None, state)
        lowest = _least_proved(lowest, worst := spec_d.worst_bound(lb), proved, empty)
        scores = branch_scores(ctx, graph)
        to_split = []
        for i in (~proved).nonzero().flatten().tolist():
            if not pres or not any(bool((scores[p][i] > 0).any()) for p in pres):  # every ReLU is fixed
                status, x = _fixed_domain(box, spec, picked[i], root, deadline, proofs, ctx, spec_d, i, check)
                if status != "unsat":
                    return BabResult(status, domains, x)
                lowest = min(lowest, SMALLEST_POSITIVE)  # proved (> 0 as a float), its value not kept
                continue
            to_split.append(i)
        if not to_split:
            continue
        idx = torch.tensor(to_split, device=box.lower.device)
        choice = filtered_choice(root, box, spec.repeated(len(to_split)), {p: splits[p][idx] for p in pres},
                                 {k: v[idx] for k, v in state.items()}, {p: scores[p][idx] for p in pres}, CANDIDATES,
                                 keep_parameters=proofs is not None)
        s = choice.child_lower.shape[-1]
        kids = spec.repeated(2 * len(to_split))
        child_lb = choice.child_lower.reshape(-1, s)
        child_done = (kids.proved(child_lb) | choice.child_empty.reshape(-1)).view(-1, 2).tolist()
        child_worst = kids.worst_bound(child_lb).view(-1, 2).tolist()
        sizes = [scores[p].shape[1] for p in pres]
        for j, i in enumerate(to_split):
            p, k = _locate(int(choice.neuron[j]), pres, sizes)
            for c, sign in enumerate((1, -1)):
                path = picked[i][4] + ((p, k, sign),)
                if child_done[j][c]:  # proved by the branching pass's sound bound
                    domains += 1
                    lowest = min(lowest, math.inf if bool(choice.child_empty[j, c]) else child_worst[j][c])  # empty: no bound
                    if proofs is not None:
                        empty_c = bool(choice.child_empty[j, c])
                        proofs.append(BabProof(path, {} if empty_c else {a: v[j, c] for a, v in choice.alpha.items()},
                                               {} if empty_c else {b: v[j, c] for b, v in choice.beta.items()}, empty_c))
                    continue
                child = {q: picked[i][2][q].clone() for q in pres}
                child[p].view(-1)[k] = sign
                heapq.heappush(queue, (max(float(worst[i]), child_worst[j][c]), next(counter), child, states[i], path))
    return BabResult("unsat", domains, lower=lowest)


def _least_proved(lowest: float, worst: torch.Tensor, proved: torch.Tensor, empty: torch.Tensor) -> float:
    """`lowest` lowered to the least worst-row bound of a batch's domains proved by their bound (empty ones: none)."""
    by_bound = proved & ~empty
    return min(lowest, float(worst[by_bound].min())) if bool(by_bound.any()) else lowest


SMALLEST_POSITIVE = 5e-324  # a proved bound is a float > 0, so at least this
CANDIDATES = 1  # neurons per domain whose children filtered branching bounds (3 or 6 were no better: docs/methods.md)


def _locate(k: int, pres: list[str], sizes: list[int]) -> tuple[str, int]:
    """The pre-activation node and flat index of neuron k of the pre-activations laid end to end."""
    for p, n in zip(pres, sizes):
        if k < n:
            return p, k
        k -= n
    raise IndexError(k)


def _stack_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The warm-start parameters of a batch of domains (`optimise_slopes`' state): one tensor per key, NaN rows
    for domains without that key."""
    out = {}
    for k in {k for st in states for k in st}:
        like = next(st[k] for st in states if k in st)
        out[k] = torch.cat([st[k] if k in st else torch.full_like(like, math.nan) for st in states])
    return out


def _unstack_states(state: dict[str, torch.Tensor], d: int) -> list[dict[str, torch.Tensor]]:
    """Per domain, its rows of the optimised parameters, in float16 to keep a long queue small (any α ∈ [0, 1],
    β ≥ 0 is sound: they only warm-start the children; Adam's steps of 0.1 keep β far below float16's range)."""
    parts = {k: v.detach().to(torch.float16).split(1) for k, v in state.items()}
    return [{k: parts[k][i] for k in parts} for i in range(d)]


def _record(proofs: list[BabProof], paths: list[tuple], proved: torch.Tensor, empty: torch.Tensor,
            optimised: torch.Tensor | None, state: dict[str, torch.Tensor]) -> None:
    """Append the proved domains of a batch to `proofs`: empty ones, those CROWN's slopes proved (no parameters),
    and those beta-CROWN proved, with the parameters `state` holds for them."""
    for i in proved.nonzero().flatten().tolist():
        if bool(empty[i]) or optimised is None or not bool(optimised[i]):
            proofs.append(BabProof(paths[i], empty=bool(empty[i])))
            continue
        proofs.append(BabProof(paths[i], {k[6:]: v[i] for k, v in state.items() if k.startswith("alpha:")},
                               {k[5:]: v[i] for k, v in state.items() if k.startswith("beta:")}))


def _fixed_domain(box: InputBox, spec: LinearSpec, picked: tuple, root: Context, deadline: float,
                  proofs: list[BabProof] | None, ctx: Context, spec_d: LinearSpec, i: int, check) -> tuple[str, torch.Tensor | None]:
    """Domain i of a batch (`picked`: its queue entry; `ctx`, `spec_d`: the batch's bound), whose every ReLU is fixed:
    the network is affine on it, and beta-CROWN's optimum is the exact minimum there. Optimise longer (a proof is
    appended to `proofs`, if given), else try the minimiser as a counterexample. ('unsat', None) when proved,
    ('sat', the counterexample) when `check` confirms one, else ('unknown', None)."""
    fixed: dict[str, torch.Tensor] = {}
    if _prove_fixed(box, spec, picked[2], root, deadline, state=fixed):
        if proofs is not None:
            _record(proofs, [picked[4]], torch.tensor([True]), torch.tensor([False]), torch.tensor([True]), fixed)
        return "unsat", None
    if check is not None:
        x = _linear_minimiser(ctx, spec_d, box, i, check)
        if x is not None:
            return "sat", x
    return "unknown", None


def _prove_fixed(box: InputBox, spec: LinearSpec, splits: dict[str, torch.Tensor], root: Context,
                 deadline: float, iters: int = 300, state: dict | None = None) -> bool:
    """A long beta-CROWN optimisation of one domain whose unstable ReLUs are all fixed (`state` receives its
    parameters)."""
    ctx, empty = split_context(root, splits, 1)
    if bool(empty.all()):
        return True
    with torch.no_grad():
        lb = spec_backward(ctx, spec, box)
    proved_by_crown = bool(spec.proved(lb).all())
    lb = optimise_slopes(ctx, spec, box, lb, iters, 0.05, splits, deadline, state, pools=False)  # as above
    if proved_by_crown and state is not None:
        state.clear()  # CROWN's slopes proved it: record no parameters
    return bool(spec.proved(lb).all())


def _linear_minimiser(ctx: Context, spec: LinearSpec, box: InputBox, i: int, check) -> torch.Tensor | None:
    """With every ReLU fixed the network is affine on the domain; evaluate the box corners that minimise each
    spec row's final coefficients and return the first one `check` confirms (None: none)."""
    assert ctx.record is not None  # recorded by `_bound_domains`
    A = ctx.record.get("__input__")
    if A is None:
        return None
    lo, hi = box.lower[0], box.upper[0]
    for s in range(A.shape[1]):
        x = torch.where(A[i, s] >= 0, lo, hi).unsqueeze(0)
        if check(x):
            return x
    return None


def input_bab(graph: Graph, box: InputBox, spec: LinearSpec, deadline: float, batch: int = 64,
              method: str = "crown", check=None, max_domains: int = 2_000_000) -> BabResult:
    """Input-splitting branch and bound: bound D sub-boxes at once with CROWN (or IBP), halve the unproved
    ones along their widest side. Centres of unproved boxes are checked as counterexamples."""
    from .bounds import METHODS

    queue = [(box.lower, box.upper)]
    domains = 0
    while queue:
        if time.perf_counter() > deadline:
            return BabResult("timeout", domains)
        if domains > max_domains:
            return BabResult("unknown", domains)
        chunk, queue = queue[:batch], queue[batch:]
        lo = torch.cat([c[0] for c in chunk])
        hi = torch.cat([c[1] for c in chunk])
        d = lo.shape[0]
        spec_d = spec.repeated(d)
        with torch.no_grad():
            lb = METHODS[method](graph, InputBox(lo, hi), spec_d).lower
        domains += d
        open_ = (~spec_d.proved(lb)).nonzero().flatten()
        if check is not None and open_.numel():
            centres = (lo[open_] + hi[open_]) / 2
            for j in range(centres.shape[0]):
                if check(centres[j : j + 1]):
                    return BabResult("sat", domains, centres[j : j + 1])
        for j in open_.tolist():
            width = (hi[j] - lo[j]).reshape(-1)
            k = int(width.argmax())
            if float(width[k]) <= 0:
                return BabResult("unknown", domains)
            mid = (lo[j].reshape(-1)[k] + hi[j].reshape(-1)[k]) / 2
            left_hi, right_lo = hi[j].clone(), lo[j].clone()
            left_hi.view(-1)[k] = mid
            right_lo.view(-1)[k] = mid
            queue.append((lo[j : j + 1], left_hi.unsqueeze(0)))
            queue.append((right_lo.unsqueeze(0), hi[j : j + 1]))
    return BabResult("unsat", domains)
