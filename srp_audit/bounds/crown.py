"""CROWN: backward linear bound propagation over the IR, one rule class per op (`CROWN`).

To lower-bound A·y for a node y (A: (N, R, *shape(y))), walk the graph backwards: an affine op maps A to A·W
exactly; an activation is replaced by one of its relaxation lines per coefficient (the lower line where the
coefficient is positive, the upper line where it is negative — `relax.py`); structural ops move A. At the
input, A·x is minimised over the box. Intermediate (pre-activation) bounds come from IBP (`crown-ibp`) or from
CROWN itself, layer by layer, on the neurons IBP leaves unstable (`crown`). alpha-CROWN optimises the ReLU
lower slopes by projected Adam and keeps the best bound seen.

Representation: A is a dense tensor over the node's shape, or — for neurons of convolutional layers —
`Patches` (a window per neuron around its receptive field), so convolutions are transposed window by window
and never unrolled into matrices. Jobs are split into chunks of samples and rows that fit a memory budget.

Rounding: each rule class has a `rounding` rule that propagates, forward and once per batch, a bound err_y on
the floating-point error a backward pass can accumulate per unit of |A| at y (using |A_x| ≤ |A_y|·|W| and
slopes ≤ 1). A pass starting from A_T subtracts ⟨|A_T|, err_T⟩, so the bounds hold exactly at no per-step cost.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import BoundMethodError
from ..ir import nodes as ir
from ..ir.graph import INPUT, Graph
from ..spec import InputBox, LinearSpec
from . import relax
from .interval import IBP, Interval, interval_bounds
from .patches import Grid, Patches, conv_transpose, flat_sum, weighted_sum
from .rounding import gamma, tiny, unit_roundoff
from .rules import RuleTable

CROWN = RuleTable("crown")

NONLINEAR = (ir.Relu, ir.Sigmoid, ir.Tanh, ir.MaxPool2d)
DEFAULT_BUDGET = 1 << 21  # elements of A per chunk (16 MiB in float64: stays below glibc's mmap threshold)

Coeffs = torch.Tensor | Patches


@dataclass
class Context:
    """What the rules read: (lower, upper) and rounding magnitudes of node values, optional ReLU slopes."""

    graph: Graph
    bounds: dict[str, tuple[torch.Tensor, torch.Tensor]]
    err: dict[str, torch.Tensor] = field(default_factory=dict)
    alpha: dict[str, torch.Tensor] = field(default_factory=dict)
    beta: dict[str, torch.Tensor] = field(default_factory=dict)  # extra coefficients −β·s at split pre-activations
    record: dict[str, torch.Tensor] | None = None  # when a dict: the dense A seen at ReLUs and the input

    def mag(self, name: str) -> torch.Tensor:
        lo, hi = self.bounds[name]
        return torch.maximum(lo.abs(), hi.abs())

    def x(self, name: str) -> str:
        return self.graph.inputs_of[name][0]

    def subset(self, s0: int, s1: int) -> "Context":
        return self.select(slice(s0, s1))

    def select(self, idx: slice | torch.Tensor) -> "Context":
        """The same context for a subset of the samples."""
        cut = lambda d: {k: v[idx] for k, v in d.items()}  # noqa: E731
        return Context(self.graph, {k: (lo[idx], hi[idx]) for k, (lo, hi) in self.bounds.items()}, cut(self.err), cut(self.alpha))


def _zeros(A: Coeffs) -> torch.Tensor:
    t = A.data if isinstance(A, Patches) else A
    return torch.zeros(t.shape[:2], dtype=t.dtype, device=t.device)


def _g(n: int, dtype: torch.dtype) -> float:
    return gamma(n + 8, dtype)


def _sample(t: torch.Tensor, shape: tuple[int, ...], n: int) -> torch.Tensor:
    """A constant (no batch axis) broadcast to a per-sample map (n, *shape)."""
    return torch.broadcast_to(t, shape).unsqueeze(0).expand((n,) + tuple(shape))


# ============================================================================================ rules


@CROWN.register(ir.Dense)
class _Dense:
    patches = False

    @staticmethod
    def backward(node, A, ctx, name):
        return [A.matmul(node.weight)], flat_sum(A.matmul(node.bias).unsqueeze(-1))

    @staticmethod
    def rounding(node, ctx, name):
        x = ctx.x(name)
        g = _g(math.prod(ctx.graph.shapes[name]), ctx.mag(x).dtype)
        w = node.weight.abs()
        return F.linear(ctx.err[x], w) + g * F.linear(ctx.mag(x), w, node.bias.abs())


def _conv_transpose(node: ir.Conv2d, A: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    n, s = A.shape[:2]
    flat = A.reshape((n * s,) + tuple(A.shape[2:]))
    t, l, b, r = node.padding
    g = conv_transpose(flat, node.weight, node.stride, node.dilation, node.groups, (in_shape[1] + t + b, in_shape[2] + l + r))
    return g[:, :, t : t + in_shape[1], l : l + in_shape[2]].reshape((n, s) + tuple(in_shape))


@CROWN.register(ir.Conv2d)
class _Conv:
    patches = True

    @staticmethod
    def backward(node, A, ctx, name):
        if isinstance(A, Patches):
            A = A.masked()
            n, r, c, ph, pw = A.data.shape
            const = flat_sum(A.data * node.bias.view(1, 1, -1, 1, 1))
            data = conv_transpose(A.data.reshape(n * r, c, ph, pw), node.weight, node.stride, node.dilation, node.groups)
            grid = A.grid.through_conv(node.stride, node.padding[0], node.padding[1])
            out = Patches(data.reshape((n, r) + tuple(data.shape[1:])), A.pos, grid, ctx.graph.shapes[ctx.x(name)])
            return [out], const
        const = flat_sum(A * node.bias.view(1, 1, -1, 1, 1))
        return [_conv_transpose(node, A, ctx.graph.shapes[ctx.x(name)])], const

    @staticmethod
    def rounding(node, ctx, name):
        x = ctx.x(name)
        o, _, kh, kw = node.weight.shape
        g = _g(math.prod(ctx.graph.shapes[name]) + o * kh * kw, ctx.mag(x).dtype)
        w = node.weight.abs()
        return node.linear(ctx.err[x], w) + g * (node.linear(ctx.mag(x), w) + node.bias.abs().view(-1, 1, 1))


@CROWN.register(ir.ElementwiseAffine)
class _ElementwiseAffine:
    patches = True

    @staticmethod
    def backward(node, A, ctx, name):
        shape = ctx.graph.shapes[name]
        if isinstance(A, Patches):
            n = A.data.shape[0]
            maps = A.windows(torch.cat([_sample(node.scale, shape, n), _sample(node.shift, shape, n)], dim=1))
            scale, shift = maps.split(shape[0], dim=2)
            return [A.with_data(A.data * scale, clean=True)], flat_sum(A.data * shift)
        scale = torch.broadcast_to(node.scale, shape).unsqueeze(0).unsqueeze(0)
        shift = torch.broadcast_to(node.shift, shape).unsqueeze(0).unsqueeze(0)
        return [A * scale], flat_sum(A * shift)

    @staticmethod
    def rounding(node, ctx, name):
        x = ctx.x(name)
        g = _g(math.prod(ctx.graph.shapes[name]), ctx.mag(x).dtype)
        s = node.scale.abs()
        return ctx.err[x] * s + g * (ctx.mag(x) * s + node.shift.abs())


def _linear_transpose(fn, A: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Aᵀ-product of any linear op through its vector-Jacobian product (ops without a closed-form transpose)."""
    n, s = A.shape[:2]
    x = torch.zeros((n * s,) + tuple(in_shape), dtype=A.dtype, device=A.device, requires_grad=True)
    with torch.enable_grad():
        y = fn(x)
        (gx,) = torch.autograd.grad(y, x, A.reshape(y.shape), create_graph=A.requires_grad)
    return gx.reshape((n, s) + tuple(in_shape))


@CROWN.register(ir.AvgPool2d)
class _AvgPool:
    patches = False

    @staticmethod
    def backward(node, A, ctx, name):
        return [_linear_transpose(node, A, ctx.graph.shapes[ctx.x(name)])], _zeros(A)

    @staticmethod
    def rounding(node, ctx, name):
        x = ctx.x(name)
        g = _g(math.prod(ctx.graph.shapes[name]) + node.kernel[0] * node.kernel[1], ctx.mag(x).dtype)
        return node(ctx.err[x]) + g * node(ctx.mag(x))


@CROWN.register(ir.Reshape, ir.Identity)
class _Reshape:
    patches = False

    @staticmethod
    def backward(node, A, ctx, name):
        return [A.reshape(A.shape[:2] + ctx.graph.shapes[ctx.x(name)])], _zeros(A)

    @staticmethod
    def rounding(node, ctx, name):
        return node(ctx.err[ctx.x(name)])


@CROWN.register(ir.Transpose)
class _Transpose:
    patches = False

    @staticmethod
    def backward(node, A, ctx, name):
        return [A.permute((0, 1) + tuple(p + 2 for p in node.inverse()))], _zeros(A)

    @staticmethod
    def rounding(node, ctx, name):
        return node(ctx.err[ctx.x(name)])


@CROWN.register(ir.Pad)
class _Pad:
    patches = False

    @staticmethod
    def backward(node, A, ctx, name):
        x_shape = ctx.graph.shapes[ctx.x(name)]
        index = (slice(None), slice(None)) + tuple(slice(a, a + n) for (a, _), n in zip(node.pads, x_shape))
        inner = A[index]
        const = node.value * (flat_sum(A) - flat_sum(inner)) if node.value else _zeros(A)
        return [inner], const

    @staticmethod
    def rounding(node, ctx, name):
        g = _g(math.prod(ctx.graph.shapes[name]), ctx.mag(ctx.x(name)).dtype)
        return node(ctx.err[ctx.x(name)], value=g * abs(node.value))


@CROWN.register(ir.Add)
class _Add:
    patches = True

    @staticmethod
    def backward(node, A, ctx, name):
        return [A, A], _zeros(A)

    @staticmethod
    def rounding(node, ctx, name):
        a, b = ctx.graph.inputs_of[name]
        return ctx.err[a] + ctx.err[b]


def _split(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pos = t.clamp(min=0)
    return pos, t - pos


@CROWN.register(ir.Relu)
class _Relu:
    patches = True

    @staticmethod
    def backward(node, A, ctx, name):
        x = ctx.x(name)
        l, u = ctx.bounds[x]
        up_slope, up_icpt = relax.relu_upper(l, u)
        lam = ctx.alpha.get(name)
        if isinstance(A, Patches):
            if lam is not None:
                raise BoundMethodError("optimised slopes are only used on dense coefficients")
            lam_map = relax.relu_adaptive_lower(l, u)
            c = A.data.shape[2]
            # A_x = A·s + A⁺·(λ − s); constant Σ A⁻·t = Σ A·t − Σ A⁺·t
            diff_w, s_w, t_w = A.windows(torch.cat([lam_map - up_slope, up_slope, up_icpt], dim=1)).split(c, dim=2)
            pos = A.data.clamp(min=0)
            const = flat_sum((A.data - pos) * t_w)
            return [A.with_data(torch.addcmul(A.data * s_w, pos, diff_w), clean=True)], const
        if lam is None:
            lam = relax.relu_adaptive_lower(l, u).unsqueeze(1)
        else:
            active, dead, unstable = relax.relu_masks(l, u)
            lam = torch.where(unstable.unsqueeze(1), lam, active.unsqueeze(1).to(A.dtype))
        if ctx.record is not None:
            ctx.record[name] = A.detach()
        pos, neg = _split(A)
        return [torch.addcmul(pos * lam, neg, up_slope.unsqueeze(1))], weighted_sum(neg, up_icpt)

    @staticmethod
    def rounding(node, ctx, name):
        x = ctx.x(name)
        mag = ctx.mag(x)
        u = unit_roundoff(mag.dtype)
        return ctx.err[x] * (1 + 4 * u) + _g(math.prod(ctx.graph.shapes[name]), mag.dtype) * mag


def _smooth_rule(fn: relax._Smooth):
    class _Smooth:
        patches = True

        @staticmethod
        def backward(node, A, ctx, name):
            l, u = ctx.bounds[ctx.x(name)]
            lines = relax.smooth_lines(fn, l, u)
            if isinstance(A, Patches):
                maps = A.windows(torch.cat([lines.lower_slope, lines.lower_icpt, lines.upper_slope, lines.upper_icpt], 1))
                ls_, li, us, ui = maps.split(A.data.shape[2], dim=2)
                pos, neg = _split(A.data)
                return [A.with_data(pos * ls_ + neg * us, clean=True)], flat_sum(pos * li + neg * ui)
            pos, neg = _split(A)
            A_x = pos * lines.lower_slope.unsqueeze(1) + neg * lines.upper_slope.unsqueeze(1)
            return [A_x], weighted_sum(pos, lines.lower_icpt) + weighted_sum(neg, lines.upper_icpt)

        @staticmethod
        def rounding(node, ctx, name):
            x = ctx.x(name)
            mag = ctx.mag(x)
            u = unit_roundoff(mag.dtype)
            return ctx.err[x] * (1 + 16 * u) + _g(math.prod(ctx.graph.shapes[name]), mag.dtype) * (mag + 2)

    return _Smooth


CROWN.register(ir.Sigmoid)(_smooth_rule(relax.SIGMOID))
CROWN.register(ir.Tanh)(_smooth_rule(relax.TANH))


@CROWN.register(ir.MaxPool2d)
class _MaxPool:
    """y = max over a window. Lower line: y ≥ x_j at the window's largest lower bound j. Upper line: y ≤ x_j
    when x_j dominates the window (l_j ≥ u_i for all i ≠ j), else the constant max u."""

    patches = False

    @staticmethod
    def backward(node, A, ctx, name):
        x = ctx.x(name)
        l, u = ctx.bounds[x]
        n, s = A.shape[:2]
        c, h, w = ctx.graph.shapes[x]
        t, le, b, r = node.padding
        kh, kw = node.kernel
        out_h, out_w = ctx.graph.shapes[name][1:]
        # the windows cover (out − 1)·stride + dilation·(k − 1) + 1 cells (more than the padding in ceil mode)
        b += max(0, (out_h - 1) * node.stride[0] + node.dilation[0] * (kh - 1) + 1 - (h + t + b))
        r += max(0, (out_w - 1) * node.stride[1] + node.dilation[1] * (kw - 1) + 1 - (w + le + r))
        ph, pw = h + t + b, w + le + r
        pad = lambda v: F.pad(v, (le, r, t, b), value=-math.inf).reshape(n * c, 1, ph, pw)  # noqa: E731
        unfold = lambda v: F.unfold(v, (kh, kw), node.dilation, 0, node.stride)  # noqa: E731  (N·C, K, L)
        lw, uw = unfold(pad(l)), unfold(pad(u))
        j = lw.argmax(dim=1, keepdim=True)
        others = uw.scatter(1, j, -math.inf).amax(dim=1, keepdim=True)
        dom = (lw.gather(1, j) >= others).reshape(n, 1, c, -1)
        umax = uw.amax(dim=1).reshape(n, 1, c, -1)
        L = out_h * out_w
        pos, neg = _split(A.reshape(n, s, c, L))
        coef = pos + torch.where(dom, neg, torch.zeros_like(neg))
        const = (torch.where(dom, torch.zeros_like(neg), neg) * umax).sum(dim=(2, 3))
        K = kh * kw
        windows = torch.zeros(n, s, c, K, L, dtype=A.dtype, device=A.device)
        windows.scatter_(3, j.reshape(n, 1, c, 1, L).expand(n, s, c, 1, L), coef.unsqueeze(3))
        folded = F.fold(windows.reshape(n * s * c, K, L), (ph, pw), (kh, kw), node.dilation, 0, node.stride)
        return [folded.reshape(n, s, c, ph, pw)[:, :, :, t : t + h, le : le + w]], const

    @staticmethod
    def rounding(node, ctx, name):
        x = ctx.x(name)
        g = _g(math.prod(ctx.graph.shapes[name]) + node.kernel[0] * node.kernel[1], ctx.mag(x).dtype)
        return node(ctx.err[x]) + g * node(ctx.mag(x))


# ============================================================================================ driver


def _accumulate(pending: dict[str, Coeffs], name: str, A: Coeffs) -> None:
    cur = pending.get(name)
    if cur is None:
        pending[name] = A
        return
    if isinstance(cur, Patches) and isinstance(A, Patches):
        merged = cur.add(A)
        if merged is not None:
            pending[name] = merged
            return
    dense = lambda t: t.dense() if isinstance(t, Patches) else t  # noqa: E731
    pending[name] = dense(cur) + dense(A)


def _concretise(A: Coeffs, box: InputBox) -> torch.Tensor:
    """min over the box of A·x = A·lo + Σ_{A<0} A·(hi − lo)."""
    lo, width = box.lower, box.upper - box.lower
    if isinstance(A, Patches):
        lo_w, width_w = A.windows(torch.cat([lo, width], dim=1)).split(A.data.shape[2], dim=2)
        return flat_sum(A.data * lo_w + A.data.clamp(max=0) * width_w)
    return weighted_sum(A, lo) + weighted_sum(A.clamp(max=0), width)


class _Probe:
    """Records the largest coefficient tensor per objective row a pass creates (to size chunks)."""

    def __init__(self) -> None:
        self.width = 0

    def see(self, A: Coeffs) -> None:
        t = A.data if isinstance(A, Patches) else A
        self.width = max(self.width, t[0, 0].numel() if t.shape[0] and t.shape[1] else 0)


def backward(ctx: Context, pending: dict[str, Coeffs], box: InputBox, const: torch.Tensor,
             probe: _Probe | None = None) -> torch.Tensor:
    """Lower bounds of Σ_v A_v·v + const for the coefficients in `pending` (consumed); the caller subtracts
    the rounding slack of its starting point (coefficients injected on the way, beta-CROWN's, carry their own)."""
    graph = ctx.graph
    injected_slack = torch.zeros_like(const)
    for name in reversed(graph.order):
        A = pending.pop(name, None)
        if name in ctx.beta:  # Lagrangian terms of split constraints (beta-CROWN), with their rounding slack
            extra = ctx.beta[name]
            injected_slack = injected_slack + _rounding_slack(ctx, extra, name)
            A = extra if A is None else (A.dense() if isinstance(A, Patches) else A) + extra
        if A is None:
            continue
        node = graph.node(name)
        rule = CROWN.lookup(type(node), graph.describe_node(name))
        if isinstance(A, Patches) and not rule.patches:
            A = A.dense()
        if probe:
            probe.see(A)
        outs, c = rule.backward(node, A, ctx, name)
        const = const + c
        for inp, A_in in zip(graph.inputs_of[name], outs):
            if A_in is not None:
                _accumulate(pending, inp, A_in)
    A_in = pending.pop(INPUT, None)
    if A_in is None:  # the objective does not depend on the input
        return const - injected_slack
    if probe:
        probe.see(A_in)
    if ctx.record is not None and not isinstance(A_in, Patches):
        ctx.record["__input__"] = A_in.detach()
    return _concretise(A_in, box) + const - injected_slack


def _rounding_slack(ctx: Context, A: Coeffs, name: str) -> torch.Tensor:
    """⟨|A|, err⟩ at the starting node, inflated for the compounding of per-step relative errors."""
    depth = len(ctx.graph.order) + 2
    k = 1 + 4 * depth * gamma(8, ctx.err[name].dtype)
    absA = A.with_data(A.data.abs()) if isinstance(A, Patches) else A.abs()
    return weighted_sum(absA, ctx.err[name]) * k


def _final(value: torch.Tensor, slack: torch.Tensor) -> torch.Tensor:
    """Subtract the slack and the rounding of the last additions."""
    return value - slack - gamma(8, value.dtype) * value.abs() - tiny(value.dtype)


# ============================================================================================ intermediate bounds


def _ancestors(graph: Graph, name: str) -> set[str]:
    seen, stack = set(), [name]
    while stack:
        v = stack.pop()
        if v in seen or v == INPUT:
            continue
        seen.add(v)
        stack.extend(graph.inputs_of[v])
    return seen


def _first_layer(graph: Graph, name: str) -> bool:
    """No nonlinear op between the input and `name`: IBP is already (almost) exact there."""
    return not any(isinstance(graph.node(a), NONLINEAR) for a in _ancestors(graph, name))


def _selected_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the flat indices where `mask` (N, *shape) holds, padded to the largest count: (idx, valid)."""
    flat = mask.reshape(mask.shape[0], -1)
    counts = flat.sum(dim=1)
    k = int(counts.max()) if flat.numel() else 0
    order = torch.argsort(flat.to(torch.int8), dim=1, descending=True, stable=True)[:, :k]
    valid = torch.arange(k, device=mask.device).unsqueeze(0) < counts.unsqueeze(1)
    return order, valid


def _start(ctx: Context, target: str, idx: torch.Tensor) -> tuple[dict[str, Coeffs], torch.Tensor, torch.Tensor]:
    """Coefficients for the objectives +x_i (rows :k) and −x_i (rows k:) at `target`, their constant and
    rounding slack. Dense targets start from rows of W; spatial targets from 1×1 patches."""
    graph = ctx.graph
    node = graph.node(target)
    shape = graph.shapes[target]
    n, k = idx.shape
    dt = ctx.bounds[INPUT][0].dtype
    dev = idx.device
    err = ctx.err[target].reshape(n, -1).gather(1, idx)
    slack = torch.cat([err, err], dim=1) * (1 + 4 * (len(graph.order) + 2) * gamma(8, dt))
    if isinstance(node, ir.Dense) and len(shape) == 1:
        rows = node.weight[idx]  # ±x_i = ±(W_i·z + b_i), copied exactly
        b = node.bias[idx]
        return {ctx.x(target): torch.cat([rows, -rows], dim=1)}, torch.cat([b, -b], dim=1), slack
    zero = torch.zeros(n, 2 * k, dtype=dt, device=dev)
    if len(shape) == 3:
        c, h, w = shape
        ch, at = idx // (h * w), idx % (h * w)
        if isinstance(node, ir.Conv2d) and node.groups == 1:  # ±x_i = ±(kernel of channel c · window + b_c)
            kern = node.weight[ch]  # (n, k, C_in, kh, kw)
            grid = Grid(1, 1, 0, 0, h, w).through_conv(node.stride, node.padding[0], node.padding[1])
            p = Patches(kern, at, grid, graph.shapes[ctx.x(target)])
            b = node.bias[ch]
            return {ctx.x(target): p.cat_negated()}, torch.cat([b, -b], dim=1), slack
        data = torch.zeros(n, k, c, 1, 1, dtype=dt, device=dev)
        data.scatter_(2, ch.view(n, k, 1, 1, 1), 1.0)
        p = Patches(data, at, Grid(1, 1, 0, 0, h, w), shape, clean=True)
        return {target: p.cat_negated()}, zero, slack
    A = torch.zeros(n, 2 * k, math.prod(shape), dtype=dt, device=dev)
    A[:, :k].scatter_(2, idx.unsqueeze(2), 1.0)
    A[:, k:].scatter_(2, idx.unsqueeze(2), -1.0)
    return {target: A.reshape((n, 2 * k) + tuple(shape))}, zero, slack


def refine(ctx: Context, target: str, mask: torch.Tensor, box: InputBox, budget: int = DEFAULT_BUDGET) -> None:
    """Tighten ctx.bounds[target] by CROWN on the neurons where `mask` holds, in memory-bounded chunks."""
    idx_all, valid_all = _selected_rows(mask)
    if idx_all.shape[1] == 0:
        return
    n = mask.shape[0]
    probe = _Probe()  # one row of one sample tells how wide the coefficients get
    sub = ctx.subset(0, 1)
    pending, const, _ = _start(sub, target, idx_all[:1, :1])
    backward(sub, pending, InputBox(box.lower[:1], box.upper[:1], box.nonneg), const, probe)
    width = max(1, probe.width)
    n_chunk = max(1, min(n, budget // (2 * width)))
    lo, hi = (t.clone() for t in ctx.bounds[target])
    lo_flat, hi_flat = lo.reshape(n, -1), hi.reshape(n, -1)
    for s0 in range(0, n, n_chunk):
        s1 = min(n, s0 + n_chunk)
        k_chunk = max(1, budget // (2 * width * (s1 - s0)))
        sub = ctx.subset(s0, s1)
        sub_box = InputBox(box.lower[s0:s1], box.upper[s0:s1], box.nonneg)
        for k0 in range(0, idx_all.shape[1], k_chunk):
            idx = idx_all[s0:s1, k0 : k0 + k_chunk]
            valid = valid_all[s0:s1, k0 : k0 + k_chunk]
            if not valid.any():
                continue
            pending, const, slack = _start(sub, target, idx)
            lb = _final(backward(sub, pending, sub_box, const), slack)
            k = idx.shape[1]
            new_lo, new_hi = lb[:, :k], -lb[:, k:]
            cur_lo, cur_hi = lo_flat[s0:s1].gather(1, idx), hi_flat[s0:s1].gather(1, idx)
            lo_flat[s0:s1].scatter_(1, idx, torch.where(valid, torch.maximum(cur_lo, new_lo), cur_lo))
            hi_flat[s0:s1].scatter_(1, idx, torch.where(valid, torch.minimum(cur_hi, new_hi), cur_hi))
    ctx.bounds[target] = (lo, hi)


# ============================================================================================ methods


@dataclass
class CrownResult:
    lower: torch.Tensor  # (N, S)
    unstable: torch.Tensor  # (N,) unstable ReLU neurons under the final intermediate bounds
    ctx: Context


def check_supported(graph: Graph) -> None:
    for name, node, _ in graph.items():
        CROWN.lookup(type(node), graph.describe_node(name))
        IBP.lookup(type(node), graph.describe_node(name))


def intermediate_bounds(graph: Graph, box: InputBox, refine_with_crown: bool, budget: int = DEFAULT_BUDGET) -> Context:
    """(lower, upper) and rounding magnitudes of every node: IBP, with the inputs of nonlinear ops tightened
    by CROWN when asked (only the neurons IBP leaves unstable, for ReLU)."""
    check_supported(graph)
    ctx = Context(graph, {INPUT: (box.lower, box.upper)})
    mag_in = torch.maximum(box.lower.abs(), box.upper.abs()).detach()
    ctx.err[INPUT] = _g(math.prod(graph.input_shape), mag_in.dtype) * mag_in
    feeds_nonlinear = {graph.inputs_of[n][0] for n in graph.order if isinstance(graph.node(n), NONLINEAR)}
    values: dict[str, Interval] = {INPUT: Interval(box.lower, box.upper, nonneg=box.nonneg)}
    for name, node, inputs in graph.items():
        iv = IBP.lookup(type(node))(node, *(values[i] for i in inputs))
        ctx.bounds[name] = iv.bounds()
        if refine_with_crown and name in feeds_nonlinear and not _first_layer(graph, name):
            with torch.no_grad():  # rounding magnitudes are constants, also when training through the bounds
                ctx.err[name] = CROWN.lookup(type(node)).rounding(node, ctx, name)  # the pass below starts here
            lo, hi = ctx.bounds[name]
            if all(isinstance(graph.node(c), ir.Relu) for c in graph.consumers(name)):
                mask = (lo < 0) & (hi > 0)
            else:
                mask = torch.ones_like(lo, dtype=torch.bool)
            refine(ctx, name, mask, box, budget)
            iv = Interval(*ctx.bounds[name], nonneg=iv.nonneg)
        with torch.no_grad():
            ctx.err[name] = CROWN.lookup(type(node)).rounding(node, ctx, name)
        values[name] = iv
    return ctx


def unstable_count(ctx: Context) -> torch.Tensor:
    graph = ctx.graph
    n = ctx.bounds[INPUT][0].shape[0]
    total = torch.zeros(n, dtype=torch.long, device=ctx.bounds[INPUT][0].device)
    for name in graph.order:
        if isinstance(graph.node(name), ir.Relu):
            lo, hi = ctx.bounds[graph.inputs_of[name][0]]
            total += ((lo < 0) & (hi > 0)).reshape(n, -1).sum(dim=1)
    return total


def spec_backward(ctx: Context, spec: LinearSpec, box: InputBox) -> torch.Tensor:
    """Lower bounds of the spec rows by one backward pass from the output."""
    graph = ctx.graph
    n, s = spec.C.shape[:2]
    dt = box.lower.dtype
    A = spec.C.to(dt).reshape((n, s) + graph.output_shape)
    slack = _rounding_slack(ctx, A, graph.output)
    return _final(backward(ctx, {graph.output: A}, box, spec.d.to(dt).clone()), slack)


def crown_bounds(graph: Graph, box: InputBox, spec: LinearSpec, intermediate: str = "crown",
                 budget: int = DEFAULT_BUDGET) -> CrownResult:
    """CROWN (intermediate='crown') or CROWN-IBP (intermediate='ibp'); never looser than IBP."""
    if intermediate not in ("crown", "ibp"):
        raise BoundMethodError(f"unknown intermediate bounds {intermediate!r}")
    ctx = intermediate_bounds(graph, box, intermediate == "crown", budget)
    lb = torch.maximum(spec_backward(ctx, spec, box), interval_bounds(graph, box, spec).lower)
    return CrownResult(lb, unstable_count(ctx), ctx)


def optimise_slopes(ctx: Context, spec: LinearSpec, box: InputBox, start: torch.Tensor, iters: int, lr: float,
                    split_signs: dict[str, torch.Tensor] | None = None, deadline: float | None = None) -> torch.Tensor:
    """Maximise the final pass's lower bounds over the ReLU lower slopes α ∈ [0, 1] (alpha-CROWN) and, for
    split constraints s·z ≥ 0 (`split_signs`: +1, −1 or 0 per pre-activation neuron), Lagrange multipliers
    β ≥ 0 (beta-CROWN): on the sub-domain f ≥ f − Σ β·s·z, so every (α, β) in range gives a sound bound.
    Returns the best bound seen per row, never below `start`; stops early past `deadline` (perf_counter),
    which is sound because every iterate's bound is."""
    graph = ctx.graph
    n, s = spec.C.shape[:2]
    ctx = Context(graph, {k: (lo.detach(), hi.detach()) for k, (lo, hi) in ctx.bounds.items()},
                  {k: v.detach() for k, v in ctx.err.items()})  # constants for the optimisation
    alphas: dict[str, torch.Tensor] = {}
    for name in graph.order:
        if isinstance(graph.node(name), ir.Relu):
            lo, hi = ctx.bounds[graph.inputs_of[name][0]]
            if ((lo < 0) & (hi > 0)).any():
                init = relax.relu_adaptive_lower(lo, hi).unsqueeze(1).expand((n, s) + tuple(lo.shape[1:]))
                alphas[name] = init.clone().requires_grad_(True)
    betas: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for pre, sign in (split_signs or {}).items():
        sign = sign.to(box.lower.dtype).reshape((n, 1) + graph.shapes[pre])
        if bool((sign != 0).any()):
            betas[pre] = (torch.zeros((n, s) + graph.shapes[pre], dtype=box.lower.dtype, device=box.lower.device).requires_grad_(True), sign)
    params = list(alphas.values()) + [b for b, _ in betas.values()]
    best = start.clone()
    if not params or iters <= 0:
        return best
    opt = torch.optim.Adam(params, lr=lr)
    frozen = [p for p in graph.parameters() if p.requires_grad]
    for p in frozen:  # only the slopes and multipliers are optimised; no gradients into the model
        p.requires_grad_(False)

    def bound() -> torch.Tensor:
        ctx.alpha = {k: v.clamp(0, 1) for k, v in alphas.items()}
        ctx.beta = {k: -b.clamp(min=0) * sg for k, (b, sg) in betas.items()}
        return spec_backward(ctx, spec, box)

    try:
        for _ in range(iters):
            if deadline is not None and time.perf_counter() > deadline:
                return best
            with torch.enable_grad():
                lb = bound()
                opt.zero_grad()
                (-lb.sum()).backward()
            opt.step()
            with torch.no_grad():
                for v in alphas.values():
                    v.clamp_(0, 1)
                for b, _ in betas.values():
                    b.clamp_(min=0)
                best = torch.maximum(best, lb.detach())
        with torch.no_grad():
            best = torch.maximum(best, bound())
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return best


def alpha_crown_bounds(graph: Graph, box: InputBox, spec: LinearSpec, iters: int = 20, lr: float = 0.1,
                       budget: int = DEFAULT_BUDGET, base: CrownResult | None = None,
                       deadline: float | None = None) -> CrownResult:
    """alpha-CROWN: CROWN's intermediate bounds, then the ReLU lower slopes of the final pass optimised per
    sample and spec row by projected Adam; the best bound seen per row is kept (never looser than CROWN).
    `base`: a CROWN result for the same samples and box, to reuse instead of recomputing."""
    base = base or crown_bounds(graph, box, spec, "crown", budget)
    if iters <= 0:
        return base
    best = optimise_slopes(base.ctx, spec, box, base.lower, iters, lr, deadline=deadline)
    return CrownResult(best, base.unstable, base.ctx)
