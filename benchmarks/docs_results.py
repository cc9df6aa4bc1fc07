"""`--write-docs`: a benchmark's printed results written into docs/benchmark-results.md, so the figures there are
the benchmark's own output, each block with its date (UTC), machine and command — never typed by hand.

Each benchmark's `main` runs inside `recorded(name)`. Without `--write-docs` on the command line nothing changes;
with it, everything the run prints is also kept and, when the run ends normally, replaces the block between
`<!-- generated: NAME -->` and `<!-- end generated: NAME -->` in the results page (the block is added under the
section whose heading starts with `## NAME` if the page has none yet). The prose around the blocks, which says
what the figures mean, stays as it is.
"""

from __future__ import annotations

import datetime
import io
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmark-results.md"
FLAG = "--write-docs"


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.kept = out, io.StringIO()

    def write(self, s: str) -> int:
        self.out.write(s)
        return self.kept.write(s)

    def flush(self) -> None:
        self.out.flush()


def machine_line() -> str:
    """The CPU model (from /proc/cpuinfo where there is one), its cores, and the Python, torch and thread counts."""
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def block(name: str, command: str, output: str, when: datetime.datetime) -> str:
    """The generated block of one run: its markers, a line saying when, where and how it ran, and its output."""
    return (f"<!-- generated: {name} -->\n"
            f"Generated {when:%Y-%m-%d %H:%M} UTC on {machine_line()} by `{command}`:\n\n"
            f"```text\n{output.rstrip()}\n```\n"
            f"<!-- end generated: {name} -->\n")


def replace_block(page: str, name: str, new: str) -> str:
    """`page` with NAME's generated block replaced by `new` (added under the section `## NAME…` if absent, or at the end)."""
    begin, end = f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->\n"
    if begin in page and end in page:
        i, j = page.index(begin), page.index(end) + len(end)
        return page[:i] + new + page[j:]
    heading = f"\n## {name}"
    if heading not in page:
        return page.rstrip("\n") + f"\n\n## {name}\n\n" + new
    start = page.index(heading) + 1
    nxt = page.find("\n## ", start)
    at = len(page) if nxt < 0 else nxt + 1
    return page[:at].rstrip("\n") + "\n\n" + new + "\n" + page[at:]


@contextmanager
def recorded(name: str, results: Path = RESULTS) -> Iterator[None]:
    """Run the benchmark; with `--write-docs` in sys.argv (removed from it), write what it printed into `results`."""
    if FLAG not in sys.argv:
        yield
        return
    sys.argv.remove(FLAG)
    command = " ".join(["python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    when = datetime.datetime.now(datetime.timezone.utc)
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        yield
    finally:
        sys.stdout = tee.out  # restored before anything is written
    from srp_audit.atomic import write_text_atomic

    write_text_atomic(str(results), replace_block(results.read_text(), name, block(name, command, tee.kept.getvalue(), when)))
    print(f"wrote the results into {os.path.relpath(results, Path.cwd())} (section {name})")
