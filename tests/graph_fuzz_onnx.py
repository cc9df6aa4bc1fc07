"""Random valid ONNX graphs for the generated-model fuzz (tests/graph_fuzz.py): a `Builder` and one generator per
op the loader maps on the model's data. Each generator reads the current value (`V`: name, per-sample shape) and
appends nodes; the driver runs every step in onnxruntime to learn its shape (and to roll back a step onnxruntime
rejects). Constants broadcast against the data, axes come positive and negative, attributes and input forms follow
the opset. The shape-arithmetic and constant-folding chains are in graph_fuzz_shape.py."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def ort_session(model: bytes | str):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 4
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


MAX_VALUES = 256  # no intermediate tensor grows past this many values per sample
I64_MAX = np.iinfo(np.int64).max


@dataclass
class V:
    name: str
    shape: tuple[int, ...]  # per-sample shape (the batch axis is first and implicit)
    pos: bool = False  # every entry ≥ 0.25 wherever the input is (by construction): Log, Sqrt, Reciprocal may read it


@dataclass
class Spec:
    name: str
    fn: Callable
    since: int = 7
    ranks: tuple[int, ...] | None = None  # sample ranks the generator applies to (None: any)
    until: int = 99


REG: dict[str, Spec] = {}


def gen(name: str, since: int = 7, ranks: tuple[int, ...] | None = None, until: int = 99):
    def deco(fn):
        REG[name] = Spec(name, fn, since, ranks, until)
        return fn
    return deco


class Builder:
    """Nodes, initializers and inputs of one graph under construction; `batch` is 'N' (dynamic) or 1."""

    def __init__(self, rng: np.random.Generator, opset: int, batch: str | int) -> None:
        self.rng, self.opset, self.batch = rng, opset, batch
        self.nodes: list = []
        self.inits: list = []
        self.inputs: list[V] = []
        self.used: list[str] = []
        self.k = 0

    def fresh(self, prefix: str = "t") -> str:
        self.k += 1
        return f"{prefix}{self.k}"

    def node(self, op: str, ins: list[str], n_out: int = 1, **attrs):
        outs = [self.fresh(op[:4].lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, list(ins), outs, name=self.fresh("n"), **attrs))
        self.used.append(op)
        return outs[0] if n_out == 1 else outs

    def const(self, arr, node_ok: bool = True) -> str:
        """An initializer, or (one time in four) a Constant node in one of its attribute forms."""
        arr = np.asarray(arr)
        name = self.fresh("c")
        if node_ok and self.rng.random() < 0.25:
            kw: dict = {"value": numpy_helper.from_array(arr)}
            if self.opset < 12:  # value_float(s) and value_int(s) came with opset 12
                pass
            elif arr.dtype == np.float32 and arr.ndim <= 1 and self.rng.random() < 0.5:
                kw = {"value_float": float(arr)} if arr.ndim == 0 else {"value_floats": [float(v) for v in arr]}
            elif arr.dtype == np.int64 and arr.ndim <= 1 and self.rng.random() < 0.5:
                kw = {"value_int": int(arr)} if arr.ndim == 0 else {"value_ints": [int(v) for v in arr]}
            self.nodes.append(helper.make_node("Constant", [], [name], name=self.fresh("n"), **kw))
            self.used.append("Constant")
        else:
            self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def i64(self, vals) -> str:
        return self.const(np.asarray(vals, dtype=np.int64))

    def f32(self, vals) -> str:
        return self.const(np.asarray(vals, dtype=np.float32))

    def w(self, *shape: int, fan: int | None = None) -> str:
        fan = fan or (shape[-1] if shape else 1)
        return self.f32(self.rng.standard_normal(shape) / math.sqrt(max(fan, 1)))

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def coin(self, p: float = 0.5) -> bool:
        return bool(self.rng.random() < p)

    def ax(self, r: int, k: int | None = None) -> int:
        """A sample axis (1..r of the full rank r + 1), written negative half the time."""
        k = int(self.rng.integers(1, r + 1)) if k is None else k
        return k - (r + 1) if self.coin() else k

    def axes_in(self, name: str, vals: list[int], since: int) -> tuple[list[str], dict]:
        """Axes as the opset wants them: an input (from `since`) or an attribute."""
        return ([name, self.i64(vals)], {}) if self.opset >= since else ([name], {"axes": vals})

    def probe(self, name: str) -> tuple[int, ...]:
        """The per-sample shape of value `name`, from onnxruntime on random inputs (raises if it rejects the graph)."""
        sess = ort_session(self.model([name]).SerializeToString())
        n = 2 if self.batch == "N" else 1
        out = sess.run(None, {v.name: self.rng.standard_normal((n, *v.shape)).astype(np.float32) for v in self.inputs})[0]
        if out.ndim == 0 or out.shape[0] != n:
            raise ValueError(f"value of shape {out.shape} lost the batch axis")
        return tuple(int(d) for d in out.shape[1:])

    def snapshot(self) -> tuple[int, int, int, int]:
        return len(self.nodes), len(self.inits), len(self.used), len(self.inputs)

    def restore(self, snap: tuple[int, int, int, int]) -> None:
        del self.nodes[snap[0]:], self.inits[snap[1]:], self.used[snap[2]:], self.inputs[snap[3]:]

    def model(self, outputs: list[V] | list[str]) -> onnx.ModelProto:
        """The graph with these outputs (a name alone: shape left undeclared, for onnxruntime probes)."""
        def info(v):
            return helper.make_tensor_value_info(v.name, TensorProto.FLOAT, [self.batch, *v.shape]) if isinstance(v, V) \
                else helper.make_tensor_value_info(v, TensorProto.FLOAT, None)
        g = helper.make_graph(self.nodes, "fuzz", [info(v) for v in self.inputs], [info(v) for v in outputs], self.inits)
        opsets = [helper.make_opsetid("", self.opset)]
        m = helper.make_model(g, opset_imports=opsets, producer_name="graph_fuzz")
        m.ir_version = helper.find_min_ir_version_for(opsets)
        return m


def bshape(b: Builder, s: tuple[int, ...]) -> tuple[int, ...]:
    """A constant shape that broadcasts against (batch, *s) without growing it (scalar to full rank, batch axis 1)."""
    full = (1, *s)
    k = int(b.rng.integers(0, len(full) + 1))
    return tuple(d if b.coin() else 1 for d in full[len(full) - k:])


def scalar_c(b: Builder, lo: float, hi: float, sign: bool = True) -> np.ndarray:
    v = b.rng.uniform(lo, hi) * (b.pick([-1, 1]) if sign else 1)
    return np.float32(b.pick([v, v, 0.5, 2.0, 0.25, -4.0 if sign else 4.0]))


def positive(b: Builder, x: V) -> V:
    """x itself when positive, else x² + c, softplus(x) + c or exp(x/2) + c, c ≥ 0.25."""
    if x.pos:
        return x
    k = int(b.rng.integers(4))
    y = (b.node("Mul", [x.name, x.name]) if k == 0 else b.node("Pow", [x.name, b.f32(2.0)]) if k == 1
         else b.node("Softplus", [x.name]) if k == 2 else b.node("Exp", [b.node("Mul", [x.name, b.f32(0.5)])]))
    return V(b.node("Add", [y, b.f32(b.rng.uniform(0.25, 1.5))]), x.shape, True)


def _unary(op: str):
    return lambda b, x: V(b.node(op, [x.name]), x.shape)


for _op, _since in [("Relu", 7), ("Sigmoid", 7), ("Tanh", 7), ("Exp", 7), ("Erf", 9), ("Sin", 7), ("Cos", 7), ("Softplus", 7),
                    ("Neg", 7), ("Identity", 7), ("Floor", 7), ("Sign", 9), ("Atan", 7)]:
    gen(_op, _since)(_unary(_op))
gen("Mish", 18)(_unary("Mish"))
gen("HardSwish", 14)(_unary("HardSwish"))


@gen("Elu")
def _elu(b, x):
    return V(b.node("Elu", [x.name], alpha=float(b.pick([1.0, 0.5, 1.7]))), x.shape)


@gen("Selu")
def _selu(b, x):
    return V(b.node("Selu", [x.name], **b.pick([{}, {"alpha": 1.2, "gamma": 0.9}, {"alpha": 0.5}])), x.shape)


@gen("LeakyRelu")
def _leaky(b, x):
    return V(b.node("LeakyRelu", [x.name], alpha=float(b.pick([0.01, 0.2, 0.7, -0.3, 1.5]))), x.shape)


@gen("HardSigmoid")
def _hsig(b, x):
    return V(b.node("HardSigmoid", [x.name], **b.pick([{}, {"alpha": 0.3, "beta": 0.4}, {"alpha": 1 / 6, "beta": 0.5}])), x.shape)


@gen("Gelu", 20)
def _gelu(b, x):
    return V(b.node("Gelu", [x.name], **b.pick([{}, {"approximate": "tanh"}, {"approximate": "none"}])), x.shape)


@gen("Dropout")
def _dropout(b, x):
    if b.opset >= 12:
        return V(b.node("Dropout", [x.name, b.f32(0.3)] if b.coin() else [x.name]), x.shape)
    return V(b.node("Dropout", [x.name], ratio=0.4), x.shape)


@gen("Cast")
def _cast(b, x):
    return V(b.node("Cast", [x.name], to=TensorProto.FLOAT), x.shape, x.pos)


@gen("CastLike", 15)
def _cast_like(b, x):
    if b.coin():  # a double constant cast like the data, then added
        c = b.const(b.rng.standard_normal(bshape(b, x.shape)).astype(np.float64))
        return V(b.node("Add", [x.name, b.node("CastLike", [c, x.name])]), x.shape)
    return V(b.node("CastLike", [x.name, b.f32(0.0)]), x.shape, x.pos)


@gen("Clip", 11)
def _clip(b, x):
    lo, hi = sorted(b.rng.uniform(-1.5, 1.5, 2))
    ins = [x.name, b.f32(lo) if b.coin(0.7) else "", b.f32(hi + 0.1) if b.coin(0.7) else ""]
    while ins[-1] == "":
        ins.pop()
    return V(b.node("Clip", ins), x.shape)


def _const_binary(op: str):
    def fn(b, x):
        shape = bshape(b, x.shape)
        if op == "Div":
            c = b.f32(b.rng.uniform(0.5, 2.0, shape) * b.rng.choice([-1, 1], shape) if b.coin() else scalar_c(b, 0.5, 2))
        else:
            c = b.f32(b.rng.standard_normal(shape)) if b.coin(0.7) else b.f32(scalar_c(b, 0.1, 2))
        if op == "Div" and not b.coin(0.8):  # c / x: a reciprocal of the data
            x = positive(b, x)
            return V(b.node("Div", [c, x.name]), x.shape)
        return V(b.node(op, [c, x.name] if op != "Div" and b.coin() else [x.name, c]), x.shape)
    return fn


for _op in ("Add", "Sub", "Mul", "Div"):
    gen(_op)(_const_binary(_op))


def _on_positive(op: str, stays_positive: bool):
    """A generator for an op defined on x > 0: the data made positive first."""
    def fn(b, x):
        p = positive(b, x)
        return V(b.node(op, [p.name]), p.shape, stays_positive)
    return fn


for _op, _pos in (("Log", False), ("Sqrt", True), ("Reciprocal", False)):
    gen(_op)(_on_positive(_op, _pos))


@gen("Pow")
def _pow(b, x):
    if b.coin(0.4):
        return V(b.node("Pow", [x.name, b.f32(b.pick([2.0, 3.0, 1.0, 4.0]))]), x.shape)
    p = positive(b, x)
    return V(b.node("Pow", [p.name, b.f32(b.pick([0.5, 1.5, -0.5, -1.0, 2.5, -2.0, 0.3]))]), p.shape)


@gen("data_binary")
def _data_binary(b, x):
    """Two data operands: a residual Add/Sub, a broadcast product, a division by positive data."""
    branch = b.pick(["Relu", "Tanh", "Neg", "Sigmoid"])
    y = V(b.node(branch, [x.name]), x.shape)
    op = b.pick(["Add", "Sub", "Mul", "Mul", "Div", "Sum", "Mean"])
    if op in ("Mul", "Sub", "Add") and x.shape and b.coin():  # y reduced over one axis (keepdims) broadcasts back
        r = len(x.shape)
        a = b.ax(r)
        ins, attrs = b.axes_in(y.name, [a], 18)
        y = V(b.node("ReduceMean", ins, **attrs), tuple(1 if i == a % (r + 1) - 1 else d for i, d in enumerate(x.shape)))
    if op == "Div":
        y = positive(b, y)
    ins = [x.name, y.name] if op in ("Sub", "Div") or b.coin() else [y.name, x.name]
    if op in ("Sum", "Mean") and b.coin():
        ins.append(x.name)
    return V(b.node(op, ins), x.shape)


@gen("Gemm", ranks=(1,))
def _gemm(b, x):
    n, m = x.shape[0], int(b.rng.integers(1, 13))
    trans = b.coin()
    w = b.w(m, n) if trans else b.f32(b.rng.standard_normal((n, m)) / math.sqrt(n))
    ins = [x.name, w]
    k = int(b.rng.integers(4))
    if k:
        ins.append(b.f32(b.rng.standard_normal([(m,), (1, m), ()][k - 1])))
    attrs = {"transB": 1} if trans else b.pick([{}, {"transB": 0}])
    if b.coin(0.3):
        attrs.update(alpha=float(b.pick([0.5, 1.7, -0.3])), beta=float(b.pick([1.0, 2.0, 0.7])))
    return V(b.node("Gemm", ins, **attrs), (m,))


@gen("MatMul")
def _matmul(b, x):
    s, m = x.shape, int(b.rng.integers(1, 9))
    mode = b.pick(["right", "right", "vec", "left", "data", "data"]) if len(s) >= 2 else "right"
    if mode == "right":
        return V(b.node("MatMul", [x.name, b.w(s[-1], m, fan=s[-1])]), s[:-1] + (m,))
    if mode == "vec":
        return V(b.node("MatMul", [x.name, b.w(s[-1])]), s[:-1])
    if mode == "left":
        return V(b.node("MatMul", [b.w(m, s[-2]), x.name]), s[:-2] + (m, s[-1]))
    r = len(s)
    t = b.node("Transpose", [x.name], perm=list(range(r - 1)) + [r, r - 1])
    if b.coin():
        return V(b.node("MatMul", [x.name, t]), s[:-1] + (s[-2],))
    return V(b.node("MatMul", [t, x.name]), s[:-2] + (s[-1], s[-1]))
