"""IR → PyTorch files: a torch.export program (.pt2) and a state dict (.safetensors), written atomically."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

import torch

from ..atomic import atomic_path
from ..ir.graph import Graph
from .safetensors_io import write_safetensors


def save_pt2(graph: Graph, path: str | os.PathLike) -> None:
    """Write `graph` as a torch.export ExportedProgram (.pt2, dynamic batch axis), atomically."""
    path = os.fspath(path)
    g = graph.copy(dtype=torch.float32, device="cpu").eval()
    g.requires_grad_(False)
    example = torch.zeros((2,) + g.input_shape)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with quiet_torch():
        ep = torch.export.export(g, (example,), dynamic_shapes=({0: batch},))
        with atomic_path(path, ".pt2.tmp") as tmp:
            torch.export.save(ep, tmp)


@contextlib.contextmanager
def quiet_torch() -> Iterator[None]:
    """torch's export machinery logs and warns on stderr (e.g. about dynamic shapes); the CLI's promise is one
    line per problem, so those are silenced while we export (errors still raise)."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def save_state_dict(graph: Graph, path: str | os.PathLike) -> None:
    """Write the graph's parameters and buffers as .safetensors (names are the IR's: `layers.<node>.<param>`;
    the metadata records the input shape and each node's op and origin, so the file documents itself)."""
    meta = {"format": "srp-audit graph state dict", "input_shape": ",".join(map(str, graph.input_shape))}
    for name, node, inputs in graph.items():
        meta[f"node.{name}"] = f"{node.op} {node.describe()} <- {','.join(inputs)}; from {graph.meta.origin.get(name, '')}"
    tensors = {k: v.detach().to(torch.float32) if v.is_floating_point() else v.detach() for k, v in graph.state_dict().items()}
    write_safetensors(tensors, os.fspath(path), meta)
