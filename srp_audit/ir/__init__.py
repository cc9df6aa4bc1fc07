"""The graph IR: the node base class (ops live in `srp_audit.ops`), the Graph container and the one walker."""

from .graph import Graph, GraphMeta
from .node import Node, Shape
from .walk import INPUT, walk_backward, walk_forward

__all__ = ["INPUT", "Graph", "GraphMeta", "Node", "Shape", "walk_forward", "walk_backward"]
