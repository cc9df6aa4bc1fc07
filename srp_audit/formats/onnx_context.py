"""The load context of an ONNX model: nodes are named by their ONNX name (or first output) and op type,
versioned by the model's opset."""

from __future__ import annotations

from typing import Any

from .context import LoaderContext, Tensor


class OnnxContext(LoaderContext):
    """An ONNX load: nodes are named by their ONNX name (or first output) and op type, versioned by the opset."""

    def __init__(self, opset: int, batched: bool) -> None:
        super().__init__(batched)
        self.opset = opset
        self.onnx_node: Any = None

    @property
    def node_name(self) -> str:
        n = self.onnx_node
        if n is None:
            return "inputs"
        return n.name or (n.output[0] if n.output else "?")

    @property
    def op_name(self) -> str:
        return self.onnx_node.op_type if self.onnx_node is not None else "input binding"

    @property
    def version(self) -> int:
        return self.opset

    def onnx_shape(self, t: Tensor) -> tuple[int, ...]:
        return self.full_shape(t)
