"""Type checking is part of the test run: mypy, configured in pyproject.toml ([tool.mypy]), finds no error."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_ERROR = re.compile(r"^[^:\n]+\.pyi?:\d+(?::\d+)?: error: ", re.MULTILINE)


def _mypy() -> str:
    exe = Path(sys.executable).with_name("mypy")
    found = str(exe) if exe.exists() else shutil.which("mypy")
    if found is None:
        pytest.fail("mypy is not installed; `make test` installs it with the test extras")
    return found


def test_mypy_is_clean(tmp_path: Path) -> None:
    """mypy over the packages (pyproject's `files`), from a fresh cache: no error in any module."""
    r = subprocess.run([_mypy(), "--config-file", "pyproject.toml", "--cache-dir", str(tmp_path / "mypy_cache")],
                       cwd=ROOT, capture_output=True, text=True)
    out = r.stdout + r.stderr
    errors = [line for line in out.splitlines() if _ERROR.match(line)]
    assert not errors, f"{len(errors)} mypy errors:\n" + "\n".join(errors[:60])
    # 0: clean; anything else without an error line (a crash, a bad configuration) is a failure too
    assert r.returncode == 0, out[-4000:]
