"""IR node types: one small torch module per op.

Every node works on batched tensors (axis 0 is the batch) and knows the per-sample shape it produces.
Bound rules for each type live in `srp_audit.bounds`, keyed by these classes; nothing here knows about bounds.
"""

from __future__ import annotations

import math
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Shape = tuple[int, ...]


class Node(nn.Module):
    """One op. `arity` inputs, one output; `out_shape` maps per-sample input shapes to the output's."""

    arity: ClassVar[int] = 1
    kind: ClassVar[str] = "structural"  # 'affine', 'activation' or 'structural', for display

    def out_shape(self, *shapes: Shape) -> Shape:
        return shapes[0]

    def describe(self) -> str:
        """A short human summary of the node's configuration (for `inspect` and error messages)."""
        return ""

    @property
    def op(self) -> str:
        return type(self).__name__


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pads4(p: int | Sequence[int]) -> tuple[int, int, int, int]:
    """Padding as (top, left, bottom, right); accepts an int, (h, w) or the 4-tuple."""
    if isinstance(p, int):
        return (p, p, p, p)
    p = tuple(int(v) for v in p)
    if len(p) == 2:
        return (p[0], p[1], p[0], p[1])
    if len(p) == 4:
        return p  # type: ignore[return-value]
    raise ValueError(f"padding must have 1, 2 or 4 entries, got {p}")


def _pooled_size(n: int, k: int, s: int, p0: int, p1: int, d: int = 1, ceil: bool = False) -> int:
    span = n + p0 + p1 - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + p0:  # torch/ONNX rule: the last window must start inside the input
        out -= 1
    return out


# ----------------------------------------------------------------------------------------- affine ops


class Dense(Node):
    """y = x Wᵀ + b on the last axis (torch's Linear, ONNX Gemm/MatMul+Add)."""

    kind = "affine"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        b = torch.zeros(weight.shape[0], dtype=weight.dtype) if bias is None else bias.detach().clone()
        self.bias = nn.Parameter(b.reshape(weight.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def out_shape(self, shape: Shape) -> Shape:
        if not shape or shape[-1] != self.weight.shape[1]:
            raise ValueError(f"Dense expects last dim {self.weight.shape[1]}, got shape {shape}")
        return shape[:-1] + (self.weight.shape[0],)

    def describe(self) -> str:
        return f"{self.weight.shape[1]}→{self.weight.shape[0]}"


class Conv2d(Node):
    """2-D convolution with explicit (top, left, bottom, right) zero padding."""

    kind = "affine"

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        b = torch.zeros(weight.shape[0], dtype=weight.dtype) if bias is None else bias.detach().clone()
        self.bias = nn.Parameter(b.reshape(weight.shape[0]))
        self.stride = _pair(stride)
        self.padding = _pads4(padding)
        self.dilation = _pair(dilation)
        self.groups = int(groups)

    @property
    def symmetric_padding(self) -> tuple[int, int] | None:
        t, l, b, r = self.padding
        return (t, l) if (t == b and l == r) else None

    def pad_input(self, x: torch.Tensor, value: float = 0.0) -> torch.Tensor:
        t, l, b, r = self.padding
        return F.pad(x, (l, r, t, b), value=value)

    def linear(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The convolution without bias, optionally with another weight of the same shape (e.g. |W|)."""
        w = self.weight if weight is None else weight
        sym = self.symmetric_padding
        if sym is not None:
            return F.conv2d(x, w, None, self.stride, sym, self.dilation, self.groups)
        return F.conv2d(self.pad_input(x), w, None, self.stride, 0, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.bias.view(-1, 1, 1)

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) != 3 or shape[0] != self.weight.shape[1] * self.groups:
            raise ValueError(f"Conv2d expects (C={self.weight.shape[1] * self.groups}, H, W), got {shape}")
        kh, kw = self.weight.shape[2:]
        t, l, b, r = self.padding
        h = _pooled_size(shape[1], kh, self.stride[0], t, b, self.dilation[0])
        w = _pooled_size(shape[2], kw, self.stride[1], l, r, self.dilation[1])
        if h <= 0 or w <= 0:
            raise ValueError(f"Conv2d output would be empty for input {shape}")
        return (self.weight.shape[0], h, w)

    def describe(self) -> str:
        o, i, kh, kw = self.weight.shape
        return f"{i * self.groups}→{o} k{kh}x{kw} s{self.stride[0]} p{list(self.padding)}"


class ElementwiseAffine(Node):
    """y = x · scale + shift with constants broadcast over the sample (normalisation, Mul/Div/Add/Sub by constants).

    `scale` and `shift` are stored without a batch axis and must broadcast to the sample shape without enlarging it.
    """

    kind = "affine"

    def __init__(self, scale: torch.Tensor | float = 1.0, shift: torch.Tensor | float = 0.0) -> None:
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).detach().clone())
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32).detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def out_shape(self, shape: Shape) -> Shape:
        for name, t in (("scale", self.scale), ("shift", self.shift)):
            if torch.broadcast_shapes(tuple(t.shape), shape) != tuple(shape):
                raise ValueError(f"{name} of shape {tuple(t.shape)} would enlarge a sample of shape {shape}")
        return shape

    def describe(self) -> str:
        return f"scale{tuple(self.scale.shape)} shift{tuple(self.shift.shape)}"


class BatchNorm(ElementwiseAffine):
    """Inference-mode batch normalisation over axis 1 of the sample's batch (channel axis): an elementwise affine map.

    Kept as its own type so `inspect` and export can show it; `fold_batchnorm` merges it into the preceding layer.
    """

    def __init__(
        self,
        mean: torch.Tensor,
        var: torch.Tensor,
        gamma: torch.Tensor,
        beta: torch.Tensor,
        eps: float,
        sample_rank: int,
    ) -> None:
        inv = gamma.double() / torch.sqrt(var.double() + eps)
        shift = beta.double() - mean.double() * inv
        view = (-1,) + (1,) * (sample_rank - 1)
        super().__init__(inv.float().reshape(view), shift.float().reshape(view))
        self.eps = float(eps)

    def describe(self) -> str:
        return f"{self.scale.numel()} channels"


class AvgPool2d(Node):
    """Average pooling; a linear map with non-negative weights."""

    kind = "affine"

    def __init__(
        self,
        kernel: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        count_include_pad: bool = True,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel = _pair(kernel)
        self.stride = _pair(stride if stride is not None else kernel)
        self.padding = _pads4(padding)
        self.count_include_pad = bool(count_include_pad)
        self.ceil_mode = bool(ceil_mode)
        t, l, b, r = self.padding
        if not self.count_include_pad and (t != b or l != r):
            raise ValueError("asymmetric padding with count_include_pad=0 is not supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, l, b, r = self.padding
        if t == b and l == r and t <= self.kernel[0] // 2 and l <= self.kernel[1] // 2:
            return F.avg_pool2d(x, self.kernel, self.stride, (t, l), self.ceil_mode, self.count_include_pad)
        # Explicit zero padding is equivalent when padded cells count in the average.
        return F.avg_pool2d(F.pad(x, (l, r, t, b)), self.kernel, self.stride, 0, self.ceil_mode, True)

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ValueError(f"AvgPool2d expects (C, H, W), got {shape}")
        t, l, b, r = self.padding
        h = _pooled_size(shape[1], self.kernel[0], self.stride[0], t, b, 1, self.ceil_mode)
        w = _pooled_size(shape[2], self.kernel[1], self.stride[1], l, r, 1, self.ceil_mode)
        return (shape[0], h, w)

    def describe(self) -> str:
        return f"k{self.kernel} s{self.stride} p{list(self.padding)}"


# ----------------------------------------------------------------------------------------- activations


class Relu(Node):
    kind = "activation"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


class Sigmoid(Node):
    kind = "activation"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


class Tanh(Node):
    kind = "activation"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


# ----------------------------------------------------------------------------------------- structural ops


class Add(Node):
    """Sum of two tensors of the same shape (residual connections)."""

    arity = 2

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b

    def out_shape(self, a: Shape, b: Shape) -> Shape:
        if tuple(a) != tuple(b):
            raise ValueError(f"Add needs equal shapes, got {a} and {b}")
        return a


class Reshape(Node):
    """Reshape the sample to `shape` (flatten is the special case of a 1-D target). The batch axis is kept."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape((x.shape[0],) + self.shape)

    def out_shape(self, shape: Shape) -> Shape:
        if math.prod(shape) != math.prod(self.shape):
            raise ValueError(f"cannot reshape {shape} to {self.shape}")
        return self.shape

    def describe(self) -> str:
        return f"→{self.shape}"


class Transpose(Node):
    """Permute the sample's axes (`perm` indexes sample axes; the batch axis stays first)."""

    def __init__(self, perm: Sequence[int]) -> None:
        super().__init__()
        self.perm = tuple(int(p) for p in perm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute((0,) + tuple(p + 1 for p in self.perm))

    def inverse(self) -> tuple[int, ...]:
        inv = [0] * len(self.perm)
        for i, p in enumerate(self.perm):
            inv[p] = i
        return tuple(inv)

    def out_shape(self, shape: Shape) -> Shape:
        if sorted(self.perm) != list(range(len(shape))):
            raise ValueError(f"perm {self.perm} does not fit shape {shape}")
        return tuple(shape[p] for p in self.perm)

    def describe(self) -> str:
        return f"perm{self.perm}"


class Pad(Node):
    """Constant padding of the sample's axes; `pads` holds (before, after) per sample axis."""

    def __init__(self, pads: Sequence[tuple[int, int]], value: float = 0.0) -> None:
        super().__init__()
        self.pads = tuple((int(a), int(b)) for a, b in pads)
        self.value = float(torch.tensor(float(value), dtype=torch.float32))  # a float32 model constant

    def torch_pad(self) -> tuple[int, ...]:
        flat: list[int] = []
        for before, after in reversed(self.pads):
            flat += [before, after]
        return tuple(flat)

    def forward(self, x: torch.Tensor, value: float | None = None) -> torch.Tensor:
        return F.pad(x, self.torch_pad(), value=self.value if value is None else value)

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) != len(self.pads):
            raise ValueError(f"Pad has {len(self.pads)} axes, sample has shape {shape}")
        out = tuple(n + a + b for n, (a, b) in zip(shape, self.pads))
        if any(n <= 0 for n in out):
            raise ValueError(f"padding {self.pads} empties a sample of shape {shape}")
        return out

    def describe(self) -> str:
        return f"{list(self.pads)} value={self.value}"


class MaxPool2d(Node):
    """Max pooling (padding counts as −∞)."""

    def __init__(
        self,
        kernel: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel = _pair(kernel)
        self.stride = _pair(stride if stride is not None else kernel)
        self.padding = _pads4(padding)
        self.dilation = _pair(dilation)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, l, b, r = self.padding
        if t == b and l == r and t <= self.kernel[0] // 2 and l <= self.kernel[1] // 2:
            return F.max_pool2d(x, self.kernel, self.stride, (t, l), self.dilation, self.ceil_mode)
        x = F.pad(x, (l, r, t, b), value=-math.inf)
        return F.max_pool2d(x, self.kernel, self.stride, 0, self.dilation, self.ceil_mode)

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ValueError(f"MaxPool2d expects (C, H, W), got {shape}")
        t, l, b, r = self.padding
        h = _pooled_size(shape[1], self.kernel[0], self.stride[0], t, b, self.dilation[0], self.ceil_mode)
        w = _pooled_size(shape[2], self.kernel[1], self.stride[1], l, r, self.dilation[1], self.ceil_mode)
        return (shape[0], h, w)

    def describe(self) -> str:
        return f"k{self.kernel} s{self.stride} p{list(self.padding)}"


class Identity(Node):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


ALL_NODE_TYPES: tuple[type[Node], ...] = (
    Dense,
    Conv2d,
    ElementwiseAffine,
    BatchNorm,
    AvgPool2d,
    Relu,
    Sigmoid,
    Tanh,
    Add,
    Reshape,
    Transpose,
    Pad,
    MaxPool2d,
    Identity,
)
