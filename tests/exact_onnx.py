"""An exactness oracle: evaluate an ONNX file on one input point in rigorous ball arithmetic (python-flint `arb`).

Independent of srp_audit by design (it must not import it): the file is read with `onnx`, every stored float
(initializers, Constant nodes, float attributes) is the exact dyadic rational it encodes, and every op follows
the ONNX operator spec in exact real arithmetic (tests/exact_onnx_{math,nn,shape}.py). The result is, per output
entry, an arb ball that provably contains the exact real value of the stored network at that point — so a
sound bound method run on the degenerate box [x, x] must return bounds that contain the whole ball, with no
tolerance. `ExactOnnx.run(..., exact=True)` evaluates with exact rationals (python-flint `fmpq`) instead (affine and
piecewise-linear ops only), which the tests use to construct inputs where a ReLU's input is exactly zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import exact_onnx_discrete  # noqa: F401  (registers ops)
import exact_onnx_math  # noqa: F401
import exact_onnx_nn  # noqa: F401
import exact_onnx_shape  # noqa: F401
import numpy as np
import onnx
from exact_onnx_core import OPS, Ctx, Undecided, Unsupported, arb_of_fraction
from flint import arb, fmpq
from flint import ctx as flint_ctx
from onnx import helper, numpy_helper

DEFAULT_PREC = 256
COMPARE_PREC = 8192
UNDECIDED_PRECS = (1024, 4096)  # bits of the re-evaluations when a discrete result is undecided


def supported_ops() -> list[str]:
    """The ONNX op types the oracle evaluates."""
    return sorted(OPS)


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        out[a.name] = v
    return out


class ExactOnnx:
    """One ONNX model, ready to evaluate exactly on input points."""

    def __init__(self, model: str | Path | onnx.ModelProto, prec: int = DEFAULT_PREC) -> None:
        self.model = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
        self.source = f"<model {id(model)}>" if isinstance(model, onnx.ModelProto) else str(model)
        g = self.model.graph
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
            raise Unsupported("control flow (subgraphs)")
        self.opset = next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.constants = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.inputs = [i for i in g.input if i.name not in self.constants]
        self.outputs = [o.name for o in g.output]
        self.prec = prec
        self._ctx = {False: Ctx(self.opset), True: Ctx(self.opset, exact=True)}
        self._attrs = [_attrs(n) for n in g.node]
        missing = sorted({n.op_type for n in g.node if n.op_type not in OPS or n.domain not in ("", "ai.onnx")})
        if missing:
            raise Unsupported(f"no exact semantics for {missing}")

    def input_shapes(self) -> list[tuple[int, ...]]:
        """Declared input shapes (symbolic dimensions read as 1: one sample)."""
        return [tuple(d.dim_value if d.HasField("dim_value") else 1 for d in i.type.tensor_type.shape.dim) for i in self.inputs]

    def input_dtypes(self) -> list[np.dtype]:
        return [np.dtype(helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)) for i in self.inputs]

    def run(self, feeds: np.ndarray | list[np.ndarray], *, exact: bool = False, outputs: Iterable[str] | None = None,
            prec: int | None = None) -> list[np.ndarray]:
        """The requested values (default: the graph outputs) at the input point(s) `feeds` (one array per input,
        each in its declared shape), as object arrays of arb balls (of fmpq rationals with `exact`), computed at
        `prec` bits (default: the model's). A discrete result the balls cannot decide (an ArgMax between two
        overlapping balls, a Cast to int of a ball spanning an integer) is re-evaluated at UNDECIDED_PRECS bits;
        Undecided is raised when even the last cannot decide it."""
        feeds = [feeds] if isinstance(feeds, np.ndarray) else list(feeds)
        want = list(outputs) if outputs is not None else self.outputs
        start = prec or self.prec
        for p in [start] + [q for q in UNDECIDED_PRECS if q > start]:
            try:
                return self._run(feeds, exact, want, p)
            except Undecided as e:
                last = e
        raise Undecided(f"{self.source}: undecided at {max(start, *UNDECIDED_PRECS)} bits: {last}") from last

    def _run(self, feeds: list[np.ndarray], exact: bool, want: list[str], prec: int) -> list[np.ndarray]:
        ctx = self._ctx[exact]
        old = flint_ctx.prec
        flint_ctx.prec = prec
        try:
            values: dict[str, Any] = dict(self.constants)
            for spec, x in zip(self.inputs, feeds):
                x = np.asarray(x)
                values[spec.name] = ctx.real(x) if x.dtype.kind == "f" else x
            pending = set(want) - set(values)
            for node, attrs in zip(self.model.graph.node, self._attrs):
                if not pending:
                    break
                ins = [values[n] if n else None for n in node.input]
                try:
                    outs = OPS[node.op_type](ctx, node, ins, attrs)
                except (Unsupported, Undecided):
                    raise
                except TypeError as e:
                    if exact:  # a ball met a rational: the op is not exact-rational
                        raise Unsupported(f"{node.op_type} in exact-rational mode") from e
                    raise
                except Exception as e:
                    raise RuntimeError(f"exact evaluation of node {node.name!r} ({node.op_type}) failed: {e!r}") from e
                for name, v in zip(node.output, outs):
                    if name:
                        values[name] = v
                        pending.discard(name)
            out = [values[n] for n in want]
            if exact and any(isinstance(v, arb) for o in out if o.dtype == object for v in o.flat):
                raise Unsupported("the requested values are not rational (an irrational op lies before them)")
            return out
        finally:
            flint_ctx.prec = old

    def node_inputs(self, op_type: str) -> list[str]:
        """The data input name of every node of one op type, in graph order (e.g. each Relu's input)."""
        return [n.input[0] for n in self.model.graph.node if n.op_type == op_type]


# ----------------------------------------------------------------------------------------- checking enclosures


@dataclass
class Enclosure:
    """How a vector of exact balls sits in float bounds [lower, upper]."""

    contained: np.ndarray  # bool per entry: the whole ball lies in [lower, upper]
    disjoint: np.ndarray  # bool per entry: no point of the ball lies in [lower, upper] (a proven violation)
    excess: np.ndarray  # float per entry: how far the ball reaches outside the bounds (0 inside)
    scale: float  # max |value| over the entries, for relative figures

    @property
    def ok(self) -> bool:
        return bool(self.contained.all())

    def summary(self) -> str:
        if self.ok:
            return "every exact value lies inside its bounds"
        bad = np.flatnonzero(~self.contained)
        worst = int(bad[np.argmax(self.excess[bad])])
        rel = self.excess[worst] / max(self.scale, 1e-300)
        return (f"{bad.size} of {self.contained.size} outputs not enclosed ({int(self.disjoint.sum())} proven outside); worst: output "
                f"{worst} outside by {self.excess[worst]:.3e} (relative to max |y| {self.scale:.3e}: {rel:.3e})")


def enclosure(balls: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> Enclosure:
    """Compare exact balls with float64 bounds exactly (no tolerance): arb compares exact endpoints."""
    balls = np.asarray(balls, dtype=object).reshape(-1)
    lower, upper = np.asarray(lower, dtype=np.float64).reshape(-1), np.asarray(upper, dtype=np.float64).reshape(-1)
    contained, disjoint, excess = np.zeros(balls.size, bool), np.zeros(balls.size, bool), np.zeros(balls.size)
    old = flint_ctx.prec
    flint_ctx.prec = COMPARE_PREC  # endpoints of the finest balls are read without rounding
    try:
        for i, (b, lo, hi) in enumerate(zip(balls, lower, upper)):
            b = _as_arb(b)
            lo_a, hi_a = arb(float(lo)), arb(float(hi))
            vacuous = lo == -np.inf and hi == np.inf  # claims nothing: holds even where the value is undefined (NaN)
            contained[i] = vacuous or bool(b.is_finite() and b.lower() >= lo_a and b.upper() <= hi_a)
            disjoint[i] = bool(b < lo_a or b > hi_a)
            if not contained[i]:
                excess[i] = max(lo - float(b.lower()), float(b.upper()) - hi, 0.0) if b.is_finite() else float("inf")
        scale = max((abs(float(_as_arb(b).mid())) for b in balls if _as_arb(b).is_finite()), default=0.0)
    finally:
        flint_ctx.prec = old
    return Enclosure(contained, disjoint, excess, scale)


def _as_arb(b: Any) -> arb:
    if isinstance(b, arb):
        return b
    return arb_of_fraction(Fraction(int(b.p), int(b.q)) if isinstance(b, fmpq) else Fraction(b))


def midpoints(balls: np.ndarray) -> np.ndarray:
    """float64 midpoints of exact balls (for comparisons with float runtimes)."""
    return np.array([float(_as_arb(b).mid()) for b in np.asarray(balls, dtype=object).reshape(-1)]).reshape(np.shape(balls))


def widths(balls: np.ndarray) -> np.ndarray:
    """Radii of exact balls as floats (how sharp the oracle is: about 2^-prec relative unless a breakpoint is hit)."""
    return np.array([float(_as_arb(b).rad()) for b in np.asarray(balls, dtype=object).reshape(-1)]).reshape(np.shape(balls))
