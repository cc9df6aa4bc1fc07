"""Sampling checks for soundness: points (corners included) inside an input box, and exact containment tests.

Used by the property test of every transfer function of every bound method. Points are evaluated in float64;
bounds must contain them with no tolerance at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from srp_audit import ops
from srp_audit.ir.graph import INPUT, Graph
from srp_audit.spec import InputBox


def sample_box(lower: torch.Tensor, upper: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """(N, n, *shape) points in [lower, upper]: both extreme corners, random corners, face points, interior."""
    N, shape = lower.shape[0], lower.shape[1:]
    lo, hi = lower.unsqueeze(1), upper.unsqueeze(1)
    k_corner, k_face = n // 2, n // 4
    k_in = n - 2 - k_corner - k_face
    corners = torch.rand((N, k_corner) + shape, generator=gen, dtype=lower.dtype) < 0.5
    corner_pts = torch.where(corners, hi, lo)
    face = torch.rand((N, k_face) + shape, generator=gen, dtype=lower.dtype)
    face = torch.where(torch.rand(face.shape, generator=gen, dtype=lower.dtype) < 0.5, (face < 0.5).to(lower.dtype), face)
    inner = torch.rand((N, k_in) + shape, generator=gen, dtype=lower.dtype)
    t = torch.cat([face, inner], dim=1)
    pts = torch.cat([lo, hi, corner_pts, lo + (hi - lo) * t], dim=1)
    return torch.minimum(torch.maximum(pts, lo), hi)


def evaluate(fn: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor) -> torch.Tensor:
    """fn on (N, n, *shape) points, batched as N·n samples; returns (N, n, *out)."""
    N, n = points.shape[:2]
    with torch.no_grad():
        out = fn(points.reshape((N * n,) + points.shape[2:]))
    return out.reshape((N, n) + out.shape[1:])


def assert_contains(values: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, what: str = "") -> None:
    """values (N, n, ...) within [lower, upper] (N, ...) exactly; the message shows the worst violation."""
    values = values.detach()
    lo, hi = lower.detach().unsqueeze(1).to(values.dtype), upper.detach().unsqueeze(1).to(values.dtype)
    below = (lo - values).clamp(min=0)
    above = (values - hi).clamp(min=0)
    worst = max(float(below.max()), float(above.max()))
    assert worst == 0.0, f"{what}: a sampled value leaves the bounds by {worst:.3e}"


def assert_sound_around(graph: Graph, x: torch.Tensor, radii: tuple[float, ...], gen: torch.Generator, what: str,
                        methods: tuple[str, ...] = ("ibp", "crown"), n: int = 200) -> None:
    """IBP's and CROWN's bounds on every output of `graph` (float64) over the boxes x ± r contain the outputs at n
    sampled points of each box, its corners included."""
    from srp_audit.bounds import METHODS

    k = graph.num_classes
    for radius in radii:
        lo, hi = x - radius, x + radius
        values = evaluate(graph.logits, sample_box(lo, hi, n, gen))
        for method in methods:
            lb = METHODS[method](graph, InputBox(lo, hi), identity_spec(k, x.shape[0], torch.float64)).lower.detach()
            assert_contains(values, lb[:, :k], -lb[:, k:], f"{what} {method} radius {radius}")


# ----------------------------------------------------------------------------------------- one graph per op


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=gen) * scale


def op_graphs(seed: int) -> dict[str, Graph]:
    """A small graph per IR op type (the op is the graph's output), with random weights from `seed`."""
    g = _g(seed)
    one = lambda node, shape: Graph(shape, [("op", node, (INPUT,))], "op")  # noqa: E731
    # boxes of the sampling tests sit in [-3, 3]: scale them for ops whose shape shows farther out, and make them
    # positive (x² + 0.05, x² + 1) for ops defined on x > 0
    widened = lambda node, k: Graph((7,), [("w", ops.ElementwiseAffine(k, 0.0), (INPUT,)), ("op", node, ("w",))], "op")  # noqa: E731
    pos_scale, pos_shift = torch.tensor([1.0, 1, 1, 1, 0.1, 0.1, 0.1]), torch.tensor([0.05, 0.05, 1, 1, 0.5, 2, 2])
    positive = lambda node: Graph((7,), [("sq", ops.Power(2.0), (INPUT,)),  # noqa: E731
                                         ("p", ops.ElementwiseAffine(pos_scale, pos_shift), ("sq",)), ("op", node, ("p",))], "op")
    add = Graph((6,), [("a", ops.Dense(_rand(g, 5, 6), _rand(g, 5)), (INPUT,)), ("b", ops.Relu(), (INPUT,)),
                       ("b2", ops.Dense(_rand(g, 5, 6), _rand(g, 5)), ("b",)), ("op", ops.Add(), ("a", "b2"))], "op")
    bn = ops.BatchNorm(_rand(g, 3), torch.rand(3, generator=g) + 0.1, _rand(g, 3), _rand(g, 3), 1e-5, 3)
    graphs = {
        "Dense": one(ops.Dense(_rand(g, 5, 6), _rand(g, 5)), (6,)),
        "Conv2d": one(ops.Conv2d(_rand(g, 3, 2, 3, 3), _rand(g, 3), stride=2, padding=(1, 0, 2, 1)), (2, 6, 6)),
        "ElementwiseAffine": one(ops.ElementwiseAffine(_rand(g, 3, 1, 1), _rand(g, 3, 4, 4)), (3, 4, 4)),
        "BatchNorm": one(bn, (3, 4, 4)),
        "AvgPool2d": one(ops.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 6, 6)),
        "AvgPool2d_pad": one(ops.AvgPool2d(2, 2, (1, 0, 0, 1), count_include_pad=True), (2, 5, 5)),
        "Relu": one(ops.Relu(), (7,)),
        "LeakyRelu": one(ops.LeakyRelu(0.1), (7,)),
        "Sigmoid": one(ops.Sigmoid(), (7,)),
        "Tanh": one(ops.Tanh(), (7,)),
        "Add": add,
        "Reshape": one(ops.Reshape((24,)), (2, 3, 4)),
        "Transpose": one(ops.Transpose((2, 0, 1)), (2, 3, 4)),
        "Pad": one(ops.Pad([(0, 0), (1, 2), (2, 0)], 0.7), (2, 4, 4)),
        "MaxPool2d": one(ops.MaxPool2d(3, 2, 1), (2, 6, 6)),
        "MaxPool2d_overlap": one(ops.MaxPool2d(2, 1, 0), (2, 4, 4)),
        "MaxPool2d_tiled": one(ops.MaxPool2d(2, 2, (0, 1, 1, 0)), (2, 7, 7)),  # windows tile the padded input
        "MaxPool2d_tiled_rest": one(ops.MaxPool2d(2, 2, 0), (2, 7, 7)),  # a last row and column no window reads
        "MaxPool2d_tiled_ceil": one(ops.MaxPool2d(2, 2, 0, ceil_mode=True), (2, 7, 7)),
        "Identity": one(ops.Identity(), (4,)),
        "Select": one(ops.Select(torch.randint(0, 24, (5, 2), generator=g), (5, 2), 24), (2, 3, 4)),
        "Concat": Graph((6,), [("a", ops.Dense(_rand(g, 5, 6), _rand(g, 5)), (INPUT,)), ("b", ops.Relu(), (INPUT,)),
                               ("op", ops.Concat(0, 2), ("a", "b"))], "op"),
        "ConvTranspose2d": one(ops.ConvTranspose2d(_rand(g, 2, 3, 3, 3), _rand(g, 3), stride=2, padding=(1, 0, 0, 1),
                                                   output_padding=1), (2, 4, 4)),
        "Sign": one(ops.Sign(), (7,)),
        "Floor": widened(ops.Floor(), 2.0),
        "Softmax": one(ops.Softmax(1), (2, 5)),
        "LogSoftmax": one(ops.LogSoftmax(1), (2, 5)),
        "Exp": one(ops.Exp(), (7,)),
        "Elu": one(ops.Elu(0.7), (7,)),
        "Reduce": one(ops.Reduce((0, 2), keepdims=False, mean=True), (3, 4, 5)),
        "Product": Graph((6,), [("a", ops.Dense(_rand(g, 5, 6), _rand(g, 5)), (INPUT,)), ("b", ops.Dense(_rand(g, 5, 6), _rand(g, 5)), (INPUT,)),
                                ("op", ops.Product(), ("a", "b"))], "op"),
        "Erf": one(ops.Erf(), (7,)),
        "Silu": widened(ops.Silu(), 3.0),
        "Gelu": widened(ops.Gelu(), 2.0),
        "Gelu_tanh": widened(ops.Gelu("tanh"), 2.0),
        "Gelu_scaled": widened(ops.Gelu("none", 1.0, 0.70710677), 2.0),
        "Mish": widened(ops.Mish(), 3.0),
        "HardSwish": widened(ops.HardSwish(), 3.0),
        "Softplus": widened(ops.Softplus(), 3.0),
        "Softplus_threshold": widened(ops.Softplus(2.0, 3.0), 3.0),
        "Sin": widened(ops.Sin(), 4.0),
        "Cos": widened(ops.Cos(), 4.0),
        "Power": widened(ops.Power(2.0), 1.5),
        "Power_frac": positive(ops.Power(1.5)),
        "Power_rsqrt": positive(ops.Power(-0.5)),
        "OddPower": widened(ops.OddPower(3), 1.5),
        "Sqrt": positive(ops.Sqrt()),
        "Reciprocal": positive(ops.Reciprocal()),
        "Log": positive(ops.Log()),
        "PRelu": one(ops.PRelu(torch.tensor([[0.25], [-0.5], [1.5]])), (3, 4)),
        "Ceil": widened(ops.Ceil(), 2.0),
        "Round": widened(ops.Round(), 2.0),
        "Trunc": widened(ops.Trunc("int32"), 2.0),
        "Trunc_int8": widened(ops.Trunc("int8"), 60.0),  # boxes past the type's range
        "Compare_gt": widened(ops.Compare("gt"), 1.0),
        "Compare_ge": one(ops.Compare("ge"), (7,)),
        "Compare_eq": widened(ops.Compare("eq"), 0.0),  # a point box at 0
        "Compare_ne": one(ops.Compare("ne"), (7,)),
        "Atan": widened(ops.Atan(), 4.0),
        "Sinh": widened(ops.Sinh(), 2.0),
        "ScaledElu": widened(ops.ScaledElu(), 3.0),
        "ScaledElu_elu": widened(ops.ScaledElu(1.5, 1.0), 3.0),
        "RoundToFloat": widened(ops.RoundToFloat("float16"), 3.0),
        "RoundToFloat_bfloat16": widened(ops.RoundToFloat("bfloat16"), 1e3),
        "ArgMax": one(ops.ArgMax(1), (2, 5)),
        "ArgMax_last_min": one(ops.ArgMax(0, keepdims=True, last=True, minimum=True), (4, 3)),
    }
    return graphs


def random_box(shape: tuple[int, ...], n: int, gen: torch.Generator, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes with centres in [-2, 2] and radii in [0, 1] (some exactly zero), different per sample."""
    c = (torch.rand((n,) + shape, generator=gen, dtype=torch.float64) * 4 - 2)
    r = torch.rand((n,) + shape, generator=gen, dtype=torch.float64) * torch.rand((n,) + (1,) * len(shape), generator=gen, dtype=torch.float64)
    r = torch.where(torch.rand(r.shape, generator=gen, dtype=torch.float64) < 0.1, torch.zeros_like(r), r)
    return (c - r).to(dtype), (c + r).to(dtype)


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def deep_graphs(seed: int) -> dict[str, Graph]:
    """Multi-layer graphs whose middle pre-activations get CROWN-refined: every backward rule, patches
    (strides, asymmetric padding, residual merges) and the dense fallbacks (pools, pad, transpose)."""
    g = _g(seed)
    r = lambda *s: _rand(g, *s, scale=0.7)  # noqa: E731

    def mlp(act):
        return Graph((6,), [("d0", ops.Dense(r(8, 6), r(8)), (INPUT,)), ("a0", act(), ("d0",)),
                            ("d1", ops.Dense(r(8, 8), r(8)), ("a0",)), ("a1", act(), ("d1",)),
                            ("d2", ops.Dense(r(4, 8), r(4)), ("a1",))], "d2")

    cnn = Graph((2, 7, 7), [
        ("c0", ops.Conv2d(r(3, 2, 3, 3), r(3), 1, 1), (INPUT,)), ("r0", ops.Relu(), ("c0",)),
        ("c1", ops.Conv2d(r(4, 3, 3, 3), r(4), 2, (1, 0, 2, 1)), ("r0",)), ("r1", ops.Relu(), ("c1",)),
        ("c2", ops.Conv2d(r(3, 4, 2, 2), r(3)), ("r1",)), ("r2", ops.Relu(), ("c2",)),
        ("f", ops.Reshape((3 * 3 * 2,)), ("r2",)), ("d", ops.Dense(r(3, 18), r(3)), ("f",))], "d")
    res = Graph((2, 6, 6), [
        ("c0", ops.Conv2d(r(3, 2, 3, 3), r(3), 1, 1), (INPUT,)), ("r0", ops.Relu(), ("c0",)),
        ("c1", ops.Conv2d(r(3, 3, 3, 3), r(3), 1, 1), ("r0",)), ("r1", ops.Relu(), ("c1",)),
        ("c2", ops.Conv2d(r(3, 3, 3, 3), r(3), 1, 1), ("r1",)), ("add", ops.Add(), ("c2", "r0")),
        ("r2", ops.Relu(), ("add",)), ("c3", ops.Conv2d(r(2, 3, 2, 2), r(2), 2), ("r2",)), ("r3", ops.Relu(), ("c3",)),
        ("f", ops.Reshape((18,)), ("r3",)), ("d", ops.Dense(r(3, 18), r(3)), ("f",))], "d")
    pools = Graph((2, 8, 8), [
        ("c0", ops.Conv2d(r(3, 2, 3, 3), r(3), 1, 1), (INPUT,)), ("r0", ops.Relu(), ("c0",)),
        ("mp", ops.MaxPool2d(2, 2), ("r0",)), ("c1", ops.Conv2d(r(4, 3, 2, 2), r(4)), ("mp",)),
        ("t", ops.Tanh(), ("c1",)), ("ap", ops.AvgPool2d(2, 1, 0), ("t",)), ("mp2", ops.MaxPool2d(2, 1, (1, 1, 0, 0)), ("ap",)),
        ("s", ops.Sigmoid(), ("mp2",)), ("f", ops.Reshape((4 * 2 * 2,)), ("s",)), ("d", ops.Dense(r(3, 16), r(3)), ("f",))], "d")
    bn = ops.BatchNorm(r(3), torch.rand(3, generator=g) + 0.1, r(3), r(3), 1e-5, 3)
    tiled_pools = Graph((1, 9, 9), [  # refinements cross tiled max-pools (padded, ceil mode) and per-channel affine
        ("norm", ops.ElementwiseAffine(1.7, -0.2), (INPUT,)), ("c0", ops.Conv2d(r(3, 1, 3, 3), r(3), 1, 1), ("norm",)),
        ("bn", bn, ("c0",)), ("r0", ops.Relu(), ("bn",)), ("mp", ops.MaxPool2d(2, 2, (1, 0, 0, 1), ceil_mode=True), ("r0",)),
        ("c1", ops.Conv2d(r(3, 3, 3, 3), r(3), 1, 1), ("mp",)), ("r1", ops.Relu(), ("c1",)),
        ("mp2", ops.MaxPool2d(2, 2, 0), ("r1",)), ("c2", ops.Conv2d(r(2, 3, 3, 3), r(2), 1, 1), ("mp2",)),  # row 4 of r1 unread
        ("r2", ops.Relu(), ("c2",)), ("f", ops.Reshape((2 * 2 * 2,)), ("r2",)), ("d", ops.Dense(r(3, 8), r(3)), ("f",))], "d")
    misc = Graph((2, 5, 5), [
        ("aff", ops.ElementwiseAffine(r(2, 1, 1), r(2, 5, 5)), (INPUT,)), ("pad", ops.Pad([(0, 0), (1, 0), (0, 2)], 0.3), ("aff",)),
        ("c0", ops.Conv2d(r(3, 2, 3, 3), r(3)), ("pad",)), ("r0", ops.Relu(), ("c0",)),
        ("tr", ops.Transpose((1, 2, 0)), ("r0",)), ("f", ops.Reshape((4 * 5 * 3,)), ("tr",)),
        ("d0", ops.Dense(r(6, 60), r(6)), ("f",)), ("r1", ops.Relu(), ("d0",)), ("d1", ops.Dense(r(3, 6), r(3)), ("r1",))], "d1")
    gen = Graph((3, 3, 3), [
        ("t0", ops.ConvTranspose2d(r(3, 2, 3, 3), r(2), 2, 1, 1), (INPUT,)), ("r0", ops.Relu(), ("t0",)),
        ("s0", ops.Select(torch.arange(2 * 6 * 6).reshape(2, 6, 6)[:, 1:5, :].flatten(), (2, 4, 6), 72), ("r0",)),
        ("c0", ops.Conv2d(r(2, 2, 3, 3), r(2), 1, 1), ("s0",)), ("sg", ops.Sign(), ("c0",)),
        ("cat", ops.Concat(0, 2), ("sg", "s0")), ("f", ops.Reshape((4 * 4 * 6,)), ("cat",)),
        ("d", ops.Dense(r(3, 96), r(3)), ("f",))], "d")
    attn = Graph((6,), [("d0", ops.Dense(r(8, 6), r(8)), (INPUT,)), ("sm", ops.Softmax(0), ("d0",)),
                        ("d1", ops.Dense(r(5, 8) * 4, r(5)), ("sm",)), ("r", ops.Relu(), ("d1",)), ("d2", ops.Dense(r(3, 5), r(3)), ("r",))], "d2")
    tok = torch.arange(3 * 4).reshape(3, 4)
    qk = Graph((3, 4), [  # scores = softmax(Q Kᵀ) over 3 tokens, then a mean over tokens and a dense head
        ("q", ops.Dense(r(4, 4), r(4)), (INPUT,)), ("k", ops.Dense(r(4, 4), r(4)), (INPUT,)),
        ("qb", ops.Select(tok[:, None, :].expand(3, 3, 4).flatten(), (3, 3, 4), 12), ("q",)),
        ("kb", ops.Select(tok[None, :, :].expand(3, 3, 4).flatten(), (3, 3, 4), 12), ("k",)),
        ("p", ops.Product(), ("qb", "kb")), ("s", ops.Reduce((2,), keepdims=False), ("p",)), ("sm", ops.Softmax(1), ("s",)),
        ("m", ops.Reduce((0,), keepdims=False, mean=True), ("sm",)), ("d", ops.Dense(r(2, 3), r(2)), ("m",))], "d")
    return {"mlp_relu": mlp(ops.Relu), "generator_slice_sign": gen, "softmax_inside": attn, "attention_scores": qk,
            "mlp_exp": mlp(ops.Exp), "mlp_elu": mlp(lambda: ops.Elu(0.5)), "mlp_leaky_relu": mlp(lambda: ops.LeakyRelu(0.2)),
            "mlp_sigmoid": mlp(ops.Sigmoid),
            "mlp_tanh": mlp(ops.Tanh), "cnn_patches": cnn,
            "resnet_merge": res, "pools_smooth": pools, "tiled_pools_channel_affine": tiled_pools, "affine_pad_transpose": misc}


def identity_spec(k: int, n: int, dtype: torch.dtype):
    """Rows +e_i and −e_i for every output i, one group each: lower bounds of both give an output interval."""
    from srp_audit.spec import LinearSpec

    eye = torch.eye(k, dtype=dtype)
    C = torch.cat([eye, -eye]).unsqueeze(0).expand(n, 2 * k, k).clone()
    return LinearSpec(C, torch.zeros(n, 2 * k, dtype=dtype), [[i] for i in range(2 * k)])


def random_mlp(seed: int, sizes=(4, 10, 10, 3)) -> Graph:
    """A float64 Dense/ReLU chain with weights scaled by 1/sqrt(fan-in) and small biases, from `seed`."""
    g = torch.Generator().manual_seed(seed)
    nodes, prev = [], INPUT
    for i in range(len(sizes) - 1):
        w = torch.randn(sizes[i + 1], sizes[i], generator=g, dtype=torch.float64) / math.sqrt(sizes[i])
        b = torch.randn(sizes[i + 1], generator=g, dtype=torch.float64) * 0.3
        nodes.append((f"d{i}", ops.Dense(w, b), (prev,)))
        prev = f"d{i}"
        if i < len(sizes) - 2:
            nodes.append((f"r{i}", ops.Relu(), (prev,)))
            prev = f"r{i}"
    return Graph((sizes[0],), nodes, prev).to(torch.float64)
