"""Read and write .safetensors files: an 8-byte little-endian header length, a JSON header mapping names to
dtype, shape and byte offsets, then the raw little-endian data. Nothing is ever unpickled."""

from __future__ import annotations

import json
import os
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


MAX_HEADER = 100 << 20  # bytes; the reference implementation's own limit
MAX_FILE = 8 << 30  # bytes: larger weight files are refused before anything is read


def _read_header(f, path: str, size: int) -> tuple[int, dict]:
    """(header length, header) of an open .safetensors file, checked against the file's size."""
    head = f.read(8)
    if len(head) < 8:
        raise ModelLoadError(f"'{path}' is too short to be a .safetensors file")
    (n,) = struct.unpack("<Q", head)
    if n > min(size - 8, MAX_HEADER):
        raise ModelLoadError(f"'{path}' is not a .safetensors file (header length {n} exceeds the file or the "
                             f"{MAX_HEADER >> 20} MiB limit)")
    try:
        header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelLoadError(f"'{path}' is not a .safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"'{path}' is not a .safetensors file (its header is not a table)")
    return n, header


def read_safetensors_metadata(path: str) -> dict[str, str]:
    """The `__metadata__` table alone (no tensor data is read)."""
    try:
        with open(path, "rb") as f:
            meta = _read_header(f, path, os.path.getsize(path))[1].get("__metadata__", {}) or {}
    except OSError as e:
        raise ModelLoadError(f"cannot read '{path}' ({e})") from None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) from a .safetensors file. Declared sizes are checked against the file before any data
    is read, so a huge or inconsistent file is refused without reading it."""
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE:
            raise ModelLoadError(f"'{path}' is {size / 2**30:.1f} GiB; weight files over {MAX_FILE >> 30} GiB are refused")
        with open(path, "rb") as f:
            n, header = _read_header(f, path, size)
            meta = header.pop("__metadata__", {}) or {}
            data_len = size - 8 - n
            entries = []
            for name, info in header.items():
                try:
                    dtype = _DTYPES[info["dtype"]]
                    start, end = (int(v) for v in info["data_offsets"])
                    shape = [int(s) for s in info["shape"]]
                except (KeyError, TypeError, ValueError):
                    raise ModelLoadError(f"'{path}': entry {name!r} is malformed") from None
                if not 0 <= start <= end <= data_len:
                    raise ModelLoadError(f"'{path}': entry {name!r} points outside the file")
                count = int(np.prod(shape)) if shape else 1
                if min(shape, default=1) < 0 or count * torch.empty((), dtype=dtype).element_size() != end - start:
                    raise ModelLoadError(f"'{path}': entry {name!r} has {end - start} bytes for shape {shape} of {info['dtype']}")
                entries.append((name, dtype, start, end, shape))
            base = 8 + n
            out = {}
            for name, dtype, start, end, shape in entries:
                f.seek(base + start)
                raw = bytearray(f.read(end - start))
                t = torch.frombuffer(raw, dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
                out[name] = t.reshape(shape).clone()
    except OSError as e:
        raise ModelLoadError(f"cannot read '{path}' ({e})") from None
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
