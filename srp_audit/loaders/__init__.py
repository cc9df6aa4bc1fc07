"""Model loaders: the only code that knows file formats. `load_model` sniffs the format and returns a Graph."""

from __future__ import annotations

import os

from ..errors import ModelLoadError
from ..ir.graph import Graph
from ..ir.passes import simplify
from .onnx_loader import load_onnx

ONNX_SUFFIXES = (".onnx",)
TORCH_SUFFIXES = (".pt", ".pth", ".pt2", ".bin", ".ckpt", ".safetensors")


def load_model(path: str, *, simplified: bool = True, factory: str | None = None,
               input_shape: tuple[int, ...] | None = None, trust: bool = False) -> Graph:
    """Load a model into the IR; by default batch-norm and normalisation are folded and no-ops dropped.

    ONNX files; torch.export `.pt2`; `factory` ('pkg.mod:fn') plus a state dict (.pt/.pth/.safetensors);
    TorchScript (with `input_shape`); pickled whole modules only with `trust`.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelLoadError(f"model file '{path}' does not exist")
    if os.path.isdir(path):
        raise ModelLoadError(f"'{path}' is a directory, not a model file")
    if factory:
        from .torch_loader import load_factory

        graph = load_factory(factory, path, input_shape, trust)
    elif path.lower().endswith(ONNX_SUFFIXES) or _looks_like_onnx(path):
        graph = load_onnx(path)
    elif path.lower().endswith(".safetensors"):
        raise ModelLoadError(f"'{path}' holds weights only: pass --model-factory package.module:function that builds the network")
    else:
        graph = _load_torch(path, input_shape, trust)
    return simplify(graph) if simplified else graph


def _load_torch(path: str, input_shape: tuple[int, ...] | None, trust: bool) -> Graph:
    from . import torch_loader as tl

    kind = tl.archive_kind(path)
    if kind == "pt2":
        return tl.load_pt2(path, trust)
    if kind == "torchscript":
        return tl.load_torchscript(path, input_shape)
    if kind == "pickle":
        if _is_state_dict(path):
            raise ModelLoadError(f"'{path}' is a state dict (weights only): pass --model-factory package.module:function "
                                 "that builds the network, and --input-shape")
        return tl.load_pickled_module(path, input_shape, trust)
    raise ModelLoadError(f"'{path}' is neither ONNX nor a PyTorch file we can read (ONNX, .pt2, TorchScript, a state dict with "
                         "--model-factory, or a pickled module with --trust-checkpoint)")


def _is_state_dict(path: str) -> bool:
    from .torch_loader import read_state_dict

    try:
        read_state_dict(path, trust=False)
        return True
    except ModelLoadError:
        return False


def _looks_like_onnx(path: str) -> bool:
    """ONNX files are protobufs that start with the ir_version field (tag 0x08)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x08 and head[1] < 0x20 and not path.lower().endswith(TORCH_SUFFIXES)
