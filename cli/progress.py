"""A one-line progress indicator on stderr, shown only on a terminal and never with --quiet."""

from __future__ import annotations

import sys
import time

import click


class ProgressBar:
    def __init__(self, label: str, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self._shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        click.echo(f"\r{self.label}: {done}/{total} samples  {elapsed:.1f} s", err=True, nl=False)
        self._shown = True

    def close(self) -> None:
        if self._shown:
            click.echo("\r" + " " * 60 + "\r", err=True, nl=False)
