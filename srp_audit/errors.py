"""User-facing errors: each carries one line saying what is wrong and what to do.

The CLI turns an `SrpAuditError` into that line on stderr and exit code 2; anything else is a bug.
"""


class SrpAuditError(Exception):
    """Base of every error caused by the user's input (model, data, options)."""


class ModelLoadError(SrpAuditError):
    """The model file is missing, unreadable, malformed or uses something we cannot represent."""


class UnsupportedOpError(ModelLoadError):
    """A model contains an operator (or operator configuration) the IR cannot represent."""

    def __init__(self, node: str, op: str, opset: int | None, reason: str = "") -> None:
        where = f"node '{node}' (op {op}" + (f", opset {opset})" if opset is not None else ")")
        detail = f": {reason}" if reason else ""
        super().__init__(f"unsupported operator at {where}{detail}")
        self.node, self.op, self.opset = node, op, opset


class DataError(SrpAuditError):
    """The samples file is missing, malformed, or does not fit the model."""


class UsageError(SrpAuditError):
    """An option has an invalid value."""


class BoundMethodError(SrpAuditError):
    """A bound method cannot handle a node of the graph."""


class SoundnessError(RuntimeError):
    """A sample was both proved and falsified: a bug in a bound rule. Never caught (exit 3)."""
