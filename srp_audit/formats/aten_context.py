"""What the ATen reader's handlers share: the reading context, the handler table they register into, and the
helpers that turn an exported program's arguments into data tensors, constants and stored weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import ModelLoadError
from ..ir.registry import registrar
from .context import LoaderContext, Tensor, Value, stored_tensor


class _AtenCtx(LoaderContext):
    def __init__(self, batched: bool) -> None:
        super().__init__(batched)
        self.node: Any = None

    @property
    def node_name(self) -> str:
        return self.node.name if self.node is not None else "?"

    @property
    def op_name(self) -> str:
        return str(self.node.target) if self.node is not None else "?"


AtenHandler = Callable[[_AtenCtx, list, dict], Any]
ATEN: dict[str, AtenHandler] = {}


aten = registrar(ATEN)  # @aten("aten.relu.default", ...)


def _const(v: Any) -> np.ndarray:
    return v if isinstance(v, np.ndarray) else np.asarray(v)


def _ints(v: Any) -> list[int]:
    return [int(x) for x in np.asarray(v).reshape(-1)] if not isinstance(v, (list, tuple)) else [int(np.asarray(x)) for x in v]


def _val(v: Any) -> Value:
    """A data tensor, or a constant: a Python float operand is the float32 torch computes with (a scalar takes the
    float32 data's dtype: x / 0.3081 divides by float32(0.3081), as the ONNX export of the same model stores it)."""
    if isinstance(v, Tensor):
        return v
    if isinstance(v, float):
        return np.asarray(v, dtype=np.float32)
    return _const(v)


def _tensor(ctx: _AtenCtx, v: Any) -> Tensor:
    if not isinstance(v, Tensor):
        raise ctx.unsupported("expected an input-dependent tensor here, got a constant")
    return ctx.batch_first(v)


def _weight(ctx: _AtenCtx, v: Any) -> torch.Tensor:
    if isinstance(v, Tensor):
        raise ctx.unsupported("a weight computed from the model's data is not supported")
    arr = np.asarray(v)
    arr = arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ModelLoadError(f"a weight of node '{ctx.node_name}' ({ctx.op_name}) contains NaN or inf; the model's weights are corrupt")
    return stored_tensor(arr)
