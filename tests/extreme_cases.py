"""The op sampling cases at extreme scales: for every op with a soundness case in `soundness.op_graphs`, a graph
whose input reaches the op directly (no scaling in front, so a box can put the op's input exactly at a kink, a
domain edge, 1e-300 or 1e308), the op's exact function for the rigorous reference (`arb_reference.py`), its
special points (kinks, breakpoints, valleys, domain edges) and its overflow/underflow tails. Besides the ops: the
ONNX loader's decompositions of Clip (ReLU6), HardSigmoid and LogSoftmax, and three short Dense/activation chains
(CROWN's refinement of an intermediate and its rounding slack at the same boxes).

Box families (each entry's interval drawn from the family's pool of scalar intervals):
- wide:       centres in [−20, 20] with radii up to 10, and in [−2000, 2000] with radii up to 1000 (×10 and ×1000
              the default suite's boxes);
- degenerate: widths 0, 1e-300 and one ulp at centres from 0 and subnormals to ±1e15;
- huge:       magnitudes up to 1e15 (boxes up to [−1e15, 1e15]), centres near ±1e15 with small widths, and the
              float64 range's ends (±1.8e308);
- edges:      boxes with an end at, or around, each special point of the op (widths 0, 1e-300, 1e-12, 1e-3, 1)
              and subnormal boxes around 0;
- tails:      the op's own overflow and underflow ranges (exp past 709.78 and below −745, float32's 88.7 and −103,
              sigmoid/tanh/erf tails, reciprocals of subnormals, squares and cubes past the range, products past
              the range and of subnormals, logit spreads of 700–750 for softmax, and whole boxes such as the
              reviewer's softmax case).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import numpy as np
import pytest
import torch
from arb_reference import AffineMap, Ball, Bracket, ScalarFn
from flint import arb

from srp_audit import ops
from srp_audit.ir.graph import INPUT, Graph
from srp_audit.ops.activations import SELU_ALPHA, SELU_GAMMA
from srp_audit.ops.scalar import ScalarActivation

MAX = sys.float_info.max
TINY = 5e-324  # the smallest subnormal
MIN_NORMAL = sys.float_info.min
F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).smallest_subnormal)

Interval = tuple[float, float]


def flushing() -> bool:
    """Whether torch's arithmetic flushes denormals to zero now (the command line keeps them, `perf.tune_process`;
    a library user's process may flush them, and once set in a process it stays)."""
    return float(torch.tensor([TINY], dtype=torch.float64) * 2.0) == 0.0


@contextmanager
def denormals(flush: bool) -> Iterator[None]:
    """Run with denormals flushed to zero (and read as zero) or kept, restoring the state found."""
    before = flushing()
    torch.set_flush_denormal(flush)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)

# ------------------------------------------------------------------------------------------ exact functions


def _a(v: float) -> arb:
    return arb(float(v))


def relu(x: arb) -> Ball:
    return x if x > 0 else arb(0)


def leaky(a: float) -> ScalarFn:
    return lambda x: x if x >= 0 else _a(a) * x


def prelu(x: arb, a: float) -> Ball:
    return x if x >= 0 else _a(a) * x


def sigmoid(x: arb) -> Ball:
    return 1 / (1 + (-x).exp())


def silu(x: arb) -> Ball:
    return x / (1 + (-x).exp())


def gelu(scale: float | None, inner: float | None) -> ScalarFn:
    """scale·x·(1 + erf(inner·x)) as scale·x·erfc(−inner·x) (no cancellation in the left tail); None: ½ and 1/√2."""
    def f(x: arb) -> Ball:
        s = arb(1) / 2 if scale is None else _a(scale)
        k = 1 / arb(2).sqrt() if inner is None else _a(inner)
        return s * x * (-k * x).erfc()
    return f


def gelu_tanh(x: arb) -> Ball:
    """½x(1 + tanh(√(2/π)(x + 0.044715x³))), with 1 + tanh z = 2/(1 + e^{−2z})."""
    z = (2 / arb.pi()).sqrt() * (x + arb("0.044715") * x * x * x)
    return x / (1 + (-2 * z).exp())


def softplus_exact(beta: float) -> ScalarFn:
    return lambda x: (_a(beta) * x).exp().log1p() / _a(beta)


def softplus_torch(beta: float, threshold: float) -> ScalarFn:
    """torch's form: x itself where βx > threshold."""
    exact_fn = softplus_exact(beta)
    return lambda x: x if _a(beta) * x > _a(threshold) else exact_fn(x)


def mish(x: arb) -> Ball:
    return x * x.exp().log1p().tanh()


def hardswish(x: arb) -> Ball:
    t = x + 3
    t = arb(0) if t < 0 else (arb(6) if t > 6 else t)
    return x * t / 6


def elu(alpha: float) -> ScalarFn:
    return lambda x: x if x > 0 else _a(alpha) * x.expm1()


def power(p: float) -> ScalarFn:
    """x^p in the reals: any x for even integers, x ≥ 0 for p > 0 (x > 0 for p < 0), undefined elsewhere."""
    def f(x: arb) -> Ball:
        if p == int(p) and int(p) % 2 == 0 and p > 0:
            return x ** int(p)
        if x > 0:
            return (x.log() * _a(p)).exp()
        if x == 0 and p > 0:
            return arb(0)
        return None
    return f


def sqrt(x: arb) -> Ball:
    return x.sqrt() if x >= 0 else None


def reciprocal(x: arb) -> Ball:
    return 1 / x if x != 0 else None


def log(x: arb) -> Ball:
    return x.log() if x > 0 else None


def sign(x: arb) -> Ball:
    return arb(1) if x > 0 else (arb(-1) if x < 0 else arb(0))


def clip(lo: float, hi: float) -> ScalarFn:
    return lambda x: _a(lo) if x < lo else (_a(hi) if x > hi else x)


def hard_sigmoid(alpha: float, beta: float) -> ScalarFn:
    def f(x: arb) -> Ball:
        y = _a(alpha) * x + _a(beta)
        return arb(0) if y < 0 else (arb(1) if y > 1 else y)
    return f


# open brackets (a, b) with a < f(x) < b: what decides a bound on an asymptote the ball cannot separate from f(x)


def _exact_float(f: Callable[[float], float]) -> ScalarFn:
    """A step of an exact (float) point, computed in float64 (floor, round, trunc and comparisons of a float are
    exact); the cases' points are floats, so their arb values are exact."""
    return lambda x: arb(f(float(x.mid())))


def selu(x: arb) -> Ball:
    """SELU with ONNX's float32 α and γ, exactly."""
    a, g = arb(SELU_ALPHA), arb(SELU_GAMMA)
    return g * x if x > 0 else (g * a * x.expm1() if x < 0 else arb(0))


def bfloat16(v: float) -> float:
    """v rounded to nearest bfloat16 (8 significant bits, float32's exponent range), ties to even, exactly."""
    if v == 0 or not math.isfinite(v):
        return v
    ulp = 2.0 ** max(math.frexp(v)[1] - 8, -133)
    r = float(np.round(v / ulp)) * ulp  # v / ulp and r·ulp are exact (powers of two); np.round ties to even
    return r if abs(r) <= 3.3895313892515355e38 else math.copysign(math.inf, v)


def argmax_rows(n: int, rows: int, last: bool = False, minimum: bool = False) -> Callable[[list[arb]], list[Ball]]:
    """ArgMax along the last axis of a (rows, n) point, exactly (first index on ties, or the last)."""
    def f(xs: list[arb]) -> list[Ball]:
        out = []
        for r in range(rows):
            vals = [float(x.mid()) for x in xs[r * n:(r + 1) * n]]
            vals = [-v for v in vals] if minimum else vals
            best = max(vals)
            hits = [i for i, v in enumerate(vals) if v == best]
            out.append(arb(hits[-1] if last else hits[0]))
        return out
    return f


def const_bracket(a: float, b: float) -> Bracket:
    return lambda x: (a, b)


def exp_bracket(x: arb) -> tuple:
    return (MAX, math.inf) if x >= 709.79 else (0.0, math.inf)  # ln(max) = 709.7827…


def between_zero_and(k: float) -> Bracket:
    """0 < f(x) < k·x for x > 0 and k·x < f(x) < 0 for x < 0 (x times a factor in (0, k): SiLU, GELU, Mish)."""
    def b(x: arb) -> tuple:
        if x > 0:
            return 0.0, x * _a(k)
        if x < 0:
            return x * _a(k), 0.0
        return -math.inf, math.inf
    return b


def softplus_bracket(beta: float, threshold: float | None) -> Bracket:
    """max(0, x) < softplus(x) < x(1 + 2⁻⁶⁰) once βx ≥ 50 (the excess log1p(e^{−βx})/β is below that); torch's form
    (`threshold` given) is x itself past the threshold."""
    def b(x: arb) -> tuple:
        if threshold is not None and _a(beta) * x > _a(threshold):
            return -math.inf, math.inf
        low = x if x > 0 else 0.0
        high = x * (1 + arb(2) ** -60) if _a(beta) * x >= 50 else math.inf
        return low, high
    return b


def softmax_rows(axis_len: int, log_: bool) -> Callable[[list[arb]], list[Ball]]:
    """Softmax (or log-softmax) over consecutive groups of `axis_len` entries (the last axis)."""
    def f(xs: list[arb]) -> list[Ball]:
        out: list[Ball] = []
        for r in range(0, len(xs), axis_len):
            row = xs[r : r + axis_len]
            m = max(row, key=lambda v: float(v.mid()))  # any shift is exact in ball arithmetic; this one avoids huge exps
            es = [(v - m).exp() for v in row]
            total = sum(es[1:], es[0])
            out.extend([(v - m) - total.log() for v in row] if log_ else [e / total for e in es])
        return out
    return f


# ------------------------------------------------------------------------------------------ the cases


@dataclass
class Case:
    """One extreme-scale sampling case (see the module docstring)."""

    graph: Graph
    kind: str  # "elementwise", "pointwise" (fn of the whole flat point), "affine" (exact extremes), "exact"
    forms: tuple[tuple[ScalarFn, Bracket | None], ...] = ()  # elementwise: the function with its open bracket
    # (several accepted forms: each must be inside the bounds)
    param_fn: Callable[[arb, float], Ball] | None = None  # elementwise with a per-entry parameter (PRelu)
    params: np.ndarray | None = None
    point_fn: Callable[[list[arb]], list[Ball]] | None = None
    bracket: tuple[float, float] | None = None  # pointwise: an open range of every output
    affine: AffineMap | None = None
    special: tuple[float, ...] = ()  # kinks, breakpoints, valleys, domain edges of the op's input
    tails: tuple[Interval, ...] = ()
    extra_points: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None  # (lo, hi) (N, *shape) → (N, k, *shape)
    explicit: tuple[tuple[tuple[float, float], ...], ...] = ()  # whole boxes (one interval per entry), in `tails`
    onnx_model: bytes | None = None  # the ONNX model the graph was read from (None: the graph is built in the IR)

    @property
    def has_slopes(self) -> bool:
        """Whether alpha-CROWN has parameters on this graph (an op whose relaxation has a family of lines)."""
        for _, node, ins in self.graph.items():
            shape = tuple(self.graph.shapes.get(ins[0], self.graph.input_shape)) if ins else ()
            n = math.prod(shape)
            probe = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64).repeat(n // 3 + 1)[:n].reshape((1,) + shape)
            try:  # intervals around −1, 0.5 and 2 in the op's own input shape (a max-pool's windows need it)
                if node.alpha_start(probe - 1, probe + 1, 1) is not None:
                    return True
            except Exception:  # an op whose start cannot take this probe
                continue
        return False


def _one(node, shape: tuple[int, ...]) -> Graph:
    return Graph(shape, [("op", node, (INPUT,))], "op").double()


def _halves(node, n: int = 3) -> Graph:
    """node(first n entries, last n entries) of a (2n,) input: two input-dependent tensors, exactly."""
    return Graph((2 * n,), [("a", ops.Select(list(range(n)), (n,), 2 * n), (INPUT,)),
                            ("b", ops.Select(list(range(n, 2 * n)), (n,), 2 * n), (INPUT,)),
                            ("op", node, ("a", "b"))], "op").double()


def _from_onnx(onnx_nodes: list, inits: dict, shape: tuple[int, ...], opset: int = 17) -> tuple[Graph, bytes]:
    """A graph read by the ONNX loader (its own decomposition of Clip, HardSigmoid, LogSoftmax), and the model."""
    import os
    import tempfile

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from srp_audit.formats.onnx_read import load_onnx

    graph = helper.make_graph(onnx_nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *shape])],
                              [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.onnx")
        onnx.save(model, path)
        return load_onnx(path).double(), model.SerializeToString()


def onnx_single(op_type: str, shape: tuple[int, ...], inits: dict | None = None, opset: int = 17, **attrs):
    """An ONNX node list for `op_type` on input x (its extra inputs from `inits`), output y."""
    from onnx import helper

    return [helper.make_node(op_type, ["x", *(inits or {})], ["y"], **attrs)], inits or {}, shape


def _onnx_case(single: tuple, kind: str, **fields) -> Case:
    graph, model = _from_onnx(*single)
    return Case(graph, kind, onnx_model=model, **fields)


def affine_map(graph: Graph) -> AffineMap:
    """The exact J and b of a single affine op (weights as stored; an average's 1/k recovered as a rational)."""
    node = graph.node(graph.output)
    in_shape = graph.input_shape
    n_in = math.prod(in_shape)
    eye = torch.eye(n_in, dtype=torch.float64).reshape((n_in,) + tuple(in_shape))
    with torch.no_grad():
        b = node(torch.zeros((1,) + tuple(in_shape), dtype=torch.float64)).reshape(-1)  # f(0) = b, computed exactly
        if isinstance(node, ops.Dense):
            J = node.weight.detach().double()
        elif isinstance(node, (ops.Conv2d, ops.ConvTranspose2d)):
            J = node.linear(eye).reshape(n_in, -1).T  # single products w·1: exact
        elif isinstance(node, ops.ElementwiseAffine):
            J = torch.diag(torch.broadcast_to(node.scale.double(), tuple(in_shape)).reshape(-1))
        else:  # AvgPool2d, Reduce: entries 1 or 1/k
            J = node(eye).reshape(n_in, -1).T
    rational = isinstance(node, (ops.AvgPool2d, ops.Reduce))

    def exact(v: float) -> Fraction:
        if not rational:
            return Fraction(v)
        f = Fraction(v).limit_denominator(1000)
        assert float(f) == v, v
        return f

    rows = [[(j, exact(float(v))) for j, v in enumerate(row.tolist()) if v != 0] for row in J]
    return AffineMap(rows, [Fraction(float(v)) for v in b.tolist()])


def _softmax_corners(axis_len: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """For softmax along the last axis: per position i, the corners (u_i, l_others) and (l_i, u_others), where
    y_i takes its maximum and minimum over the box."""
    def extra(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        pts = []
        for i in range(axis_len):
            onehot = np.zeros(axis_len, dtype=bool)
            onehot[i] = True
            pts.append(np.where(onehot, hi, lo))
            pts.append(np.where(onehot, lo, hi))
        return np.stack(pts, axis=1)
    return extra


def _elementwise(node, forms: tuple[tuple[ScalarFn, Bracket | None], ...], special: tuple[float, ...] = (0.0,),
                 tails: tuple[Interval, ...] = ()) -> Case:
    return Case(_one(node, (7,)), "elementwise", forms=forms, special=special, tails=tails)


EXP_TAILS: tuple[Interval, ...] = ((709.0, 709.78), (709.78, 709.79), (709.7, 710.0), (710.0, 711.0), (700.0, 800.0),
                                   (1e3, 1e15), (-1.0, 1e3), (88.0, 88.7), (88.7, 88.8), (-745.0, -740.0),
                                   (-760.0, -745.0), (-746.0, -744.0), (-1e15, -750.0), (-104.0, -103.0), (-88.0, -87.0),
                                   (-710.0, 710.0))
S_TAILS: tuple[Interval, ...] = ((-750.0, -700.0), (-1e15, -745.0), (-746.0, -744.0), (700.0, 1e15), (15.0, 25.0),
                                 (-25.0, -15.0), (-20.0, 20.0), (-104.0, -87.0), (36.0, 40.0), (-40.0, -36.0),
                                 (5.5, 6.5), (-30.0, -5.0), (26.0, 1e15), (17.0, 19.0), (-19.0, -17.0), (8.0, 9.5))
POS_TAILS: tuple[Interval, ...] = ((TINY, 1e-300), (1e-310, 1e-308), (1e300, MAX), (1e308, MAX), (MAX, MAX), (TINY, TINY),
                                   (1e-39, 1e-38), (F32_TINY, 1e-40), (1e38, F32_MAX), (F32_MAX, 1e39), (0.0, TINY),
                                   (0.0, 1e-300), (-TINY, 0.0), (-1e-300, 1e-300), (0.0, MAX))
SQUARE_TAILS: tuple[Interval, ...] = ((1e154, 1e155), (1.3e154, 1.4e154), (-1e200, 1e200), (1e-200, 1e-160),
                                      (1e-170, 1e-150), (1.8e19, 2e19), (-2e19, -1.8e19), (1e-25, 1e-20), (-MAX, MAX),
                                      (TINY, 1e-300))
CUBE_TAILS: tuple[Interval, ...] = ((1e102, 1e104), (5.6e102, 5.7e102), (-1e120, 1e120), (1e-110, 1e-100), (-1e-110, -1e-100),
                                    (6.9e12, 7e12), (-7e12, -6.9e12), (1e-16, 1e-14), (-MAX, MAX), (-TINY, TINY))
PRODUCT_TAILS: tuple[Interval, ...] = ((1e154, 1e155), (-1e155, -1e154), (1e-170, 1e-160), (-1e-160, 1e-160), (TINY, 1e-300),
                                       (1e300, MAX), (-MAX, -1e300), (0.0, 0.0), (0.0, MAX), (-MAX, 0.0), (1.8e19, 2e19),
                                       (1e-25, 1e-20), (-1.0, 1.0), (-TINY, TINY))
SOFTMAX_TAILS: tuple[Interval, ...] = ((0.0, 0.0), (-1.0, 0.0), (-750.0, -700.0), (-745.0, -740.0), (-720.0, -720.0),
                                       (700.0, 750.0), (-1000.0, 750.0), (0.0, 740.0), (-710.0, 0.0), (-760.0, -746.0),
                                       (730.0, 730.0), (-103.0, -100.0), (88.0, 90.0), (-1e4, 1e4))
# the reviewer's case first (a spread past 708 inside the box: exp(u_0 − max u) = e^{−746} underflows, and the old
# quotient form's bound on y_0 was 16·tiny ≈ 3.6e-307 where y_0 reaches 1/(1 + e²) ≈ 0.119), then kin
SOFTMAX_BOXES: tuple[tuple[Interval, ...], ...] = (
    ((-1.0, 0.0), (2.0, 746.0), (-1000.0, -900.0), (-1000.0, -900.0), (-1000.0, -900.0),
     (0.0, 0.0), (-750.0, -700.0), (700.0, 750.0), (-1.0, 0.0), (-1e4, 0.0)),
    ((-1.0, 0.0), (-1000.0, 750.0), (-760.0, -750.0), (-760.0, -750.0), (-760.0, -750.0),
     (0.0, 0.0), (-720.0, -700.0), (-750.0, -745.0), (-700.0, -700.0), (-740.0, -730.0)),
    ((0.0, 1.0), (-750.0, -700.0), (-750.0, -700.0), (-750.0, -700.0), (-750.0, -700.0),
     (700.0, 750.0), (0.0, 0.0), (-1.0, 1.0), (-10.0, 10.0), (-50.0, 0.0)),
    ((-2.0, 0.0), (-2.0, 0.0), (0.0, 709.0), (-1.0, 1.0), (-800.0, 800.0),
     (-745.5, -745.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0)),
)
TRIG_TAILS: tuple[Interval, ...] = ((1e15, 1e15 + 10), (1e22, 1e22), (-1e300, 1e300), (1e308, MAX), (2 ** 52, 2 ** 52 + 8),
                                    (1e5, 1e5 + 7), (3.141592653589793, 3.141592653589794), (1.5707963267948966, 1.5707963267948968),
                                    (-MAX, -MAX), (710.0, 720.0))


A07 = float(np.float32(0.7))  # ELU's alpha as a model stores it


def softplus_forms(beta: float, threshold: float) -> tuple[tuple[ScalarFn, Bracket], ...]:
    """Softplus's two accepted forms (the exact function, and torch's x past the threshold), with their brackets."""
    return ((softplus_exact(beta), softplus_bracket(beta, None)), (softplus_torch(beta, threshold), softplus_bracket(beta, threshold)))


def _tails_with(*extra: tuple[Interval, ...]) -> tuple[Interval, ...]:
    return tuple(i for group in extra for i in group)


@cache
def extreme_cases() -> dict[str, Case]:
    """Every extreme case by name (built once: the graphs' random weights come from a fixed seed)."""
    g = torch.Generator().manual_seed(11)
    rand = lambda *s: torch.randn(s, generator=g)  # noqa: E731
    cases: dict[str, Case] = {
        "Relu": _elementwise(ops.Relu(), ((relu, None),), (0.0,)),
        "LeakyRelu": _elementwise(ops.LeakyRelu(0.1), ((leaky(float(np.float32(0.1))), None),), (0.0,), ((-MAX, -1e300), (-TINY, 0.0))),
        "Sigmoid": _elementwise(ops.Sigmoid(), ((sigmoid, const_bracket(0.0, 1.0)),), (0.0,), S_TAILS),
        "Tanh": _elementwise(ops.Tanh(), ((lambda x: x.tanh(), const_bracket(-1.0, 1.0)),), (0.0,), S_TAILS),
        "Erf": _elementwise(ops.Erf(), ((lambda x: x.erf(), const_bracket(-1.0, 1.0)),), (0.0,), S_TAILS),
        "Sign": _elementwise(ops.Sign(), ((sign, None),), (0.0,)),
        "Floor": _elementwise(ops.Floor(), ((lambda x: x.floor(), None),), (0.0, 1.0, -1.0, 2.0 ** 52, 2.0 ** 53, 0.5, -0.5),
                              ((2.0 ** 52, 2.0 ** 52 + 3), (-TINY, 0.0), (-1e-300, 1e-300))),
        "Ceil": _elementwise(ops.Ceil(), ((_exact_float(math.ceil), None),), (0.0, 1.0, -1.0, 0.5, -0.5),
                             ((2.0 ** 52, 2.0 ** 52 + 3), (-TINY, 0.0), (-1e-300, 1e-300), (-MAX, MAX))),
        "Round": _elementwise(ops.Round(), ((_exact_float(lambda v: float(np.round(v))), None),), (0.5, 1.5, -0.5, 2.5, 0.0),
                              ((2.0 ** 52, 2.0 ** 52 + 3), (0.49999999999999994, 0.5), (-1e-300, 1e-300), (-MAX, MAX))),
        "Trunc": _elementwise(ops.Trunc("int32"), ((_exact_float(lambda v: float(np.trunc(v))), None),), (0.0, 1.0, -1.0, 2.0 ** 31),
                              ((2.0 ** 31 - 2, 2.0 ** 31 - 1), (-TINY, TINY), (-2.0 ** 31 - 1, -2.0 ** 31))),
        "Atan": _elementwise(ops.Atan(), ((lambda x: x.atan(), const_bracket(-math.pi / 2, math.pi / 2)),), (0.0,), S_TAILS),
        "ScaledElu": _elementwise(ops.ScaledElu(), ((selu, const_bracket(-SELU_ALPHA * SELU_GAMMA, math.inf)),), (0.0,),
                                  _tails_with(EXP_TAILS, ((-1e300, -1e-300),))),
        "RoundToFloat": _elementwise(ops.RoundToFloat("float16"), ((_exact_float(lambda v: float(np.float16(v))), None),),
                                     (0.0, 65504.0, -65504.0, 65520.0, 2.0 ** -24, 2.0 ** -25),
                                     ((65504.0, 65519.0), (65519.0, 65521.0), (-TINY, TINY), (-1e-300, 1e-7), (-MAX, MAX),
                                      (1e5, 1e6), (2.0 ** -25, 2.0 ** -24), (-2.0 ** -14, 2.0 ** -14))),
        "RoundToFloat_bfloat16": _elementwise(ops.RoundToFloat("bfloat16"), ((_exact_float(bfloat16), None),),
                                              (0.0, 2.0 ** -133, 2.0 ** -134, 2.0 ** -126, 7.567244883418476e-37),
                                              ((7.5e-37, 7.6e-37), (1.18e-38, 1.19e-38), (-1e-40, 1e-40), (2.0 ** -120, 2.0 ** -119),
                                               (1e30, 1e31), (-MAX, MAX), (3.38e38, 3.39e38))),
        "RoundToFloat_float32": _elementwise(ops.RoundToFloat("float32"), ((_exact_float(lambda v: float(np.float32(v))), None),),
                                             (0.0, 2.0 ** -149, 2.0 ** -150, 3.4028234663852886e38),
                                             ((1e38, 3.5e38), (-TINY, TINY), (2.0 ** -150, 2.0 ** -148), (-MAX, MAX), (0.1, 0.1))),
        "Compare_gt": _elementwise(ops.Compare("gt"), ((_exact_float(lambda v: float(v > 0)), None),), (0.0,),
                                   ((-TINY, 0.0), (0.0, TINY), (-MAX, MAX), (0.0, 0.0), (-1e-300, 1e-300))),
        "Compare_ge": _elementwise(ops.Compare("ge"), ((_exact_float(lambda v: float(v >= 0)), None),), (0.0,),
                                   ((-TINY, 0.0), (0.0, TINY), (-MAX, MAX), (0.0, 0.0), (-MAX, -TINY))),
        "Compare_eq": _elementwise(ops.Compare("eq"), ((_exact_float(lambda v: float(v == 0)), None),), (0.0,),
                                   ((-TINY, 0.0), (0.0, 0.0), (-MAX, MAX), (TINY, MAX))),
        "Compare_ne": _elementwise(ops.Compare("ne"), ((_exact_float(lambda v: float(v != 0)), None),), (0.0,),
                                   ((-TINY, 0.0), (0.0, 0.0), (-MAX, MAX), (TINY, MAX))),
        "Exp": _elementwise(ops.Exp(), ((lambda x: x.exp(), exp_bracket),), (0.0, 709.782712893384, -745.1332191019411), EXP_TAILS),
        "Elu": _elementwise(ops.Elu(0.7), ((elu(A07), const_bracket(-A07, math.inf)),), (0.0,),
                            _tails_with(EXP_TAILS, ((-1e300, -1e-300),))),
        "Silu": _elementwise(ops.Silu(), ((silu, between_zero_and(1.0)),), (0.0, -1.27846454276107), S_TAILS),
        "Gelu": _elementwise(ops.Gelu(), ((gelu(None, None), between_zero_and(1.0)),), (0.0, -0.7517915241), S_TAILS),
        "Gelu_tanh": _elementwise(ops.Gelu("tanh"), ((gelu_tanh, between_zero_and(1.0)),), (0.0, -0.75246), S_TAILS),
        "Gelu_scaled": _elementwise(ops.Gelu("none", 1.0, 0.70710677), ((gelu(1.0, 0.70710677), between_zero_and(2.0)),), (0.0, -0.7517915),
                                    S_TAILS),
        "Mish": _elementwise(ops.Mish(), ((mish, between_zero_and(1.0)),), (0.0, -1.19243), S_TAILS),
        "HardSwish": _elementwise(ops.HardSwish(), ((hardswish, None),), (-3.0, 3.0, -1.5, 0.0), ((-3.0, 3.0), (-1e15, -3.0), (3.0, 1e15))),
        "Softplus": _elementwise(ops.Softplus(), softplus_forms(1.0, 20.0), (0.0, 20.0),
                                 _tails_with(S_TAILS, ((19.9, 20.1), (20.0, 20.0), (700.0, 720.0)))),
        "Softplus_threshold": _elementwise(ops.Softplus(2.0, 3.0), softplus_forms(2.0, 3.0), (0.0, 1.5),
                                           ((1.4, 1.6), (1.5, 1.5), (-400.0, -350.0), (350.0, 360.0))),
        "Sin": _elementwise(ops.Sin(), ((lambda x: x.sin(), const_bracket(-1.0, 1.0)),), (0.0, math.pi / 2, -math.pi / 2, math.pi), TRIG_TAILS),
        "Cos": _elementwise(ops.Cos(), ((lambda x: x.cos(), const_bracket(-1.0, 1.0)),), (0.0, math.pi / 2, math.pi, -math.pi), TRIG_TAILS),
        "Power": _elementwise(ops.Power(2.0), ((power(2.0), None),), (0.0,), SQUARE_TAILS),
        "Power_frac": _elementwise(ops.Power(1.5), ((power(1.5), None),), (0.0,), _tails_with(POS_TAILS, ((1e200, 1e300),))),
        "Power_rsqrt": _elementwise(ops.Power(-0.5), ((power(-0.5), None),), (0.0,), POS_TAILS),
        "OddPower": _elementwise(ops.OddPower(3), ((lambda x: x * x * x, None),), (0.0,), CUBE_TAILS),
        "Sqrt": _elementwise(ops.Sqrt(), ((sqrt, None),), (0.0,), POS_TAILS),
        "Reciprocal": _elementwise(ops.Reciprocal(), ((reciprocal, None),), (0.0,), POS_TAILS),
        "Log": _elementwise(ops.Log(), ((log, None),), (0.0, 1.0), POS_TAILS),
        "Identity": Case(_one(ops.Identity(), (4,)), "exact"),
        "Reshape": Case(_one(ops.Reshape((24,)), (2, 3, 4)), "exact"),
        "Transpose": Case(_one(ops.Transpose((2, 0, 1)), (2, 3, 4)), "exact"),
        "Pad": Case(_one(ops.Pad([(0, 0), (1, 2), (2, 0)], 0.7), (2, 4, 4)), "exact"),
        "Select": Case(_one(ops.Select(torch.randint(0, 24, (5, 2), generator=g), (5, 2), 24), (2, 3, 4)), "exact"),
        "Concat": Case(Graph((6,), [("a", ops.Select([4, 5, 0], (3,), 6), (INPUT,)), ("b", ops.Select([1, 2, 3, 3], (4,), 6), (INPUT,)),
                                    ("op", ops.Concat(0, 2), ("a", "b"))], "op").double(), "exact"),
        "MaxPool2d": Case(_one(ops.MaxPool2d(3, 2, 1), (2, 6, 6)), "exact"),
        "MaxPool2d_overlap": Case(_one(ops.MaxPool2d(2, 1, 0), (2, 4, 4)), "exact"),
        "MaxPool2d_tiled": Case(_one(ops.MaxPool2d(2, 2, (0, 1, 1, 0)), (2, 7, 7)), "exact"),
        "MaxPool2d_tiled_ceil": Case(_one(ops.MaxPool2d(2, 2, 0, ceil_mode=True), (2, 7, 7)), "exact"),
        "ArgMax": Case(_one(ops.ArgMax(1), (2, 5)), "pointwise", point_fn=argmax_rows(5, 2), bracket=(-1.0, 5.0),
                       tails=SOFTMAX_TAILS),
        "ArgMax_last_min": Case(_one(ops.ArgMax(1, last=True, minimum=True), (2, 5)), "pointwise",
                                point_fn=argmax_rows(5, 2, last=True, minimum=True), bracket=(-1.0, 5.0), tails=SOFTMAX_TAILS),
        "Add": Case(_halves(ops.Add()), "pointwise", point_fn=lambda x: [x[i] + x[i + 3] for i in range(3)], tails=PRODUCT_TAILS),
        "Product": Case(_halves(ops.Product()), "pointwise", point_fn=lambda x: [x[i] * x[i + 3] for i in range(3)],
                        tails=PRODUCT_TAILS),
        "Softmax": Case(_one(ops.Softmax(1), (2, 5)), "pointwise", point_fn=softmax_rows(5, False), bracket=(0.0, 1.0),
                        extra_points=_softmax_corners(5), tails=SOFTMAX_TAILS, explicit=SOFTMAX_BOXES),
        "LogSoftmax": _onnx_case(onnx_single("LogSoftmax", (2, 5), axis=-1), "pointwise", point_fn=softmax_rows(5, True),
                                 bracket=(-math.inf, 0.0), extra_points=_softmax_corners(5), tails=SOFTMAX_TAILS,
                                 explicit=SOFTMAX_BOXES),
        "Clip": _onnx_case(onnx_single("Clip", (7,), {"lo": np.array(-1.5), "hi": np.array(2.25)}), "elementwise",
                           forms=((clip(-1.5, 2.25), None),), special=(-1.5, 2.25, 0.0)),
        "Relu6": _onnx_case(onnx_single("Clip", (7,), {"lo": np.array(0.0), "hi": np.array(6.0)}), "elementwise",
                            forms=((clip(0.0, 6.0), None),), special=(0.0, 6.0)),
        "HardSigmoid": _onnx_case(onnx_single("HardSigmoid", (7,), alpha=0.2, beta=0.5), "elementwise",
                                  forms=((hard_sigmoid(float(np.float32(0.2)), float(np.float32(0.5))), None),),
                                  special=(-2.5, 2.5, 0.0)),
    }
    slope = torch.tensor([[0.25], [-0.5], [1.5]])
    cases["PRelu"] = Case(_one(ops.PRelu(slope), (3, 4)), "elementwise", param_fn=prelu,
                          params=np.broadcast_to(slope.double().numpy(), (3, 4)).copy(), special=(0.0,),
                          tails=((-MAX, -1e300), (-TINY, 0.0), (-1e308, 1e308)))
    bn_params = (rand(3), torch.rand(3, generator=g) + 0.1, rand(3), rand(3))
    bn = ops.BatchNorm(*bn_params, 1e-5, 3)
    affine = {
        "Dense": _one(ops.Dense(rand(5, 6), rand(5)), (6,)),
        "Conv2d": _one(ops.Conv2d(rand(3, 2, 3, 3), rand(3), stride=2, padding=(1, 0, 2, 1)), (2, 6, 6)),
        "ElementwiseAffine": _one(ops.ElementwiseAffine(rand(3, 1, 1), rand(3, 4, 4)), (3, 4, 4)),
        "BatchNorm": _one(bn, (3, 4, 4)),
        "AvgPool2d": _one(ops.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 6, 6)),
        "AvgPool2d_pad": _one(ops.AvgPool2d(2, 2, (1, 0, 0, 1), count_include_pad=True), (2, 5, 5)),
        "ConvTranspose2d": _one(ops.ConvTranspose2d(rand(2, 3, 3, 3), rand(3), stride=2, padding=(1, 0, 0, 1), output_padding=1),
                                (2, 4, 4)),
        "Reduce": _one(ops.Reduce((0, 2), keepdims=False, mean=True), (3, 4, 5)),
        "Reduce_sum": _one(ops.Reduce((1,), keepdims=True), (3, 4, 2)),
    }
    cases["chain_dense_relu_dense"] = _chain([("dense", (rand(5, 4), rand(5))), ("relu", None), ("dense", (rand(3, 5), rand(3)))], 4)
    cases["chain_dense_exp"] = _chain([("dense", (rand(3, 4), rand(3))), ("exp", None)], 4)
    cases["chain_dense_tanh_dense"] = _chain([("dense", (rand(4, 4), rand(4))), ("tanh", None), ("dense", (rand(2, 4), rand(2)))], 4)
    for name, graph in affine.items():
        cases[name] = Case(graph, "affine", affine=batch_norm_map(graph, *bn_params, 1e-5) if name == "BatchNorm" else affine_map(graph))
    cases.update(derived_cases(cases))
    return cases


GENERIC_TAILS: tuple[Interval, ...] = _tails_with(EXP_TAILS, S_TAILS)
"""The tails a derived case samples: exp's and the S-shaped functions' overflow and underflow ranges."""


def derived_cases(written: dict[str, Case]) -> dict[str, Case]:
    """A case for each op no written case covers that is a scalar activation with ONNX semantics in the exactness
    oracle (`exact_onnx_math.ELEMENTWISE`): the oracle's function, its kinks and 0 as special points, the generic
    tails. A new activation op of that kind needs no case here: its module and its `soundness.op_graphs` line."""
    from exact_onnx_math import ELEMENTWISE  # the oracle's own function of the ONNX op, in arb

    covered = {type(c.graph.node(c.graph.output)) for c in written.values()}
    out: dict[str, Case] = {}
    for cls in ops.ALL_OPS:
        if cls in covered or not issubclass(cls, ScalarActivation) or cls.onnx_op not in ELEMENTWISE:
            continue
        fn = ELEMENTWISE[cls.onnx_op]
        out[cls.__name__] = _elementwise(cls(), ((lambda x, fn=fn: fn(x, {}), None),), (0.0, *cls.kinks), GENERIC_TAILS)
    return out


def _chain(layers: list[tuple[str, object]], n_in: int) -> Case:
    """A short chain of Dense layers and activations (names 'relu', 'exp', 'tanh'), with its exact composition in
    ball arithmetic: CROWN's refinement of an intermediate, its rounding slack and an overflow inside the chain, at
    the same extreme boxes as the single ops."""
    acts = {"relu": (ops.Relu, lambda x: x.max(arb(0))), "exp": (ops.Exp, lambda x: x.exp()), "tanh": (ops.Tanh, lambda x: x.tanh())}
    nodes, prev, steps = [], INPUT, []
    for i, (kind, arg) in enumerate(layers):
        if kind == "dense":
            w, b = arg
            nodes.append((f"d{i}", ops.Dense(w, b), (prev,)))
            steps.append(([[float(v) for v in row] for row in w.tolist()], [float(v) for v in b.tolist()]))
        else:
            nodes.append((f"a{i}", acts[kind][0](), (prev,)))
            steps.append(acts[kind][1])
        prev = nodes[-1][0]

    def fn(xs: list[arb]) -> list[Ball]:
        v = xs
        for step in steps:
            if callable(step):
                v = [step(x) for x in v]
            else:
                w, b = step
                v = [sum((_a(wij) * x for wij, x in zip(row, v)), _a(bi)) for row, bi in zip(w, b)]
        return v

    return Case(Graph((n_in,), nodes, prev).double(), "pointwise", point_fn=fn, tails=S_TAILS + ((-MAX, MAX), (1e300, MAX)))


def batch_norm_map(graph: Graph, mean: torch.Tensor, var: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                   eps: float) -> AffineMap:
    """Batch norm's exact map from its stored statistics (float32, ε as the float32 a model stores): per channel c,
    y = x·γ/√(var + ε) + (β − mean·γ/√(var + ε)) — real numbers, not floats, given as balls."""
    shape = graph.input_shape
    per = math.prod(shape[1:])
    e32 = float(np.float32(eps))

    def scale(c: int) -> Callable[[], arb]:
        return lambda: _a(float(gamma[c])) / (_a(float(var[c])) + _a(e32)).sqrt()

    def shift(c: int) -> Callable[[], arb]:
        return lambda: _a(float(beta[c])) - _a(float(mean[c])) * scale(c)()

    rows = [[(i, scale(i // per))] for i in range(math.prod(shape))]
    return AffineMap(rows, [shift(i // per) for i in range(math.prod(shape))])


# ------------------------------------------------------------------------------------------ box families


def _ulp_box(c: float) -> Interval:
    return (c, math.nextafter(c, math.inf))


def family_pool(name: str, case: Case, rng: np.random.Generator) -> list[Interval]:
    """The scalar intervals of one family for one case (see the module docstring)."""
    if name == "wide":
        k = 16
        c1, r1 = rng.uniform(-20, 20, k), rng.uniform(0, 10, k) * (rng.random(k) < 0.85)
        c2, r2 = rng.uniform(-2000, 2000, k), rng.uniform(0, 1000, k) * (rng.random(k) < 0.85)
        c, r = np.concatenate([c1, c2]), np.concatenate([r1, r2])
        return [(float(a - b), float(a + b)) for a, b in zip(c, r)]
    if name == "degenerate":
        centres = [0.0, TINY, -TINY, 1e-310, -1e-310, 1e-300, -1e-300, MIN_NORMAL, 1.0, -1.0, 0.5, 1e15, -1e15, 3.0, -3.0,
                   *rng.normal(0, 3, 4).tolist()]
        pool = [(c, c) for c in centres] + [_ulp_box(c) for c in centres]
        pool += [(0.0, 1e-300), (-1e-300, 0.0), (-5e-301, 5e-301), (1e-300, 2e-300), (-2e-300, -1e-300)]
        return pool
    if name == "huge":
        k = 10
        c, r = rng.uniform(-1e15, 1e15, k), rng.uniform(0, 1e15, k)
        pool = [(float(max(a - b, -1e15)), float(min(a + b, 1e15))) for a, b in zip(c, r)]
        pool += [(-1e15, 1e15), (1e15, 1e15), (-1e15, -1e15), (0.0, 1e15), (-1e15, 0.0), (1e15 - 1, 1e15 + 1),
                 _ulp_box(1e15), (-1e15 - 10, -1e15 + 10), (1e15 + 0.125, 1e15 + 0.125), (1e5, 1e5 + 1e-9), (-1e10, 1e10),
                 (-MAX, MAX), (MAX, MAX), (-MAX, -MAX), (1e300, MAX), (-MAX, -1e300), (1e30, 1e30 + 1e20)]
        return pool
    if name == "edges":
        pool: list[Interval] = []
        for s in case.special:
            for w in (0.0, 1e-300, 1e-12 * max(1.0, abs(s)), 1e-3, 1.0):
                a, b = s - w, s + w
                if w and a == s:  # too small to show at this magnitude: one ulp
                    a, b = math.nextafter(s, -math.inf), math.nextafter(s, math.inf)
                pool += [(a, s), (s, b), (a, b)] if w else [(s, s)]
        pool += [(-TINY, TINY), (0.0, TINY), (TINY, 1e-310), (-1e-310, -TINY), (-0.0, 0.0), (MIN_NORMAL, MIN_NORMAL * 2)]
        return pool
    if name == "tails":
        return list(case.tails) or [(-1e300, 1e300), (1e300, 1e300)]
    raise ValueError(name)


FAMILIES = ("wide", "degenerate", "huge", "edges", "tails")


def boxes(case: Case, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(lower, upper) float64 boxes (N, *shape) for every family, and each row's family name."""
    rng = np.random.default_rng(seed)
    shape = case.graph.input_shape
    n_in = math.prod(shape)
    los, his, names = [], [], []
    for fam in FAMILIES:
        pool = family_pool(fam, case, rng)
        if case.kind == "elementwise" and case.params is None:  # every interval once, n_in per row
            order = list(range(len(pool)))
            rows = math.ceil(len(pool) / n_in)
            order += rng.integers(0, len(pool), rows * n_in - len(pool)).tolist()
        else:
            rows = max(3 if case.kind == "affine" else 6, math.ceil(2 * len(pool) / n_in))
            order = rng.integers(0, len(pool), rows * n_in).tolist()
        arr = np.array([pool[i] for i in order], dtype=np.float64).reshape((rows, n_in, 2))
        if fam == "tails" and case.explicit:
            arr = np.concatenate([arr, np.array(case.explicit, dtype=np.float64)])
            rows = arr.shape[0]
        los.append(arr[..., 0].reshape((rows,) + tuple(shape)))
        his.append(arr[..., 1].reshape((rows,) + tuple(shape)))
        names += [fam] * rows
    return np.concatenate(los), np.concatenate(his), names


def to_float32_outward(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smallest float32 box containing [lo, hi] (ends past float32's range become ±∞)."""
    with np.errstate(over="ignore"):
        l32, h32 = lo.astype(np.float32), hi.astype(np.float32)
        l32 = np.where(l32.astype(np.float64) > lo, np.nextafter(l32, np.float32(-np.inf)), l32)
        h32 = np.where(h32.astype(np.float64) < hi, np.nextafter(h32, np.float32(np.inf)), h32)
    return l32, h32


def normal_ends(lo: np.ndarray, hi: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The box widened so that no end is a subnormal number of `dtype` (a lower end in (−min normal, 0) becomes
    −min normal, one in (0, min normal) becomes 0; upper ends alike): what bounds computed with denormals flushed
    to zero and *read* as zero need, since a subnormal end would be read as 0 and the box would shrink."""
    tiny = np.finfo(dtype).tiny
    sub = lambda v: (v != 0) & (np.abs(v) < tiny)  # noqa: E731
    lo = np.where(sub(lo), np.where(lo < 0, -tiny, 0.0), lo).astype(dtype)
    hi = np.where(sub(hi), np.where(hi > 0, tiny, 0.0), hi).astype(dtype)
    return lo, hi


def sample(lo: np.ndarray, hi: np.ndarray, n: int, rng: np.random.Generator, case: Case | None = None) -> np.ndarray:
    """(N, m, *shape) float64 points in each box [lo, hi] (infinite ends are replaced by ±max for sampling):
    both extreme corners, random corners, face points, uniform interior points, log-uniform points (magnitudes
    from 1e-320 up, so that wide boxes also show their subnormal and mid-range values), the case's extra points
    (softmax's extreme corners) and, for elementwise cases, the special points that lie in the box."""
    lo = np.clip(lo, -MAX, MAX)
    hi = np.clip(hi, -MAX, MAX)
    N, shape = lo.shape[0], lo.shape[1:]
    L, H = lo[:, None], hi[:, None]
    k_corner, k_face, k_log = n // 3, n // 6, n // 6
    k_in = n - 2 - k_corner - k_face - k_log
    corners = np.where(rng.random((N, k_corner) + shape) < 0.5, H, L)
    t = rng.random((N, k_face) + shape)
    face = np.where(rng.random(t.shape) < 0.5, (t < 0.5).astype(np.float64), t)
    inner = rng.random((N, k_in) + shape)
    tt = np.concatenate([face, inner], axis=1)
    mixed = L * (1 - tt) + H * tt
    top = np.log10(np.maximum(np.maximum(np.abs(L), np.abs(H)), 1e-300))
    mag = 10.0 ** (-320 + (top + 320) * rng.random((N, k_log) + shape))
    logu = np.where(rng.random(mag.shape) < 0.5, -mag, mag)
    parts = [L, H, corners, mixed, logu]
    if case is not None and case.extra_points is not None:
        parts.append(case.extra_points(lo, hi))
    if case is not None and case.kind == "elementwise":
        parts += [np.broadcast_to(np.float64(s), L.shape) for s in case.special]
    with np.errstate(over="ignore", invalid="ignore"):
        pts = np.concatenate([np.broadcast_to(p, (N, p.shape[1]) + shape) for p in parts], axis=1)
    pts = np.nan_to_num(pts, nan=0.0)
    return np.minimum(np.maximum(pts, L), H)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one torch thread (two only wait on each other, badly so on a busy machine), restored after.
    Autouse in the modules that import it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
