"""torch.distributed for the commands: detect a torchrun launch, shard work, gather results on rank 0.

`torchrun --nproc-per-node N srp-audit certify ...` (or multi-node torchrun) sets RANK/WORLD_SIZE/LOCAL_RANK;
`init_from_env` joins the process group (nccl on GPUs, gloo on CPUs) and pins each rank to its own GPU when
there are GPUs. Shards are whole batches in order, so every batch — and so every result, attacks' random
starts included — is exactly what a single process with the same seed and batch size computes.
"""

from __future__ import annotations

import gc
import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .device import resolve_device
from .errors import SrpAuditError


@dataclass
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def main_process() -> bool:
    """Rank 0 of a torchrun launch, or any process not launched by torchrun: the one that reports."""
    return not launched() or int(os.environ.get("RANK", "0")) == 0


def init_from_env(device: str = "auto") -> Dist | None:
    """Join the process group torchrun describes in the environment; None when not launched by torchrun."""
    if not launched():
        return None
    world = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Dist(rank, world, local, dev)


def finish(d: Dist | None, orderly: bool = True) -> None:
    """Leave the process group. In order (`orderly`, every rank gets here): objects still holding the group (a
    DistributedDataParallel reducer caught in a reference cycle) are collected first and the ranks wait for each
    other, so no gloo worker thread outlives the group into interpreter shutdown, where it aborts the process
    ("terminate called without an active exception"). After an unexpected error, no wait: the others may be gone."""
    if d is not None and dist.is_initialized():
        gc.collect()
        if orderly:
            dist.barrier()
        dist.destroy_process_group()
        gc.collect()


@contextmanager
def leaving(d: Dist | None) -> Iterator[None]:
    """Run the block, then `finish(d)`: in order when it ends normally or with `RankFailed` (raised after every
    rank has reported), without waiting for the others after any other error."""
    try:
        yield
    except RankFailed:
        finish(d)
        raise
    except BaseException:
        finish(d, orderly=False)
        raise
    finish(d)


def shard(n: int, batch: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of the samples this rank takes: whole batches, contiguous, as even as possible."""
    batches = (n + batch - 1) // batch
    per, extra = divmod(batches, world)
    first = rank * per + min(rank, extra)
    count = per + (1 if rank < extra else 0)
    return min(n, first * batch), min(n, (first + count) * batch)


class RankFailed(SrpAuditError):
    """A rank failed; the message names it and the work it held."""


def run_and_gather(d: Dist, work: Callable[[], Any], held: str) -> list[Any] | None:
    """Run `work` on every rank and gather the results on rank 0 (None elsewhere). If any rank fails, rank 0
    raises `RankFailed` naming each failed rank and what it held; the others return None."""
    try:
        payload: tuple[str, Any] = ("ok", work())
    except Exception as e:  # reported, not swallowed: rank 0 raises with this text
        payload = ("error", f"rank {d.rank} ({held}) failed: {type(e).__name__}: {e}"
                   + ("" if isinstance(e, SrpAuditError) else f"\n{traceback.format_exc(limit=3)}"))
    gathered: list[Any] | None = [None] * d.world if d.is_main else None
    dist.gather_object(payload, gathered, dst=0)
    if gathered is None:  # not the main rank
        return None
    errors = [p[1] for p in gathered if p[0] == "error"]
    if errors:
        raise RankFailed("; ".join(e.splitlines()[0] for e in errors))
    return [p[1] for p in gathered]
