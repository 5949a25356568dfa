"""Read a model's saved outputs (validation and test scores with labels) in the formats people save them in.

Formats, told apart by the file's suffix:

- ``.pt``: a dict of tensors/arrays (or a tuple ``(scores, labels)``); ``.npz``: the same as arrays;
- ``.npy``: a ``[N, K]`` score array only (labels come from a second ``.npy`` file); read memory-mapped, so a
  large file is never loaded whole;
- ``.csv``: one column per class plus a label column (``label`` unless told otherwise), optionally a split
  column (``split``: ``val``/``validation`` or ``test``).

The scores are ``logits`` or ``probs``, as the caller says (never guessed from the values). Keys looked up in
dicts: the scores under ``logits``, ``probs``, ``scores`` or ``outputs``; labels under ``labels``, ``targets`` or
``y``; a focalcal ``logits.pt`` (``val_logits``, ``val_labels``, ``test_logits``, ``test_labels``) holds both
splits. A single column is a binary problem's positive class (``p`` becomes ``[1 - p, p]``; a logit ``s``
becomes ``[0, s]``).

Every problem is one :class:`~focalcal.errors.InputError` naming the file and the fix: mismatched row counts,
labels out of range, probabilities whose rows do not sum to 1 or NaN rows (with their count), a CSV without
its label column, an input too large for the memory available.
"""

from __future__ import annotations

import csv
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..validation import PROB_SUM_ATOL

KINDS = ("logits", "probs")
SCORE_KEYS = ("logits", "probs", "scores", "outputs")
LABEL_KEYS = ("labels", "targets", "y")
VAL_NAMES = ("val", "validation", "valid")
#: Fraction of the available memory one input may take once loaded (scores are held as float64 for fitting).
MEMORY_FRACTION = 0.5


@dataclass
class Outputs:
    """One split's scores ``[N, K]`` (float32/64 tensor, or a memory-mapped numpy array) and labels ``[N]``."""

    scores: Any
    labels: torch.Tensor | None
    kind: str
    source: str

    @property
    def n(self) -> int:
        return int(self.scores.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.scores.shape[1])

    def as_logits(self, rows: slice = slice(None)) -> torch.Tensor:
        """Rows of the scores as logits (float32 or float64): logits as given, ``log p`` for probabilities
        (``softmax(log p) = p``; zeros are floored at the smallest normal float)."""
        block = np.asarray(self.scores[rows])
        s = torch.from_numpy(block if block.flags.writeable else block.copy())  # a memory-mapped block is copied
        if not s.is_floating_point():
            s = s.float()
        if self.kind == "probs":
            s = torch.log(s.clamp_min(torch.finfo(s.dtype).tiny))
        return s


def available_memory() -> int | None:
    """Bytes of memory available (Linux ``MemAvailable``), or None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits_in_memory(n_values: int, where: str, *, bytes_per_value: int = 8) -> None:
    """Refuse (one line) an input whose loaded size would exceed :data:`MEMORY_FRACTION` of the available
    memory, instead of letting the machine swap."""
    avail = available_memory()
    need = n_values * bytes_per_value
    if avail is not None and need > MEMORY_FRACTION * avail:
        raise InputError(
            f"{where}: {n_values:,} values need about {need / 2**30:.1f} GiB once loaded, but only "
            f"{avail / 2**30:.1f} GiB of memory is available; save the scores as a .npy file (read memory-mapped "
            "in chunks) or calibrate on a subset"
        )


def _pick(d: dict[str, Any], keys: tuple[str, ...], what: str, where: str) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    raise InputError(f"{where}: no {what} found (looked for the keys {', '.join(keys)}; it has {', '.join(d)})")


def _as_array(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _binary(scores: np.ndarray, kind: str) -> np.ndarray:
    """A single column (the positive class) as two columns."""
    s = scores.reshape(-1).astype(np.float64)
    return np.stack([1 - s, s], 1) if kind == "probs" else np.stack([np.zeros_like(s), s], 1)


def check_split(
    scores: Any, labels: Any, kind: str, where: str, *, num_classes: int | None = None, chunk_rows: int = 1 << 16
) -> Outputs:
    """Check one split's scores and labels (in chunks, so memory-mapped arrays stay on disk) and wrap them."""
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)} (say which the file holds); got {kind!r}")
    if scores.ndim == 1 or (scores.ndim == 2 and scores.shape[1] == 1):
        scores = _binary(np.asarray(scores), kind)
    if scores.ndim != 2:
        raise InputError(f"{where}: scores must be a [N, K] table (one column per class); got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        raise InputError(f"{where}: scores must be floating-point numbers; got {scores.dtype}")
    n, k = scores.shape
    if num_classes is not None and k != num_classes:
        raise InputError(f"{where}: {k} score columns, but the other split (or the calibrator) has {num_classes}")
    if labels is None:  # scores to calibrate (``--apply``): no labels needed
        y = None
    else:
        y = _check_labels(np.asarray(_as_array(labels)).reshape(-1), n, k, where)
    _check_values(scores, kind, where, chunk_rows)
    return Outputs(scores, None if y is None else torch.from_numpy(y.astype(np.int64)), kind, where)


def _check_labels(y: np.ndarray, n: int, k: int, where: str) -> np.ndarray:
    if y.shape[0] != n:
        raise InputError(f"{where}: {n:,} rows of scores but {y.shape[0]:,} labels; every row needs its label")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise InputError(f"{where}: labels must be integer class indices; got {y.dtype} values such as {y[:3]}")
    bad = (y < 0) | (y >= k)
    if bad.any():
        raise InputError(
            f"{where}: {int(bad.sum()):,} labels outside [0, {k}) (e.g. {y[bad][0]}); labels must index the {k} score "
            "columns"
        )
    return y


def _check_values(scores: Any, kind: str, where: str, chunk_rows: int) -> None:
    n = scores.shape[0]
    nan_rows = bad_sum = negative = 0
    for s in range(0, n, chunk_rows):
        block = np.asarray(scores[s : s + chunk_rows], dtype=np.float64)
        finite = np.isfinite(block).all(1)
        nan_rows += int((~finite).sum())
        if kind == "probs":
            ok = block[finite]
            bad_sum += int((np.abs(ok.sum(1) - 1) > PROB_SUM_ATOL).sum())
            negative += int((ok < 0).any(1).sum())
    if nan_rows:
        raise InputError(f"{where}: {nan_rows:,} rows hold NaN or infinite scores; remove or fix those rows")
    if bad_sum:
        raise InputError(
            f"{where}: {bad_sum:,} rows of probabilities do not sum to 1 (tolerance {PROB_SUM_ATOL}); if these are "
            "logits say --kind logits, otherwise normalise the rows"
        )
    if negative:
        raise InputError(
            f"{where}: {negative:,} rows hold negative probabilities; if these are logits say --kind logits"
        )


#: The formats read, for errors that ask for a file of saved outputs.
FORMATS = (
    ".pt or .npz (keys logits|probs|scores and labels|targets), .npy (scores; labels in a second .npy) or .csv "
    "(one column per class and a label column)"
)


def check_file(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path` when it is a non-empty file.

    Raises:
        InputError: it does not exist, is a directory, or is empty (0 bytes); the message lists the formats.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a file of saved outputs: give one file, {FORMATS}")
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes): give the file the outputs were saved to, {FORMATS}")
    return path


def _load_npy(path: Path) -> np.ndarray:
    """A numeric ``.npy`` array, memory-mapped (a large file stays on disk)."""
    check_file(path)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy file of numbers ({exc})") from None


def _read_dict(path: Path) -> dict[str, Any]:
    if path.suffix == ".pt":
        check_fits_in_memory(path.stat().st_size // 4, str(path))
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged or non-tensor pickle
            raise InputError(f"{path}: not a readable .pt file of tensors ({type(exc).__name__}: {exc})") from None
        if isinstance(obj, (tuple, list)) and len(obj) == 2:
            return {"scores": obj[0], "labels": obj[1]}
        if not isinstance(obj, dict):
            raise InputError(f"{path}: expected a dict of tensors or a (scores, labels) pair; got {type(obj).__name__}")
        return obj
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable .npz file of numeric arrays ({exc})") from None


def _read_csv(
    path: Path, label_column: str, split_column: str, need_labels: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    check_fits_in_memory(path.stat().st_size // 2, str(path))
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path} is empty") from None
        rows = list(reader)
    if label_column not in header and need_labels:
        raise InputError(
            f"{path} has no label column {label_column!r} (columns: {', '.join(header[:8])}"
            f"{', ...' if len(header) > 8 else ''}); name it with --label-column"
        )
    li = header.index(label_column) if label_column in header else None
    si = header.index(split_column) if split_column in header else None
    cols = [i for i in range(len(header)) if i not in (li, si)]
    try:
        scores = np.array([[float(r[i]) for i in cols] for r in rows], dtype=np.float64)
        labels = np.array([float(r[li]) for r in rows]) if li is not None else None
    except (ValueError, IndexError) as exc:
        raise InputError(f"{path}: a row is not numbers in every score column ({exc})") from None
    split = np.array([r[si].strip().lower() for r in rows]) if si is not None else None
    return scores, labels, split


def _split_rows(split: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    val = np.isin(split, VAL_NAMES)
    test = split == "test"
    other = ~(val | test)
    if other.any():
        raise InputError(f"{where}: split values must be val/validation or test; found {sorted(set(split[other]))[:3]}")
    if not val.any() or not test.any():
        raise InputError(f"{where}: the split column needs both val and test rows")
    return val, test


def read_outputs(
    path: str | os.PathLike,
    kind: str,
    *,
    labels: str | os.PathLike | None = None,
    label_column: str = "label",
    split_column: str = "split",
    split: str | None = None,
) -> dict[str, Outputs]:
    """Read one file: ``{"val": ..., "test": ...}`` when it holds both splits, else ``{split: ...}``.

    Args:
        path: a ``.pt``, ``.npz``, ``.npy`` or ``.csv`` file.
        kind: ``"logits"`` or ``"probs"``: what the scores are.
        labels: for ``.npy`` scores, the ``.npy`` file of labels.
        label_column, split_column: CSV column names.
        split: the name to give a single-split file (``"val"`` or ``"test"``).

    Raises:
        InputError: see the module docstring.
    """
    path = check_file(path)
    where = str(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        scores = _load_npy(path)
        if labels is None:
            raise InputError(f"{path}: a .npy file holds scores only; give its labels as a .npy file too")
        return {split or "data": check_split(scores, _load_npy(Path(labels)), kind, where)}
    if suffix == ".csv":
        scores, y, split_values = _read_csv(path, label_column, split_column)
        if split_values is not None:
            v, t = _split_rows(split_values, where)
            return {
                "val": check_split(scores[v], y[v], kind, f"{where} (val rows)"),
                "test": check_split(scores[t], y[t], kind, f"{where} (test rows)"),
            }
        return {split or "data": check_split(scores, y, kind, where)}
    if suffix not in (".pt", ".npz"):
        raise InputError(f"{path}: unknown format {suffix!r}; use .pt, .npz, .npy or .csv")
    d = _read_dict(path)
    if "val_labels" in d and "test_labels" in d:  # focalcal's logits.pt, or any file laid out like it
        out = {}
        for name in ("val", "test"):
            s = _pick(d, tuple(f"{name}_{k}" for k in SCORE_KEYS), f"{name} scores", where)
            out[name] = check_split(_as_array(s), d[f"{name}_labels"], kind, f"{where} ({name})")
        return out
    scores = _as_array(_pick(d, SCORE_KEYS, "scores", where))
    y = _pick(d, LABEL_KEYS, "labels", where)
    if split_column in d:
        values = np.array([str(v).strip().lower() for v in _as_array(d[split_column]).reshape(-1)])
        v, t = _split_rows(values, where)
        return {
            "val": check_split(scores[v], _as_array(y)[v], kind, f"{where} (val rows)"),
            "test": check_split(scores[t], _as_array(y)[t], kind, f"{where} (test rows)"),
        }
    return {split or "data": check_split(scores, y, kind, where)}


def read_scores(path: str | os.PathLike, kind: str, *, label_column: str = "label") -> Outputs:
    """Scores to calibrate, labels not needed (``--apply``): a ``.npy``/``.csv``/``.pt``/``.npz`` file."""
    path = check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return check_split(_load_npy(path), None, kind, str(path))
    if suffix == ".csv":
        scores, _, _ = _read_csv(path, label_column, "split", need_labels=False)
        return check_split(scores, None, kind, str(path))
    if suffix in (".pt", ".npz"):
        d = _read_dict(path)
        return check_split(_as_array(_pick(d, SCORE_KEYS, "scores", str(path))), None, kind, str(path))
    raise InputError(f"{path}: unknown format {suffix!r}; use .pt, .npz, .npy or .csv")


def read_val_test(
    kind: str,
    *,
    data: str | None = None,
    val: str | None = None,
    test: str | None = None,
    val_labels: str | None = None,
    test_labels: str | None = None,
    label_column: str = "label",
    split_column: str = "split",
) -> tuple[Outputs, Outputs]:
    """The validation and test splits, from one file holding both (``data``) or one file each.

    Raises:
        InputError: ``data`` together with ``val``/``test`` (or their label files): one way only, never one
            silently ignored; neither way given.
    """
    kw = {"label_column": label_column, "split_column": split_column}
    extra = [
        flag
        for flag, v in (("--val", val), ("--test", test), ("--val-labels", val_labels), ("--test-labels", test_labels))
        if v
    ]
    if data is not None and extra:
        raise InputError(
            f"give the outputs as --data FILE (both splits) or as --val FILE and --test FILE, not both (got --data "
            f"and {', '.join(extra)})"
        )
    if data is not None:
        found = read_outputs(data, kind, **kw)
        if set(found) != {"val", "test"}:
            raise InputError(f"{data} holds one split only; mark rows with a split column, or give --val and --test")
        v, t = found["val"], found["test"]
    elif val is not None and test is not None:
        v = read_outputs(val, kind, labels=val_labels, split="val", **kw)
        t = read_outputs(test, kind, labels=test_labels, split="test", **kw)
        v, t = v.get("val", next(iter(v.values()))), t.get("test", next(iter(t.values())))  # a file may hold both
    else:
        raise InputError("give the outputs as --data FILE (both splits) or as --val FILE and --test FILE")
    if v.num_classes != t.num_classes:
        raise InputError(f"{v.source} has {v.num_classes} classes but {t.source} has {t.num_classes}")
    return v, t
