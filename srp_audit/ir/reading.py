"""How a model file's nodes become IR nodes: the readers' tables, the values they pass around, and what a reader
may ask of the loader.

An op module reads its own ONNX and ATen forms. The simple case is data: `onnx_op` / `aten_ops` on the node
class with `from_onnx` / `from_aten` (one file node with attributes → one IR node). Anything more — weights to
check, attributes that pick a shape, a 1-D form read as the 2-D op — is a reader function in the op's module,
registered with `@reads_onnx("Conv")` or `@reads_aten("aten.convolution.default")`. Readers receive the loader's
context (`OnnxReading` / `AtenReading`: the loader in `srp_audit.formats` implements them) and return the IR
values of the node's outputs. Forms that become several ops (LayerNorm, Resize, Celu, the comparisons) live in
`srp_audit.formats`, one module per family, registered into the same tables. A type read twice — two readers, or
a reader and an op's `onnx_op` / `aten_ops` declaration — is an error at import (`check_declarations`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from ..errors import ModelLoadError
from ..kernel.enclosure import Enclosed
from .node import Node


@dataclass
class Tensor:
    """An input-dependent value: the IR value id and its per-sample shape."""

    ir: str
    shape: tuple[int, ...]
    batch_at: int = 0  # where the framework's batch axis sits (a Transpose may move it; picks bring it back)


@dataclass(frozen=True)
class Derived:
    """A float constant the model computes from stored ones whose exact value no float holds (1/3, 8^−½): kept as
    a rigorous enclosure, never rounded. The data may be scaled or shifted by it (an enclosed ElementwiseAffine);
    anything that would need its float value refuses it."""

    value: Enclosed

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.mid.shape)


Value = Tensor | np.ndarray | Derived


def stored_tensor(arr: np.ndarray) -> torch.Tensor:
    """A float constant as the model stores it: float32 when that holds it exactly (float32 files), else float64
    (float64 files): never rounded."""
    if arr.dtype != np.float64:
        arr = arr.astype(np.float64)  # float16/float32 and small integers convert exactly
    narrow = arr.astype(np.float32)
    if np.array_equal(narrow.astype(np.float64), arr):
        return torch.from_numpy(np.array(narrow, copy=True))
    return torch.from_numpy(np.array(arr, copy=True))


class Reading(Protocol):
    """What any reader may ask of the loader (`srp_audit.formats.context.LoaderContext` implements it)."""

    @property
    def batched(self) -> bool: ...

    @property
    def node_name(self) -> str: ...

    @property
    def op_name(self) -> str: ...

    def unsupported(self, reason: str) -> Exception: ...

    def emit(self, node: Node, inputs: list[Tensor], tag: str | None = None, moved_ok: bool = False) -> Tensor: ...

    def declared(self, build: Callable[..., Node], *args: Any) -> Node: ...

    def get(self, name: str) -> Value | None: ...

    def tensor(self, name: str, moved_ok: bool = False) -> Tensor: ...

    def batch_first(self, t: Tensor) -> Tensor: ...

    def permute(self, t: Tensor, perm: list[int]) -> Tensor: ...

    def const(self, name: str, what: str = "input") -> np.ndarray: ...

    def weight(self, name: str, what: str) -> torch.Tensor: ...

    def full_shape(self, t: Tensor) -> tuple[int, ...]: ...

    def sample_axis(self, t: Tensor, axis: int) -> int: ...

    def reshape_to(self, t: Tensor, shape: list[int]) -> Tensor: ...

    def matmul(self, a: Tensor, b: Tensor) -> Tensor: ...

    def constant_from(self, t: Tensor, c: np.ndarray) -> Tensor: ...

    def sample_const(self, t: Tensor, c: np.ndarray) -> torch.Tensor: ...

    def broadcast(self, t: Tensor, c: torch.Tensor) -> Tensor: ...


class OnnxReading(Reading, Protocol):
    """An ONNX load: the model's opset and ONNX's view of shapes (batch axis included)."""

    @property
    def opset(self) -> int: ...

    def onnx_shape(self, t: Tensor) -> tuple[int, ...]: ...


class AtenReading(Reading, Protocol):
    """A load of an exported torch program: `node` is the torch.fx node being read."""

    node: Any


def aten_const(v: Any) -> np.ndarray:
    """An ATen argument as a numpy constant."""
    return v if isinstance(v, np.ndarray) else np.asarray(v)


def aten_ints(v: Any) -> list[int]:
    """An ATen int-list argument (sizes, strides) as Python ints."""
    return [int(x) for x in np.asarray(v).reshape(-1)] if not isinstance(v, (list, tuple)) else [int(np.asarray(x)) for x in v]


def aten_value(v: Any) -> Value:
    """A data tensor, or a constant: a Python float operand is the float32 torch computes with (a scalar takes the
    float32 data's dtype: x / 0.3081 divides by float32(0.3081), as the ONNX export of the same model stores it)."""
    if isinstance(v, Tensor):
        return v
    if isinstance(v, float):
        return np.asarray(v, dtype=np.float32)
    return aten_const(v)


def aten_tensor(ctx: Reading, v: Any) -> Tensor:
    """An ATen argument that must be the model's data, batch axis first."""
    if not isinstance(v, Tensor):
        raise ctx.unsupported("expected an input-dependent tensor here, got a constant")
    return ctx.batch_first(v)


def aten_weight(ctx: Reading, v: Any) -> torch.Tensor:
    """An ATen argument that must be a stored weight: finite, kept as stored."""
    if isinstance(v, Tensor):
        raise ctx.unsupported("a weight computed from the model's data is not supported")
    arr = np.asarray(v)
    arr = arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ModelLoadError(f"a weight of node '{ctx.node_name}' ({ctx.op_name}) contains NaN or inf; the model's weights are corrupt")
    return stored_tensor(arr)


OnnxNode = Any
"""An `onnx.NodeProto` (op_type, input and output names); kept untyped so the IR does not import onnx."""



def onnx_pads(ctx: Reading, attrs: dict, in_hw: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
              dilation: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) padding of an ONNX window op (Conv, pools): `pads`, or what `auto_pad` implies.
    `in_hw`, `kernel`, `stride` and `dilation` are (H, W) pairs, as the node's attributes and shapes give them."""
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        p = list(attrs.get("pads", [0, 0, 0, 0]))
        if len(p) != 4:
            raise ctx.unsupported("only 2-D spatial padding is supported")
        return (p[0], p[1], p[2], p[3])
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for n, k, s, d in zip(in_hw, kernel, stride, dilation):
            out = -(-n // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return (pads[0][0], pads[1][0], pads[0][1], pads[1][1])
    raise ctx.unsupported(f"auto_pad={auto!r}")


def spatial_input(ctx: OnnxReading, node: OnnxNode) -> Tensor:
    """The data input of an ONNX window op, which must be (N, C, H, W)."""
    x = ctx.tensor(node.input[0])
    if not ctx.batched or len(x.shape) != 3:
        raise ctx.unsupported(f"only 2-D (N, C, H, W) inputs are supported, got {ctx.onnx_shape(x)}")
    return x


OnnxReader = Callable[[Any, Any, dict], list[Value]]
"""reader(ctx: OnnxReading, node: onnx.NodeProto, attrs) → the IR values of the node's outputs."""
AtenReader = Callable[[Any, list, dict], Any]
"""reader(ctx: AtenReading, args, kwargs) → the IR value(s) of the call."""

ONNX_READERS: dict[str, OnnxReader] = {}
ATEN_READERS: dict[str, AtenReader] = {}

F = TypeVar("F", bound=Callable[..., Any])


def _registrar(table: dict[str, Any], what: str) -> Callable[..., Callable[[F], F]]:
    def register(*keys: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            for k in keys:
                if k in table:
                    old = table[k]
                    raise RuntimeError(f"{what} {k!r} has two readers: {old.__module__}.{old.__qualname__} and "
                                       f"{fn.__module__}.{fn.__qualname__}; one form, one reader")
                table[k] = fn
            return fn

        return deco

    return register


reads_onnx = _registrar(ONNX_READERS, "ONNX op")
"""@reads_onnx("Conv", ...): this function reads those ONNX op types."""
reads_aten = _registrar(ATEN_READERS, "ATen target")
"""@reads_aten("aten.convolution.default", ...): this function reads those ATen targets."""


def check_declarations(ops: Iterable[type[Node]]) -> None:
    """Refuse an ONNX type or ATen target both declared by an op (`onnx_op`, `aten_ops`) and read by a reader, or
    declared by two ops: otherwise one of them would silently win."""
    onnx_owner: dict[str, str] = {}
    aten_owner: dict[str, str] = {}
    for cls in ops:
        for key, owners, table in ((cls.onnx_op, onnx_owner, ONNX_READERS),
                                   *((t, aten_owner, ATEN_READERS) for t in cls.aten_ops)):
            if key is None:
                continue
            if key in table:
                fn = table[key]
                raise RuntimeError(f"{key!r} is declared by op {cls.__name__} and read by {fn.__module__}.{fn.__qualname__}; "
                                   "one form, one reader")
            if key in owners and owners[key] != cls.__name__:
                raise RuntimeError(f"{key!r} is declared by ops {owners[key]} and {cls.__name__}")
            owners[key] = cls.__name__
