"""Training-data augmentation for `robustify`: random translations of image batches.

Fine-tuning on a few thousand images for hundreds of epochs overfits, and robustness generalises worse than
accuracy: on the fixture CNN (4 000 MNIST images, eps 0.1, 10 000 steps) shifting each image by up to one pixel
took the attack-falsified test images from 68 to 47 of 1 000 and the certified ones from 92.6 % to 95.0 %.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from .errors import UsageError

MAX_SHIFT = 8


def check_augment(text: str) -> int | None:
    """The shift `--augment` names (None for "auto"); a usage error when it names none."""
    t = text.strip().lower()
    if t in ("auto", "none"):
        return None if t == "auto" else 0
    m = re.fullmatch(r"shift:(\d+)", t)
    if not m or int(m.group(1)) > MAX_SHIFT:
        raise UsageError(f"cannot read --augment {text!r}: use auto, none or shift:N (N from 0 to {MAX_SHIFT} pixels)")
    return int(m.group(1))


def parse_augment(text: str, sample_shape: tuple[int, ...]) -> int:
    """The largest shift in pixels that `--augment` asks for on samples of this shape: "auto" (1 on images —
    samples (C, H, W) at least 8×8 — and 0 otherwise), "none", or "shift:N"."""
    k = check_augment(text)
    image = len(sample_shape) == 3 and min(sample_shape[1:]) >= 8
    if k is None:
        return 1 if image else 0
    if k and not image:
        raise UsageError(f"--augment {text} shifts images, but the samples have shape {sample_shape}: use --augment none")
    return k


def random_offsets(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """n offsets in [−k, k]², each coded as one integer in [0, (2k + 1)²) for `shifted`."""
    return torch.randint(0, (2 * k + 1) ** 2, (n,), generator=gen)


def shifted(x: torch.Tensor, k: int, offsets: torch.Tensor) -> torch.Tensor:
    """Each image of the batch (N, C, H, W) moved by its own offset (`random_offsets`), edges replicated."""
    if k == 0:
        return x
    _, _, h, w = x.shape
    padded = F.pad(x, (k, k, k, k), mode="replicate")
    offsets = offsets.to(x.device)
    out = torch.empty_like(x)
    for o in torch.unique(offsets).tolist():  # one slice per offset in use: at most (2k + 1)² of them
        rows = (offsets == o).nonzero().squeeze(1)
        dy, dx = divmod(o, 2 * k + 1)
        out[rows] = padded[rows, :, dy : dy + h, dx : dx + w]
    return out
