"""The graph IR: named nodes in topological order over one batched input, one output.

A `Graph` is a torch module (so its parameters train and move between devices); everything else in the
project — bound methods, the attack, training, export, reports — reads models only through it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

from ..errors import BoundMethodError
from .node import Node, Shape
from .walk import INPUT, walk_forward


@dataclass(frozen=True)
class GraphMeta:
    """Facts about where the graph came from, needed to map specs and to export faithfully."""

    source: str = ""  # file the graph was loaded from
    input_name: str = "input"  # the original input's name
    output_name: str = "output"
    batched: bool = True  # the original model had a leading batch axis
    original_input_shape: tuple = ()  # the original input's declared shape (ints or names)
    origin: dict = field(default_factory=dict)  # node id → original node name/op, for messages
    inputs: tuple = ()  # (name, declared shape) of every data input, in order, when there are several
    outputs: tuple = ()  # (name, per-sample element count) of every output, when there are several
    values: dict = field(default_factory=dict)  # node id → the source model's tensor it computes (ONNX: its name)
    note: str = ""  # how the reader had to read the model, when the user should know (the batch fixed to 1)


class Graph(nn.Module):
    """A DAG of `Node`s. Values are named by node ids; the graph input is the value `INPUT`."""

    def __init__(
        self,
        input_shape: Shape,
        nodes: list[tuple[str, Node, tuple[str, ...]]],
        output: str,
        meta: GraphMeta | None = None,
    ) -> None:
        super().__init__()
        self.input_shape: Shape = tuple(int(s) for s in input_shape)
        self.meta = meta or GraphMeta()
        self.order: list[str] = []
        self.inputs_of: dict[str, tuple[str, ...]] = {}
        self.layers = nn.ModuleDict()
        self.shapes: dict[str, Shape] = {INPUT: self.input_shape}
        for name, node, inputs in nodes:
            if name in self.shapes or "." in name:
                raise ValueError(f"node id {name!r} is duplicate or contains '.'")
            if len(inputs) != node.arity:
                raise ValueError(f"node {name!r} ({node.op}) takes {node.arity} inputs, got {len(inputs)}")
            missing = [i for i in inputs if i not in self.shapes]
            if missing:
                raise ValueError(f"node {name!r} reads {missing} before they are defined")
            self.shapes[name] = tuple(node.out_shape(*(self.shapes[i] for i in inputs)))
            self.order.append(name)
            self.inputs_of[name] = tuple(inputs)
            self.layers[name] = node
        if output not in self.shapes:
            raise ValueError(f"output {output!r} is not a node")
        self.output = output
        self.last_use = self._compute_last_use()
        self._supported: set[str] = set()  # methods every node supports (see check_supported)

    # ------------------------------------------------------------------ structure

    def node(self, name: str) -> Node:
        return cast(Node, self.layers[name])  # `layers` holds only the Nodes __init__ put there (ModuleDict types a Module)

    def items(self) -> Iterator[tuple[str, Node, tuple[str, ...]]]:
        """(id, node, input ids) in topological order."""
        for name in self.order:
            yield name, cast(Node, self.layers[name]), self.inputs_of[name]  # as in `node`

    def ancestors(self, name: str) -> set[str]:
        """The nodes `name` depends on, itself included (not the input)."""
        seen, stack = set(), [name]
        while stack:
            v = stack.pop()
            if v in seen or v == INPUT:
                continue
            seen.add(v)
            stack.extend(self.inputs_of[v])
        return seen

    def first_layer(self, name: str) -> bool:
        """No nonlinear op between the input and `name`: IBP is already (almost) exact there."""
        return not any(self.node(a).nonlinear for a in self.ancestors(name))

    def consumers(self, value: str) -> list[str]:
        return [n for n in self.order if value in self.inputs_of[n]]

    @property
    def output_shape(self) -> Shape:
        return self.shapes[self.output]

    @property
    def num_classes(self) -> int:
        return math.prod(self.output_shape)

    def describe_node(self, name: str) -> str:
        """How a node is named in messages: its id, and the original model's node it came from."""
        origin = self.meta.origin.get(name)
        return f"{name} (from {origin})" if origin else name

    def _compute_last_use(self) -> dict[str, int]:
        """Value id → the step (index in `order`) that reads it last; the output is read after the last step."""
        last: dict[str, int] = {}
        for step, name in enumerate(self.order):
            for i in self.inputs_of[name]:
                last[i] = step
        last[self.output] = len(self.order)
        return last

    def check_supported(self, method: str) -> None:
        """Raise `BoundMethodError` naming the first node whose op has no rule for `method` (checked once per
        graph and method: the node list never changes after construction)."""
        if method in self._supported:
            return
        for name, node, _ in self.items():
            if not node.supports(method):
                raise BoundMethodError(f"bound method '{method}' has no rule for op {node.op} (node {self.describe_node(name)})")
        self._supported.add(method)

    # ------------------------------------------------------------------ execution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batched forward pass; `x` has shape (N, *input_shape)."""
        return walk_forward(self, x, lambda name, node, args: node(*args))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Forward pass flattened to (N, classes)."""
        return self.forward(x).reshape(x.shape[0], -1)

    def run_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward pass keeping every intermediate value (for tests and debugging)."""
        kept: dict[str, torch.Tensor] = {}
        walk_forward(self, x, lambda name, node, args: node(*args), keep=True, kept=kept)
        return {INPUT: x, **kept}

    # ------------------------------------------------------------------ copies

    def copy(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "Graph":
        """A deep copy, optionally cast/moved (the original is untouched)."""
        g = copy.deepcopy(self)
        if dtype is not None or device is not None:
            g = g.to(device=device, dtype=dtype)
        return g

    @property
    def dtype(self) -> torch.dtype:
        for t in list(self.parameters()) + list(self.buffers()):
            if t.is_floating_point():
                return t.dtype
        return torch.float32

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    def rebuilt(self, nodes: list[tuple[str, Node, tuple[str, ...]]], output: str | None = None) -> "Graph":
        """A new graph with the same input and metadata and the given nodes (used by passes)."""
        return Graph(self.input_shape, nodes, output or self.output, self.meta)
