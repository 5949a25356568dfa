"""The Stanford Sentiment Treebank (Socher et al., 2013) as binary trees, read from its PTB-format files.

``trainDevTestTrees_PTB.zip`` holds ``trees/{train,dev,test}.txt``: one sentence per line, a binary
constituency tree in PTB brackets with a sentiment label 0-4 at every node, e.g.
``(3 (2 It) (4 (2 's) (3 lovely)))``. Tokens are split on plain spaces only (a few contain a non-breaking
space, which stays part of the token). Two tasks, as the paper's Tree-LSTM code:

- ``sst5``: every sentence (8,544 / 1,101 / 2,210), labels 0-4 at every node and at the root;
- ``sst2``: sentences whose root is neutral (2) dropped (6,920 / 872 / 1,821); node labels mapped to 3 classes
  (0-1 -> 0 negative, 2 -> 1 neutral, 3-4 -> 2 positive) and kept at every node for training; the evaluation
  labels (``TextSplit.labels``) are the roots' in 2 classes (negative 0, positive 1).

The vocabulary is cased (as the paper's GloVe 840B lookup); its index 0 is ``"<unk>"`` (words of the dev / test
trees outside a training-only vocabulary), then words in order of first appearance. The paper's vocabulary
covered every split (``fit_on="all"``); the default fits it on the training file only (``fit_on="train"``).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import DataError
from ..datasets import DATA_ENV, resolve_data_dir
from ..trees import Trees
from .base import FIT_ON, SST2_CLASSES, SST5_CLASSES, TextSplit, TextSplits, check_text_identity, find_under

__all__ = ["UNK_WORD", "PTBTree", "load_sst", "parse_ptb_tree", "read_sst"]

ARCHIVE = "trainDevTestTrees_PTB.zip"
SPLIT_FILES = ("train", "dev", "test")
UNK_WORD = "<unk>"
#: sst2's node labels: the 5 sentiment labels mapped to negative / neutral / positive.
THREE_CLASS = (0, 0, 1, 2, 2)


@dataclass
class PTBTree:
    """One parsed tree in post-order (children before parents, root last).

    Attributes:
        words: the token of each leaf, ``None`` at internal nodes.
        left, right: local index of each node's children, -1 at leaves.
        labels: the label (0-4) of each node.
    """

    words: list[str | None]
    left: list[int]
    right: list[int]
    labels: list[int]

    @property
    def tokens(self) -> list[str]:
        """The sentence's tokens, left to right."""
        return [w for w in self.words if w is not None]

    @property
    def root_label(self) -> int:
        return self.labels[-1]


def parse_ptb_tree(line: str, where: str = "tree") -> PTBTree:
    """Parse one PTB-bracketed binary tree with labelled nodes, e.g. ``(3 (2 It) (4 (2 's) (3 lovely)))``.

    A stack parser over the line's space-separated items: ``(<label>`` opens a node, ``word)...)`` gives the open
    node its word and closes nodes; a node is recorded when it closes, so nodes come out in post-order.

    Args:
        line: the bracketed tree (surrounding whitespace ignored; tokens split on plain spaces only).
        where: how to name the line in errors (e.g. ``"trees/train.txt:12"``).

    Raises:
        DataError: unbalanced brackets, a label that is not an integer, a leaf without exactly one word, or a
            node with one or more than two children (the message names ``where``).
    """
    out = PTBTree([], [], [], [])
    stack: list[list] = []  # open nodes: [label, word, children]
    items = line.strip(" \r\n").split(" ")

    def fail(problem: str) -> DataError:
        return DataError(f"{where}: {problem}; expected a binary tree such as (3 (2 It) (4 lovely))")

    for pos, item in enumerate(items):
        if item.startswith("("):
            if pos and not stack:
                raise fail("text after the root closed")
            label = item[1:]
            if not label.lstrip("-").isdigit():
                raise fail(f"node label {label!r} is not an integer")
            stack.append([int(label), None, []])
            continue
        word = item.rstrip(")")
        closes = len(item) - len(word)
        if not stack:
            raise fail(f"{item!r} outside any node")
        if word:
            if stack[-1][1] is not None or stack[-1][2]:
                raise fail(f"node with label {stack[-1][0]} has more than one word or a word beside children")
            stack[-1][1] = word
        if closes > len(stack):
            raise fail("more ')' than '('")
        for _ in range(closes):
            label, word, children = stack.pop()
            if word is not None:
                out.words.append(word)
                out.left.append(-1)
                out.right.append(-1)
            elif len(children) == 2:
                out.words.append(None)
                out.left.append(children[0])
                out.right.append(children[1])
            else:
                kind = "empty" if not children else ("unary" if len(children) == 1 else f"{len(children)}-ary")
                raise fail(f"a {kind} node (label {label}; {len(children)} children)")
            out.labels.append(label)
            if stack:
                stack[-1][2].append(len(out.labels) - 1)
                if stack[-1][1] is not None:
                    raise fail(f"node with label {stack[-1][0]} has a word beside children")
    if stack or not out.labels:
        raise fail("unbalanced brackets (a node is never closed)" if stack else "no tree")
    return out


def _locate(path: Path) -> tuple[str, Path]:
    if path.is_file():
        return "zip", path
    found = find_under(path, [ARCHIVE, "trees"]) if path.is_dir() else None
    if found is not None:
        return ("zip" if found.is_file() else "folder"), found
    if path.is_dir() and all((path / f"{s}.txt").is_file() for s in SPLIT_FILES):
        return "folder", path
    raise DataError(
        f"SST data not found under {path.resolve()}: expected {ARCHIVE} or trees/{{train,dev,test}}.txt there or in "
        f"its text/ folder. Point to the data with --data-dir PATH or {DATA_ENV}=PATH"
    )


def read_sst(path: str | os.PathLike) -> tuple[dict[str, list[PTBTree]], str]:
    """Parse the treebank's three files: ``({"train": [...], "dev": [...], "test": [...]}, source)``.

    ``path``: ``trainDevTestTrees_PTB.zip`` (read in place), its unpacked ``trees/`` folder, or a folder
    holding either (directly or in ``text/``). Files are UTF-8.

    Raises:
        DataError: not found, unreadable, not UTF-8, or a line that is not a binary tree (named file:line).
    """
    kind, where = _locate(Path(path).expanduser())
    raw: dict[str, bytes] = {}
    try:
        if kind == "zip":
            with zipfile.ZipFile(where) as zf:
                names = set(zf.namelist())
                for s in SPLIT_FILES:
                    member = f"trees/{s}.txt" if f"trees/{s}.txt" in names else f"{s}.txt"
                    if member not in names:
                        raise DataError(f"{where} has no trees/{s}.txt; is it {ARCHIVE}?")
                    raw[s] = zf.read(member)
        else:
            for s in SPLIT_FILES:
                raw[s] = (where / f"{s}.txt").read_bytes()
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {where}: {exc}") from None
    trees = {}
    for s, data in raw.items():
        name = f"{where}:trees/{s}.txt" if kind == "zip" else str(where / f"{s}.txt")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{name} is not UTF-8 (byte {exc.start}); is it the treebank's PTB file?") from None
        trees[s] = [
            parse_ptb_tree(line, f"{name}:{i}") for i, line in enumerate(text.split("\n"), start=1) if line.strip()
        ]
    return trees, str(where)


def _trees(parsed: Sequence[PTBTree], index: dict[str, int], node_map: Sequence[int] | None) -> tuple[Trees, int]:
    lists, unknown = [], 0
    for t in parsed:
        words = []
        for w in t.words:
            if w is None:
                words.append(-1)
            else:
                i = index.get(w, 0)
                unknown += i == 0
                words.append(i)
        labels = t.labels if node_map is None else [node_map[label] for label in t.labels]
        lists.append((words, t.left, t.right, labels))
    return Trees.from_lists(lists), unknown


def load_sst(
    data_dir: str | os.PathLike | None = None, *, name: str = "sst2", fit_on: str = "train", verify: bool = True
) -> TextSplits:
    """The Stanford Sentiment Treebank's train / dev / test trees for ``sst2`` or ``sst5`` (module docstring).

    Args:
        data_dir: the zip, the ``trees/`` folder, or a data root holding either (directly or in ``text/``);
            ``None`` is ``$FOCALCAL_DATA`` or ``./data``.
        name: ``"sst2"`` (binary) or ``"sst5"`` (fine-grained).
        fit_on: ``"train"`` (default): the vocabulary holds the training file's words (dev / test words outside
            it become ``"<unk>"``, counted in ``meta["unknown_tokens"]``); ``"all"``: every split's words (the
            paper's Tree-LSTM vocabulary).
        verify: check the sentence counts (8,544 / 1,101 / 2,210; binary 6,920 / 872 / 1,821).

    Returns:
        :class:`TextSplits` (``val`` is the dev split): inputs a :class:`~focalcal.data.trees.Trees` per split
        (node labels: 3 classes for sst2, 5 for sst5), labels int64 ``[N]`` root labels in the evaluation
        classes; ``vocab[0] == "<unk>"``.

    Raises:
        DataError: as :func:`read_sst`, an unknown name or ``fit_on``, or counts that are not the treebank's.
    """
    if name not in ("sst2", "sst5"):
        raise DataError(f"unknown SST task {name!r}; choose sst2 (binary) or sst5 (fine-grained)")
    if fit_on not in FIT_ON:
        raise DataError(f"fit_on must be one of {', '.join(FIT_ON)}; got {fit_on!r}")
    parsed, source = read_sst(resolve_data_dir(data_dir))
    index: dict[str, int] = {UNK_WORD: 0}
    fit_splits = SPLIT_FILES if fit_on == "all" else ("train",)
    fitted = sum(len(parsed[s]) for s in fit_splits)
    for s in fit_splits:
        for t in parsed[s]:
            for w in t.tokens:
                index.setdefault(w, len(index))
    if name == "sst2":
        parsed = {s: [t for t in ts if t.root_label != 2] for s, ts in parsed.items()}
    counts = {s: len(ts) for s, ts in parsed.items()}
    classes = SST2_CLASSES if name == "sst2" else SST5_CLASSES
    identity = check_text_identity(name, source, classes, counts) if verify else None
    node_map = THREE_CLASS if name == "sst2" else None
    splits, unknown = {}, {}
    for s in SPLIT_FILES:
        trees, unknown[s] = _trees(parsed[s], index, node_map)
        roots = torch.tensor([t.root_label for t in parsed[s]], dtype=torch.int64)
        labels = (roots > 2).long() if name == "sst2" else roots
        splits[s] = TextSplit(trees, labels)
    meta = {
        "source": source,
        "identity": identity,
        "tokenizer": {
            "kind": "ptb-tree",
            "split": "plain spaces only",
            "cased": True,
            "fit_on": fit_on,
            "fitted_documents": fitted,
            "vocabulary_size": len(index),
        },
        "node_labels": "3 classes: 0-1 -> 0 negative, 2 -> 1 neutral, 3-4 -> 2 positive"
        if name == "sst2"
        else "5 classes: 0-4",
        "node_classes": 3 if name == "sst2" else 5,
        "evaluation": "root labels, 2 classes (negative 0, positive 1)" if name == "sst2" else "root labels, 5 classes",
        "unknown_tokens": unknown,
        "split": {"method": "the treebank's train / dev / test files (dev is val)", "sizes": counts},
        "special": 1,
        "embedding_oov": "normal",
    }
    vocab = list(index)
    return TextSplits(name, list(classes), splits["train"], splits["dev"], splits["test"], vocab, meta)
