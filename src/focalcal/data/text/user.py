"""A user's own text classification data: class folders of ``.txt`` files, or a CSV / JSON-lines file.

Both become sequence data as 20 Newsgroups (:mod:`.newsgroups`): the Keras tokenizer fitted on the training
split (or on everything with ``fit_on="all"``), ids padded / truncated at the front to ``maxlen``.

- ``textfolder``: ``<root>/{train,test}/<class>/*.txt`` (the given test split kept), or ``<root>/<class>/*.txt``
  split with a seed. Classes are the folder names, sorted.
- ``textfile``: a ``.csv`` / ``.tsv`` file with a header row, or a JSON-lines file (``.jsonl`` / ``.ndjson`` /
  ``.json``, one object per line), with a text column and a label column (``text_column`` / ``label_column``;
  a table's separator is its suffix's, or ``delimiter``); train and test as two files, or one file split with a
  seed. Classes are the distinct labels, sorted
  (numerically when every label is an integer).

Splits made with a seed shuffle with numpy's ``RandomState(seed)``: the test split is the last
``test_size`` of the shuffled documents, validation the ``val_size`` before them, training the rest; with a
given test split, validation is the last ``val_size`` of the shuffled training documents.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from .base import TextSplits, seeded_permutation, sequence_splits

__all__ = [
    "TextOptions",
    "load_text_file",
    "load_text_folder",
    "parse_delimiter",
    "read_text_file",
    "read_text_folder",
]

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
#: Separators a one-column header is checked for, to tell that a table's ``delimiter`` is another one.
_LIKELY_DELIMITERS = (";", "\t", ",", "|")
_TAB_NAMES = ("tab", "\\t", "\t")


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


def parse_delimiter(value: Any) -> str:
    """A table's column separator from its spelling: one character (``";"``, ``"|"``), or ``"tab"`` / ``"\\t"``
    (backslash and t, as typed on a command line) / a tab character for tabs; surrounding whitespace and one
    pair of quotes (``"';'"``) are dropped.

    Raises:
        DataError: anything else (empty, several characters, a quote, a line break), naming what to pass.
    """
    if not isinstance(value, str):
        raise DataError(f"delimiter must be a string such as ';' or tab; got {value!r}")
    text = value if value == "\t" else value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    if text.lower() in _TAB_NAMES:
        return "\t"
    if len(text) != 1 or text in '"\r\n':
        raise DataError(f"delimiter must be one character (e.g. ';' or '|') or tab; got {value!r}")
    return text


def _spell_delimiter(delimiter: str) -> str:
    """How to pass ``delimiter`` on the command line."""
    return "tab" if delimiter == "\t" else repr(delimiter)


def _check_classes(where: str, classes: list[str], fix: str) -> None:
    if len(classes) < 2:
        raise DataError(
            f"{where} has {len(classes)} class ({', '.join(classes)}); classification needs two or more: {fix}"
        )


def _decode(data: bytes, encoding: str, where: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{where} is not {encoding} text (undecodable byte at offset {exc.start}); pass its encoding "
            "(e.g. --data-opt encoding=latin-1) or re-save it as UTF-8"
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
        DataError: the path is a file or is missing, the folder has no class folders, a class folder holds no
            ``suffix`` file (named; with the ``suffix`` option to pass when its files have another one), a file
            cannot be read or decoded (named), or documents are empty or blank (the first named, with their count).
    """
    folder = Path(folder)
    if folder.is_file():
        raise DataError(
            f"{folder} is a file, not a folder of class folders: for a CSV / TSV / JSON-lines file use "
            "--dataset textfile"
        )
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist: expected {folder}/<class>/<document>{suffix}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"no class folders in {folder}: expected {folder}/<class>/<document>{suffix}")
    texts, labels, empty = [], [], []
    for label, name in enumerate(classes):
        present = [p for p in (folder / name).iterdir() if p.is_file() and not p.name.startswith(".")]
        files = sorted(p for p in present if p.name.endswith(suffix))
        if not files:
            others = Counter(p.suffix for p in present if p.suffix)
            hint = ""
            if others:
                other = others.most_common(1)[0][0]
                hint = f" (it holds {other} files: pass --data-opt suffix={other} to read them)"
            raise DataError(
                f"class folder {folder / name} holds no {suffix} file{hint}; add documents or remove the empty folder"
            )
        for f in files:
            try:
                data = f.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read {f}: {exc}") from None
            text = _decode(data, encoding, str(f))
            if _is_blank(text):
                empty.append(f)
            texts.append(text)
            labels.append(label)
    if empty:
        raise DataError(
            f"{empty[0]} is empty ({len(empty)} of the {len(texts)} documents in {folder} are empty or blank); "
            "an empty document cannot be classified: remove them or fill them"
        )
    return classes, texts, np.asarray(labels, dtype=np.int64)


def _holds_folders(path: Path) -> bool:
    """Whether ``path`` is a folder holding a folder (a split's class folders, not a class's documents)."""
    return path.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())


def _is_blank(text: str) -> bool:
    """No character but whitespace and byte-order marks."""
    return not text.replace("\ufeff", "").strip()


def read_text_file(
    path: str | os.PathLike,
    *,
    text_column: str = "text",
    label_column: str = "label",
    encoding: str = "utf-8",
    delimiter: str | None = None,
) -> tuple[list[str], list[str]]:
    """``(texts, labels as strings)`` of a CSV / TSV file with a header row or a JSON-lines file.

    ``delimiter``: a table's column separator (any spelling :func:`parse_delimiter` takes); ``None``: the
    suffix's (``.csv`` comma, ``.tsv`` tab).

    Raises:
        DataError: the path is a folder or is missing, the file is unreadable or not ``encoding``, has an
            unknown suffix, lacks a column (lists the columns it has; names the separator to pass when its
            one-column header holds another), a row has no label, an empty or blank text, or is not a JSON
            object (names file:line; for empty texts the first, with their count), or ``delimiter`` is given
            for a JSON-lines file or is not one character.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(
            f"{path} is a folder, not a CSV / TSV / JSON-lines file: for class folders of text files use "
            "--dataset textfolder"
        )
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
    if delimiter is not None and suffix in JSONL_SUFFIXES:
        raise DataError(f"{path} is JSON lines: the delimiter option is for .csv / .tsv files only; drop it")
    sep = TABLE_SUFFIXES.get(suffix, ",") if delimiter is None else parse_delimiter(delimiter)
    if suffix in TABLE_SUFFIXES:
        reader = csv.DictReader(text.splitlines(), delimiter=sep)
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
            found = f"{path} has no column {col!r}; its columns are {', '.join(map(repr, columns[:10]))}"
            other = _other_delimiter(columns, sep) if suffix in TABLE_SUFFIXES else None
            if other is not None:
                raise DataError(
                    f"{found}: the file seems to be separated by {'tabs' if other == chr(9) else repr(other)}: "
                    f"pass --data-opt delimiter={_spell_delimiter(other)}"
                )
            raise DataError(f"{found}: name the right one with --data-opt {what}=NAME")
    texts, labels, empty = [], [], []
    for line, row in rows:
        label = row.get(label_column)
        if label is None or (isinstance(label, str) and not label.strip()):
            raise DataError(f"{path}:{line}: no value in the label column {label_column!r}; every row needs a label")
        if isinstance(label, (dict, list)):
            raise DataError(f"{path}:{line}: the label {label!r} is not a single value")
        value = row.get(text_column)
        texts.append("" if value is None else str(value))
        labels.append(str(label).strip())
        if _is_blank(texts[-1]):
            empty.append(line)
    if empty:
        raise DataError(
            f"{path}:{empty[0]}: empty text in the column {text_column!r} ({len(empty)} of the {len(rows)} rows "
            "have an empty or blank text); an empty document cannot be classified: remove them or fill them"
        )
    return texts, labels


def _other_delimiter(columns: list[str], delimiter: str) -> str | None:
    """The separator a one-column header seems to use instead of ``delimiter`` (the likeliest one it holds)."""
    if len(columns) != 1:
        return None
    counts = {d: columns[0].count(d) for d in _LIKELY_DELIMITERS if d != delimiter}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else None


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
        DataError: as :func:`read_text_folder` (a file instead of a folder, a missing folder, no class folders,
            an empty class folder, an undecodable file, empty documents), a ``train/`` of class folders without
            ``test/`` or the reverse, train / test with different classes, fewer than two classes, split sizes
            that leave no training data, or an unknown option.
    """
    opts = TextOptions.from_keywords("textfolder", options)
    encoding, seed, val_size, test_size = opts.encoding, opts.seed, opts.val_size, opts.test_size
    root = Path(root).expanduser()
    given = {name: _holds_folders(root / name) for name in ("train", "test")}
    if given["train"] != given["test"]:
        present, missing = ("train", "test") if given["train"] else ("test", "train")
        raise DataError(
            f"{root} has {present}/ but no {missing}/ folder: use {root}/train/<class>/*{suffix} with "
            f"{root}/test/<class>/*{suffix}, or {root}/<class>/*{suffix} (split with a seed)"
        )
    if given["train"]:
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
    _check_classes(str(root), classes, f"add a folder of {suffix} documents per class")
    meta = {"source": str(root), "reading": f"{encoding} files *{suffix}", "split": split}
    return _finish("textfolder", classes, texts, labels, idx, meta, opts)


def load_text_file(
    train: str | os.PathLike,
    test: str | os.PathLike | None = None,
    *,
    text_column: str = "text",
    label_column: str = "label",
    delimiter: str | None = None,
    **options: Any,
) -> TextSplits:
    """Labelled texts from a CSV / TSV / JSON-lines file, as token-id sequences (``textfile``; module docstring).

    Args:
        train: the training file, or the only file (then split with ``seed``).
        test: the test file, or ``None``.
        text_column, label_column: the columns (CSV header names, JSON keys) of the text and the label.
        delimiter: the tables' column separator (``";"``, ``"|"``, ``"tab"``: :func:`parse_delimiter`); ``None``:
            by suffix (``.csv`` comma, ``.tsv`` tab). Not for JSON lines.
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
    delimiter = None if delimiter is None else parse_delimiter(delimiter)
    reading = {"text_column": text_column, "label_column": label_column, "encoding": encoding, "delimiter": delimiter}
    texts, raw = read_text_file(train, **reading)
    n_test = 0
    if test is not None:
        test_texts, test_raw = read_text_file(test, **reading)
        unknown = sorted(set(test_raw) - set(raw))
        if unknown:
            raise DataError(
                f"{test} has labels the training file {train} lacks ({', '.join(map(repr, unknown[:5]))}); "
                "every test class needs training documents"
            )
        texts, raw, n_test = texts + test_texts, raw + test_raw, len(test_texts)
    classes = _sort_classes(set(raw))
    _check_classes(str(train), classes, f"the label column {label_column!r} needs two or more values")
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
        "reading": f"{encoding}; text column {text_column!r}, label column {label_column!r}"
        + ("" if delimiter is None else f", separated by {_spell_delimiter(delimiter)}"),
        "split": split,
    }
    return _finish("textfile", classes, texts, labels, idx, meta, opts)
