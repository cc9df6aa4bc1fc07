"""Lint and layering are part of the test run: ruff's rules and the import-linter contracts in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    found = str(exe) if exe.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; `make test` installs it with the test extras")
    return found


def test_ruff_is_clean() -> None:
    r = subprocess.run([_tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_import_contracts_hold() -> None:
    r = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_modules_stay_small() -> None:
    """One job per module: none of the library's modules grows past ~400 lines."""
    big = {str(p.relative_to(ROOT)): n for p in [*ROOT.glob("srp_audit/**/*.py"), *ROOT.glob("cli/*.py")]
           if (n := len(p.read_text().splitlines())) > 420}
    assert not big, f"modules over 420 lines: {big}"
