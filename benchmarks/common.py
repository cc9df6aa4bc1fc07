"""Shared helpers for benchmarks: thread set-up, ratio timing, paths. Benchmarks print ratios measured in one
run (two workloads timed alternately, so machine noise hits both), never a bare time on its own."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SHARED = Path(os.environ.get("SRP_AUDIT_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT))


def setup_threads() -> int:
    """One process, one torch thread per core (never more: oversubscription slows torch enormously), and the
    CLI's process settings (allocator thresholds, denormal flushing)."""
    from srp_audit.perf import tune_process

    n = int(os.environ.get("SRP_AUDIT_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(n)
    tune_process()
    return n


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def _calls_for(fn: Callable[[], object], budget: float) -> int:
    t0 = time.perf_counter()
    fn()
    return max(1, int(budget / max(time.perf_counter() - t0, 1e-6)))


def time_ratio(fn: Callable[[], object], base: Callable[[], object], rounds: int = 11, budget: float = 0.05) -> tuple[float, float]:
    """(median of per-round time(fn)/time(base), median seconds per base call), timed alternately."""
    for _ in range(3):
        fn(), base()
    k_fn, k_base = _calls_for(fn, budget), _calls_for(base, budget)
    ratios, bases = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(k_base):
            base()
        tb = (time.perf_counter() - t0) / k_base
        t0 = time.perf_counter()
        for _ in range(k_fn):
            fn()
        tf = (time.perf_counter() - t0) / k_fn
        ratios.append(tf / tb)
        bases.append(tb)
    return statistics.median(ratios), statistics.median(bases)


def cifar_inputs(graph, n: int) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
    """resnet_2b takes CIFAR images normalised by its own statistics; its VNN-COMP boxes live in that space.
    We use the bundled CIFAR-10 test images normalised the same way, and the model's own predictions."""
    path = SHARED / "data" / "cifar10_test_20.npz"
    d = np.load(path)
    x = torch.from_numpy(d["x"].astype(np.float32) / 255).permute(0, 3, 1, 2)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2471, 0.2435, 0.2616]).view(1, 3, 1, 1)
    x = ((x - mean) / std).repeat((n + len(x) - 1) // len(x), 1, 1, 1)[:n]
    with torch.no_grad():
        y = graph.logits(x).argmax(1)
    return x, y, (float(x.min()) - 1, float(x.max()) + 1)
