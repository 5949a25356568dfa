"""Text data for the paper's text experiments: 20 Newsgroups (token-id sequences for a global-pooling CNN),
the Stanford Sentiment Treebank (binary trees for a Tree-LSTM), users' own text, and GloVe word vectors.

Every loader returns a :class:`TextSplits` (train / val / test :class:`TextSplit`, ``classes``, ``vocab``,
``meta``); :meth:`TextSplits.embedding` (or :func:`embedding_matrix`) gives the embedding matrix of its
vocabulary and an :class:`EmbeddingRecord` of the vectors used and the out-of-vocabulary count.

Vocabularies are fitted on the training split by default (``fit_on="train"``); the paper fitted them on every
split (the Keras tokenizer on all 19,997 posts; the Tree-LSTM vocabulary on train, dev and test), available
as ``fit_on="all"``.
"""

from __future__ import annotations

import os
from typing import Any

from ...errors import DataError
from .base import FIT_ON, TEXT_DATASET_FACTS, TextDatasetFacts, TextSplit, TextSplits, check_text_identity
from .newsgroups import NewsgroupsPosts, load_20newsgroups, read_newsgroups, strip_header
from .sst import UNK_WORD, PTBTree, load_sst, parse_ptb_tree, read_sst
from .tokenizer import KERAS_FILTERS, PAD_WORD, Tokenizer, pad_sequences, text_to_word_sequence
from .user import TextOptions, load_text_file, load_text_folder, read_text_file, read_text_folder
from .vectors import (
    GLOVE_PACKAGES,
    EmbeddingRecord,
    WordVectors,
    embedding_matrix,
    load_glove_package,
    load_word_vectors,
    read_glove,
)

#: The text data sets :func:`load_text_dataset` knows.
TEXT_DATASETS = ("20newsgroups", "sst2", "sst5", "textfolder", "textfile")


def load_text_dataset(name: str, data_dir: str | os.PathLike | None = None, **options: Any) -> TextSplits:
    """Load a text data set by name (one of :data:`TEXT_DATASETS`).

    ``data_dir``: for the named data sets the archive, its unpacked folder, or a data root holding it (directly
    or in ``text/``; ``None`` is ``$FOCALCAL_DATA`` or ``./data``); for ``textfolder`` the folder; for
    ``textfile`` the (training) file, with ``test=PATH`` for a test file. ``options`` go to
    :func:`load_20newsgroups`, :func:`load_sst`, :func:`load_text_folder` or :func:`load_text_file`.

    Raises:
        DataError: an unknown name (lists the valid ones), or as the loader.
    """
    if name == "20newsgroups":
        return load_20newsgroups(data_dir, **options)
    if name in ("sst2", "sst5"):
        return load_sst(data_dir, name=name, **options)
    if name in ("textfolder", "textfile"):
        if data_dir is None:
            raise DataError(f"{name} needs the path of your data (data_dir)")
        return (load_text_folder if name == "textfolder" else load_text_file)(data_dir, **options)
    raise DataError(f"unknown text dataset {name!r}; choose one of: {', '.join(TEXT_DATASETS)}")


__all__ = [
    "FIT_ON",
    "GLOVE_PACKAGES",
    "KERAS_FILTERS",
    "PAD_WORD",
    "TEXT_DATASETS",
    "TEXT_DATASET_FACTS",
    "UNK_WORD",
    "EmbeddingRecord",
    "NewsgroupsPosts",
    "PTBTree",
    "TextDatasetFacts",
    "TextOptions",
    "TextSplit",
    "TextSplits",
    "Tokenizer",
    "WordVectors",
    "check_text_identity",
    "embedding_matrix",
    "load_20newsgroups",
    "load_glove_package",
    "load_sst",
    "load_text_dataset",
    "load_text_file",
    "load_text_folder",
    "load_word_vectors",
    "pad_sequences",
    "parse_ptb_tree",
    "read_glove",
    "read_newsgroups",
    "read_sst",
    "read_text_file",
    "read_text_folder",
    "strip_header",
    "text_to_word_sequence",
]
