"""Robustify checkpoints: what they record (model fingerprint, training settings, optimiser and data-order state),
and the checks that a resume continues exactly the run that made them."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict
from typing import Any

import torch

from .atomic import atomic_path
from .errors import UsageError
from .finish_rule import FinishChoice
from .ir.graph import Graph


def model_fingerprint(graph: Graph) -> str:
    h = hashlib.sha256()
    for name, t in sorted(graph.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# Options that define the training run; a checkpoint resumes only a run with the same ones.
_RUN_SETTINGS = ("eps", "epochs", "max_time", "batch_size", "lr", "regularizer", "variant", "warmup", "ramp", "k_final",
                 "ada", "gamma", "val_split", "seed", "domain", "augment", "finish")


def settings_of(opt: Any) -> dict:
    """The training settings of a RobustifyOptions, as a checkpoint records them."""
    d = asdict(opt)
    return {k: list(d[k]) if isinstance(d[k], tuple) else d[k] for k in _RUN_SETTINGS}


def _flag(setting: str) -> str:
    """The command-line option of a training setting."""
    return "--" + setting.replace("_", "-")


_BEFORE_RECORDED = {"augment": "none", "finish": "none"}
"""What a setting was in checkpoints written before it was recorded (no images were shifted, no final phase then)."""


def _changed_settings(saved: dict, now: dict) -> list[str]:
    then = {k: saved.get(k, _BEFORE_RECORDED.get(k)) for k in _RUN_SETTINGS}
    return [f"{_flag(k)} {then[k]!r} then, {now[k]!r} now" for k in _RUN_SETTINGS if then[k] != now[k]]


def check_resumable(opt: Any, fingerprint: str, device: torch.device | str = "cpu", samples: int | None = None) -> dict:
    """The checkpoint `opt.resume` asks for, after checking it is ours, of this model, of these settings and (when
    given) of as many training samples (a `UsageError` otherwise, so a CLI can check it before any work)."""
    ckpt = opt.checkpoint_path
    if not ckpt or not os.path.exists(ckpt):
        raise UsageError(f"--resume: no checkpoint at {ckpt!r}; run with --checkpoint-every N first")
    state = read_checkpoint(ckpt, device)
    if state.get("fingerprint") != fingerprint:
        raise UsageError(f"checkpoint {ckpt!r} was made from a different model; remove it or pass the original model")
    changed = _changed_settings(state.get("options", {}), settings_of(opt))
    if changed:
        raise UsageError(f"checkpoint {ckpt!r} was made with other settings ({'; '.join(changed)}): resume with the "
                         "same settings, or remove the checkpoint to start afresh")
    if samples is not None and state.get("samples", samples) != samples:  # (not recorded before: not checked)
        raise UsageError(f"checkpoint {ckpt!r} was made with {state['samples']} training samples, --data now gives {samples}: "
                         "resume with the same --data, --val-split and --select-split, or remove the checkpoint to start afresh")
    return state


def run_state(run: Any) -> dict:
    """Everything a resume needs of a training run (`robustify._Run`): model, optimiser, step, clocks, K, choices
    made (`--finish auto`, `--select-split`'s scores), random and data-order state, and the settings."""
    choice, best, stream = run.finish_choice, run.best, run.stream
    return {"version": 1, "fingerprint": run.fingerprint, "samples": run.n, "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(), "step": run.step, "elapsed": run.elapsed(), "k_ada": run.k_ada,
            "finish_choice": asdict(choice) if choice else None, "selection": best.state() if best is not None else None,
            "data_rng": run.gen.get_state(), "torch_rng": torch.get_rng_state(),
            **(stream.state() if stream is not None else {}), "options": settings_of(run.opt)}


def restore_run(run: Any, state: dict) -> None:
    """Put a checked checkpoint's state (`run_state`) back into a fed training run."""
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.step, run.elapsed_before, run.k_ada = int(state["step"]), float(state["elapsed"]), float(state["k_ada"])
    run.gen.set_state(state["data_rng"])
    choice = state.get("finish_choice")  # (absent from checkpoints before --finish auto)
    run.finish_choice = FinishChoice(**choice) if choice else None
    if run.best is not None and state.get("selection") is not None:  # (absent before the scores were kept)
        run.best.restore(state["selection"])
    torch.set_rng_state(state["torch_rng"])
    run.stream.restore(state)


def read_checkpoint(path: str, device: torch.device | str = "cpu") -> dict:
    """A robustify checkpoint (weights-only load); anything else is a `UsageError` saying so."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise UsageError(f"'{path}' is not a readable srp-audit checkpoint ({first}); remove it to start afresh") from None
    if not isinstance(state, dict) or state.get("version") != 1 or "model" not in state:
        raise UsageError(f"'{path}' is not an srp-audit robustify checkpoint; remove it to start afresh")
    return state


def save_checkpoint(obj: dict, path: str) -> None:
    """Write a checkpoint atomically (a crash mid-write leaves the previous one intact)."""
    with atomic_path(path, ".ckpt.tmp") as tmp:
        torch.save(obj, tmp)
