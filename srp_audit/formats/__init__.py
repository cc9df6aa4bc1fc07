"""Model formats, read and written: the only code that knows file formats. `load_model` sniffs the format and returns a Graph."""

from __future__ import annotations

import os

from ..atomic import prepare_output
from ..errors import ModelLoadError, SrpAuditError, UsageError
from ..ir.graph import Graph
from ..passes.simplify import simplify
from ..perf import denormals_kept
from .onnx_read import load_onnx

ONNX_SUFFIXES = (".onnx",)
TORCH_SUFFIXES = (".pt", ".pth", ".pt2", ".bin", ".ckpt", ".safetensors")


def load_model(path: str, *, simplified: bool = True, factory: str | None = None,
               input_shape: tuple[int, ...] | None = None, trust: bool = False) -> Graph:
    """Load a model into the IR; by default batch-norm and normalisation are folded and no-ops dropped.

    ONNX files; torch.export `.pt2`; `factory` ('pkg.mod:fn') plus a state dict (.pt/.pth/.safetensors);
    TorchScript (with `input_shape`); pickled whole modules only with `trust`.
    """
    with denormals_kept():  # constants are read and enclosed exactly, subnormal ones included
        return _load_model(os.fspath(path), simplified, factory, input_shape, trust)


def _load_model(path: str, simplified: bool, factory: str | None, input_shape: tuple[int, ...] | None, trust: bool) -> Graph:
    if not os.path.exists(path):
        raise ModelLoadError(f"model file '{path}' does not exist")
    if os.path.isdir(path):
        raise ModelLoadError(f"'{path}' is a directory, not a model file")
    if factory:
        from .torch_read import load_factory

        graph = load_factory(factory, path, input_shape, trust)
    elif path.lower().endswith(ONNX_SUFFIXES) or _looks_like_onnx(path):
        graph = load_onnx(path)
    elif path.lower().endswith(".safetensors"):
        if _written_by_robustify(path):
            raise ModelLoadError(f"'{path}' holds the parameters of a graph fine-tuned by srp-audit robustify, not a model: "
                                 "certify the model written with -o model.onnx or -o model.pt2 instead")
        raise ModelLoadError(f"'{path}' holds weights only: pass --model-factory package.module:function that builds the network")
    else:
        graph = _load_torch(path, input_shape, trust)
    return simplify(graph) if simplified else graph


def _written_by_robustify(path: str) -> bool:
    from .safetensors_io import read_safetensors_metadata

    try:
        return read_safetensors_metadata(path).get("format") == "srp-audit graph state dict"
    except ModelLoadError:
        return False


def _load_torch(path: str, input_shape: tuple[int, ...] | None, trust: bool) -> Graph:
    from . import torch_read as tl

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
    from .torch_read import read_state_dict

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


OUTPUT_SUFFIXES = (".onnx", ".pt2", ".safetensors")


def check_output_path(path: str, inputs: tuple[str, ...] = (), force: bool = False) -> str:
    """The output's suffix, after checking (before any work) that it is a model format we write, that it can be
    written, and that it is none of `inputs` unless `force`."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise UsageError(f"-o {path!r}: the output must end in {' or '.join(OUTPUT_SUFFIXES)}")
    prepare_output(path, "model", inputs, force)
    return suffix


def save_model(graph: Graph, path: str) -> None:
    """Write `graph` atomically in the format of `path`'s suffix; an ONNX file is read back with our own loader
    and must reproduce the graph's outputs (else `SrpAuditError`: a bug to report)."""
    import torch

    from .onnx_write import save_onnx
    from .torch_write import save_pt2, save_state_dict

    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".onnx":
        save_onnx(graph, path)
        back = load_model(path)
        x = torch.rand((4,) + graph.input_shape)
        with torch.no_grad():
            ok = torch.allclose(back(x), graph(x), rtol=1e-4, atol=1e-5)
        if not ok:
            raise SrpAuditError(f"{path} was written but does not reproduce the trained model; please report this")
    elif suffix == ".pt2":
        save_pt2(graph, path)
    else:
        save_state_dict(graph, path)
