"""Writing files safely: outputs are checked before any work (`prepare_output`), and written atomically — a
temporary file in the target's folder, renamed over the target only when complete — so an interrupted run
(Ctrl-C, crash, full disk) never leaves a truncated model, checkpoint or report. Files get the permissions a
plain `open()` would give them (0666 less the umask), or keep those of the file they replace."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator

from .errors import UsageError


def _new_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def prepare_output(path: str | os.PathLike, what: str = "output", inputs: Iterable[str | os.PathLike] = (),
                   force: bool = False) -> str:
    """Check, before any work, that `path` can be written: its missing parent folders are created, no parent is a
    file, the folder accepts a new file, `path` is not a folder, and — unless `force` — it is none of `inputs`.
    Returns the path; raises `UsageError` with the reason."""
    path = os.fspath(path)
    loop = _symlink_loop(path)
    if loop is not None:
        where = "it" if loop == os.path.abspath(path) else f"'{loop}'"
        raise UsageError(f"cannot write {what} '{path}': {where} is a symlink loop (a link that leads back to itself); "
                         "remove the link or choose another name")
    folder = os.path.dirname(os.path.abspath(path))
    probe = folder
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UsageError(f"cannot write {what} '{path}': '{probe}' is a file, not a folder")
    if os.path.isdir(path):
        raise UsageError(f"cannot write {what} '{path}': it is a folder; name a file")
    for src in inputs:
        if os.path.exists(path) and os.path.exists(src) and os.path.samefile(path, src) and not force:
            raise UsageError(f"{what} '{path}' is also an input ({os.fspath(src)}); writing it would destroy the input: "
                             "choose another name (or pass --force)")
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".srp-audit-probe-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UsageError(f"cannot write {what} '{path}': {e.strerror or e} in '{folder}'") from None
    return path


def _symlink_loop(path: str) -> str | None:
    """The first component of `path` (absolute) that is a symlink loop, or None."""
    probe = ""
    for part in os.path.abspath(path).split(os.sep):
        probe = os.path.join(probe, part) if probe else (part or os.sep)
        try:
            os.stat(probe)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return probe
            return None  # missing (or unreadable): not a loop; the checks below say what is wrong
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path beside `path`; on a clean exit it replaces `path` (with normal permissions), on any
    error it is removed. A folder that cannot take the file is a `UsageError`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".srp-audit-", suffix=suffix, dir=folder)
    except OSError as e:
        raise UsageError(f"cannot write '{path}': {e.strerror or e} in '{folder}'") from None
    os.close(fd)
    try:
        yield tmp
        mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else _new_file_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
