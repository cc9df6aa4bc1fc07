"""The graph IR: typed nodes, the Graph container, simplification passes and ONNX export."""

from .graph import INPUT, Graph, GraphMeta
from .nodes import (
    Add,
    AvgPool2d,
    BatchNorm,
    Conv2d,
    Dense,
    ElementwiseAffine,
    Identity,
    MaxPool2d,
    Node,
    Pad,
    Relu,
    Reshape,
    Sigmoid,
    Tanh,
    Transpose,
)

__all__ = [
    "INPUT", "Graph", "GraphMeta", "Node", "Dense", "Conv2d", "ElementwiseAffine", "BatchNorm", "AvgPool2d",
    "Relu", "Sigmoid", "Tanh", "Add", "Reshape", "Transpose", "Pad", "MaxPool2d", "Identity",
]
