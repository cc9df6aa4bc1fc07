"""A one-line progress indicator on stderr, shown only on a terminal and never with --quiet: samples done, time,
and an estimate of the time left — from the batches done, or, inside a long bound pass (CROWN's layer-by-layer
refinement of a large network), from that pass's share of its estimated work."""

from __future__ import annotations

import sys
import time

import click


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


class ProgressBar:
    def __init__(self, label: str, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self._shown = False
        self.done, self.total = 0, 0
        self._pass_start, self._pass_fraction = 0.0, 1.0

    def __call__(self, done: int, total: int) -> None:
        """`done` of `total` samples finished."""
        self.done, self.total = done, total
        self._pass_fraction = 1.0
        self._show("")

    def within(self, fraction: float) -> None:
        """The bound pass now running has done `fraction` of its estimated work (a new pass starts below the last)."""
        now = time.perf_counter()
        if fraction < self._pass_fraction:
            self._pass_start = now
        self._pass_fraction = fraction
        spent = now - self._pass_start
        left = spent * (1 - fraction) / fraction if fraction > 0 else None
        self._show(f"  CROWN pass {fraction:.0%}" + (f", about {_duration(left)} left in it" if left is not None else ""))

    def _show(self, detail: str) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        eta = ""
        if 0 < self.done < self.total:
            eta = f", about {_duration(elapsed * (self.total - self.done) / self.done)} left"
        line = f"{self.label}: {self.done}/{self.total or '?'} samples  {_duration(elapsed)}{eta}{detail}"
        click.echo("\r" + line.ljust(100), err=True, nl=False)
        self._shown = True

    def close(self) -> None:
        if self._shown:
            click.echo("\r" + " " * 100 + "\r", err=True, nl=False)
