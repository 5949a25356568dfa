"""The Keras word tokenizer (``keras.preprocessing.text.Tokenizer``) and ``pad_sequences``, re-implemented.

The paper's 20 Newsgroups pipeline (the Keras "pre-trained word embeddings" example) turns posts into token
ids with Keras' ``Tokenizer(num_words=20000)`` and ``pad_sequences(maxlen=1000)``; this module gives the same
ids without Keras:

- words: lower-case the text (``str.lower``), replace every character of :data:`KERAS_FILTERS` by the split
  character (a space), split on spaces and drop empty strings (``text_to_word_sequence``);
- word index: words by descending count over the fitted texts, ties in order of first appearance (a stable
  sort of the insertion-ordered counts), numbered from 1 (0 is reserved for padding);
- sequences: each word's index, words whose index is ``>= num_words`` (or unseen) dropped, so only the
  ``num_words - 1`` most frequent words survive;
- padding: sequences longer than ``maxlen`` keep their LAST ``maxlen`` ids (``truncating="pre"``), shorter
  ones are padded with 0 at the FRONT (``padding="pre"``); an empty sequence is a row of zeros.

>>> tok = Tokenizer(num_words=3).fit(["b a b", "c a b!"])
>>> tok.word_index
{'b': 1, 'a': 2, 'c': 3}
>>> tok.texts_to_sequences(["A b, c d"])
[[2, 1]]
>>> pad_sequences([[2, 1], [1, 2, 1, 2]], maxlen=3).tolist()
[[0, 2, 1], [2, 1, 2]]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...errors import InputError

__all__ = ["KERAS_FILTERS", "PAD_WORD", "Tokenizer", "pad_sequences", "text_to_word_sequence"]

#: The characters Keras' tokenizer replaces by the split character: punctuation plus tab and newline.
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
#: The vocabulary entry of index 0 (padding) in :meth:`Tokenizer.vocabulary`.
PAD_WORD = "<pad>"


def _table(filters: str, split: str) -> dict[int, str]:
    return str.maketrans({c: split for c in filters})


def text_to_word_sequence(text: str, filters: str = KERAS_FILTERS, lower: bool = True, split: str = " ") -> list[str]:
    """The words of ``text`` as Keras splits them: lower-cased (``lower``), every character of ``filters``
    replaced by ``split``, split on ``split``, empty strings dropped.

    >>> text_to_word_sequence("Hello, World!\\tIt's  e-mail")
    ['hello', 'world', "it's", 'e', 'mail']
    """
    if lower:
        text = text.lower()
    return [w for w in text.translate(_table(filters, split)).split(split) if w]


@dataclass
class Tokenizer:
    """Keras' word tokenizer: fit a word index on texts, then turn texts into sequences of word ids.

    Attributes:
        num_words: keep only word ids ``< num_words`` (the ``num_words - 1`` most frequent words) when making
            sequences; ``None`` keeps every word.
        filters, lower, split: how texts are split into words (:func:`text_to_word_sequence`).
        word_counts: ``word -> count`` over the fitted texts, in order of first appearance.
        word_index: ``word -> id`` (1-based) by descending count, ties in order of first appearance.
        document_count: how many texts were fitted.
    """

    num_words: int | None = 20000
    filters: str = KERAS_FILTERS
    lower: bool = True
    split: str = " "
    word_counts: dict[str, int] = field(default_factory=dict, repr=False)
    word_index: dict[str, int] = field(default_factory=dict, repr=False)
    document_count: int = 0

    def __post_init__(self) -> None:
        if self.num_words is not None and (isinstance(self.num_words, bool) or int(self.num_words) < 2):
            raise InputError(f"num_words must be an int >= 2 (index 0 is padding) or None; got {self.num_words!r}")
        if not isinstance(self.split, str) or len(self.split) != 1:
            raise InputError(f"split must be one character; got {self.split!r}")
        self._translate = _table(self.filters, self.split)

    def words(self, text: str) -> list[str]:
        """The words of one text (:func:`text_to_word_sequence` with this tokenizer's settings)."""
        if self.lower:
            text = text.lower()
        return [w for w in text.translate(self._translate).split(self.split) if w]

    def fit(self, texts: Iterable[str]) -> Tokenizer:
        """Count the words of ``texts`` (added to any earlier fit, as Keras' ``fit_on_texts``) and rebuild
        :attr:`word_index`. Returns ``self``."""
        return self.fit_words(map(self.words, texts))

    def fit_words(self, documents: Iterable[Sequence[str]]) -> Tokenizer:
        """:meth:`fit` on documents already split into words (by :meth:`words`; used as they are)."""
        counts = Counter(self.word_counts)
        for words in documents:
            counts.update(words)
            self.document_count += 1
        self.word_counts = dict(counts)
        ranked = sorted(self.word_counts.items(), key=lambda kv: -kv[1])  # stable: ties keep first appearance
        self.word_index = {w: i for i, (w, _) in enumerate(ranked, start=1)}
        return self

    def texts_to_sequences(self, texts: Iterable[str]) -> list[list[int]]:
        """Each text's word ids, in order; words outside the kept vocabulary are dropped.

        Raises:
            InputError: the tokenizer was not fitted.
        """
        return self.words_to_sequences(map(self.words, texts))

    def words_to_sequences(self, documents: Iterable[Sequence[str]]) -> list[list[int]]:
        """:meth:`texts_to_sequences` on documents already split into words (by :meth:`words`)."""
        if not self.word_index:
            raise InputError("the tokenizer has no word index: call fit(texts) first")
        index = self.word_index
        if self.num_words is not None:
            index = {w: i for w, i in index.items() if i < self.num_words}
        get = index.get
        return [[i for i in map(get, words) if i is not None] for words in documents]

    def vocabulary(self) -> list[str]:
        """Index -> word for every id a sequence can hold: ``[PAD_WORD, word 1, ..., word V-1]`` with
        ``V = min(num_words, len(word_index) + 1)``."""
        n = len(self.word_index) + 1 if self.num_words is None else min(self.num_words, len(self.word_index) + 1)
        words = [PAD_WORD] * n
        for w, i in self.word_index.items():
            if i < n:
                words[i] = w
        return words

    def settings(self) -> dict[str, Any]:
        """The tokenizer's settings and fit, JSON-able (for a data set's ``meta``)."""
        return {
            "kind": "keras-word",
            "num_words": self.num_words,
            "filters": self.filters,
            "lower": self.lower,
            "split": self.split,
            "fitted_documents": self.document_count,
            "unique_words": len(self.word_index),
            "vocabulary_size": len(self.vocabulary()),
        }


def pad_sequences(
    sequences: Sequence[Sequence[int]],
    maxlen: int,
    *,
    padding: str = "pre",
    truncating: str = "pre",
    value: int = 0,
) -> torch.Tensor:
    """Sequences of ids as one int64 tensor ``[N, maxlen]``, as Keras' ``pad_sequences``.

    Args:
        sequences: N sequences of int ids.
        maxlen: the row length.
        padding: ``"pre"`` pads at the front (Keras' default), ``"post"`` at the end.
        truncating: ``"pre"`` drops the first ids of a longer sequence (keeps its last ``maxlen``), ``"post"``
            its last ones.
        value: the padding id.

    Raises:
        InputError: ``maxlen < 1`` or an unknown ``padding`` / ``truncating``.
    """
    if isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 1:
        raise InputError(f"maxlen must be a positive int; got {maxlen!r}")
    for name, v in (("padding", padding), ("truncating", truncating)):
        if v not in ("pre", "post"):
            raise InputError(f"{name} must be 'pre' or 'post'; got {v!r}")
    out = np.full((len(sequences), maxlen), value, dtype=np.int64)
    for row, seq in enumerate(sequences):
        if not len(seq):
            continue
        trunc = seq[-maxlen:] if truncating == "pre" else seq[:maxlen]
        if padding == "pre":
            out[row, maxlen - len(trunc) :] = trunc
        else:
            out[row, : len(trunc)] = trunc
    return torch.from_numpy(out)
