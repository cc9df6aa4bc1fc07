"""The memory budget of a run: how many samples a batch may hold so that bounding it stays within the budget.

A bound pass keeps a few float64 maps per value of the network and sample (interval ends, rounding magnitudes,
relaxation slopes; alpha-CROWN's slopes per spec row and their optimiser state), while its backward passes work
in chunks of fixed size (`bounds.crown`'s budgets). So the memory of a batch is about a fixed part (the model's
copies) plus a per-sample part proportional to the network's activations; the factors below are measured peaks
(ResNet-18 and VGG-16 at 32×32, `benchmarks/bench_full_size.py`) rounded up.
"""

from __future__ import annotations

import math
import os
import re

import torch

from .errors import UsageError
from .ir.graph import Graph

MAPS_PER_VALUE = {"ibp": 6, "crown-ibp": 16, "crown": 16, "alpha-crown": 48}
"""float64 maps of the network's activations per sample a method holds at its peak (IBP measured at 4, CROWN-IBP
at 12 on ResNet-18 width 64)."""
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """'8G', '512M', '1.5g', '2000000' (bytes) → bytes; a clear error otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", text)
    if not m:
        raise UsageError(f"memory budget {text!r} is not a size: write it as 8G, 512M or a number of bytes")
    size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if size <= 0:
        raise UsageError(f"memory budget {text!r} must be positive")
    return size


def available_bytes(device: torch.device) -> int:
    """Memory free for this run now: the GPU's free memory, or the machine's available memory (Linux's
    MemAvailable; elsewhere the physical memory)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def default_budget(device: torch.device) -> int:
    """Half of what is free (leaving room for the rest of the machine and the allocator's slack), shared by the
    processes torchrun started on this machine when they share its memory (CPU ranks; each GPU rank has its own)."""
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if device.type != "cuda" else 1
    return available_bytes(device) // 2 // max(1, ranks)


def per_sample_bytes(graph: Graph, methods: list[str]) -> int:
    """Estimated peak bytes one more sample in a batch costs, for the costliest of `methods`: its maps of every value,
    and its share of the spec's backward chunk (a coefficient row per class at the widest value)."""
    values = sum(math.prod(s) for s in graph.shapes.values())
    widest = max(math.prod(s) for s in graph.shapes.values())
    maps = max(MAPS_PER_VALUE.get(m, MAPS_PER_VALUE["alpha-crown"]) for m in methods)
    return 8 * (values * maps + graph.num_classes * widest)


def fixed_bytes(graph: Graph) -> int:
    """Estimated bytes independent of the batch: the model in its own precision and in float64 (and a copy)."""
    return 12 * sum(t.numel() for t in list(graph.parameters()) + list(graph.buffers()))


def _size(b: float) -> str:
    return f"{b / 2**30:.1f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"


def batch_within(graph: Graph, methods: list[str], budget: int, wanted: int) -> int:
    """The largest batch (at most `wanted`) whose estimate fits `budget`; a clear error when not even one sample does."""
    room = budget - fixed_bytes(graph)
    one = per_sample_bytes(graph, methods)
    if room < one:
        raise UsageError(f"--memory-budget {_size(budget)} is below the estimated {_size(fixed_bytes(graph) + one)} one sample "
                         f"of this model needs with {methods[-1]}; raise it (or choose a cheaper --method)")
    return max(1, min(wanted, room // one))


def largest_batch(graph: Graph, methods: list[str], budget: int, batch: int) -> tuple[int, str | None]:
    """The most samples a batch may hold within `budget`, and a note for the report when that is fewer than `batch`."""
    cap = batch_within(graph, methods, budget, 1 << 20)
    if cap >= batch:
        return cap, None
    return cap, (f"batches of {cap} samples: the most the memory budget ({_size(budget)}) allows for this model "
                 f"(about {_size(per_sample_bytes(graph, methods))} a sample)")
