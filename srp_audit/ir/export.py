"""IR → ONNX (opset 17, dynamic batch axis). One exporter per node type, in `EXPORTERS`.

The written model computes the same function as the IR (tests run it in onnxruntime) and loads back through
our own loader, so a fine-tuned graph round-trips.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from ..atomic import atomic_path, write_bytes_atomic
from .graph import INPUT, Graph
from .registry import registrar
from . import nodes as ir

OPSET = 17


class _Builder:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray | torch.Tensor) -> str:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def add(self, op: str, inputs: list[str], output: str, **attrs: object) -> str:
        self._n += 1
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{op}_{self._n}", **attrs))
        return output


Exporter = Callable[[_Builder, str, ir.Node, list[str], str], None]
EXPORTERS: dict[type, Exporter] = {}


exports = registrar(EXPORTERS)  # @exports(ir.Dense, ...)


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy()


@exports(ir.Dense)
def _dense(b: _Builder, name: str, node: ir.Dense, ins: list[str], out: str) -> None:
    w, bias = b.const(f"{name}.weight", _f32(node.weight)), b.const(f"{name}.bias", _f32(node.bias))
    if len(b.graph.shapes[b.graph.inputs_of[name][0]]) == 1:
        b.add("Gemm", [ins[0], w, bias], out, transB=1)
    else:
        wt = b.const(f"{name}.weight_t", _f32(node.weight).T.copy())
        b.add("Add", [b.add("MatMul", [ins[0], wt], f"{name}.mm"), bias], out)


@exports(ir.Conv2d)
def _conv(b: _Builder, name: str, node: ir.Conv2d, ins: list[str], out: str) -> None:
    t, l, bo, r = node.padding
    b.add(
        "Conv",
        [ins[0], b.const(f"{name}.weight", _f32(node.weight)), b.const(f"{name}.bias", _f32(node.bias))],
        out,
        strides=list(node.stride),
        pads=[t, l, bo, r],
        dilations=list(node.dilation),
        group=node.groups,
        kernel_shape=list(node.weight.shape[2:]),
    )


@exports(ir.ElementwiseAffine, ir.BatchNorm)
def _affine(b: _Builder, name: str, node: ir.ElementwiseAffine, ins: list[str], out: str) -> None:
    scaled = b.add("Mul", [ins[0], b.const(f"{name}.scale", _f32(node.scale))], f"{name}.scaled")
    b.add("Add", [scaled, b.const(f"{name}.shift", _f32(node.shift))], out)


@exports(ir.AvgPool2d)
def _avgpool(b: _Builder, name: str, node: ir.AvgPool2d, ins: list[str], out: str) -> None:
    b.add("AveragePool", ins, out, kernel_shape=list(node.kernel), strides=list(node.stride), pads=list(node.padding),
          count_include_pad=int(node.count_include_pad), ceil_mode=int(node.ceil_mode))


@exports(ir.MaxPool2d)
def _maxpool(b: _Builder, name: str, node: ir.MaxPool2d, ins: list[str], out: str) -> None:
    b.add("MaxPool", ins, out, kernel_shape=list(node.kernel), strides=list(node.stride), pads=list(node.padding),
          dilations=list(node.dilation), ceil_mode=int(node.ceil_mode))


@exports(ir.Relu, ir.Sigmoid, ir.Tanh, ir.Identity)
def _unary(b: _Builder, name: str, node: ir.Node, ins: list[str], out: str) -> None:
    b.add(type(node).__name__, ins, out)


@exports(ir.Add)
def _add(b: _Builder, name: str, node: ir.Add, ins: list[str], out: str) -> None:
    b.add("Add", ins, out)


@exports(ir.Reshape)
def _reshape(b: _Builder, name: str, node: ir.Reshape, ins: list[str], out: str) -> None:
    shape = b.const(f"{name}.shape", np.array((-1,) + node.shape, dtype=np.int64))
    b.add("Reshape", [ins[0], shape], out)


@exports(ir.Transpose)
def _transpose(b: _Builder, name: str, node: ir.Transpose, ins: list[str], out: str) -> None:
    b.add("Transpose", ins, out, perm=[0] + [p + 1 for p in node.perm])


@exports(ir.Pad)
def _pad(b: _Builder, name: str, node: ir.Pad, ins: list[str], out: str) -> None:
    befores = [0] + [p[0] for p in node.pads]
    afters = [0] + [p[1] for p in node.pads]
    pads = b.const(f"{name}.pads", np.array(befores + afters, dtype=np.int64))
    value = b.const(f"{name}.value", np.array(node.value, dtype=np.float32))
    b.add("Pad", [ins[0], pads, value], out, mode="constant")


def to_onnx(graph: Graph) -> onnx.ModelProto:
    """Build an ONNX model computing `graph` (float32, dynamic batch axis 'batch')."""
    b = _Builder(graph)
    in_name, out_name = graph.meta.input_name or "input", graph.meta.output_name or "output"
    if in_name == out_name:
        out_name = out_name + "_out"
    names = {INPUT: in_name}
    for name, node, inputs in graph.items():
        names[name] = out_name if name == graph.output else f"v.{name}"
    for name, node, inputs in graph.items():
        exporter = next((EXPORTERS[t] for t in type(node).__mro__ if t in EXPORTERS), None)
        if exporter is None:
            raise NotImplementedError(f"no ONNX exporter for {type(node).__name__}")
        exporter(b, name, node, [names[i] for i in inputs], names[name])
    x = helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["batch", *graph.input_shape])
    y = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", *graph.output_shape])
    g = helper.make_graph(b.nodes, "srp_audit", [x], [y], b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="srp-audit")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save_onnx(graph: Graph, path: str | os.PathLike) -> None:
    """Write `graph` as ONNX atomically: a temporary file in the same folder, then a rename."""
    path = os.fspath(path)
    model = to_onnx(graph)
    write_bytes_atomic(path, model.SerializeToString())


def save_pt2(graph: Graph, path: str | os.PathLike) -> None:
    """Write `graph` as a torch.export ExportedProgram (.pt2, dynamic batch axis), atomically."""
    path = os.fspath(path)
    g = graph.copy(dtype=torch.float32, device="cpu").eval()
    g.requires_grad_(False)
    example = torch.zeros((2,) + g.input_shape)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    ep = torch.export.export(g, (example,), dynamic_shapes=({0: batch},))
    with atomic_path(path, ".pt2.tmp") as tmp:
        torch.export.save(ep, tmp)


def save_state_dict(graph: Graph, path: str | os.PathLike) -> None:
    """Write the graph's parameters and buffers as .safetensors (names are the IR's: `layers.<node>.<param>`;
    the metadata records the input shape and each node's op and origin, so the file documents itself)."""
    from ..loaders.safetensors_io import write_safetensors

    meta = {"format": "srp-audit graph state dict", "input_shape": ",".join(map(str, graph.input_shape))}
    for name, node, inputs in graph.items():
        meta[f"node.{name}"] = f"{node.op} {node.describe()} <- {','.join(inputs)}; from {graph.meta.origin.get(name, '')}"
    tensors = {k: v.detach().to(torch.float32) if v.is_floating_point() else v.detach() for k, v in graph.state_dict().items()}
    write_safetensors(tensors, os.fspath(path), meta)
