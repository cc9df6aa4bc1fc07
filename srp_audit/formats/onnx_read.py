"""ONNX → IR: parse the protobuf with `onnx` and map each node onto IR nodes.

Values are either *constants* (numpy arrays: initializers, Constant nodes, folded shape arithmetic) or
*tensors* (input-dependent, living in the IR). Tensors carry their per-sample shape; when the original model
has a leading batch axis, ONNX axis k maps to sample axis k − 1 and the batch is fixed to 1 while folding shape
arithmetic. Each ONNX op has a handler in `onnx_ops.HANDLERS` or is declared by an op (`Node.onnx_op`);
anything else fails with the node, op and opset named.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .. import ops
from ..errors import ModelLoadError, UnsupportedOpError
from ..ir.graph import Graph, GraphMeta
from ..ir.reading import check_declarations
from ..kernel.enclosure import Enclosed
from ..kernel.interval import Interval
from . import (  # noqa: F401  (register their handlers)
    activation_forms,
    discrete_handlers,
    normalisation_form,
    onnx_const_exact,
    onnx_einsum,
    onnx_index_ops,
    onnx_shape_ops,
    resize_form,
)
from .batch_axis import batch_modes, read_in_modes, sample_shapes
from .context import Derived, Tensor, Value, bind_inputs, join_outputs
from .onnx_const import FOLDERS, attributes, fold
from .onnx_context import OnnxContext
from .onnx_ops import HANDLERS

MIN_OPSET, MAX_OPSET = 7, 23
MAX_PROTO_BYTES = 2 << 30  # protobuf's own limit: a larger .onnx cannot be a valid model


_HINTS = {
    "Hardmax": "a final Hardmax (one-hot argmax): export the model without it (certify works on the scores before it)",
    "TopK": "TopK on the model's data is not supported; export the scores before it",
    "LSTM": "recurrent layers (LSTM) are not supported",
    "GRU": "recurrent layers (GRU) are not supported",
    "RNN": "recurrent layers (RNN) are not supported",
    "Loop": "control flow (Loop) is not supported",
    "If": "control flow (If) is not supported",
    "Scan": "control flow (Scan) is not supported",
}


def unsupported_hint(op_type: str) -> str:
    """The reason (and the nearest thing to do) for an ONNX op the reader cannot map."""
    return _HINTS.get(op_type, "this operator is not supported yet (docs/architecture.md lists the supported ones; "
                               "CONTRIBUTING.md says how to add one)")


def _read_model(path: str) -> onnx.ModelProto:
    if not os.path.exists(path):
        raise ModelLoadError(f"model file '{path}' does not exist")
    if os.path.isdir(path):
        raise ModelLoadError(f"'{path}' is a directory, not a model file")
    if os.path.getsize(path) == 0:
        raise ModelLoadError(f"model file '{path}' is empty")
    if os.path.getsize(path) > MAX_PROTO_BYTES:
        raise ModelLoadError(f"'{path}' is {os.path.getsize(path) / 2**30:.1f} GiB, over the 2 GiB limit of an ONNX protobuf "
                             "(large models keep their weights in external data files); refused without reading it")
    try:
        model = onnx.load(path)
    except FileNotFoundError as e:
        raise ModelLoadError(f"'{path}' refers to external data that is missing: {e.filename or e}") from None
    except Exception as e:  # protobuf DecodeError, truncated files, wrong format
        raise ModelLoadError(f"'{path}' is not a readable ONNX model ({type(e).__name__}: {str(e)[:120]})") from None
    if not model.graph.node:
        raise ModelLoadError(f"'{path}' holds no graph nodes; is it really an ONNX model?")
    return model


def _declared_shape(vi: Any) -> list[int | str]:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?") for d in vi.type.tensor_type.shape.dim]


def load_onnx(path: str) -> Graph:
    """Read an ONNX file into the IR (unsimplified); raises `ModelLoadError` with a one-line reason."""
    model = _read_model(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise ModelLoadError(f"'{path}' declares no default-domain opset")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelLoadError(f"'{path}' uses opset {opset}; supported opsets are {MIN_OPSET}–{MAX_OPSET}")
    g = model.graph
    inits = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if not inputs:
        raise ModelLoadError(f"'{path}' has no data input")
    declared = [_declared_shape(i) for i in inputs]
    for i, d in zip(inputs, declared):
        if not d:
            raise ModelLoadError(f"input '{i.name}' of '{path}' has no declared shape")
    what = f"input {', '.join(repr(i.name) for i in inputs)} of '{path}'"
    types = value_types(model)  # once: both batch modes read the same types
    return read_in_modes(batch_modes(declared, what), lambda batched: _read_graph(model, path, opset, inputs, declared, batched, what, types))


def _read_graph(model: onnx.ModelProto, path: str, opset: int, inputs: list, declared: list, batched: bool, what: str,
                types: tuple[dict[str, int], bool]) -> Graph:
    g = model.graph
    ctx = OnnxContext(opset, batched)
    sample, tensors = bind_inputs(ctx, sample_shapes(declared, batched, what))
    for i, t in zip(inputs, tensors):
        ctx.values[i.name] = t
    ctx.model_inputs = {i.name for i in inputs}
    declared_ops = ops.by_onnx_op()
    ctx.types, ctx.types_consistent = types
    ctx.integer_names = {n for n, t in ctx.types.items() if t in _INTEGER_TYPES}
    ctx.double_names = {n for n, t in ctx.types.items() if t == onnx.TensorProto.DOUBLE}
    named: dict[str, str] = {}
    for t in g.initializer:
        try:
            ctx.values[t.name] = numpy_helper.to_array(t)
        except Exception as e:
            raise ModelLoadError(f"initializer '{t.name}' of '{path}' cannot be read ({e})") from None

    for node in g.node:
        outs = _read_node(ctx, node, opset, declared_ops)
        for name, v in zip(node.output, outs):
            if name:
                ctx.values[name] = v
                if isinstance(v, Tensor) and v.batch_at == 0:
                    named.setdefault(v.ir, name)  # the first ONNX tensor that holds this IR value

    results = []
    for o in g.output:
        if o.name not in ctx.values:
            raise ModelLoadError(f"output '{o.name}' of '{path}' is produced by no node of the graph; the model file is malformed")
        v = ctx.values[o.name]
        if not isinstance(v, Tensor):
            raise ModelLoadError(f"output '{o.name}' of '{path}' does not depend on the model input")
        results.append(v)
    ctx.onnx_node = g.node[-1]
    out = join_outputs(ctx, results)
    several_in = len(inputs) > 1
    meta = GraphMeta(source=str(path), input_name="input" if several_in else inputs[0].name,
                     output_name="output" if len(results) > 1 else g.output[0].name, batched=batched,
                     original_input_shape=sample if several_in else tuple(declared[0]),
                     inputs=tuple((i.name, tuple(d)) for i, d in zip(inputs, declared)) if several_in else (),
                     outputs=tuple((o.name, int(np.prod(r.shape))) for o, r in zip(g.output, results)) if len(results) > 1 else (),
                     values=named)
    return ctx.graph(sample, out, meta)


def _read_node(ctx: OnnxContext, node: Any, opset: int, declared_ops: dict) -> list[Value]:
    """The values of one ONNX node's outputs: folded when every input is a constant, else read by its reader."""
    ctx.onnx_node = node
    if node.domain not in ("", "ai.onnx"):
        raise UnsupportedOpError(ctx.node_name, f"{node.domain}.{node.op_type}", opset, "custom-domain operators are not supported")
    attrs = attributes(node)
    ins = [ctx.get(i) for i in node.input]
    if node.op_type != "Shape" and node.op_type in FOLDERS and all(i is None or isinstance(i, (np.ndarray, Derived)) for i in ins) and ins:
        try:
            return list(fold(node.op_type, ins, {**attrs, "__outputs": len(node.output)}, opset))  # type: ignore[arg-type]  # all constant
        except Exception as e:
            raise ctx.unsupported(f"cannot evaluate on constants ({e})") from None
    if any(isinstance(i, Derived) for i in ins) and node.op_type not in ("Add", "Sub", "Mul", "Div"):
        raise ctx.unsupported("it reads a constant computed from others that no float holds exactly (like 1/3); such "
                              "constants may only scale or shift the data (Add, Sub, Mul, Div)")
    if node.op_type in HANDLERS or node.op_type in declared_ops:
        if node.op_type not in INTEGER_SAFE and any(n in ctx.integer_names and isinstance(v, Tensor) for n, v in zip(node.input, ins)):
            raise ctx.unsupported("arithmetic on integer-typed data (its wrap-around and truncating division are not "
                                  "modelled); cast the data to float before it")
        return _map_node(ctx, node, attrs, declared_ops)
    if node.op_type in FOLDERS:
        raise ctx.unsupported("supported only on constants (shape arithmetic), not on the model's data")
    raise ctx.unsupported(unsupported_hint(node.op_type))


INTEGER_SAFE = {"Cast", "CastLike", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Not", "And", "Or", "Xor",
                "Where", "Mod", "OneHot", "Gather", "Max", "Min", "ArgMax", "ArgMin", "ReduceMax", "ReduceMin", "Identity",
                "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose", "Slice", "Concat", "Split", "Expand", "Tile", "Shape"}
"""ONNX ops that compute the same on integer-typed data as on reals (no rounding, no overflow): others refuse it."""
_INTEGER_TYPES = {2, 3, 4, 5, 6, 7, 9, 12, 13}  # uint8, int8, uint16, int16, int32, int64, bool, uint32, uint64


def value_types(model: onnx.ModelProto) -> tuple[dict[str, int], bool]:
    """The ONNX element type of each of the graph's values that type inference (or an initializer) gives, and
    whether the model's declared types are consistent (strict inference passed)."""
    consistent = True
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception:  # inconsistent declarations, or ops inference does not know: keep what it can type
        consistent = False
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:
            inferred = model
    g = inferred.graph
    types = {t.name: t.data_type for t in g.initializer}
    types.update({vi.name: vi.type.tensor_type.elem_type for vi in [*g.value_info, *g.input, *g.output]
                  if vi.type.HasField("tensor_type")})
    return types, consistent


INTERNAL = (AttributeError, IndexError, KeyError, TypeError, ValueError, RuntimeError, AssertionError, NotImplementedError,
            ArithmeticError)
"""Exceptions a mapping raises on a model it was not written for: reported as that node's load error, never a crash."""


def _map_node(ctx: OnnxContext, node: Any, attrs: dict, declared_ops: dict) -> list[Value]:
    """The IR values of one ONNX node on data: its handler's, or its declaring op's node."""
    try:
        if node.op_type in HANDLERS:
            return HANDLERS[node.op_type](ctx, node, attrs)
        x = ctx.get(node.input[0])
        if isinstance(x, np.ndarray):  # an op of the data's kind on a stored constant
            return [_through(ctx, ctx.declared(declared_ops[node.op_type].from_onnx, attrs), x)]
        return [ctx.emit_declared([ctx.tensor(node.input[0])], declared_ops[node.op_type].from_onnx, attrs)]
    except INTERNAL as e:
        raise ctx.unsupported(f"this form of it cannot be read ({type(e).__name__}: {str(e)[:160]}); please report the "
                              "model to the srp-audit developers") from None


def _through(ctx: OnnxContext, op: Any, c: np.ndarray) -> Value:
    """op(c) for a constant c, as the op's own sound enclosure of the point c: the exact float where the enclosure is
    a point (Floor), else a `Derived` constant (sin 0.3), which the data may be scaled or shifted by."""
    try:
        return ctx.emit(op, [ctx.lift(c)])
    except UnsupportedOpError:
        pass
    point = torch.from_numpy(np.asarray(c, dtype=np.float64)).unsqueeze(0)
    lo, hi = (t[0] for t in op.double().ibp(Interval(point, point)).bounds())
    if bool(torch.equal(lo, hi)):
        return lo.numpy()
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ctx.unsupported("its value on this constant overflows")
    mid = lo + (hi - lo) / 2  # each difference below is within half an ulp of exact: one ulp up covers it
    return Derived(Enclosed(mid, torch.nextafter(torch.maximum(hi - mid, mid - lo), torch.tensor(torch.inf, dtype=torch.float64))))


def supported_onnx_ops() -> list[str]:
    """ONNX op types mapped onto the IR on the model's data (others only fold on constants)."""
    return sorted(set(HANDLERS) | set(ops.by_onnx_op()))


check_declarations(ops.ALL_OPS)  # a form read twice is an error here, at import
