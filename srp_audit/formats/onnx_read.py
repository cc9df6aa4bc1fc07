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
from onnx import numpy_helper

from .. import ops
from ..errors import ModelLoadError, UnsupportedOpError
from ..ir.graph import Graph, GraphMeta
from ..ir.walk import INPUT
from . import onnx_shape_ops  # noqa: F401  (registers its handlers)
from .context import Tensor, Value, sample_shape
from .onnx_const import FOLDERS, attributes, fold
from .onnx_context import OnnxContext
from .onnx_ops import HANDLERS

MIN_OPSET, MAX_OPSET = 7, 23
MAX_PROTO_BYTES = 2 << 30  # protobuf's own limit: a larger .onnx cannot be a valid model


_HINTS = {
    "Softmax": "a final Softmax: export the model without it (certify works on the logits; softmax keeps their argmax)",
    "LogSoftmax": "a final LogSoftmax: export the model without it (certify works on the logits; it keeps their argmax)",
    "Erf": "Erf (from GELU) is not supported yet; ReLU-family, sigmoid and tanh activations are",
    "Gelu": "GELU is not supported yet; ReLU-family, sigmoid and tanh activations are",
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
    inits = {t.name: t for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelLoadError(f"'{path}' has {len(inputs)} data inputs ({[i.name for i in inputs]}); exactly one is supported")
    if len(g.output) != 1:
        raise ModelLoadError(f"'{path}' has {len(g.output)} outputs; exactly one is supported")
    declared = _declared_shape(inputs[0])
    if not declared:
        raise ModelLoadError(f"input '{inputs[0].name}' of '{path}' has no declared shape")
    batched, sample = sample_shape(declared, f"input '{inputs[0].name}'")

    ctx = OnnxContext(opset, batched)
    ctx.values[inputs[0].name] = Tensor(INPUT, sample)
    declared_ops = ops.by_onnx_op()
    for name, t in inits.items():
        try:
            ctx.values[name] = numpy_helper.to_array(t)
        except Exception as e:
            raise ModelLoadError(f"initializer '{name}' of '{path}' cannot be read ({e})") from None

    for node in g.node:
        ctx.onnx_node = node
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(ctx.node_name, f"{node.domain}.{node.op_type}", opset, "custom-domain operators are not supported")
        attrs = attributes(node)
        ins = [ctx.get(i) for i in node.input]
        if node.op_type != "Shape" and node.op_type in FOLDERS and all(i is None or isinstance(i, np.ndarray) for i in ins) and ins:
            try:
                outs: list[Value] = fold(node.op_type, ins, {**attrs, "__outputs": len(node.output)}, opset)  # type: ignore[arg-type]
            except Exception as e:
                raise ctx.unsupported(f"cannot evaluate on constants ({e})") from None
        elif node.op_type in HANDLERS:
            outs = HANDLERS[node.op_type](ctx, node, attrs)
        elif node.op_type in declared_ops:
            outs = [ctx.emit_declared([ctx.tensor(node.input[0])], declared_ops[node.op_type].from_onnx, attrs)]
        elif node.op_type in FOLDERS:
            raise ctx.unsupported("supported only on constants (shape arithmetic), not on the model's data")
        else:
            raise ctx.unsupported(unsupported_hint(node.op_type))
        for name, v in zip(node.output, outs):
            if name:
                ctx.values[name] = v

    out_name = g.output[0].name
    if out_name not in ctx.values:
        raise ModelLoadError(f"output '{out_name}' of '{path}' is produced by no node of the graph; the model file is malformed")
    out = ctx.values.get(out_name)
    if not isinstance(out, Tensor):
        raise ModelLoadError(f"output '{out_name}' of '{path}' does not depend on the model input")
    ctx.onnx_node = g.node[-1]
    meta = GraphMeta(source=str(path), input_name=inputs[0].name, output_name=out_name, batched=batched,
                     original_input_shape=tuple(declared))
    return ctx.graph(sample, out, meta)


def supported_onnx_ops() -> list[str]:
    """ONNX op types mapped onto the IR on the model's data (others only fold on constants)."""
    return sorted(set(HANDLERS) | set(ops.by_onnx_op()))
