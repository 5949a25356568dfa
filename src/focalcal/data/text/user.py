"""A user's own text classification data: class folders of ``.txt`` files, or a CSV / JSON-lines file.

Both become sequence data as 20 Newsgroups (:mod:`.newsgroups`): the Keras tokenizer fitted on the training
split (or on everything with ``fit_on="all"``), ids padded / truncated at the front to ``maxlen``.

- ``textfolder``: ``<root>/{train,test}/<class>/*.txt`` (the given test split kept), or ``<root>/<class>/*.txt``
  split with a seed. Classes are the folder names, sorted.
- ``textfile``: a ``.csv`` / ``.tsv`` file with a header row, or a JSON-lines file (``.jsonl`` / ``.ndjson`` /
  ``.json``, one object per line), with a text column and a label column (``text_column`` / ``label_column``);
  train and test as two files, or one file split with a seed. Classes are the distinct labels, sorted
  (numerically when every label is an integer).

Splits made with a seed shuffle with numpy's ``RandomState(seed)``: the test split is the last
``test_size`` of the shuffled documents, validation the ``val_size`` before them, training the rest; with a
given test split, validation is the last ``val_size`` of the shuffled training documents.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from .base import TextSplits, seeded_permutation, sequence_splits

__all__ = ["TextOptions", "load_text_file", "load_text_folder", "read_text_file", "read_text_folder"]

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


@dataclass(frozen=True)
class TextOptions:
    """The tokenizer, split and reading keywords that :func:`load_text_folder` and :func:`load_text_file` share;
    each loader takes them as keyword arguments (``load_text_folder(root, maxlen=200, val_size=0.2)``).

    Attributes:
        num_words: keep word ids ``< num_words`` (the ``num_words - 1`` most frequent words); ``None``: every word.
        maxlen: ids per document: longer documents keep their last ``maxlen`` ids, shorter ones are padded with 0
            at the front.
        fit_on: ``"train"``: the word index counts the training documents only; ``"all"``: every document, test
            included (as :func:`~focalcal.data.text.load_20newsgroups`).
        seed: the shuffle's seed (numpy's ``RandomState``; see the module docstring).
        val_size: validation documents taken from the training ones: a count (int) or a fraction (float).
        test_size: without a given test split, the test documents: a count or a fraction of all documents.
        encoding: the files' text encoding (a Python codec name).
    """

    num_words: int | None = 20000
    maxlen: int = 1000
    fit_on: str = "train"
    seed: int = 1
    val_size: int | float = 0.1
    test_size: int | float = 0.2
    encoding: str = "utf-8"

    @classmethod
    def from_keywords(cls, loader: str, options: Mapping[str, Any]) -> TextOptions:
        """The options given to ``loader`` as keywords; an unknown keyword is a :class:`DataError` naming the
        valid ones."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise DataError(
                f"{loader} has no option {', '.join(map(repr, unknown))}; its options are {', '.join(names)}"
            )
        return cls(**options)


def _decode(data: bytes, encoding: str, where: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{where} is not {encoding} text (undecodable byte at offset {exc.start}); pass its encoding "
            "(e.g. encoding='latin-1') or re-save it as UTF-8"
        ) from None
    except LookupError:
        raise DataError(
            f"unknown text encoding {encoding!r}; use a Python codec name such as utf-8 or latin-1"
        ) from None


def read_text_folder(
    folder: str | os.PathLike, *, encoding: str = "utf-8", suffix: str = ".txt"
) -> tuple[list[str], list[str], np.ndarray]:
    """``(classes, texts, labels int64 [n])`` of ``folder/<class>/*<suffix>`` (classes sorted, files sorted).

    Raises:
        DataError: the folder is missing or has no class folders, a class folder holds no ``suffix`` file
            (named), or a file cannot be read or decoded (named).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist: expected {folder}/<class>/<document>{suffix}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"no class folders in {folder}: expected {folder}/<class>/<document>{suffix}")
    texts, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir() if p.is_file() and p.name.endswith(suffix))
        if not files:
            raise DataError(
                f"class folder {folder / name} holds no {suffix} file; add documents or remove the empty folder"
            )
        for f in files:
            try:
                data = f.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read {f}: {exc}") from None
            texts.append(_decode(data, encoding, str(f)))
            labels.append(label)
    return classes, texts, np.asarray(labels, dtype=np.int64)


def read_text_file(
    path: str | os.PathLike,
    *,
    text_column: str = "text",
    label_column: str = "label",
    encoding: str = "utf-8",
) -> tuple[list[str], list[str]]:
    """``(texts, labels as strings)`` of a CSV / TSV file with a header row or a JSON-lines file.

    Raises:
        DataError: the file is missing, unreadable or not ``encoding``, has an unknown suffix, lacks a column
            (lists the columns it has), or a row has no label or is not a JSON object (names file:line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file {path} not found")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES and suffix not in JSONL_SUFFIXES:
        raise DataError(
            f"{path}: unknown text-file format {suffix or '(no suffix)'}; use .csv, .tsv or JSON lines "
            f"({', '.join(JSONL_SUFFIXES)})"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    text = _decode(data, encoding, str(path))
    if text.startswith("\ufeff"):
        text = text[1:]
    rows: list[tuple[int, dict[str, Any]]] = []
    if suffix in TABLE_SUFFIXES:
        reader = csv.DictReader(text.splitlines(), delimiter=TABLE_SUFFIXES[suffix])
        columns = list(reader.fieldnames or [])
        try:
            rows = [(reader.line_num, row) for row in reader]
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: not valid {suffix[1:].upper()} ({exc})") from None
    else:
        columns = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{i}: not valid JSON ({exc.msg}); expected one JSON object per line") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{i}: expected a JSON object per line, got {type(obj).__name__}")
            columns.extend(k for k in obj if k not in columns)
            rows.append((i, obj))
    if not rows:
        raise DataError(f"{path} holds no rows")
    for col, what in ((text_column, "text_column"), (label_column, "label_column")):
        if col not in columns:
            raise DataError(
                f"{path} has no column {col!r}; its columns are {', '.join(map(repr, columns[:10]))}: "
                f"name the right one with {what}=NAME"
            )
    texts, labels = [], []
    for line, row in rows:
        label = row.get(label_column)
        if label is None or (isinstance(label, str) and not label.strip()):
            raise DataError(f"{path}:{line}: no value in the label column {label_column!r}; every row needs a label")
        if isinstance(label, (dict, list)):
            raise DataError(f"{path}:{line}: the label {label!r} is not a single value")
        value = row.get(text_column)
        texts.append("" if value is None else str(value))
        labels.append(str(label).strip())
    return texts, labels


def _sort_classes(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


def _count(value: int | float, total: int, name: str) -> int:
    """A split size: an int count or a float fraction of ``total``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{name} must be a count (int) or a fraction in [0, 1); got {value!r}")
    if isinstance(value, float):
        if not 0 <= value < 1:
            raise DataError(f"{name} as a fraction must be in [0, 1); got {value}")
        return int(value * total)
    return int(value)


def _holdout(
    n: int, n_given_test: int, seed: int, val_size: int | float, test_size: int | float, where: str
) -> dict[str, np.ndarray]:
    """Split rows ``0..n-1`` (a given test split occupies the last ``n_given_test`` rows)."""
    pool = n - n_given_test
    n_test = n_given_test if n_given_test else _count(test_size, pool, "test_size")
    if not n_given_test:
        if not 0 < n_test < pool:
            raise DataError(f"{where}: test_size gives {n_test} of {pool} documents; it must leave training data")
        pool -= n_test
    n_val = _count(val_size, pool, "val_size")
    if not 0 <= n_val < pool:
        raise DataError(f"{where}: val_size gives {n_val} of {pool} training documents; it must leave training data")
    perm = seeded_permutation(n - n_given_test, seed)
    if n_given_test:
        return {"train": perm[: pool - n_val], "val": perm[pool - n_val :], "test": np.arange(pool, n)}
    return {"train": perm[: pool - n_val], "val": perm[pool - n_val : pool], "test": perm[pool:]}


def _finish(
    name: str,
    classes: list[str],
    texts: list[str],
    labels: np.ndarray,
    idx: dict[str, np.ndarray],
    meta: dict[str, Any],
    opts: TextOptions,
) -> TextSplits:
    splits, tokenizer, tokenizer_meta = sequence_splits(
        texts, labels, idx, fit_on=opts.fit_on, num_words=opts.num_words, maxlen=opts.maxlen
    )
    meta = {
        **meta,
        "identity": None,
        "tokenizer": tokenizer_meta,
        "split": {**meta.get("split", {}), "seed": opts.seed, "sizes": {k: len(v) for k, v in idx.items()}},
        "special": 1,
        "embedding_oov": "zeros",
    }
    return TextSplits(name, classes, splits["train"], splits["val"], splits["test"], tokenizer.vocabulary(), meta)


def load_text_folder(root: str | os.PathLike, *, suffix: str = ".txt", **options: Any) -> TextSplits:
    """A folder of class folders of text files, as token-id sequences (``textfolder``; module docstring).

    Args:
        root: ``<root>/{train,test}/<class>/*.txt`` or ``<root>/<class>/*.txt``.
        suffix: the document files' ending.
        **options: the keywords of :class:`TextOptions`, each with its default and meaning there: the tokenizer
            (``num_words`` 20000, ``maxlen`` 1000, ``fit_on`` ``"train"``), the split (``seed`` 1, ``val_size``
            0.1, ``test_size`` 0.2: used for a single folder only) and the files' ``encoding`` (``"utf-8"``).

    Returns:
        :class:`TextSplits` named ``"textfolder"`` (inputs int64 ``[N, maxlen]``).

    Raises:
        DataError: missing folder, no class folders, an empty class folder, an undecodable file (each named),
            train / test with different classes, split sizes that leave no training data, or an unknown option.
    """
    opts = TextOptions.from_keywords("textfolder", options)
    encoding, seed, val_size, test_size = opts.encoding, opts.seed, opts.val_size, opts.test_size
    root = Path(root).expanduser()
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes, train_texts, train_labels = read_text_folder(root / "train", encoding=encoding, suffix=suffix)
        test_classes, test_texts, test_labels = read_text_folder(root / "test", encoding=encoding, suffix=suffix)
        if test_classes != classes:
            raise DataError(
                f"{root}: train and test have different class folders ({', '.join(classes[:4])} vs "
                f"{', '.join(test_classes[:4])}); they must match"
            )
        texts, labels = train_texts + test_texts, np.concatenate([train_labels, test_labels])
        idx = _holdout(len(texts), len(test_texts), seed, val_size, test_size, str(root))
        split = {"method": "given train / test folders; val = the last val_size of the shuffled training documents"}
    else:
        classes, texts, labels = read_text_folder(root, encoding=encoding, suffix=suffix)
        idx = _holdout(len(texts), 0, seed, val_size, test_size, str(root))
        split = {"method": "one folder shuffled; test = last test_size, val = the val_size before, train = the rest"}
    meta = {"source": str(root), "reading": f"{encoding} files *{suffix}", "split": split}
    return _finish("textfolder", classes, texts, labels, idx, meta, opts)


def load_text_file(
    train: str | os.PathLike,
    test: str | os.PathLike | None = None,
    *,
    text_column: str = "text",
    label_column: str = "label",
    **options: Any,
) -> TextSplits:
    """Labelled texts from a CSV / TSV / JSON-lines file, as token-id sequences (``textfile``; module docstring).

    Args:
        train: the training file, or the only file (then split with ``seed``).
        test: the test file, or ``None``.
        text_column, label_column: the columns (CSV header names, JSON keys) of the text and the label.
        **options: the keywords of :class:`TextOptions`, as :func:`load_text_folder` (``test_size``: used
            without a test file only).

    Returns:
        :class:`TextSplits` named ``"textfile"``; ``classes`` are the label values as strings.

    Raises:
        DataError: as :func:`read_text_file`, a test label that the training file lacks, a class with no
            training document, split sizes that leave no training data, or an unknown option.
    """
    opts = TextOptions.from_keywords("textfile", options)
    encoding = opts.encoding
    texts, raw = read_text_file(train, text_column=text_column, label_column=label_column, encoding=encoding)
    n_test = 0
    if test is not None:
        test_texts, test_raw = read_text_file(
            test, text_column=text_column, label_column=label_column, encoding=encoding
        )
        unknown = sorted(set(test_raw) - set(raw))
        if unknown:
            raise DataError(
                f"{test} has labels the training file {train} lacks ({', '.join(map(repr, unknown[:5]))}); "
                "every test class needs training documents"
            )
        texts, raw, n_test = texts + test_texts, raw + test_raw, len(test_texts)
    classes = _sort_classes(set(raw))
    if len(classes) < 2:
        raise DataError(f"{train} has {len(classes)} class ({', '.join(classes)}); classification needs two or more")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.asarray([index[c] for c in raw], dtype=np.int64)
    idx = _holdout(len(texts), n_test, opts.seed, opts.val_size, opts.test_size, str(train))
    empty = [c for c in classes if not np.any(labels[idx["train"]] == index[c])]
    if empty:
        raise DataError(
            f"{train}: class(es) {', '.join(map(repr, empty[:5]))} have no training document after the split; "
            "add documents or change seed / val_size / test_size"
        )
    where = str(train) if test is None else f"{train} + {test}"
    split = (
        {"method": "one file shuffled; test = last test_size, val = the val_size before, train = the rest"}
        if test is None
        else {"method": "given train / test files; val = the last val_size of the shuffled training documents"}
    )
    meta = {
        "source": where,
        "reading": f"{encoding}; text column {text_column!r}, label column {label_column!r}",
        "split": split,
    }
    return _finish("textfile", classes, texts, labels, idx, meta, opts)
