"""IR → ONNX (opset 20, dynamic batch axis): the builder and the driver. Each op writes itself (`Node.to_onnx`).

The written model computes the same function as the IR (tests run it in onnxruntime) and loads back through
our own reader, so a fine-tuned graph round-trips.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from ..atomic import write_bytes_atomic
from ..ir.graph import Graph
from ..ir.walk import walk_forward

OPSET = 20  # Gelu is an ONNX op from opset 20


class OnnxBuilder:
    """Collects ONNX nodes and initializers; what `Node.to_onnx` writes through."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray | torch.Tensor) -> str:
        """An initializer; float tensors are written as float32 (the exported model's precision)."""
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            value = (value.to(torch.float32) if value.is_floating_point() else value).numpy()
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def add(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self._n += 1
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{op}_{self._n}", **attrs))
        return output


def to_onnx(graph: Graph) -> onnx.ModelProto:
    """Build an ONNX model computing `graph` (float32, dynamic batch axis 'batch')."""
    b = OnnxBuilder(graph)
    in_name, out_name = graph.meta.input_name or "input", graph.meta.output_name or "output"
    if in_name == out_name:
        out_name = out_name + "_out"

    def step(name: str, node, ins: list[str]) -> str:
        out = out_name if name == graph.output else f"v.{name}"
        node.to_onnx(b, name, ins, out)
        return out

    walk_forward(graph, in_name, step)
    x = helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["batch", *graph.input_shape])
    y = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", *graph.output_shape])
    g = helper.make_graph(b.nodes, "srp_audit", [x], [y], b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="srp-audit")
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def save_onnx(graph: Graph, path: str | os.PathLike) -> None:
    """Write `graph` as ONNX atomically: a temporary file in the same folder, then a rename."""
    path = os.fspath(path)
    model = to_onnx(graph)
    write_bytes_atomic(path, model.SerializeToString())
