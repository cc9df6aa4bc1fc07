"""Process-level performance settings for the command line and benchmarks (never changes results).

- glibc returns freed blocks above its trim threshold to the OS and page-faults them back on the next
  allocation; bound propagation allocates and frees many same-sized megabyte tensors per layer, which made
  IBP up to 6× slower run-to-run. Raising the trim and mmap thresholds keeps those blocks in the heap, and
  turning mmap off keeps the blocks above glibc's largest mmap threshold (32 MiB) there too: a float64
  transposed convolution over 384 branch-and-bound domains (a 38 MB temporary) took 21 ms with mmap, 9 ms without.
- Denormal floats are *not* flushed to zero: flushing also reads subnormal operands as zero (a subnormal stored
  weight drops out of W·x whatever x is), an error no relative or per-operation allowance bounds. It bought
  nothing measurable either (certify with radii on 128 fixture images: within 3 % both ways, 2026-12-07).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Iterator

import numpy as np
import torch

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_done = False


def tune_process() -> None:
    """Apply the settings once; a no-op where they are unavailable."""
    global _done
    if _done:
        return
    _done = True
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
            libc.mallopt(_M_MMAP_THRESHOLD, 1 << 25)
            libc.mallopt(_M_MMAP_MAX, 0)  # no block is mmapped (the heap falls back to mmap if it cannot grow)
        except (OSError, AttributeError):
            pass
    torch.set_flush_denormal(False)


def flushing() -> bool:
    """Whether this thread flushes subnormal numbers to zero now (the smallest one times 1 comes out 0)."""
    return bool(np.nextafter(0.0, 1.0) * 1.0 == 0.0)


@contextlib.contextmanager
def denormals_kept() -> Iterator[None]:
    """Subnormal numbers are kept inside the block, where the process flushes them for speed: exact work on Python
    and numpy floats (reading a model's constants, a spec's bounds) must not read 5e-324 as 0."""
    if not flushing():
        yield
        return
    torch.set_flush_denormal(False)
    try:
        yield
    finally:
        torch.set_flush_denormal(True)
