"""20 Newsgroups as the paper read it: the Keras "pre-trained word embeddings" example's loader and split.

The example reads the original collection ``20_newsgroups/<group>/<id>`` (19,997 posts): for each group folder
in sorted order (label = its position), for each file name in sorted (string) order that ``isdigit()``, the
file is read as Latin-1 and its header cut: ``i = t.find('\\n\\n'); if 0 < i: t = t[i:]`` (the text from the
first blank line on; a post without a blank line is kept whole). The posts are tokenised with
``Tokenizer(num_words=20000)`` and padded / truncated at the front to 1,000 ids (:mod:`.tokenizer`), then
shuffled with ``np.random.seed(1); np.random.shuffle(indices)``; the last 20% (``int(0.2 * 19997) = 3,999``)
is the test split, the 900 before them validation, the rest (15,098) training.

Here the same, read in place from ``20news-19997.tar.gz`` (or the unpacked folder), with one deliberate
difference: the tokenizer's word index is fitted on the training posts only by default (``fit_on="train"``,
no test leakage); ``fit_on="all"`` fits it on every post in the collection's order, as the example (and so
the paper) did. The "bydate" version (``20news-bydate-train/`` + ``20news-bydate-test/``, 11,314 / 7,532) is
read the same way; its dated test split is kept, and the validation posts are the last ``val_size`` of the
shuffled training posts.
"""

from __future__ import annotations

import os
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..datasets import DATA_ENV, resolve_data_dir
from .base import (
    FIT_ON,
    NEWSGROUPS,
    TEXT_DATASET_FACTS,
    TextSplits,
    check_text_identity,
    find_under,
    seeded_permutation,
    sequence_splits,
)

__all__ = ["NewsgroupsPosts", "load_20newsgroups", "read_newsgroups", "strip_header"]

ARCHIVE = "20news-19997.tar.gz"
FOLDER = "20_newsgroups"
BYDATE = ("20news-bydate-train", "20news-bydate-test")
BYDATE_ARCHIVE = "20news-bydate.tar.gz"


def strip_header(text: str) -> str:
    """The Keras example's header cut: the text from the first ``'\\n\\n'`` on (kept whole when there is none
    or it starts the text)."""
    i = text.find("\n\n")
    return text[i:] if 0 < i else text


@dataclass
class NewsgroupsPosts:
    """Posts of a 20 Newsgroups collection, in the Keras example's order (groups sorted, ids sorted as strings).

    Attributes:
        version: ``"19997"`` (one collection, split ``"all"``) or ``"bydate"`` (splits ``"train"``, ``"test"``).
        groups: the group names, sorted (label order).
        texts: split -> the posts' text (Latin-1, header cut).
        labels: split -> int64 ``[n]`` group index of each post.
        ids: split -> ``"<group>/<id>"`` of each post.
        source: what was read.
    """

    version: str
    groups: list[str]
    texts: dict[str, list[str]]
    labels: dict[str, np.ndarray]
    ids: dict[str, list[str]]
    source: str


def _collect(files: dict[str, dict[str, bytes]], where: str) -> tuple[list[str], list[str], list[int], list[str]]:
    """``files[group][name] = raw bytes`` -> (groups, texts, labels, ids) in the Keras example's order."""
    groups = sorted(files)
    texts, labels, ids = [], [], []
    for label, group in enumerate(groups):
        for name in sorted(n for n in files[group] if n.isdigit()):
            texts.append(strip_header(files[group][name].decode("latin-1")))
            labels.append(label)
            ids.append(f"{group}/{name}")
    if not texts:
        raise DataError(f"{where} holds no posts: expected <group>/<numeric id> files")
    return groups, texts, labels, ids


def _read_tar(path: Path) -> dict[str, dict[str, dict[str, bytes]]]:
    """top folder -> group -> file name -> bytes, for every ``top/group/name`` file of a tar archive."""
    out: dict[str, dict[str, dict[str, bytes]]] = {}
    try:
        with tarfile.open(path) as tf:
            for m in tf:
                parts = m.name.strip("/").split("/")
                if len(parts) == 2 and m.isdir():
                    out.setdefault(parts[0], {}).setdefault(parts[1], {})
                if len(parts) != 3 or not m.isfile():
                    continue
                f = tf.extractfile(m)
                out.setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = f.read() if f else b""
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise DataError(f"cannot read {path} as a tar archive ({exc}); download it again") from None
    return out


def _read_folder(folder: Path) -> dict[str, dict[str, bytes]]:
    """group -> file name -> bytes, for ``folder/<group>/<name>`` (group folders only, as the example)."""
    out: dict[str, dict[str, bytes]] = {}
    for group in sorted(os.listdir(folder)):
        path = folder / group
        if not path.is_dir():
            continue
        out[group] = {}
        for name in os.listdir(path):
            if name.isdigit() and (path / name).is_file():
                try:
                    out[group][name] = (path / name).read_bytes()
                except OSError as exc:
                    raise DataError(f"cannot read {path / name}: {exc}") from None
    return out


def _locate(path: Path) -> tuple[str, Path]:
    """(kind, path): ``tar`` (an archive), ``folder`` (``<group>/<id>`` folders) or ``bydate`` (the folder
    holding ``20news-bydate-train`` and ``-test``)."""
    if path.is_file():
        return "tar", path
    if not path.is_dir():
        raise DataError(
            f"20newsgroups data not found: {path.resolve()} does not exist. Point to the data with --data-dir PATH "
            f"or {DATA_ENV}=PATH ({TEXT_DATASET_FACTS['20newsgroups'].layout})"
        )
    found = find_under(path, [ARCHIVE, FOLDER])
    if found is not None:
        return ("tar" if found.is_file() else "folder"), found
    for base in (path, path / "text"):
        if all((base / b).is_dir() for b in BYDATE):
            return "bydate", base
    found = find_under(path, [BYDATE_ARCHIVE])
    if found is not None:
        return "tar", found
    if any(p.name in NEWSGROUPS and p.is_dir() for p in path.iterdir()):
        return "folder", path
    raise DataError(
        f"20newsgroups data not found under {path.resolve()}: expected {ARCHIVE}, {FOLDER}/<group>/<id>, or "
        f"{BYDATE[0]}/ + {BYDATE[1]}/ there or in its text/ folder. Point to the data with --data-dir PATH or "
        f"{DATA_ENV}=PATH"
    )


def read_newsgroups(path: str | os.PathLike) -> NewsgroupsPosts:
    """Read a 20 Newsgroups collection: the original ``20news-19997.tar.gz`` (read in place), its unpacked
    ``20_newsgroups/<group>/<id>`` folder, or the bydate layout (``20news-bydate-train/`` +
    ``20news-bydate-test/``, folders or ``20news-bydate.tar.gz``); ``path`` is the archive, the folder, or a
    folder holding either (directly or in ``text/``). Counts are not checked here (see :func:`load_20newsgroups`).

    Raises:
        DataError: nothing of the above found, an unreadable archive or file, no posts, or bydate splits with
            different groups.
    """
    kind, where = _locate(Path(path).expanduser())
    if kind == "folder":
        tops = {FOLDER: _read_folder(where)}
    elif kind == "bydate":
        tops = {b: _read_folder(where / b) for b in BYDATE}
    else:
        tops = _read_tar(where)
    if FOLDER in tops or not all(b in tops for b in BYDATE):
        if len(tops) != 1:
            raise DataError(
                f"{where} does not hold one 20 Newsgroups collection: found top folders {sorted(tops)[:5]}; "
                f"expected {FOLDER}/<group>/<id> or {BYDATE[0]}/ + {BYDATE[1]}/"
            )
        groups, texts, labels, ids = _collect(next(iter(tops.values())), str(where))
        return NewsgroupsPosts(
            "19997", groups, {"all": texts}, {"all": np.asarray(labels, np.int64)}, {"all": ids}, str(where)
        )
    parts = {split: _collect(tops[b], f"{where}/{b}") for split, b in zip(("train", "test"), BYDATE)}
    if parts["train"][0] != parts["test"][0]:
        raise DataError(
            f"{where}: {BYDATE[0]} and {BYDATE[1]} have different group folders "
            f"({len(parts['train'][0])} vs {len(parts['test'][0])}); they must match"
        )
    return NewsgroupsPosts(
        "bydate",
        parts["train"][0],
        {s: p[1] for s, p in parts.items()},
        {s: np.asarray(p[2], np.int64) for s, p in parts.items()},
        {s: p[3] for s, p in parts.items()},
        str(where),
    )


def _check(name: str, what: str, n: int, lo: int, hi: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not lo <= n <= hi:
        raise DataError(f"{name} must be an int in {lo}..{hi} for these {what}; got {n!r}")


def load_20newsgroups(
    data_dir: str | os.PathLike | None = None,
    *,
    num_words: int = 20000,
    maxlen: int = 1000,
    fit_on: str = "train",
    seed: int = 1,
    test_fraction: float = 0.2,
    val_size: int = 900,
    verify: bool = True,
) -> TextSplits:
    """20 Newsgroups as token-id sequences with the paper's split (see the module docstring).

    Args:
        data_dir: the archive, the unpacked folder, or a data root holding either (directly or in ``text/``);
            ``None`` is ``$FOCALCAL_DATA`` or ``./data``.
        num_words: keep word ids ``< num_words`` (the 19,999 most frequent words for 20,000).
        maxlen: ids per post: longer posts keep their last ``maxlen`` ids, shorter ones are padded with 0 at
            the front.
        fit_on: ``"train"`` (default): the word index counts the training posts only; ``"all"``: every post,
            test included, in the collection's order (the paper's Keras example).
        seed: the shuffle's seed (numpy's legacy ``RandomState``, as ``np.random.seed(1)`` in the example).
        test_fraction: the 19,997 collection's test split is its last ``int(test_fraction * N)`` shuffled posts
            (a fraction, not %); unused for bydate, whose test split is its own.
        val_size: the validation posts: the ``val_size`` shuffled posts before the test split (bydate: the last
            ``val_size`` of the shuffled training posts).
        verify: check the collection against its published facts (20 groups, 1,000 posts per group except
            soc.religion.christian with 997, 19,997 in all; bydate 11,314 / 7,532).

    Returns:
        :class:`TextSplits` named ``"20newsgroups"``: inputs int64 ``[N, maxlen]``, labels int64 ``[N]`` (group
        index, groups sorted), ``vocab`` = ``["<pad>", ...]`` (``min(num_words, words + 1)`` entries); ``meta``
        has the source, version, identity facts, tokenizer settings and fit, and the split's sizes and seed.

    Raises:
        DataError: data not found, unreadable, or not 20 Newsgroups (one line saying what was found), a bad
            ``fit_on`` or sizes that leave no training posts.
    """
    if fit_on not in FIT_ON:
        raise DataError(f"fit_on must be one of {', '.join(FIT_ON)}; got {fit_on!r}")
    posts = read_newsgroups(resolve_data_dir(data_dir))
    counts = {s: len(t) for s, t in posts.texts.items()}
    identity = None
    if verify:
        if posts.version == "19997":
            per_class = Counter(posts.labels["all"].tolist())
            identity = check_text_identity(
                "20newsgroups",
                posts.source,
                posts.groups,
                counts,
                {g: per_class[i] for i, g in enumerate(posts.groups)},
            )
        else:
            identity = check_text_identity("20newsgroups-bydate", posts.source, posts.groups, counts)
    if posts.version == "19997":
        texts, labels = posts.texts["all"], posts.labels["all"]
        n = len(texts)
        if not 0 < test_fraction < 1:
            raise DataError(f"test_fraction must be a fraction in (0, 1); got {test_fraction!r}")
        n_test = int(test_fraction * n)
        _check("val_size", f"{n} posts with {n_test} for testing", val_size, 0, n - n_test - 1)
        perm = seeded_permutation(n, seed)
        n_train = n - n_test - val_size
        idx = {"train": perm[:n_train], "val": perm[n_train : n - n_test], "test": perm[n - n_test :]}
        split_meta = {
            "method": "shuffle all posts (numpy RandomState(seed)); test = last int(test_fraction * N), val = the "
            "val_size before them, train = the rest",
            "test_fraction": test_fraction,
        }
    else:
        texts = posts.texts["train"] + posts.texts["test"]
        labels = np.concatenate([posts.labels["train"], posts.labels["test"]])
        n_tr = counts["train"]
        _check("val_size", f"{n_tr} training posts", val_size, 0, n_tr - 1)
        perm = seeded_permutation(n_tr, seed)
        idx = {
            "train": perm[: n_tr - val_size],
            "val": perm[n_tr - val_size :],
            "test": np.arange(n_tr, n_tr + counts["test"]),
        }
        split_meta = {
            "method": "bydate test split kept; train shuffled (numpy RandomState(seed)), val = its last val_size"
        }
    splits, tokenizer, tokenizer_meta = sequence_splits(
        texts, labels, idx, fit_on=fit_on, num_words=num_words, maxlen=maxlen
    )
    meta = {
        "source": posts.source,
        "version": posts.version,
        "identity": identity,
        "reading": "Latin-1; header cut at the first blank line (text[text.find('\\n\\n'):] when > 0); groups "
        "sorted, ids sorted as strings, digit names only",
        "tokenizer": tokenizer_meta,
        "split": {**split_meta, "seed": seed, "sizes": {k: len(v) for k, v in idx.items()}},
        "special": 1,
        "embedding_oov": "zeros",
    }
    return TextSplits(
        "20newsgroups", list(posts.groups), splits["train"], splits["val"], splits["test"], tokenizer.vocabulary(), meta
    )
