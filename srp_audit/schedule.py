"""The schedule of a robustify run: spans of the budget, eps and K over the run, and the learning-rate steps."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError


@dataclass(frozen=True)
class Span:
    """A length of training: `n` steps, `n` epochs, or a fraction of the whole budget."""

    value: float
    unit: str  # 'steps', 'epochs' or 'fraction'

    @staticmethod
    def parse(text: str | float | int) -> "Span":
        t = str(text).strip().lower()
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(%|ep|epochs?|steps?)?", t)
        if not m:
            raise UsageError(f"cannot read the span {text!r}: use steps (500), epochs (3ep) or a share of the budget (40%)")
        v, unit = float(m.group(1)), m.group(2) or "steps"
        if unit == "%":
            if v > 100:
                raise UsageError(f"span {text!r} is more than the whole budget")
            return Span(v / 100, "fraction")
        return Span(v, "epochs" if unit.startswith("ep") else "steps")

    def fraction(self, steps_per_epoch: int, total_steps: float) -> float:
        if self.unit == "fraction":
            return self.value
        steps = self.value * steps_per_epoch if self.unit == "epochs" else self.value
        return steps / max(total_steps, 1.0)


@dataclass
class Schedule:
    eps: float
    warmup: Span
    ramp: Span
    k_final: float
    finish: Span | None = None  # the last span, trained with `--finish`'s regulariser

    def finishing(self, progress: float, steps_per_epoch: int, total_steps: float) -> bool:
        """Whether a step at this progress fraction belongs to the final phase (`--finish`)."""
        # (n steps of 1/n each may add up to just below the boundary)
        return self.finish is not None and progress + 1e-9 >= 1 - self.finish.fraction(steps_per_epoch, total_steps)

    def ramp_end(self, steps_per_epoch: int, total_steps: float) -> float:
        """The progress fraction where eps reaches its target (after the warm-up and the ramp)."""
        return self.warmup.fraction(steps_per_epoch, total_steps) + self.ramp.fraction(steps_per_epoch, total_steps)

    def at(self, progress: float, steps_per_epoch: int, total_steps: float) -> tuple[float, float]:
        """(eps, K) at a progress fraction of the budget."""
        w = self.warmup.fraction(steps_per_epoch, total_steps)
        r = max(self.ramp.fraction(steps_per_epoch, total_steps), 1e-12)
        t = min(1.0, max(0.0, (progress - w) / r))
        if progress < w:
            return 0.0, 1.0
        return self.eps * t, 1.0 - (1.0 - self.k_final) * t


def lr_factor(progress: float) -> float:
    """The learning rate is divided by 10 twice late in training (at 80 % and 90 % of the budget)."""
    return 1.0 if progress < 0.8 else 0.1 if progress < 0.9 else 0.01


AUTO_FINISH = "auto"
"""`--finish auto`: decided at the end of the ramp (`finish_rule.py`)."""


def parse_finish(text: str, regularizers: tuple[str, ...]) -> tuple[str, Span] | None:
    """`--finish REG:SPAN` (ibp:50%: the last half of the budget with IBP), or None for 'none' and for 'auto' (whose
    phase is not known before the run: `finish_rule.py`)."""
    t = str(text).strip().lower()
    if t in ("", "none", AUTO_FINISH):
        return None
    reg, sep, span = t.partition(":")
    if reg not in regularizers or not sep:
        raise UsageError(f"--finish must be REGULARIZER:SPAN with one of {', '.join(regularizers)} (ibp:50%), auto or none; got {text!r}")
    return reg, Span.parse(span)
