"""Atomic file writes, used for every file focalcal writes (run folders, data caches).

A write goes to a temporary file beside the target (``.NAME.XXXX.tmp``), is flushed and fsynced, and is
renamed over the target only when complete: a crash leaves either the old file or the new one, never a
torn one. A full disk raises :class:`~focalcal.errors.DiskFullError` naming the disk (the old file stays).
"""

from __future__ import annotations

import csv
import errno
import io
import math
import numbers
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .errors import DiskFullError

TMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"\..+\.[A-Za-z0-9_]+" + re.escape(TMP_SUFFIX))
_UMASK = os.umask(0o022)  # read once at import (setting it is the only way to read it), then restored
os.umask(_UMASK)


class _RecordingFile:
    """A file wrapper that remembers the first OSError of a write (torch.save turns it into a RuntimeError)."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def disk_full(path: Path) -> DiskFullError:
    """The error for a write of ``path`` that failed because its disk is full."""
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(
        f"no space left on the disk holding {path.parent} ({free}) while writing {path.name}; "
        f"the previous {path.name}, if any, is intact: free some space and run the command again"
    )


def atomic_write_bytes(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Raises:
        DiskFullError: the disk filled up (ENOSPC); ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give them the mode open() would
    f = None
    try:
        f = _RecordingFile(os.fdopen(fd, "wb"))
        write(f)
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException as exc:
        recorded = f.error if f is not None else None
        if f is not None:
            try:
                f.close()
            except OSError as close_exc:
                recorded = recorded or close_exc
        Path(tmp).unlink(missing_ok=True)
        for err in (exc, recorded):
            if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                raise disk_full(path) from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    data = text.encode()
    atomic_write_bytes(path, lambda f: f.write(data))


def _csv_cell(value: Any) -> Any:
    """A CSV cell: ``None`` and NaN as an empty cell, anything else as the csv module writes it."""
    if value is None or (
        isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and math.isnan(value)
    ):
        return ""
    return value


def atomic_write_csv(
    path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> Path:
    """Write ``rows`` as a CSV table to ``path`` atomically (through :func:`atomic_write_text`); returns ``path``.

    The format is the csv module's default dialect: a header line, fields quoted only when they hold a comma,
    a quote (doubled) or a line break, lines ended by ``\\r\\n``, UTF-8. A missing key, ``None`` and NaN are
    empty cells; other values are written as ``str()`` writes them (floats as ``repr``, full precision).

    Args:
        path: the CSV file; its folder is created if absent.
        rows: one mapping per row (any iterable; read in full before anything is written).
        columns: the columns, in order; keys of a row outside them are left out. ``None``: every key of
            every row, in order of first appearance.

    Raises:
        DiskFullError: the disk filled up; ``path`` is left as it was. Any error while reading ``rows`` or
            formatting a value propagates before ``path`` is touched, so the old file, if any, stays intact.
    """
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_cell(row.get(key)) for key in columns})
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, lambda f: torch.save(obj, f))


def is_temp_file(name: str) -> bool:
    """Whether ``name`` has the form of a temporary file of :func:`atomic_write_bytes`: ``.NAME.XXXXXXXX.tmp``
    (a leading dot, the target's name, a random token of letters, digits or ``_``), not merely a name ending
    in ``.tmp`` such as ``.notes.tmp``."""
    return _TEMP_NAME.fullmatch(name) is not None


def remove_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes left in ``folder`` (not recursive): only
    names of the form :func:`is_temp_file` accepts, so a user's own ``.notes.tmp`` stays.

    Only call this while no other process writes into ``folder`` (a run folder's lock guarantees it).
    """
    removed = []
    for p in Path(folder).glob(f".*{TMP_SUFFIX}"):
        if p.is_file() and not p.is_symlink() and is_temp_file(p.name):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
