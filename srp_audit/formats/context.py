"""What every loader shares: input-dependent tensors vs constants, emitting IR nodes, and the batch-axis rules.

A model with a batch axis has its framework axis k at sample axis k − 1, and the batch is fixed to `BATCH` (1)
while shape arithmetic is evaluated, so reshapes that keep the batch first become per-sample reshapes and ops
that would mix the batch into the sample are rejected with the node named. Subclasses say how nodes are named
(`node_name`, `op_name`, `version`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import numpy as np
import torch

from ..errors import ModelLoadError, UnsupportedOpError
from ..ir.graph import Graph, GraphMeta
from ..ir.node import Node
from ..ir.reading import Derived, Tensor, Value, stored_tensor
from ..ir.walk import INPUT
from ..kernel.enclosure import Enclosed
from ..ops.add import Add
from ..ops.affine import ElementwiseAffine
from ..ops.concat import Concat
from ..ops.power import Reciprocal
from ..ops.product import Product
from ..ops.reduce import Reduce
from ..ops.relu import Relu
from ..ops.select import Select, index_map
from ..ops.shape import Identity, Reshape, Transpose
from ..passes.fuse import fuse_self_products
from ..passes.simplify import prune_dead

BATCH = 1  # the batch size assumed while folding shape arithmetic


class LoaderContext:
    """State of one load: values by source name, the IR nodes emitted so far, and the model's conventions."""

    def __init__(self, batched: bool) -> None:
        self.batched = batched
        self.values: dict[str, Value] = {}
        self.nodes: list[tuple[str, Node, tuple[str, ...]]] = []
        self.origin: dict[str, str] = {}
        self.comparisons: dict[str, tuple[Tensor, str, float]] = {}
        """IR value of a comparison of data with a scalar → (the data, 'gt'/'ge'/…, the scalar): Softplus's
        threshold is read back from Where(x > t, …)."""
        self._count: dict[str, int] = {}
        self.anchor: Tensor | None = None  # the IR input, which constants lifted into the data are computed from
        self.shapes: dict[str, tuple[int, ...]] = {}  # IR value → its per-sample shape
        self.made: dict[str, tuple[Node, tuple[str, ...]]] = {}  # IR value → the node that computes it, its inputs
        self.integer_names: set[str] = set()  # source values of an integer or bool type (ONNX type inference)
        self.model_inputs: set[str] = set()  # names of the model's own inputs
        self.double_names: set[str] = set()  # source values of type float64
        self.types: dict[str, int] = {}  # source value → its ONNX element type, where type inference knows it
        self.types_consistent = True  # the model's declared types agree with type inference

    # ---------------------------------------------------------------- naming (subclasses override)

    @property
    def node_name(self) -> str:
        return "?"

    @property
    def op_name(self) -> str:
        return "?"

    @property
    def version(self) -> int | None:
        return None

    def unsupported(self, reason: str) -> UnsupportedOpError:
        return UnsupportedOpError(self.node_name, self.op_name, self.version, reason)

    def emit(self, node: Node, inputs: list[Tensor], tag: str | None = None, moved_ok: bool = False) -> Tensor:
        """Append an IR node reading `inputs` (batch axis first, unless `moved_ok`); returns the new tensor."""
        if not moved_ok:
            for t in inputs:
                self.batch_first(t)
        tag = tag or type(node).__name__.lower()
        k = self._count.get(tag, 0)
        self._count[tag] = k + 1
        name = f"{tag}_{k}"
        try:
            shape = tuple(node.out_shape(*(t.shape for t in inputs)))
        except ValueError as e:
            raise ModelLoadError(f"node '{self.node_name}' ({self.op_name}) does not fit the shapes it receives "
                                 f"({e}); the model file is inconsistent") from None
        if any(d <= 0 for d in shape):
            raise ModelLoadError(f"node '{self.node_name}' ({self.op_name}) computes an empty tensor, of shape {shape} (a window "
                                 "larger than its input?); the model file is inconsistent")
        self.nodes.append((name, node, tuple(t.ir for t in inputs)))
        self.made[name] = (node, tuple(t.ir for t in inputs))
        self.shapes[name] = shape
        self.origin[name] = f"{self.node_name}: {self.op_name}"
        return Tensor(name, shape)

    def declared(self, build: Callable[..., Node], *args: Any) -> Node:
        """The node of an op mapped by declaration (`onnx_op` / `aten_ops`): `build(*args)` (its `from_onnx` or
        `from_aten`); an attribute the op rejects (ValueError) is reported as unsupported."""
        try:
            return build(*args)
        except ValueError as e:
            raise self.unsupported(str(e)) from None

    def emit_declared(self, inputs: list[Tensor], build: Callable[..., Node], *args: Any) -> Tensor:
        """Emit an op mapped by declaration (see `declared`)."""
        return self.emit(self.declared(build, *args), inputs)

    def graph(self, sample: tuple[int, ...], out: Tensor, meta: GraphMeta) -> Graph:
        """The loaded graph (unsimplified, dead branches pruned) ending at `out`; an output that is the input
        itself gets an Identity node, since a graph ends in a node."""
        self.batch_first(out)
        if out.ir == INPUT:
            out = self.emit(Identity(), [out])
        meta = replace(meta, origin=self.origin)
        graph = prune_dead(fuse_self_products(Graph(sample, self.nodes, out.ir, meta)))
        # a weight only float64 holds exactly (a float64 model) makes the whole graph float64 (float32 ones convert exactly)
        if any(t.dtype == torch.float64 for t in [*graph.parameters(), *graph.buffers()]):
            graph = graph.to(torch.float64)
        return graph

    # ---------------------------------------------------------------- value access

    def get(self, name: str) -> Value | None:
        if name == "":
            return None
        if name not in self.values:
            raise ModelLoadError(f"node '{self.node_name}' reads '{name}', which nothing defines")
        return self.values[name]

    def tensor(self, name: str, moved_ok: bool = False) -> Tensor:
        v = self.get(name)
        if not isinstance(v, Tensor):
            raise self.unsupported(f"input '{name}' was expected to depend on the model input")
        return v if moved_ok else self.batch_first(v)

    def batch_first(self, t: Tensor) -> Tensor:
        """`t`, checked to have the batch axis first (every op but transposes and picks needs it there)."""
        if self.batched and t.batch_at != 0:
            raise self.unsupported(f"its input has the batch axis at position {t.batch_at} (a Transpose moved it); only "
                                   "transposes and picks (Gather, Slice, Split, unbind) may read it before it is back in front")
        return t

    def permute(self, t: Tensor, perm: list[int]) -> Tensor:
        """Transpose `t` by a framework-axis permutation; one that moves the batch axis permutes the other axes and
        records where the batch went (a later pick or transpose brings it back)."""
        if not self.batched:
            return t if perm == sorted(perm) else self.emit(Transpose(tuple(perm)), [t])
        b = t.batch_at
        sample_perm = [p - (1 if p > b else 0) for p in perm if p != b]
        out = t if sample_perm == sorted(sample_perm) else self.emit(Transpose(tuple(sample_perm)), [t], moved_ok=True)
        return Tensor(out.ir, out.shape, perm.index(b))

    def pick(self, t: Tensor, apply: Callable[[np.ndarray], list]) -> list[Tensor]:
        """One Select per output of a pick/repeat/reorder op, learnt by running it on entry numbers."""
        picks = index_map(apply, t.shape, self.batched, t.batch_at)
        if picks is None:
            raise self.unsupported("it moves or mixes the batch axis; only per-sample slicing and gathering is supported")
        total = math.prod(t.shape)
        out = []
        for idx, shape, at in picks:
            s = self.emit(Select(idx, shape, total), [t], "select", moved_ok=True)
            out.append(Tensor(s.ir, s.shape, at))
        return out

    def lift(self, c: np.ndarray) -> Tensor:
        """A constant as an IR value, 0·(an input entry) + c, of the constant's own framework shape (batched: its
        leading axis of size 1 is the batch axis; a constant without one is refused, as its axes would shift)."""
        c = np.asarray(c)
        if self.batched and (c.ndim < 2 or c.shape[0] != 1):
            raise self.unsupported(f"an op on data reads a constant of shape {c.shape}, which has no batch axis")
        shape = tuple(c.shape[1:]) if self.batched else tuple(c.shape)
        if not shape or self.anchor is None:
            raise self.unsupported(f"an op on data reads a constant of shape {c.shape}")
        return self._as_data(self.anchor, stored_tensor(np.asarray(c, dtype=np.float64 if c.dtype.kind in "iub" else c.dtype).reshape(shape)))

    def const(self, name: str, what: str = "input") -> np.ndarray:
        v = self.get(name)
        if isinstance(v, Derived):
            raise self.unsupported(f"{what} '{name}' is computed from other constants and no float holds it exactly (like "
                                   "1/3); such constants may only scale or shift the data")
        if not isinstance(v, np.ndarray):
            if name in self.model_inputs:
                raise self.unsupported(f"{what} '{name}' is a model input: it must be stored in the model (export it as a "
                                       "constant), as srp-audit bounds the data, not shapes or indices given at run time")
            raise self.unsupported(f"{what} '{name}' must be a constant (a weight), not computed from the input")
        return v

    def weight(self, name: str, what: str) -> torch.Tensor:
        """A float constant used as a weight, exactly as stored (see `stored_tensor`): must be finite."""
        arr = self.const(name, what)
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ModelLoadError(
                f"{what} '{name}' of node '{self.node_name}' ({self.op_name}) contains NaN or inf; the model's weights are corrupt"
            )
        return stored_tensor(arr)

    # ---------------------------------------------------------------- axis conventions

    def full_shape(self, t: Tensor) -> tuple[int, ...]:
        """The tensor's shape as the source framework sees it (with the batch axis, fixed to BATCH)."""
        if not self.batched:
            return t.shape
        return t.shape[:t.batch_at] + (BATCH,) + t.shape[t.batch_at:]

    def sample_axis(self, t: Tensor, axis: int) -> int:
        """Map a framework axis of tensor `t` to its sample axis; the batch axis itself cannot be addressed."""
        rank = len(self.full_shape(t))
        if not -rank <= axis < rank:
            raise self.unsupported(f"axis {axis} out of range for rank {rank}")
        axis %= rank
        if self.batched:
            if axis == t.batch_at:
                raise self.unsupported("operating along the batch axis is not supported")
            return axis - (1 if axis > t.batch_at else 0)
        return axis

    def sample_enclosure(self, t: Tensor, c: np.ndarray | Derived) -> Enclosed:
        """`sample_const` for a scale or shift: a stored constant exactly, a `Derived` one with its enclosure."""
        if isinstance(c, Derived):
            return Enclosed(self.sample_const(t, c.value.mid.numpy()), self.sample_const(t, c.value.rad.numpy()))
        return Enclosed.exact(self.sample_const(t, c))

    def sample_const(self, t: Tensor, c: np.ndarray) -> torch.Tensor:
        """A constant broadcast against tensor `t` in framework space, re-expressed against the sample."""
        c = np.asarray(c)
        if not np.issubdtype(c.dtype, np.floating):
            c = c.astype(np.float64)
        while c.ndim > len(t.shape):
            if c.shape[0] != 1:
                raise self.unsupported(f"constant of shape {c.shape} broadcasts along the batch axis")
            c = c[0]
        if not np.all(np.isfinite(c)):
            raise ModelLoadError(f"constant of node '{self.node_name}' ({self.op_name}) contains NaN or inf")
        return stored_tensor(c)

    def broadcast(self, t: Tensor, c: torch.Tensor) -> Tensor:
        """`t` repeated to the shape it takes when combined with the constant `c` (numpy broadcasting), so that the
        elementwise op that follows keeps its shape; `t` itself when `c` does not enlarge it."""
        try:
            target = tuple(np.broadcast_shapes(t.shape, tuple(c.shape)))
        except ValueError:
            raise ModelLoadError(f"node '{self.node_name}' ({self.op_name}) combines shapes {self.full_shape(t)} and "
                                 f"{tuple(c.shape)} that do not broadcast; the model file is inconsistent") from None
        if target == t.shape:
            return t
        n = math.prod(t.shape)
        idx = np.broadcast_to(np.arange(n).reshape(t.shape), target)
        return self.emit(Select(idx.reshape(-1), target, n), [t], "broadcast")

    def reshape_to(self, t: Tensor, shape: list[int]) -> Tensor:
        """Reshape `t` to a fully resolved framework-space shape, keeping the batch axis first."""
        if self.batched:
            if not shape or shape[0] != BATCH or math.prod(shape[1:]) != math.prod(t.shape):
                raise self.unsupported(
                    f"reshaping {tuple(self.full_shape(t))} to {tuple(shape)} mixes the batch axis into the sample"
                )
            target = tuple(shape[1:])
        else:
            target = tuple(shape)
        if target == t.shape:
            return t
        return self.emit(Reshape(target), [t])

    # ---------------------------------------------------------------- shared op mappings

    def add_or_sub(self, a: Value, b: Value, sub: bool) -> Tensor:
        """a ± b with at least one tensor: a residual Add, or a shift by a constant."""
        if isinstance(a, Tensor):
            if isinstance(b, Tensor):
                if a.shape != b.shape:  # x − mean(x) of a LayerNorm: both repeated to their common shape
                    a, b = self.common_shape(a, b)
                if sub:
                    b = self.emit(ElementwiseAffine(-1.0, 0.0), [b], "neg")
                return self.emit(Add(), [a, b])
            c = self.sample_enclosure(a, b)
            return self.emit(ElementwiseAffine(1.0, -c if sub else c), [self.broadcast(a, c.mid)], "affine")
        data = cast(Tensor, b)  # a is a constant, so b is the data (constant ± constant is folded before the loader)
        c = self.sample_enclosure(data, a)
        return self.emit(ElementwiseAffine(-1.0 if sub else 1.0, c), [self.broadcast(data, c.mid)], "affine")

    def common_shape(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """Two input-dependent tensors, each repeated to their common (broadcast) shape."""
        try:
            target = torch.zeros(tuple(np.broadcast_shapes(a.shape, b.shape)))
        except ValueError:
            raise ModelLoadError(f"node '{self.node_name}' ({self.op_name}) combines shapes {self.full_shape(a)} and "
                                 f"{self.full_shape(b)} that do not broadcast; the model file is inconsistent") from None
        return self.broadcast(a, target), self.broadcast(b, target)

    def product(self, a: Tensor, b: Tensor) -> Tensor:
        """a ⊙ b of two input-dependent tensors, each repeated to their common (broadcast) shape first."""
        return self.emit(Product(), list(self.common_shape(a, b)), "product")

    def matmul(self, a: Tensor, b: Tensor) -> Tensor:
        """a @ b of two input-dependent tensors (attention): both repeated to (…, n, k, m), multiplied, summed over k."""
        sa, sb = a.shape, b.shape
        if len(sa) < 2 or len(sb) < 2 or sa[-1] != sb[-2]:
            raise self.unsupported(f"a product of data of shapes {self.full_shape(a)} and {self.full_shape(b)}")
        try:
            lead = tuple(np.broadcast_shapes(sa[:-2], sb[:-2]))
        except ValueError:
            raise self.unsupported(f"matrix product of shapes {sa} and {sb} that do not broadcast") from None
        n, k, m = sa[-2], sa[-1], sb[-1]
        full = lead + (n, k, m)
        ia = np.broadcast_to(np.arange(math.prod(sa)).reshape(sa)[..., None], full)
        ib = np.broadcast_to(np.arange(math.prod(sb)).reshape(sb)[..., None, :, :], full)
        pa = self.emit(Select(ia.reshape(-1), full, math.prod(sa)), [a], "broadcast")
        pb = self.emit(Select(ib.reshape(-1), full, math.prod(sb)), [b], "broadcast")
        prod = self.emit(Product(), [pa, pb], "product")
        return self.emit(Reduce((len(full) - 2,), keepdims=False), [prod], "contract")

    def clip(self, x: Tensor, lo: float | None, hi: float | None) -> Tensor:
        """min(max(x, lo), hi) as lo + relu(x − lo) − relu(x − hi): exact in real arithmetic, and made of ops whose
        rules exist (ReLU's relaxations, slopes and branch-and-bound splits apply). The bounds are the model's own
        values (a float64 bound is not rounded to float32)."""
        if any(v is not None and (np.isnan(v) or v == bound) for v, bound in ((lo, math.inf), (hi, -math.inf))):
            raise self.unsupported(f"Clip with min {lo}, max {hi} (NaN, min +inf or max −inf: a constant output)")
        lo, hi = (None if v is None or not np.isfinite(v) else float(v) for v in (lo, hi))  # −inf min, +inf max: none
        if lo is not None and hi is not None and lo >= hi:
            raise self.unsupported(f"Clip with min {lo} ≥ max {hi} (a constant output)")
        if lo is None:
            if hi is None:
                return x
            # min(x, hi) = hi − relu(hi − x)
            r = self.emit(Relu(), [self.emit(ElementwiseAffine(-1.0, hi), [x], "affine")])
            return self.emit(ElementwiseAffine(-1.0, hi), [r], "affine")
        if hi is None:  # max(x, lo) = lo + relu(x − lo)
            r = self.emit(Relu(), [self.emit(ElementwiseAffine(1.0, -lo), [x], "affine")])
            return self.emit(ElementwiseAffine(1.0, lo), [r], "affine")
        low = self.emit(Relu(), [self.emit(ElementwiseAffine(1.0, -lo), [x], "affine")])
        high = self.emit(Relu(), [self.emit(ElementwiseAffine(1.0, -hi), [x], "affine")])
        cut = self.emit(ElementwiseAffine(-1.0, lo), [high], "affine")  # lo − relu(x − hi)
        return self.emit(Add(), [low, cut])

    def constant_from(self, t: Tensor, c: np.ndarray) -> Tensor:
        """A constant (its sample part) as an IR value: 0·(entries of `t`) + c, so it can join data (Concat)."""
        return self._as_data(t, self.sample_const(t, c))

    def _as_data(self, t: Tensor, value: torch.Tensor) -> Tensor:
        """0·(an entry of `t`, repeated to the value's shape) + value: a constant as an IR value."""
        shape = tuple(value.shape)
        picked = self.emit(Select(np.zeros(math.prod(shape), dtype=np.int64), shape, math.prod(t.shape)), [t], "select")
        return self.emit(ElementwiseAffine(0.0, value), [picked], "constant")

    def mul_or_div(self, a: Value, b: Value, div: bool) -> Tensor:
        """a · b or a / b; a · b of two tensors is a bilinear Product, a / b by data a product with a Reciprocal."""
        if div and isinstance(b, Tensor):  # a / b = a · (1/b): a Reciprocal, then a product or a scale
            b, div = self.emit(Reciprocal(), [b], "reciprocal"), False
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            return self.product(a, b)
        # one is data, one a constant (constant · constant is folded before the loader); a / b: b is the constant,
        # as a data divisor became a product above
        x, k = cast("tuple[Tensor, np.ndarray | Derived]", (a, b) if div or isinstance(a, Tensor) else (b, a))
        if div:
            c = self.sample_enclosure(x, k)
            try:  # 1/c is rarely a float: the node keeps a rigorous enclosure of it (exact when c is a power of two)
                inv = c.reciprocal()
            except ValueError:
                raise ModelLoadError(f"node '{self.node_name}' ({self.op_name}) divides by zero") from None
            return self.emit(ElementwiseAffine(inv, 0.0), [self.broadcast(x, c.mid)], "affine")
        scale = self.sample_enclosure(x, k)
        return self.emit(ElementwiseAffine(scale, 0.0), [self.broadcast(x, scale.mid)], "affine")


def bind_inputs(ctx: LoaderContext, shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], list[Tensor]]:
    """(the IR's input shape, a tensor per model input). Several inputs are one flat input set, concatenated in
    order (as VNN-LIB numbers them): each model input picks its entries."""
    if len(shapes) == 1:
        ctx.anchor, ctx.shapes[INPUT] = Tensor(INPUT, shapes[0]), shapes[0]
        return shapes[0], [ctx.anchor]
    total = sum(math.prod(s) for s in shapes)
    flat, out, start = Tensor(INPUT, (total,)), [], 0
    ctx.anchor, ctx.shapes[INPUT] = flat, flat.shape
    for s in shapes:
        n = math.prod(s)
        out.append(ctx.emit(Select(np.arange(start, start + n), s, total), [flat], "input"))
        start += n
    return (total,), out


def join_outputs(ctx: LoaderContext, outs: list[Tensor]) -> Tensor:
    """Several outputs become one flat vector, concatenated in order (as VNN-LIB numbers Y)."""
    if len(outs) == 1:
        return outs[0]
    flat = [o if len(o.shape) == 1 else ctx.emit(Reshape((math.prod(o.shape),)), [o]) for o in outs]
    return ctx.emit(Concat(0, len(flat)), flat, "outputs")
