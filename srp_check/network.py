"""The checker's own reading of an ONNX model: a list of nodes over flattened per-sample tensors.

Only the operators of certificate format version 1 are interpreted (docs/certificates.md): Gemm and MatMul
with a constant weight, Conv (2-D), Add / Sub / Mul / Div of data by a constant (broadcast), Add of two data
tensors, BatchNormalization (inference), Relu, Flatten, Reshape (constant shape), Identity, Dropout. Constants
are initializers, Constant nodes and Identity of constants; nothing else is folded. Any other operator — on data
or on constants — is refused by name (`UnsupportedModel`). The batch axis (symbolic or 1) is read as 1 and
every tensor is flattened in C order, so Flatten, Reshape, Identity and Dropout only rename a tensor.

What is exact and what is bounded, per operator:
* Gemm, MatMul, Conv, Add/Sub/Mul by a constant: W and b are the model's float constants, exact in float64.
* Div by a constant c: s = fl(1/c), with |1/c − s| ≤ u·|1/c| ≤ 2u·|s| (+ 2η against underflow) kept as `rad`.
* BatchNormalization: x ↦ s·(x − mean) + B with s = fl(γ / fl(√fl(var + ε))); three roundings give
  |s_exact − s| ≤ 4u·|s| + 2η, kept as `rad`; the subtraction of the mean and the addition of B are exact
  constants of two further `Scale` nodes.
* Add of two data tensors, Relu: no constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import UnsupportedModel
from .fp import ETA, U
from .linear import Conv, Dense, Linear, Scale

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}


@dataclass
class Node:
    """One step: `kind` is 'linear' (op set), 'add' (two data inputs) or 'relu'; names are canonical tensors."""

    kind: str
    inputs: tuple[str, ...]
    output: str
    op: Linear | None = None


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
            else:
                vals[nd.output] = nd.op.apply(a) + (0.0 if nd.op.bias is None else nd.op.bias)
        return vals[self.output]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class _Reader:
    """Walks the graph once, in order, keeping constants, tensor shapes (batch read as 1) and aliases."""

    def __init__(self, model: onnx.ModelProto):
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
        if len(dims) < 2 or dims[0] not in (None, 1) or any(d is None or d < 1 for d in dims[1:]):
            raise UnsupportedModel(f"input shape {dims}: need a batch axis (1 or symbolic) and fixed positive dims")
        self.input, self.input_shape = inputs[0].name, tuple(dims[1:])
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

    def emit(self, kind: str, inputs: tuple[str, ...], out: str, shape: tuple[int, ...], op: Linear | None = None) -> None:
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
        if op == "Constant":
            if "value" not in a:
                raise UnsupportedModel("a Constant node without a tensor `value`")
            self.define(node.output[0])
            self.const[node.output[0]] = numpy_helper.to_array(a["value"])
            return
        if op == "Identity" and ins[0] in self.const:
            self.define(node.output[0])
            self.const[node.output[0]] = self.const[ins[0]]
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
        if op not in ("Add", "Sub", "Mul", "Div") and (ins[0] != x or len(data) > 1):
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

    def op_Reshape(self, node: onnx.NodeProto, a: dict, ins: list[str], x: str, out: str) -> None:
        target = [int(v) for v in self.constant(ins[1], "Reshape's shape", "iu").reshape(-1)]
        s = self.shape[x]
        if not a.get("allowzero", 0):
            target = [s[i] if v == 0 and i < len(s) else v for i, v in enumerate(target)]
        if target.count(-1) == 1:
            rest = int(np.prod([v for v in target if v != -1]))
            target[target.index(-1)] = int(np.prod(s)) // rest if rest else -1
        if any(v < 1 for v in target):
            raise UnsupportedModel(f"Reshape to {target}")
        self.rename(out, x, tuple(target))

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
        if ins[0] != x or len(self.shape[x]) != 2 or self.shape[x][0] != 1:
            raise UnsupportedModel("MatMul: only data (1, k) times a constant matrix")
        self._dense(out, x, self.constant(ins[1], "MatMul's weight").T, None)

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

    def _broadcast(self, x: str, c: np.ndarray, what: str) -> np.ndarray:
        s = self.shape[x]
        try:
            if np.broadcast_shapes(s, c.shape) != s:
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
        full = lambda v: np.repeat(v, per)  # noqa: E731 — a channel vector over the (C, ...) tensor
        ones = np.ones(s[1] * per)
        mid1, mid2 = out + "#centred", out + "#scaled"
        self.linear(mid1, x, s, Scale(ones, full(-mean)))
        self.linear(mid2, mid1, s, Scale(full(sc), None, full(np.abs(sc) * (4 * U) + 2 * ETA)))
        self.linear(out, mid2, s, Scale(ones, full(beta)))


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
    return Network(r.input, r.input_shape, r.output, r.nodes, r.sizes, r.relus)
