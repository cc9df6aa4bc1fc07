"""Integer-typed data in torch.export programs: which values are integers (torch's recorded example values), and
which ATen ops compute the same on integers as on reals. Others would need wrap-around and truncating division,
which the IR's real arithmetic does not model, so the ATen reader refuses them on integer data."""

from __future__ import annotations

from typing import Any

import torch

from .context import Tensor

INTEGER_SAFE = {"_to_copy", "eq", "ne", "gt", "ge", "lt", "le", "logical_not", "logical_and", "logical_or", "logical_xor",
                "bitwise_not", "bitwise_and", "bitwise_or", "bitwise_xor", "where", "remainder", "one_hot", "embedding",
                "maximum", "minimum", "argmax", "argmin", "amax", "amin", "view", "reshape", "_unsafe_view", "unsqueeze",
                "squeeze", "permute", "clone", "alias", "detach", "slice", "select", "index_select", "split",
                "split_with_sizes", "cat", "expand", "flatten", "contiguous", "lift_fresh_copy", "_assert_tensor_metadata"}
"""ATen ops that compute the same on integer-typed data as on reals (no rounding, no overflow): others refuse it."""


def integer_typed(node: Any) -> bool:
    """Whether an fx node's value is an integer or bool tensor (from torch.export's recorded example value)."""
    v = node.meta.get("val") if hasattr(node, "meta") else None
    return isinstance(v, torch.Tensor) and not v.dtype.is_floating_point


def reads_integer_data(values: dict[str, Any], node: Any) -> bool:
    """Whether an fx node reads an integer-typed value that depends on the model input (`values`: the reader's)."""
    return any(integer_typed(n) and isinstance(values.get(n.name), Tensor) for n in node.all_input_nodes)
