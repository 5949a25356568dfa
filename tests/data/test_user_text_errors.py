"""The user's-own-text loaders (``textfolder``, ``textfile``): one clear error for each common layout mistake, and
tables separated by another delimiter."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

from focalcal.data.registry import DATASETS, prepare_splits
from focalcal.data.text import load_text_file, load_text_folder, read_text_file
from focalcal.engine import TrainConfig
from focalcal.errors import DataError, InputError

ROWS = [
    ("Good, fun film", "pos"),
    ('A "quoted" gem', "pos"),
    ("bad; dull and slow", "neg"),
    ("great\tacting", "pos"),
    ("awful plot", "neg"),
    ("poor, weak", "neg"),
]


def _folder(root: Path, docs: dict[str, list[str]], suffix: str = ".txt") -> Path:
    for cls, texts in docs.items():
        (root / cls).mkdir(parents=True)
        for i, text in enumerate(texts):
            (root / cls / f"{i}{suffix}").write_text(text)
    return root


def _table(path: Path, delimiter: str, rows=ROWS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(["review", "category"])
        writer.writerows(rows)
    return path


def _reference(path: Path, delimiter: str) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter=delimiter))
    return [r["review"] for r in rows], [r["category"] for r in rows]


def _message(excinfo: pytest.ExceptionInfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text  # one line
    return text


def test_textfolder_given_a_file_says_so_and_points_to_textfile(tmp_path):
    path = _table(tmp_path / "docs.csv", ",")
    with pytest.raises(DataError) as excinfo:
        load_text_folder(path)
    text = _message(excinfo)
    assert f"{path} is a file, not a folder" in text and "--dataset textfile" in text
    assert "does not exist" not in text


def test_textfile_given_a_folder_says_so_and_points_to_textfolder(tmp_path):
    folder = _folder(tmp_path / "folder", {"pos": ["good"], "neg": ["bad"]})
    with pytest.raises(DataError) as excinfo:
        load_text_file(folder)
    text = _message(excinfo)
    assert f"{folder} is a folder, not a CSV / TSV / JSON-lines file" in text and "--dataset textfolder" in text
    assert "not found" not in text


@pytest.mark.parametrize("present, missing", [("train", "test"), ("test", "train")])
def test_textfolder_train_without_test_names_the_missing_split_and_both_layouts(tmp_path, present, missing):
    root = tmp_path / "bad"
    _folder(root / present, {"pos": ["good fun", "great"], "neg": ["bad", "awful"]})
    with pytest.raises(DataError) as excinfo:
        load_text_folder(root)
    text = _message(excinfo)
    assert f"{root} has {present}/ but no {missing}/ folder" in text
    assert f"{root}/train/<class>/*.txt with {root}/test/<class>/*.txt, or {root}/<class>/*.txt" in text
    # a class folder that happens to be called "test" (documents, no sub-folders) is still a class
    ok = _folder(tmp_path / "ok", {"test": ["a b", "a c", "a d"], "prod": ["x y", "x z", "x w"]})
    data = load_text_folder(ok, val_size=0, test_size=2)
    assert data.classes == ["prod", "test"]
    assert len(data.train) + len(data.test) == 6


@pytest.mark.parametrize("layout", ["single", "train_test"])
def test_textfolder_with_one_class_says_classification_needs_two(tmp_path, layout):
    if layout == "single":
        root = _folder(tmp_path / "one", {"pos": ["good", "great", "fine", "nice", "fun"]})
    else:
        root = tmp_path / "one"
        _folder(root / "train", {"pos": ["good", "great", "fine", "nice"]})
        _folder(root / "test", {"pos": ["fun"]})
    with pytest.raises(DataError) as excinfo:
        load_text_folder(root, val_size=1)
    text = _message(excinfo)
    assert f"{root} has 1 class (pos); classification needs two or more" in text


@pytest.mark.parametrize("delimiter, spelled, option", [(";", "';'", ";"), ("\t", "tab", "tab"), ("\t", "tab", "\\t")])
def test_textfile_other_delimiter_hint_and_option(tmp_path, delimiter, spelled, option):
    comma = _table(tmp_path / "comma.csv", ",")
    other = _table(tmp_path / "other.csv", delimiter)
    # without the option: the one-column header is recognised and the option to pass named
    with pytest.raises(DataError) as excinfo:
        read_text_file(other, text_column="review", label_column="category")
    text = _message(excinfo)
    separated = "tabs" if delimiter == "\t" else repr(delimiter)
    assert f"the file seems to be separated by {separated}: pass --data-opt delimiter={spelled}" in text
    # with the option: the texts and labels Python's csv module reads, and those of the comma version
    got = read_text_file(other, text_column="review", label_column="category", delimiter=option)
    assert got == _reference(other, delimiter) == _reference(comma, ",")
    assert got[0] == [t for t, _ in ROWS] and got[1] == [c for _, c in ROWS]
    # through the registry, as --data-opt delimiter=... on the command line: the same splits as the comma file
    options = {"text_column": "review", "label_column": "category", "maxlen": "6", "test_split": "2"}
    assert DATASETS.convert_options("textfile", {"delimiter": option}) == {"delimiter": delimiter}
    splits = {}
    for path, extra in ((comma, {}), (other, {"delimiter": option})):
        config = TrainConfig(
            dataset="textfile", model="gpcnn", data_dir=str(path), val_size=1, data_options={**options, **extra}
        )
        splits[path] = prepare_splits(config, word_vectors=False)
    a, b = splits[comma], splits[other]
    for name in ("train_inputs", "train_labels", "val_inputs", "val_labels", "test_inputs", "test_labels"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.classes == b.classes == ["neg", "pos"]


def test_delimiter_option_spellings_and_bad_values():
    convert = DATASETS.convert_options
    for given, want in (("tab", "\t"), ("TAB", "\t"), ("\\t", "\t"), ("\t", "\t"), ("';'", ";"), (" | ", "|")):
        assert convert("textfile", {"delimiter": given}) == {"delimiter": want}, given
    for bad in ("", ";;", '"', "\n"):
        with pytest.raises(InputError, match="delimiter must be one character"):
            convert("textfile", {"delimiter": bad})
    with pytest.raises(InputError, match="unknown option"):
        convert("textfolder", {"delimiter": ";"})


def test_textfile_delimiter_for_json_lines_is_refused(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n')
    with pytest.raises(DataError, match=r"docs\.jsonl is JSON lines: the delimiter option is for \.csv / \.tsv"):
        read_text_file(path, delimiter=";")


def test_hints_use_the_command_line_form(tmp_path):
    path = _table(tmp_path / "reviews.csv", ",")
    with pytest.raises(DataError) as excinfo:
        read_text_file(path, label_column="category")
    assert "its columns are 'review', 'category': name the right one with --data-opt text_column=NAME" in _message(
        excinfo
    )
    with pytest.raises(DataError) as excinfo:
        read_text_file(path, text_column="review")
    assert "name the right one with --data-opt label_column=NAME" in _message(excinfo)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"text,label\ncaf\xe9,a\nthe,b\n")
    with pytest.raises(DataError) as excinfo:
        read_text_file(latin)
    assert "pass its encoding (e.g. --data-opt encoding=latin-1)" in _message(excinfo)
    assert read_text_file(latin, encoding="latin-1") == (["café", "the"], ["a", "b"])


def test_textfolder_other_suffix_names_the_suffix_option(tmp_path):
    docs = {"pos": ["good fun", "great", "nice"], "neg": ["bad", "awful", "poor"]}
    root = _folder(tmp_path / "notes", docs, suffix=".md")
    with pytest.raises(DataError) as excinfo:
        load_text_folder(root)
    text = _message(excinfo)
    assert re.search(
        r"class folder .*notes/neg holds no \.txt file \(it holds \.md files: pass --data-opt suffix=\.md", text
    )
    data = load_text_folder(root, suffix=".md", val_size=0, test_size=2)  # the hint works
    assert len(data.train) + len(data.test) == 6 and data.classes == ["neg", "pos"]


def test_textfolder_empty_documents_are_refused_naming_the_first_and_the_count(tmp_path):
    root = _folder(tmp_path / "docs", {"neg": ["bad", "", "awful"], "pos": ["good", " \n\t", "great"]})
    with pytest.raises(DataError) as excinfo:
        load_text_folder(root)
    text = _message(excinfo)
    first = root / "neg" / "1.txt"
    assert f"{first} is empty (2 of the 6 documents in {root} are empty or blank)" in text
    assert "an empty document cannot be classified: remove them or fill them" in text
    (root / "neg" / "1.txt").write_text("dull")
    (root / "pos" / "1.txt").write_text("fine")
    assert len(load_text_folder(root, val_size=0, test_size=2).train) == 4


def test_textfile_empty_texts_are_refused_naming_the_first_row_and_the_count(tmp_path):
    rows = [("good", "pos"), ("bad", "neg"), ("", "pos"), ("fine", "pos"), ("   ", "neg")]
    path = _table(tmp_path / "reviews.csv", ",", rows)
    with pytest.raises(DataError) as excinfo:
        read_text_file(path, text_column="review", label_column="category")
    text = _message(excinfo)
    assert f"{path}:4: empty text in the column 'review' (2 of the 5 rows have an empty or blank text)" in text
    assert "remove them or fill them" in text
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"text": "good", "label": "pos"}\n{"label": "neg"}\n{"text": "bad", "label": "neg"}\n')
    with pytest.raises(DataError, match=re.escape(f"{jsonl}:2: empty text in the column 'text' (1 of the 3 rows")):
        read_text_file(jsonl)
