"""Training data in several `.npz` files (named one by one, or a folder of them), read one shard at a time.

`open_shards` checks every shard's `x`/`y` headers up front — without reading the arrays — so a shard of the wrong
shape is refused before training starts; each shard's values (labels, domain) are validated as it is loaded, as
`load_samples` validates a single file. `BatchStream` is the order training reads samples in.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import Samples, load_samples
from .errors import DataError


def npz_files(paths: Sequence[str]) -> list[str]:
    """The `.npz` files named: files as given, and a folder's `*.npz` files sorted by name."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(".npz"))
            if not found:
                raise DataError(f"folder '{p}' holds no .npz files")
            out.extend(found)
        elif os.path.exists(p):
            out.append(p)
        else:
            raise DataError(f"data file '{p}' does not exist")
    return out


def array_header(path: str, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of array `key` of an .npz, read from its header alone."""
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except KeyError:
        raise DataError(f"'{path}' lacks array '{key}' (expected 'x' and 'y')") from None
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise DataError(f"'{path}' is not a readable .npz of arrays ({e})") from None
    return tuple(int(s) for s in shape), np.dtype(dtype)


@dataclass
class Shards:
    """Samples spread over .npz files; `keep[i]`, where given, selects shard i's samples that take part (the rest of
    the first shard is held out)."""

    paths: list[str]
    lengths: list[int]
    input_shape: tuple[int, ...]
    num_classes: int
    domain: tuple[float, float] = (0.0, 1.0)
    keep: dict[int, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(self.keep[i]) if i in self.keep else n for i, n in enumerate(self.lengths))

    def size(self, i: int) -> int:
        return len(self.keep[i]) if i in self.keep else self.lengths[i]

    def load(self, i: int) -> Samples:
        """Shard i, validated (its selected samples only)."""
        s = load_samples(self.paths[i], self.input_shape, self.num_classes, self.domain)
        return s.subset(self.keep[i]) if i in self.keep else s


def open_shards(paths: Sequence[str], input_shape: tuple[int, ...], num_classes: int,
                domain: tuple[float, float] = (0.0, 1.0)) -> Shards:
    """The shards named by `paths` (files or folders), each checked from its headers: x with one sample of the model's
    input size per row of y."""
    files = npz_files(paths)
    want = math.prod(input_shape)
    lengths = []
    for p in files:
        xs, _ = array_header(p, "x")
        ys, _ = array_header(p, "y")
        if not xs or xs[0] == 0:
            raise DataError(f"'{p}' holds no samples")
        if len(ys) != 1 or ys[0] != xs[0]:
            raise DataError(f"'{p}': y must be a vector of {xs[0]} labels, got shape {ys}")
        if math.prod(xs[1:]) != want:
            raise DataError(f"'{p}': samples of shape {xs[1:]} do not fit the model's input {tuple(input_shape)}")
        lengths.append(xs[0])
    return Shards(files, lengths, tuple(input_shape), num_classes, domain)


class BatchStream:
    """The order training reads samples in: each pass visits every sample once, in a random order. In memory, one
    permutation of all samples per pass; in shards, the shards in a random order and each shard's samples in a
    random order, with one shard in memory at a time (loaded on `device`)."""

    def __init__(self, data: tuple[torch.Tensor, torch.Tensor] | Shards, batch_size: int, gen: torch.Generator,
                 device: torch.device) -> None:
        self.data, self.batch_size, self.gen, self.device = data, batch_size, gen, device
        self.shard_order = torch.randperm(len(data.paths), generator=gen) if isinstance(data, Shards) else torch.zeros(1, dtype=torch.long)
        self.shard_pos = 0
        self.x, self.y = self._current()
        self.order, self.pos = torch.randperm(self.x.shape[0], generator=gen), 0

    def _current(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(self.data, Shards):
            return self.data
        s = self.data.load(int(self.shard_order[self.shard_pos]))
        return s.x.to(self.device, torch.float32), s.y.to(self.device)

    def next(self, world: int, rank: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """This rank's slice of the next global batch (x, y), and the global batch's size."""
        if self.pos >= self.x.shape[0]:
            if isinstance(self.data, Shards):
                self.shard_pos += 1
                if self.shard_pos == len(self.shard_order):
                    self.shard_order, self.shard_pos = torch.randperm(len(self.data.paths), generator=self.gen), 0
                self.x, self.y = self._current()
            self.order, self.pos = torch.randperm(self.x.shape[0], generator=self.gen), 0
        batch = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        idx = torch.tensor_split(batch, world)[rank].to(self.x.device)
        return self.x[idx], self.y[idx], batch.numel()

    def peek(self, batches: int, world: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slices of the next `batches` batches, concatenated, without moving on: the stream and its
        generator are rewound afterwards (on Ctrl-C too, so a checkpoint saved then resumes exactly)."""
        saved, rng = self.state(), self.gen.get_state()
        try:
            parts = [self.next(world, rank)[:2] for _ in range(batches)]
        finally:
            self.restore(saved)
            self.gen.set_state(rng)
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def state(self) -> dict:
        return {"order": self.order, "pos": self.pos, "shard_order": self.shard_order, "shard_pos": self.shard_pos}

    def restore(self, state: dict) -> None:
        """Continue from `state()` (a checkpoint's): the same shard in memory, the same place in it."""
        self.shard_order = state.get("shard_order", self.shard_order)
        self.shard_pos = int(state.get("shard_pos", 0))
        self.x, self.y = self._current()
        self.order, self.pos = state["order"], int(state["pos"])
