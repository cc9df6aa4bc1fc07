"""A small registry mapping IR node types to one bound method's transfer functions.

Each bound method owns one `RuleTable`; looking a node up walks its class's MRO, so a subclass (BatchNorm is an
ElementwiseAffine) inherits its parent's rule unless it registers its own.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from ..errors import BoundMethodError

F = TypeVar("F", bound=Callable)


class RuleTable:
    def __init__(self, method: str) -> None:
        self.method = method
        self._rules: dict[type, Callable] = {}

    def register(self, *types: type) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            for t in types:
                if t in self._rules:
                    raise ValueError(f"{self.method}: {t.__name__} registered twice")
                self._rules[t] = fn
            return fn

        return deco

    def find(self, node_type: type) -> Callable | None:
        return next((self._rules[t] for t in node_type.__mro__ if t in self._rules), None)

    def lookup(self, node_type: type, where: str = "") -> Callable:
        rule = self.find(node_type)
        if rule is None:
            at = f" (node {where})" if where else ""
            raise BoundMethodError(f"bound method '{self.method}' has no rule for op {node_type.__name__}{at}")
        return rule

    def supports(self, node_type: type) -> bool:
        return self.find(node_type) is not None
