"""Downloads of data sets (torchvision's download code): a failed download is one
:class:`~focalcal.errors.DownloadError` that says where to put the files by hand, and it leaves behind nothing
it created (no empty ``svhn/`` folder, no partial archive that the next integrity check would reject).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import DownloadError

#: What a failed download raises: network errors (``URLError`` is an ``OSError``), HTTP protocol errors,
#: torchvision's ``RuntimeError`` (a checksum that does not match), a damaged archive.
DOWNLOAD_ERRORS = (OSError, http.client.HTTPException, RuntimeError, tarfile.TarError, zipfile.BadZipFile, EOFError)


def first_missing(path: str | os.PathLike) -> Path | None:
    """The outermost of ``path`` and its parents that does not exist (what ``mkdir -p path`` would create first),
    or None when ``path`` exists."""
    missing = None
    for p in (Path(path), *Path(path).parents):
        if p.exists():
            break
        missing = p
    return missing


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        text = str(exc.reason)
    else:
        text = str(exc)
    text = (text.strip().splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def downloading(what: str, folder: str | os.PathLike, by_hand: str, *, creates: Sequence[str] = ()) -> Iterator[None]:
    """Run the download in the ``with`` block into ``folder``; when it fails, remove what it created and raise
    one line.

    Removed on failure: the outermost of ``folder`` and its parents that did not exist before (the download
    created it: everything in it is the failed download's), and the entries of ``creates`` (names in ``folder``:
    the archive, the folder it unpacks to) that did not exist before. Nothing that existed before is touched.

    Args:
        what: the data's name, e.g. ``"the SVHN test split"``.
        folder: where the download writes.
        by_hand: where to put the files by hand and where to get them (a path with its source).
        creates: names of the files and folders the download makes in ``folder``.

    Raises:
        DownloadError: the download failed (:data:`DOWNLOAD_ERRORS`); names the cause and ``by_hand``.
    """
    folder = Path(folder)
    created = first_missing(folder)
    new = [] if created is not None else [folder / name for name in creates if not (folder / name).exists()]
    try:
        yield
    except DOWNLOAD_ERRORS as exc:
        for path in [created] if created is not None else new:
            _remove(path)
        raise DownloadError(
            f"downloading {what} into {folder} failed ({_reason(exc)}); put the files there by hand instead: {by_hand}"
        ) from None
