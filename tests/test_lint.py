"""Lint and layering are part of the test run: ruff's rules and the import-linter contracts in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
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


SOFT_LIMIT = 400  # lines; past it a module says why on a line `# long-module: <reason>`, and the run warns


def test_long_modules_say_why() -> None:
    """One job per module: complexity is ruff's rule (C901, branches, statements); size is a soft limit. A module past
    SOFT_LIMIT lines names its reason (one job that is long, not two jobs) and is reported as a warning."""
    long = {str(p.relative_to(ROOT)): (n, text) for p in [*ROOT.glob("srp_audit/**/*.py"), *ROOT.glob("srp_check/*.py"), *ROOT.glob("cli/*.py")]
            if (n := len((text := p.read_text()).splitlines())) > SOFT_LIMIT}
    unexplained = sorted(path for path, (_, text) in long.items() if "# long-module:" not in text)
    assert not unexplained, f"modules over {SOFT_LIMIT} lines without a `# long-module: <reason>` line: {unexplained}"
    for path, (n, _) in sorted(long.items()):
        warnings.warn(f"{path} has {n} lines (its reason is stated in it)", stacklevel=1)


def test_every_package_is_installed() -> None:
    """Every package of the library is in pyproject's `packages` list (an unlisted one is missing from a wheel)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in [*ROOT.glob("srp_audit/**/__init__.py"), *ROOT.glob("srp_check/__init__.py")]}
    assert found <= listed, f"packages missing from pyproject.toml's [tool.setuptools] packages: {sorted(found - listed)}"
