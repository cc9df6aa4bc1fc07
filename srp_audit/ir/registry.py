"""Decorator-filled lookup tables (ONNX handlers and folders, ATen handlers, ONNX exporters): one helper so
each table is declared in one line and its entries register themselves where they are defined."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def registrar(table: dict[Hashable, Any]) -> Callable[..., Callable[[F], F]]:
    """`register = registrar(TABLE)`; then `@register("Op1", "Op2")` stores the function under each key."""

    def register(*keys: Hashable) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            for k in keys:
                table[k] = fn
            return fn

        return deco

    return register
