"""The checker's own reading of an ONNX model: a list of nodes over flattened per-sample tensors.

Only the operators of certificate format version 1 are interpreted (docs/certificates.md): Gemm and MatMul
with a constant weight, Conv (2-D), Add / Sub / Mul / Div of data by a constant (broadcast), Add of two data
tensors, BatchNormalization (inference), Relu, MaxPool and AveragePool (2-D, ceil_mode 0), Flatten, Reshape
(constant shape), Identity, Dropout. Constants are initializers, Constant nodes, and the shape computations
exporters emit (`FOLDED`: Shape, of data too, its batch read as 1; Identity, Squeeze, Unsqueeze, Concat, Expand
and Reshape of constants; CastLike of a constant to a data tensor's type, the input's); any other operator — on
data or on constants — is refused by name (`UnsupportedModel`). The batch axis (symbolic or 1) is read as 1 and every
tensor is flattened in C order, so Flatten, Reshape, Identity and Dropout only rename a tensor.

What is exact and what is bounded, per operator:
* Gemm, MatMul, Conv, Add/Sub/Mul by a constant: W and b are the model's float constants, exact in float64.
* Div by a constant c: s = fl(1/c), with |1/c − s| ≤ u·|1/c| ≤ 2u·|s| (+ 2η against underflow) kept as `rad`.
* BatchNormalization: x ↦ s·(x − mean) + B with s = fl(γ / fl(√fl(var + ε))); three roundings give
  |s_exact − s| ≤ 4u·|s| + 2η, kept as `rad`; the subtraction of the mean and the addition of B are exact
  constants of two further `Scale` nodes.
* AveragePool (count_include_pad = 1, or no padding): window sums (weights 1, exact) then a `Scale` by
  s = fl(1/(kh·kw)), exact when kh·kw is a power of two, else enclosed as Div's.
* Add of two data tensors, Relu, MaxPool (`pool`): no constants.
"""

# long-module: one job, the checker's own reading of ONNX: one short method per operator of certificate format version 1

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import UnsupportedModel
from .fp import ETA, U
from .linear import Conv, Dense, Linear, Scale, SumPool
from .pool import MaxPool

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
OPSETS = range(7, 24)
"""The default-domain opsets whose semantics the checker's operators follow: before 7, Add, Sub, Mul and Div
broadcast along an `axis` attribute, and Dropout and BatchNormalization default to training mode."""
FOLDED = {"Shape", "Identity", "Squeeze", "Unsqueeze", "Concat", "Expand", "Reshape", "CastLike"}


@dataclass
class Node:
    """One step: `kind` is 'linear' (op set), 'add' (two data inputs), 'relu' or 'maxpool' (op set); names are
    canonical tensors."""

    kind: str
    inputs: tuple[str, ...]
    output: str
    op: Linear | MaxPool | None = None

    @property
    def linear(self) -> Linear:
        """The op of a 'linear' node (`_Reader.linear` gives each one its `Linear`)."""
        return cast(Linear, self.op)

    @property
    def pool(self) -> MaxPool:
        """The op of a 'maxpool' node (`_Reader.op_MaxPool` gives each one its `MaxPool`)."""
        return cast(MaxPool, self.op)


@dataclass
class Network:
    """The interpreted model: `input` and `output` tensor names, nodes in graph order, and the size of every
    tensor. `relus` maps each ReLU's ONNX output name (the certificate's key) to its node's index."""

    input: str
    input_shape: tuple[int, ...]
    output: str
    nodes: list[Node]
    sizes: dict[str, int]
    relus: dict[str, int] = field(default_factory=dict)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The model at a point (or rows of points), in float64 — for tests and counterexample checks."""
        vals = {self.input: np.atleast_2d(np.asarray(x, dtype=np.float64)).reshape(-1, self.sizes[self.input])}
        for nd in self.nodes:
            a = vals[nd.inputs[0]]
            if nd.kind == "relu":
                vals[nd.output] = np.maximum(a, 0.0)
            elif nd.kind == "add":
                vals[nd.output] = a + vals[nd.inputs[1]]
            elif nd.kind == "maxpool":
                vals[nd.output] = nd.pool.forward(a)
            else:
                vals[nd.output] = nd.linear.apply(a) + (0.0 if nd.linear.bias is None else nd.linear.bias)
        return vals[self.output]


def _ints(t: np.ndarray | list[int]) -> tuple[int, ...]:
    """A constant's (or an attribute's) entries as Python ints."""
    return tuple(int(k) for k in np.ravel(t))


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class _Reader:
    """Walks the graph once, in order, keeping constants, tensor shapes (batch read as 1) and aliases."""

    def __init__(self, model: onnx.ModelProto):
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        if opset not in OPSETS:
            raise UnsupportedModel(f"the model uses opset {opset}; the checker interprets opsets {OPSETS[0]}–{OPSETS[-1]} "
                                   "(re-export it at one of them)")
        g = model.graph
        self.const: dict[str, np.ndarray] = {}
        for t in g.initializer:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                raise UnsupportedModel(f"initializer {t.name!r} is stored outside the model file")
            self.const[t.name] = numpy_helper.to_array(t)
        inputs = [i for i in g.input if i.name not in self.const]
        if len(inputs) != 1 or len(g.output) != 1:
            raise UnsupportedModel("the model must have one data input and one output")
        tt = inputs[0].type.tensor_type
        if tt.elem_type not in FLOAT_TYPES:
            raise UnsupportedModel("the model's input is not a float tensor")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        self.vector = len(dims) == 1  # a vector without a batch axis: read as one row (same values for the ops read)
        dims = [1, *dims] if self.vector else dims
        if len(dims) < 2 or dims[0] not in (None, 1) or any(d is None or d < 1 for d in dims[1:]):
            raise UnsupportedModel(f"input shape {dims}: need a batch axis (1 or symbolic) and fixed positive dims")
        self.input = inputs[0].name
        self.input_shape = cast("tuple[int, ...]", tuple(dims[1:]))  # no None: refused just above
        self.dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        self.shape: dict[str, tuple[int, ...]] = {self.input: (1, *self.input_shape)}
        self.alias: dict[str, str] = {self.input: self.input}
        self.nodes: list[Node] = []
        self.relus: dict[str, int] = {}
        self.sizes: dict[str, int] = {self.input: int(np.prod(self.input_shape))}
        for node in g.node:
            self.read(node)
        out = g.output[0].name
        if out not in self.alias:
            raise UnsupportedModel(f"the output {out!r} is not a data tensor")
        self.output = self.alias[out]

    def data(self, name: str) -> str:
        if name not in self.alias:
            raise UnsupportedModel(f"tensor {name!r} is used before it is defined, or is not data")
        return self.alias[name]

    def define(self, name: str) -> None:
        if name in self.alias or name in self.const or not name:
            raise UnsupportedModel(f"tensor {name!r} is defined twice (or unnamed)")

    def emit(self, kind: str, inputs: tuple[str, ...], out: str, shape: tuple[int, ...], op: Linear | MaxPool | None = None) -> None:
        self.define(out)
        self.nodes.append(Node(kind, inputs, out, op))
        self.alias[out], self.shape[out], self.sizes[out] = out, shape, int(np.prod(shape))

    def rename(self, out: str, src: str, shape: tuple[int, ...]) -> None:
        if int(np.prod(shape)) != int(np.prod(self.shape[src])) or shape[:1] != (1,):
            raise UnsupportedModel(f"{out!r}: a reshape that changes the size or the batch axis")
        self.define(out)
        self.alias[out], self.shape[out] = self.alias[src], shape

    def read(self, node: onnx.NodeProto) -> None:
        op, a, ins = node.op_type, _attrs(node), [i for i in node.input]
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedModel(f"operator {node.domain}.{op} is not interpreted by the checker")
        if self.vector and op not in VECTOR_OPS and any(i in self.alias for i in ins):
            raise UnsupportedModel(f"{op} on a model whose input is a vector without a batch axis (read as one row, "
                                   f"which only {', '.join(sorted(VECTOR_OPS))} do not see)")
        if op == "Constant":
            kinds = {"value": None, "value_ints": np.int64, "value_int": np.int64, "value_floats": np.float32, "value_float": np.float32}
            key = next((k for k in kinds if k in a), None)
            if key is None:
                raise UnsupportedModel("a Constant node without a tensor, integer or float `value`")
            self.define(node.output[0])
            self.const[node.output[0]] = numpy_helper.to_array(a[key]) if key == "value" else np.array(a[key], kinds[key])
            return
        if op in FOLDED and all(i in self.const for i in {"Shape": [], "CastLike": ins[:1]}.get(op, ins) if i):
            self.define(node.output[0])
            self.const[node.output[0]] = self.fold(op, a, ins)
            return
        data = [i for i in ins if i in self.alias]
        if not data:
            raise UnsupportedModel(f"operator {op} on constants is not folded by the checker")
        out, x = node.output[0], data[0]
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise UnsupportedModel(f"operator {op} is not interpreted by the checker")
        if op != "Dropout" and any(o for o in node.output[1:]):
            raise UnsupportedModel(f"{op} with more than one output")
        if op not in ("Add", "Sub", "Mul", "Div", "MatMul") and (ins[0] != x or len(data) > 1):
            raise UnsupportedModel(f"{op}: only the first input may be data")
        handler(node, a, ins, x, out)

    def constant(self, name: str, what: str, kind: str = "f") -> np.ndarray:
        """A constant input: float (as float64, finite) for kind 'f'; integer or bool for kind 'ib'."""
        if name not in self.const:
            raise UnsupportedModel(f"{what} must be a constant")
        c = self.const[name]
        if c.dtype.kind not in kind:
            raise UnsupportedModel(f"{what} has dtype {c.dtype}")
        if kind == "f":
            c = c.astype(np.float64)
            if not np.all(np.isfinite(c)):
                raise UnsupportedModel(f"{what} has a non-finite value")
        return c

    # --------------------------------------------------------------------------------------- operators

    def op_Relu(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        self.emit("relu", (self.data(x),), out, self.shape[x])
        self.relus[out] = len(self.nodes) - 1

    def op_Identity(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        self.rename(out, x, self.shape[x])

    def op_Dropout(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        if len(ins) > 2 and ins[2] and bool(self.constant(ins[2], "Dropout's training_mode", "ib")):
            raise UnsupportedModel("Dropout in training mode")
        self.rename(out, x, self.shape[x])

    def op_Flatten(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        s = self.shape[x]
        axis = int(a.get("axis", 1))
        axis = axis + len(s) if axis < 0 else axis
        if not 0 <= axis <= len(s):
            raise UnsupportedModel(f"Flatten with axis {a.get('axis')}")
        self.rename(out, x, (int(np.prod(s[:axis])), int(np.prod(s[axis:]))))

    def target(self, s: tuple[int, ...], name: str, a: dict) -> tuple[int, ...]:
        """Reshape's target shape for a tensor of shape s (0: copy the dimension unless allowzero; −1: infer)."""
        target = [int(v) for v in self.constant(name, "Reshape's shape", "iu").reshape(-1)]
        if not a.get("allowzero", 0):
            target = [s[i] if v == 0 and i < len(s) else v for i, v in enumerate(target)]
        if target.count(-1) == 1:
            rest = int(np.prod([v for v in target if v != -1]))
            target[target.index(-1)] = int(np.prod(s)) // rest if rest else -1
        if any(v < 0 for v in target):
            raise UnsupportedModel(f"Reshape to {target}")
        return tuple(target)

    def fold(self, op: str, a: dict, ins: list[str]) -> np.ndarray:
        """A shape computation on constants (`FOLDED`); a data tensor's shape and type are known here too."""
        if op == "Shape":
            s = self.shape[ins[0]] if ins[0] in self.shape else self.const[ins[0]].shape
            return np.array(s[a.get("start", 0):a.get("end")], np.int64)
        v, c = self.const[ins[0]], [self.const[i] for i in ins[1:] if i in self.const]
        if op == "CastLike":
            return v.astype(self.const[ins[1]].dtype if ins[1] in self.const else self.dtype)
        if op in ("Squeeze", "Unsqueeze"):
            axes = _ints(a["axes"] if "axes" in a else c[0]) if "axes" in a or c else None
            return (np.squeeze(v, axes) if op == "Squeeze"
                    else np.expand_dims(v, axes))  # type: ignore[arg-type]  # axes None: numpy's TypeError, a malformed model
        if op == "Concat":
            return np.concatenate([v, *c], axis=int(a["axis"]))
        if op == "Expand":
            return np.broadcast_to(v, np.broadcast_shapes(v.shape, _ints(c[0]))).copy()
        return v.reshape(self.target(v.shape, ins[1], a)) if op == "Reshape" else v

    def op_Reshape(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        target = self.target(self.shape[x], ins[1], a)
        if min(target) < 1:
            raise UnsupportedModel(f"Reshape to {list(target)}")
        self.rename(out, x, target)

    def linear(self, out: str, x: str, shape: tuple[int, ...], op: Linear) -> None:
        self.emit("linear", (self.data(x),), out, shape, op)

    def op_Gemm(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        if ins[0] != x or a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise UnsupportedModel("Gemm: only data·W + C (alpha = beta = 1, transA = 0)")
        if len(self.shape[x]) != 2 or self.shape[x][0] != 1:
            raise UnsupportedModel(f"Gemm on a tensor of shape {self.shape[x]}")
        W = self.constant(ins[1], "Gemm's B")
        W = W if a.get("transB", 0) else W.T
        b = self.constant(ins[2], "Gemm's C") if len(ins) > 2 and ins[2] else None
        self._dense(out, x, W, b)

    def op_MatMul(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        if len(ins) != 2 or len(self.shape[x]) != 2 or self.shape[x][0] != 1 or (ins[0] != x and not self.vector):
            raise UnsupportedModel("MatMul: only data (1, k) times a constant matrix, or a matrix times a data vector")
        self._dense(out, x, self.constant(ins[1], "MatMul's weight").T if ins[0] == x else self.constant(ins[0], "MatMul's weight"), None)

    def _dense(self, out: str, x: str, W: np.ndarray, b: np.ndarray | None) -> None:
        if W.ndim != 2 or W.shape[1] != self.shape[x][1]:
            raise UnsupportedModel(f"{out!r}: weight shape {W.shape} does not fit input {self.shape[x]}")
        if b is not None:
            try:
                b = np.broadcast_to(b, (1, W.shape[0])).reshape(-1).copy()
            except ValueError:
                raise UnsupportedModel(f"{out!r}: bias shape {b.shape}") from None
        self.linear(out, x, (1, W.shape[0]), Dense(np.ascontiguousarray(W), b))

    def op_Conv(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        s = self.shape[x]
        w = self.constant(ins[1], "Conv's weight")
        if len(s) != 4 or w.ndim != 4 or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            raise UnsupportedModel("Conv: only 2-D convolutions with explicit padding")
        g = int(a.get("group", 1))
        if s[1] != w.shape[1] * g or w.shape[0] % g or list(a.get("kernel_shape", w.shape[2:])) != list(w.shape[2:]):
            raise UnsupportedModel(f"Conv: weight {w.shape} does not fit input {s} with group {g}")
        b = self.constant(ins[2], "Conv's bias") if len(ins) > 2 and ins[2] else None
        if b is not None and b.shape != (w.shape[0],):
            raise UnsupportedModel(f"Conv: bias shape {b.shape}")
        st, pd, dl = (tuple(int(v) for v in a.get(k, d)) for k, d in (("strides", (1, 1)), ("pads", (0,) * 4), ("dilations", (1, 1))))
        if a.get("auto_pad", b"NOTSET") in (b"VALID", "VALID") and "pads" in a and any(pd):
            raise UnsupportedModel("Conv: auto_pad VALID with pads")
        if len(st) != 2 or len(pd) != 4 or len(dl) != 2 or min(st + dl) < 1 or min(pd) < 0:
            raise UnsupportedModel(f"Conv: strides {st}, pads {pd}, dilations {dl}")
        conv = Conv(w, b, s[1:], st, pd, dl, g)
        self.linear(out, x, (1, *conv.out_shape), conv)

    def _pool(self, op: str, a: dict, x: str) -> tuple:
        """A 2-D pooling's (C, H, W) input, kernel, strides, pads and dilations; ceil_mode 0 and explicit pads only."""
        s, k = self.shape[x], tuple(int(v) for v in a.get("kernel_shape", ()))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        st, pd, dl = (tuple(int(v) for v in a.get(n, d)) for n, d in (("strides", (1, 1)), ("pads", (0,) * 4), ("dilations", (1, 1))))
        if len(s) != 4 or len(k) != 2 or a.get("ceil_mode", 0) or auto not in ("NOTSET", "VALID") or (auto == "VALID" and any(pd)):
            raise UnsupportedModel(f"{op}: only 2-D pooling with explicit padding and ceil_mode 0")
        if len(st) != 2 or len(pd) != 4 or len(dl) != 2 or min(k + st + dl) < 1 or min(pd) < 0:
            raise UnsupportedModel(f"{op}: kernel {k}, strides {st}, pads {pd}, dilations {dl}")
        return s[1:], k, st, pd, dl

    def op_MaxPool(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        pool = MaxPool(*self._pool("MaxPool", a, x))
        self.emit("maxpool", (self.data(x),), out, (1, *pool.out_shape), pool)

    def op_AveragePool(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        geometry = self._pool("AveragePool", a, x)
        if not a.get("count_include_pad", 0) and any(geometry[3]):
            raise UnsupportedModel("AveragePool with padding that does not count in the average")
        pool = SumPool(*geometry)
        n = geometry[1][0] * geometry[1][1]
        s = np.full(pool.n_out, 1.0 / n)
        self.linear(out + "#sum", x, (1, *pool.out_shape), pool)
        self.linear(out, out + "#sum", (1, *pool.out_shape), Scale(s, None, None if n & (n - 1) == 0 else s * (2 * U) + 2 * ETA))

    def _broadcast(self, x: str, c: np.ndarray, what: str) -> np.ndarray:
        s = self.shape[x]
        try:
            if np.broadcast_shapes(s, c.shape) != s or (self.vector and c.ndim > 1):
                raise ValueError
            return np.broadcast_to(c, s).reshape(-1).astype(np.float64)
        except ValueError:
            raise UnsupportedModel(f"{what}: constant of shape {c.shape} changes data of shape {s}") from None

    def op_Add(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        if ins[0] in self.alias and ins[1] in self.alias:
            if self.shape[ins[0]] != self.shape[ins[1]]:
                raise UnsupportedModel("Add of two data tensors of different shapes")
            self.emit("add", (self.data(ins[0]), self.data(ins[1])), out, self.shape[ins[0]])
            return
        self._elementwise("Add", ins, x, out)

    def op_Sub(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        self._elementwise("Sub", ins, x, out)

    def op_Mul(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        self._elementwise("Mul", ins, x, out)

    def op_Div(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        self._elementwise("Div", ins, x, out)

    def _elementwise(self, op: str, ins: list[str], x: str, out: str) -> None:
        if len(ins) != 2 or sum(i in self.alias for i in ins) != 1:
            raise UnsupportedModel(f"{op} of two data tensors")
        first = ins[0] == x
        c = self._broadcast(x, self.constant(ins[1] if first else ins[0], f"{op}'s operand"), op)
        n, ones = c.size, np.ones(c.size)
        if op == "Add":
            sc = Scale(ones, c)
        elif op == "Sub":
            sc = Scale(ones, -c) if first else Scale(-ones, c)
        elif op == "Mul":
            sc = Scale(c, None)
        elif not first or np.any(c == 0):
            raise UnsupportedModel("Div: only data divided by a non-zero constant")
        else:
            s = 1.0 / c
            if not np.all(np.isfinite(s)):
                raise UnsupportedModel("Div by a constant whose reciprocal overflows")
            sc = Scale(s, None, np.abs(s) * (2 * U) + 2 * ETA)
        assert sc.n_in == n
        self.linear(out, x, self.shape[x], sc)

    def op_BatchNormalization(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        s = self.shape[x]
        if a.get("training_mode", 0) or len(s) < 2 or len(ins) != 5:
            raise UnsupportedModel("BatchNormalization: only inference mode on (1, C, ...) data")
        gam, beta, mean, var = (self.constant(n, f"BatchNormalization's {w}") for n, w in zip(ins[1:], ("scale", "B", "mean", "var")))
        if any(v.shape != (s[1],) for v in (gam, beta, mean, var)):
            raise UnsupportedModel("BatchNormalization: parameters do not match the channels")
        eps = float(np.float32(a.get("epsilon", 1e-5)))
        den = var + eps
        if np.any(~(den > 0)):
            raise UnsupportedModel("BatchNormalization: var + epsilon is not positive")
        sc = gam / np.sqrt(den)
        per = int(np.prod(s[2:]))

        def full(v: np.ndarray) -> np.ndarray:
            """A channel vector over the (C, ...) tensor."""
            return np.repeat(v, per)

        ones = np.ones(s[1] * per)
        mid1, mid2 = out + "#centred", out + "#scaled"
        self.linear(mid1, x, s, Scale(ones, full(-mean)))
        self.linear(mid2, mid1, s, Scale(full(sc), None, full(np.abs(sc) * (4 * U) + 2 * ETA)))
        self.linear(out, mid2, s, Scale(ones, full(beta)))


VECTOR_OPS = frozenset({"MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Identity", "Dropout"})
"""The operators read on a model whose input is a vector: those whose values do not depend on the row axis added."""


def read_network(model_bytes: bytes) -> Network:
    """Parse the ONNX bytes (already hashed by the caller) into a `Network`; `UnsupportedModel` if any operator
    or shape is outside version 1."""
    try:
        model = onnx.load_from_string(model_bytes)
    except Exception as e:  # a protobuf decode error of any kind
        raise UnsupportedModel(f"not a readable ONNX model ({e})") from None
    try:
        r = _Reader(model)
    except UnsupportedModel:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise UnsupportedModel(f"malformed model: {e}") from None
    except MemoryError:
        raise UnsupportedModel("a tensor of the model is too large to read") from None
    return Network(r.input, r.input_shape, r.output, r.nodes, r.sizes, r.relus)
