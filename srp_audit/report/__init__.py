"""Report writers: table, markdown, JSON (versioned schema), JUnit XML, HTML; each returns a string."""

from __future__ import annotations

import os
from typing import Any

from ..certify import CertifyResult
from ..errors import UsageError
from .html import as_html
from .json_report import SCHEMA_VERSION, as_dict, as_json
from .junit import as_junit
from .summary import class_rows, clopper_pearson, summary, sweep_rows
from .text import as_markdown, as_table

FORMATS = ("table", "markdown", "json", "junit", "html")
SUFFIXES = {".txt": "table", ".md": "markdown", ".markdown": "markdown", ".json": "json", ".xml": "junit", ".html": "html", ".htm": "html"}
STEP_SUMMARY_LIMIT = 1024 * 1024 - 4096  # GitHub rejects step summaries over 1 MiB; keep a margin


def format_for(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise UsageError(f"-o {path!r}: unknown report type {suffix or '(none)'}; use one of {', '.join(sorted(SUFFIXES))}")
    return SUFFIXES[suffix]


def render(result: CertifyResult, model: str, fmt: str, per_sample: bool = False, by_class: bool = False,
           meta: dict[str, Any] | None = None) -> str:
    if fmt == "json":
        return as_json(result, model, meta)
    if fmt == "junit":
        return as_junit(result, model)
    if fmt == "html":
        return as_html(result, model, True, by_class)
    if fmt == "markdown":
        return as_markdown(result, model, per_sample, by_class)
    return as_table(result, model, per_sample, by_class)


def step_summary_problem(path: str) -> str | None:
    """Why $GITHUB_STEP_SUMMARY cannot be appended to (None: it can); checked before the work starts."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"GITHUB_STEP_SUMMARY '{path}' is a folder"
    if not os.path.isdir(folder):
        return f"GITHUB_STEP_SUMMARY '{path}' is in a folder that does not exist"
    if not os.access(path if os.path.exists(path) else folder, os.W_OK):
        return f"GITHUB_STEP_SUMMARY '{path}' is not writable"
    return None


def append_step_summary(path: str, markdown: str) -> str | None:
    """Append to $GITHUB_STEP_SUMMARY without pushing the file past GitHub's 1 MiB limit. A step summary is a
    courtesy: a failure to write it is returned as a warning line, never raised (it must not hide a gate)."""
    problem = step_summary_problem(path)
    if problem:
        return f"{problem}; the step summary was skipped"
    try:
        _append(path, markdown)
    except OSError as e:
        return f"could not append to GITHUB_STEP_SUMMARY '{path}' ({e.strerror or e}); the step summary was skipped"
    return None


def _append(path: str, markdown: str) -> None:
    used = os.path.getsize(path) if os.path.exists(path) else 0
    room = STEP_SUMMARY_LIMIT - used
    if room <= 200:
        return
    data = markdown.encode("utf-8")
    if len(data) > room:
        note = b"\n\n_(truncated: the step summary is limited to 1 MiB; see the report artifacts)_\n"
        data = data[: room - len(note)].decode("utf-8", "ignore").encode("utf-8") + note
    with open(path, "ab") as f:
        f.write(data)


__all__ = ["FORMATS", "SCHEMA_VERSION", "render", "format_for", "append_step_summary", "step_summary_problem", "summary", "sweep_rows", "class_rows",
           "clopper_pearson", "as_dict", "as_json", "as_junit", "as_html", "as_table", "as_markdown"]
