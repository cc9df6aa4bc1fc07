"""Model loaders: the only code that knows file formats. `load_model` sniffs the format and returns a Graph."""

from __future__ import annotations

import os

from ..errors import ModelLoadError
from ..ir.graph import Graph
from ..ir.passes import simplify
from .onnx_loader import load_onnx

ONNX_SUFFIXES = (".onnx",)


def load_model(path: str, *, simplified: bool = True) -> Graph:
    """Load a model file into the IR; by default batch-norm and normalisation are folded and no-ops dropped."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelLoadError(f"model file '{path}' does not exist")
    if path.lower().endswith(ONNX_SUFFIXES) or _looks_like_onnx(path):
        graph = load_onnx(path)
    else:
        raise ModelLoadError(
            f"'{path}' is not an ONNX model (by its name or content); export your network to ONNX "
            "(torch.onnx.export) and pass the .onnx file"
        )
    return simplify(graph) if simplified else graph


def _looks_like_onnx(path: str) -> bool:
    """ONNX files are protobufs that start with the ir_version field (tag 0x08)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x08 and head[1] < 0x20
