"""Read and write .safetensors files: an 8-byte little-endian header length, a JSON header mapping names to
dtype, shape and byte offsets, then the raw little-endian data. Nothing is ever unpickled."""

from __future__ import annotations

import json
import struct

import numpy as np
import torch

from ..atomic import write_bytes_atomic
from ..errors import ModelLoadError

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) from a .safetensors file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ModelLoadError(f"cannot read '{path}' ({e})") from None
    if len(raw) < 8:
        raise ModelLoadError(f"'{path}' is too short to be a .safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ModelLoadError(f"'{path}' is not a .safetensors file (header length {n} exceeds the file)")
    try:
        header = json.loads(raw[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelLoadError(f"'{path}' is not a .safetensors file (its header is not JSON)") from None
    meta = header.pop("__metadata__", {}) or {}
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        try:
            dtype = _DTYPES[info["dtype"]]
            start, end = info["data_offsets"]
            shape = [int(s) for s in info["shape"]]
        except (KeyError, TypeError, ValueError):
            raise ModelLoadError(f"'{path}': entry {name!r} is malformed") from None
        if not 0 <= start <= end <= len(data):
            raise ModelLoadError(f"'{path}': entry {name!r} points outside the file")
        t = torch.frombuffer(bytearray(data[start:end]), dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
        if t.numel() != int(np.prod(shape)):
            raise ModelLoadError(f"'{path}': entry {name!r} has {t.numel()} values for shape {shape}")
        out[name] = t.reshape(shape).clone()
    return out, {str(k): str(v) for k, v in meta.items()}


def write_safetensors(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None) -> None:
    """Write tensors (CPU, contiguous, little-endian) atomically."""
    header: dict = {"__metadata__": dict(metadata or {})}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        b = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # align the data to 8 bytes, as the reference writer does
    write_bytes_atomic(path, b"".join([struct.pack("<Q", len(head)), head, *blobs]))
