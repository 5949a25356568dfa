"""Text data sets: 20 Newsgroups and SST on the REAL archives (these FAIL, never skip, when they are missing),
the PTB tree parser on hand-written trees, bydate and users' formats on tiny hand-made files."""

from __future__ import annotations

import hashlib
import re
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcal.data.registry import DATASETS
from focalcal.data.text import (
    TEXT_DATASETS,
    load_20newsgroups,
    load_sst,
    load_text_dataset,
    load_text_file,
    load_text_folder,
    parse_ptb_tree,
)
from focalcal.data.trees import Trees
from focalcal.engine import TrainConfig
from focalcal.errors import DataError

REPO = Path(__file__).resolve().parents[2]
NEWS = "20news-19997.tar.gz"
SST = "trainDevTestTrees_PTB.zip"
# Keras' default filters, written out here as the reference (not imported from the code under test)
FILTERS = re.compile("[" + re.escape('!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~') + "\t\n]")


def reference_words(text: str) -> list[str]:
    return [w for w in FILTERS.sub(" ", text.lower()).split(" ") if w]


class ReferenceVocab:
    """Word counts with explicit first-appearance positions; ``top(n)``: the n most frequent, ties first seen."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.first: dict[str, int] = {}

    def add(self, words: list[str]) -> None:
        for w in words:
            self.first.setdefault(w, len(self.first))
        self.counts.update(words)

    def top(self, n: int) -> list[str]:
        return sorted(self.counts, key=lambda w: (-self.counts[w], self.first[w]))[:n]


@pytest.fixture(scope="module")
def text_dir(text_root) -> Path:
    return text_root


@pytest.fixture(scope="module")
def news_reference(text_dir):
    """(group labels, texts, reference vocabularies of train / all) of the 19,997 posts, read straight from the
    archive in the Keras example's order."""
    posts = {}
    with tarfile.open(text_dir / NEWS) as tf:
        for m in tf:
            if m.isfile():
                _, group, name = m.name.split("/")
                posts[(group, name)] = tf.extractfile(m).read().decode("latin-1")
    keys = sorted(posts)
    groups = sorted({g for g, _ in keys})
    texts = []
    for k in keys:
        head, sep, tail = posts[k].partition("\n\n")
        texts.append(sep + tail if head and sep else posts[k])
    train = set(_legacy_split(len(texts))["train"].tolist())
    vocab = {"train": ReferenceVocab(), "all": ReferenceVocab()}
    for i, text in enumerate(texts):  # one pass in the collection's order
        words = reference_words(text)
        vocab["all"].add(words)
        if i in train:
            vocab["train"].add(words)
    return np.array([groups.index(g) for g, _ in keys]), texts, {k: v.top(19_999) for k, v in vocab.items()}


@pytest.fixture(scope="module")
def news(text_dir):
    return load_20newsgroups(text_dir.parent)


def _legacy_split(n: int) -> dict[str, np.ndarray]:
    np_state = np.random.get_state()
    np.random.seed(1)  # the Keras example's shuffle
    indices = np.arange(n)
    np.random.shuffle(indices)
    np.random.set_state(np_state)
    return {"train": indices[: n - 4899], "val": indices[n - 4899 : n - 3999], "test": indices[n - 3999 :]}


def test_20newsgroups_real_archive_counts_and_seed_1_split(news, news_reference):
    labels, _, _ = news_reference
    assert len(labels) == 19_997
    assert news.num_classes == 20 and news.classes[15] == "soc.religion.christian"
    assert (len(news.train), len(news.val), len(news.test)) == (15_098, 900, 3_999)
    assert news.meta["identity"]["per_class"]["soc.religion.christian"] == 997
    for name, idx in _legacy_split(19_997).items():
        assert torch.equal(getattr(news, name).labels, torch.from_numpy(labels[idx])), name
    for split in (news.train, news.val, news.test):
        assert split.inputs.dtype == torch.int64 and split.inputs.shape[1] == 1000
        assert int(split.inputs.max()) < 20_000
        nonzero = (split.inputs != 0).int()
        assert bool((nonzero.diff(dim=1) >= 0).all())  # padding (0) only at the front


def test_20newsgroups_vocabulary_is_fitted_on_train_only_by_default(news, news_reference):
    _, texts, vocab = news_reference
    idx = _legacy_split(19_997)
    assert news.vocab[0] == "<pad>" and len(news.vocab) == 20_000
    assert news.vocab[1:] == vocab["train"]
    assert news.meta["tokenizer"]["fit_on"] == "train" and news.meta["tokenizer"]["fitted_documents"] == 15_098
    # one test post, tokenised here by the reference: known ids, last 1,000 kept, padded at the front
    row = int(idx["test"][0])
    index = {w: i for i, w in enumerate(news.vocab) if i}
    ids = [index[w] for w in reference_words(texts[row]) if w in index][-1000:]
    expected = [0] * (1000 - len(ids)) + ids
    assert news.test.inputs[0].tolist() == expected


def test_20newsgroups_fit_on_all_is_the_papers_vocabulary(text_dir, news_reference):
    paper = load_20newsgroups(text_dir / NEWS, fit_on="all")
    assert paper.vocab[1:] == news_reference[2]["all"]
    assert paper.meta["tokenizer"]["fit_on"] == "all" and paper.meta["tokenizer"]["fitted_documents"] == 19_997


def _write_posts(root: Path, groups: dict[str, int], body: str = "Subject: x\n\nword{g} post{i} Shared") -> None:
    for g, (group, n) in enumerate(groups.items()):
        (root / group).mkdir(parents=True)
        for i in range(n):
            (root / group / str(100 + i)).write_bytes(body.format(g=g, i=i).encode("latin-1"))


def test_20newsgroups_wrong_collection_is_a_one_line_data_error(tmp_path):
    _write_posts(tmp_path / "20_newsgroups", {"alt.atheism": 3, "comp.graphics": 2})
    with pytest.raises(DataError) as err:
        load_20newsgroups(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "does not hold 20 Newsgroups" in msg and "19,997" in msg and "2 classes" in msg
    with pytest.raises(DataError, match="20newsgroups data not found"):
        load_20newsgroups(tmp_path / "20_newsgroups" / "alt.atheism")
    with pytest.raises(DataError, match="not found"):
        load_20newsgroups(tmp_path / "missing")


def test_20newsgroups_unpacked_folder_reads_like_the_example(tmp_path):
    root = tmp_path / "20_newsgroups"
    _write_posts(root, {"b.group": 3, "a.group": 2})
    (root / "a.group" / "README").write_text("not a post")  # not a digit name: ignored
    (root / "b.group" / "99").write_bytes(b"no header here caf\xe9")  # Latin-1; no blank line: kept whole
    options = {"verify": False, "val_size": 1, "test_fraction": 0.4, "num_words": None, "maxlen": 5}
    data = load_20newsgroups(tmp_path, fit_on="all", **options)  # every post's words, to see each one
    assert data.classes == ["a.group", "b.group"]
    assert (len(data.train), len(data.val), len(data.test)) == (3, 1, 2)
    assert "café" in data.vocab and "subject" not in data.vocab  # the header is cut
    order = [0, 0, 1, 1, 1, 1]  # a.group 100, 101; b.group "100", "101", "102", "99" (string order)
    idx = _legacy_split_small(6, 2, 1)
    all_labels = torch.cat([data.train.labels, data.val.labels, data.test.labels])
    assert all_labels.tolist() == [order[i] for i in np.concatenate([idx["train"], idx["val"], idx["test"]])]


def _legacy_split_small(n: int, n_test: int, n_val: int) -> dict[str, np.ndarray]:
    indices = np.arange(n)
    np.random.RandomState(1).shuffle(indices)
    return {
        "train": indices[: n - n_test - n_val],
        "val": indices[n - n_test - n_val : n - n_test],
        "test": indices[n - n_test :],
    }


def test_20newsgroups_bydate_layout_keeps_its_test_split(tmp_path):
    _write_posts(tmp_path / "20news-bydate-train", {"alt.atheism": 3, "sci.med": 2})
    _write_posts(tmp_path / "20news-bydate-test", {"alt.atheism": 1, "sci.med": 2}, "Subject: y\n\ntestonly{g} w{i}")
    data = load_20newsgroups(tmp_path, verify=False, val_size=1, num_words=None)
    assert data.meta["version"] == "bydate"
    assert (len(data.train), len(data.val), len(data.test)) == (4, 1, 3)
    assert data.test.labels.tolist() == [0, 1, 1]
    assert not any(w.startswith("testonly") for w in data.vocab)  # fitted on the training posts only
    with pytest.raises(DataError, match=r"bydate.*11,314"):
        load_20newsgroups(tmp_path, val_size=1)


@pytest.fixture(scope="module")
def sst5(text_dir):
    return load_sst(text_dir.parent, name="sst5")


def test_sst_real_archive_counts_and_labels(text_dir, sst5):
    with zipfile.ZipFile(text_dir / SST) as zf:
        raw = {s: zf.read(f"trees/{s}.txt") for s in ("train", "dev", "test")}
    md5 = {s: hashlib.md5(b).hexdigest() for s, b in raw.items()}  # the README's facts of the files
    assert md5 == {
        "train": "b12d531b1b913a3bb49719ba5cc1f67a",
        "dev": "c405f1d724964e6f72314b5a51fea691",
        "test": "97b75f6ca1ae58b4d52fbf9381dc6f8c",
    }
    sst2 = load_sst(text_dir / SST, name="sst2")
    assert [len(s) for s in (sst5.train, sst5.val, sst5.test)] == [8_544, 1_101, 2_210]
    assert [len(s) for s in (sst2.train, sst2.val, sst2.test)] == [6_920, 872, 1_821]
    lines = {s: [ln for ln in b.decode().split("\n") if ln.strip()] for s, b in raw.items()}
    for split, s in zip((sst5.train, sst5.val, sst5.test), ("train", "dev", "test")):
        roots = torch.tensor([int(ln[1]) for ln in lines[s]])  # "(<root label> ..."
        assert torch.equal(split.labels, roots)
        leaves = torch.tensor([len(re.findall(r"\(\d [^ ()]+\)", ln)) for ln in lines[s]])
        assert isinstance(split.inputs, Trees) and torch.equal(split.inputs.sizes, 2 * leaves - 1)
        assert torch.equal(split.inputs.root_labels, roots)
    for split, s in zip((sst2.train, sst2.val, sst2.test), ("train", "dev", "test")):
        roots = [int(ln[1]) for ln in lines[s] if ln[1] != "2"]
        assert split.labels.tolist() == [int(r > 2) for r in roots]
        assert torch.equal(split.inputs.root_labels, 2 * split.labels)  # 3 node classes: 0 neg, 2 pos
        assert set(split.inputs.labels.unique().tolist()) == {0, 1, 2}
    assert sst2.classes == ["negative", "positive"] and sst5.num_classes == 5


def test_sst_vocabulary_cased_from_train_by_default_and_all_splits_for_the_paper(text_dir, sst5):
    with zipfile.ZipFile(text_dir / SST) as zf:
        tokens = {
            s: re.findall(r"\(\d ([^ ()]+)\)", zf.read(f"trees/{s}.txt").decode()) for s in ("train", "dev", "test")
        }
    default = sst5
    paper = load_sst(text_dir.parent, name="sst5", fit_on="all")
    assert default.vocab[0] == paper.vocab[0] == "<unk>"
    assert set(default.vocab[1:]) == set(tokens["train"])
    assert set(paper.vocab[1:]) == set(tokens["train"]) | set(tokens["dev"]) | set(tokens["test"])
    assert "The" in default.vocab and "the" in default.vocab  # cased
    assert any("\xa0" in w for w in default.vocab)  # split on plain spaces only
    train_words = set(tokens["train"])
    assert default.meta["unknown_tokens"]["test"] == sum(w not in train_words for w in tokens["test"]) > 0
    assert paper.meta["unknown_tokens"] == {"train": 0, "dev": 0, "test": 0}
    # the first dev sentence, read back through the vocabulary
    t = default.val.inputs.take([0])
    words = [default.vocab[i] for i in t.words.tolist() if i >= 0]
    assert " ".join(words) == "It 's a lovely film with lovely performances by Buy and <unk> ."  # Accorsi: dev only
    assert default.meta["tokenizer"]["fit_on"] == "train"


def test_ptb_tree_parse_hand_written():
    t = parse_ptb_tree("(3 (2 It) (4 (2 's) (3 lovely)))\n")
    assert t.words == ["It", "'s", "lovely", None, None]
    assert t.left == [-1, -1, -1, 1, 0] and t.right == [-1, -1, -1, 2, 3]
    assert t.labels == [2, 2, 3, 4, 3] and t.tokens == ["It", "'s", "lovely"]
    leaf = parse_ptb_tree("(1 Bad\xa0word)")
    assert leaf.words == ["Bad\xa0word"] and leaf.left == [-1] and leaf.labels == [1]


@pytest.mark.parametrize(
    "line, problem",
    [
        ("(2 (3 good))", "unary"),
        ("(2 (2 a) (2 b) (2 c))", "3-ary"),
        ("(2 (2 a) (2 b)", "unbalanced"),
        ("(2 (2 a) (2 b)))", "more ')'"),
        ("(x (2 a) (2 b))", "not an integer"),
        ("(2 (2 a) (2 b)) (2 c)", "after the root"),
        ("(2 a (2 b) (2 c))", "word beside children"),
    ],
)
def test_ptb_tree_errors_name_the_line(line, problem):
    with pytest.raises(DataError, match=re.escape(problem)) as err:
        parse_ptb_tree(line, "trees/train.txt:7")
    assert str(err.value).startswith("trees/train.txt:7: ") and "\n" not in str(err.value)


def _write_sst(folder: Path, train: list[str], dev: list[str], test: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("train", train), ("dev", dev), ("test", test)):
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")


def test_sst_hand_written_files_binary_mapping_and_unknown_words(tmp_path):
    train = ["(4 (3 good) (2 film))", "(2 (2 a) (2 film))", "(0 (1 bad) (2 film))"]
    _write_sst(tmp_path / "trees", train, ["(3 (2 nice) (3 film))"], ["(1 (2 dull) (1 plot))"])
    sst2 = load_sst(tmp_path, name="sst2", verify=False)
    assert sst2.vocab == ["<unk>", "good", "film", "a", "bad"]  # the neutral sentence's words too
    assert sst2.train.labels.tolist() == [1, 0]
    t = sst2.train.inputs
    assert t.words.tolist() == [1, 2, -1, 4, 2, -1] and t.labels.tolist() == [2, 1, 2, 0, 1, 0]
    assert sst2.val.inputs.words.tolist() == [0, 2, -1] and sst2.meta["unknown_tokens"] == {
        "train": 0,
        "dev": 1,
        "test": 2,
    }
    sst5 = load_sst(tmp_path, name="sst5", verify=False)
    assert sst5.train.labels.tolist() == [4, 2, 0] and sst5.train.inputs.labels[:3].tolist() == [3, 2, 4]
    with pytest.raises(DataError, match=r"does not hold the Stanford Sentiment Treebank.*8,544"):
        load_sst(tmp_path, name="sst5")
    _write_sst(tmp_path / "bad", ["(4 (3 good) (2 film))", "(2 (2 unary))"], ["(3 a)"], ["(1 b)"])
    with pytest.raises(DataError, match=r"train\.txt:2: a unary node"):
        load_sst(tmp_path / "bad", verify=False)


def test_text_folder_with_train_and_test(tmp_path):
    for split, docs in (
        ("train", {"pos": ["good fun", "good great"], "neg": ["bad", "awful bad", "poor bad"]}),
        ("test", {"pos": ["good testword"], "neg": ["bad"]}),
    ):
        for cls, texts in docs.items():
            (tmp_path / split / cls).mkdir(parents=True)
            for i, text in enumerate(texts):
                (tmp_path / split / cls / f"{i}.txt").write_text(text)
    (tmp_path / "train" / "pos" / "notes.md").write_text("ignored")
    data = load_text_folder(tmp_path, val_size=1, maxlen=3)
    assert data.classes == ["neg", "pos"]
    assert (len(data.train), len(data.val), len(data.test)) == (4, 1, 2)
    assert data.test.labels.tolist() == [0, 1]
    assert "testword" not in data.vocab and "ignored" not in data.vocab
    index = {w: i for i, w in enumerate(data.vocab)}
    assert data.test.inputs.tolist() == [[0, 0, index["bad"]], [0, 0, index["good"]]]


def test_text_folder_single_folder_split_with_a_seed_and_errors(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "docs" / cls).mkdir(parents=True)
        for i in range(5):
            (tmp_path / "docs" / cls / f"{i}.txt").write_text(f"{cls} word{i}")
    data = load_text_folder(tmp_path / "docs", test_size=0.2, val_size=2, seed=3)
    idx = np.arange(10)
    np.random.RandomState(3).shuffle(idx)
    labels = np.repeat([0, 1], 5)
    assert data.test.labels.tolist() == labels[idx[8:]].tolist()
    assert data.val.labels.tolist() == labels[idx[6:8]].tolist()
    assert data.train.labels.tolist() == labels[idx[:6]].tolist()
    (tmp_path / "docs" / "c").mkdir()
    with pytest.raises(DataError, match=r"class folder .*docs/c holds no \.txt file"):
        load_text_folder(tmp_path / "docs")
    (tmp_path / "docs" / "c" / "x.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DataError, match=r"docs/c/x\.txt is not utf-8 text .*latin-1"):
        load_text_folder(tmp_path / "docs")
    assert "café" in load_text_folder(tmp_path / "docs", encoding="latin-1", val_size=0).vocab


def test_text_file_csv_and_jsonl(tmp_path):
    csv_path = tmp_path / "reviews.csv"
    csv_path.write_text('review,stars\n"Good, fun film",10\nBad film,2\nGreat,10\n"dull, slow",2\nfine,10\n')
    data = load_text_file(csv_path, text_column="review", label_column="stars", test_size=0.2, val_size=1)
    assert data.classes == ["2", "10"]  # integer labels sorted numerically
    assert (len(data.train), len(data.val), len(data.test)) == (3, 1, 1)
    with pytest.raises(DataError, match=r"no column 'text'; its columns are 'review', 'stars'.*text_column"):
        load_text_file(csv_path, label_column="stars")
    train = tmp_path / "train.jsonl"
    train.write_text(
        '{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n\n{"text": "nice", "label": "pos"}\n'
    )
    test = tmp_path / "test.jsonl"
    test.write_text('{"text": "awful", "label": "neg"}\n')
    data = load_text_file(train, test, val_size=0)
    assert data.classes == ["neg", "pos"] and data.test.labels.tolist() == [0]
    assert data.train.labels.sort().values.tolist() == [0, 1, 1]
    test.write_text('{"text": "meh", "label": "neutral"}\n')
    with pytest.raises(DataError, match="labels the training file"):
        load_text_file(train, test)
    test.write_text('{"text": "x", "label": "neg"}\nnot json\n')
    with pytest.raises(DataError, match=r"test\.jsonl:2: not valid JSON"):
        load_text_file(train, test)
    test.write_text('{"text": "x", "label": "neg"}\n{"text": "y"}\n')
    with pytest.raises(DataError, match=r"test\.jsonl:2: no value in the label column"):
        load_text_file(train, test)


def test_load_text_dataset_names():
    assert TEXT_DATASETS == ("20newsgroups", "sst2", "sst5", "textfolder", "textfile")
    with pytest.raises(DataError, match="unknown text dataset 'imdb'; choose one of: 20newsgroups"):
        load_text_dataset("imdb")


def test_20newsgroups_split_seed_draws_the_split(tmp_path):
    """The run's split_seed is the 20 Newsgroups shuffle's seed (1: the paper's split), not ignored."""
    _write_posts(tmp_path / "20_newsgroups", {"a.group": 6, "b.group": 6})
    options = {"verify": False, "val_size": 2, "test_fraction": 0.25, "num_words": None, "maxlen": 8}
    entry = DATASETS.entry("20newsgroups")
    tests = {}
    for seed in (1, 2):
        config = TrainConfig(dataset="20newsgroups", model="gpcnn", data_dir=str(tmp_path), split_seed=seed)
        got = entry.factory(config, word_vectors=False, **options)
        want = load_20newsgroups(tmp_path, seed=seed, **options)
        assert torch.equal(got.test_inputs, want.test.inputs) and torch.equal(got.val_labels, want.val.labels)
        assert want.meta["split"]["seed"] == seed
        tests[seed] = got.test_inputs
    assert not torch.equal(tests[1], tests[2])  # another seed, another split
