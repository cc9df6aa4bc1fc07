"""What the ATen reader's handlers share: the reading context and the table they register into (the helpers that
turn an exported program's arguments into data tensors, constants and stored weights are `srp_audit.ir.reading`'s)."""

from __future__ import annotations

from typing import Any

from ..ir.reading import ATEN_READERS, reads_aten
from .context import LoaderContext


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


ATEN = ATEN_READERS  # every ATen reader, the op modules' and the loader's forms
aten = reads_aten  # @aten("aten.relu.default", ...)
