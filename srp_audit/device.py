"""Device selection and the numeric settings that soundness needs on it."""

from __future__ import annotations

import torch

from .errors import UsageError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when available, else CPU; 'cuda' without a GPU is a usage error."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name} was requested but no CUDA GPU is available; use --device cpu or auto")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) are visible")
        return dev
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")


def use_exact_float32() -> None:
    """Disable TF32 (10-bit mantissa) matmuls/convolutions: the rounding allowances assume IEEE float32/64."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
