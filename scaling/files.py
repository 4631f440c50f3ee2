"""Atomic file writes: the one place the project turns a finished temp file into its target.

A reader never sees a half-written file: the bytes go to a hidden temp file beside the
target (same directory, so the rename stays on one file system), are flushed and fsynced,
and ``os.replace`` swaps them in. On any error the temp file is removed and the target is
left as it was. New files get the mode an ordinary ``open`` would give (0666 less the
umask), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_dir", "atomic_path", "atomic_write", "check_output_path", "remove_stale_temps"]


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temp path beside ``path``; on a clean exit it replaces ``path``, on an error it is removed.

    For writers that want a file name (``savefig``, ``torch.save``, DuckDB ``COPY``): the temp
    name keeps the target's suffix, so formats inferred from the extension still work.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temp folder beside ``path``; on a clean exit it becomes ``path`` (which must be absent
    or an empty folder), on an error it is removed with its contents. For writers of a whole folder
    (a transformers checkpoint): a reader sees the folder complete or not at all."""
    import shutil

    target = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp's 0700 otherwise
        if target.is_dir():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write(path, data: str | bytes, *, encoding: str = "utf-8") -> None:
    """Write ``data`` (text or bytes) to ``path`` atomically (see the module docstring)."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding=encoding)


def check_output_path(text, option: str) -> Path:
    """``text`` as an output file path (``~`` expanded) whose folder exists and which is not a folder;
    a one-line MoescaleError naming ``option`` (e.g. ``--json``) otherwise. Check before any work starts."""
    from scaling.errors import MoescaleError

    path = Path(text).expanduser()
    if not path.parent.is_dir():
        raise MoescaleError(f"{option} {text}: folder {path.parent} does not exist")
    if path.is_dir():
        raise MoescaleError(f"{option} {text}: is a folder")
    return path


def remove_stale_temps(folder) -> list[Path]:
    """Remove the temp files ``atomic_path`` left in ``folder`` when its writer was killed (``.NAME.XXXX.tmp.EXT``
    and ``.NAME.XXXX.tmp``, hidden); returns what was removed. Call it only where one writer owns the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        if p.is_file() and p.name.startswith(".") and (".tmp" in p.suffixes or p.suffix == ".tmp"):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
