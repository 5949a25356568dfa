"""Batch sources: images, token sequences and trees through one protocol, ordered alike for exact resume."""

from types import SimpleNamespace

import pytest
import torch

from focalcal.data import BatchSource, DataSplits, DeviceLoader, TokenLoader, TokenModality, TreeLoader
from focalcal.data.sources import epoch_order, front_padding
from focalcal.data.trees import Trees
from focalcal.models import build_model

L = 1000


def _documents(n: int, lengths: list[int], vocab: int = 60, seed: int = 0) -> torch.Tensor:
    """``[n, L]`` ids front-padded with 0: row i holds ``lengths[i % len(lengths)]`` tokens in 1..vocab-1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, L, dtype=torch.int64)
    for i in range(n):
        k = lengths[i % len(lengths)]
        x[i, L - k :] = torch.randint(1, vocab, (k,), generator=g)
    return x


def _random_trees(n: int, seed: int = 0, vocab: int = 20) -> Trees:
    """Random full binary trees (1-5 leaves), every node labelled in {0, 1, 2}, children before parents."""
    g = torch.Generator().manual_seed(seed)

    def draw(hi: int) -> int:
        return int(torch.randint(0, hi, (1,), generator=g))

    lists = []
    for _ in range(n):
        words, left, right, labels, open_ = [], [], [], [], []
        for _ in range(1 + draw(5)):
            words.append(draw(vocab))
            left.append(-1)
            right.append(-1)
            labels.append(draw(3))
            open_.append(len(words) - 1)
        while len(open_) > 1:
            a, b = open_.pop(0), open_.pop(0)
            words.append(-1)
            left.append(a)
            right.append(b)
            labels.append(draw(3))
            open_.append(len(words) - 1)
        lists.append((words, left, right, labels))
    return Trees.from_lists(lists)


def test_trimmed_token_batches_give_the_full_length_logits():
    """Each batch keeps its longest document plus the model's receptive field: the logits of the trimmed batches
    equal those of the full 1,000-token ones (the max over time sees the same windows)."""
    torch.manual_seed(0)
    model = build_model("gpcnn", 4, vocab_size=60, embedding_dim=16, freeze=False).eval()
    with torch.no_grad():  # a non-zero padding row too: trimming must not rely on pad embeddings being 0
        model.embedding.weight[0].normal_()
    lengths = [3, 40, 17, 120, 5, 64, 9, 250]
    tokens = _documents(24, lengths)
    tokens[20, :] = torch.arange(L) % 59 + 1  # a document with no padding at all
    labels = torch.arange(24) % 4
    loader = TokenLoader(tokens, labels, batch_size=8, trim_margin=model.receptive_field)
    widths, trimmed = [], []
    with torch.no_grad():
        for x, _ in loader.epoch(0):
            widths.append(x.shape[1])
            trimmed.append(model(x))
        full = model(tokens)
    # batch 1 and 2 hold no document longer than 250 tokens: 250 + 21 columns; batch 3 has the unpadded one
    assert widths == [250 + 21, 250 + 21, L]
    torch.testing.assert_close(torch.cat(trimmed), full, rtol=0, atol=1e-5)
    # one column fewer than the margin is not exact in general: the all-padding window is what keeps it so
    short = TokenLoader(tokens[:8], labels[:8], batch_size=8, trim_margin=model.receptive_field - 1)
    with torch.no_grad():
        x, _ = next(iter(short.epoch(0)))
        assert x.shape[1] == 250 + 20
        assert not torch.allclose(model(x), full[:8], atol=1e-5)


def test_front_padding_counts_leading_pad_ids():
    x = torch.tensor([[0, 0, 5, 0, 7], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]])
    assert front_padding(x).tolist() == [2, 0, 5]


def test_token_and_tree_sources_shuffle_exactly_as_the_image_loader():
    """The same (seed, epoch) gives every source the same order, so a resumed text run sees the batches an
    uninterrupted one would; each rank's share is the image loader's share."""
    n = 23
    labels = torch.arange(n)
    images = torch.zeros(n, 3, 2, 2, dtype=torch.uint8)
    tokens = _documents(n, [4, 30, 7])
    trees = _random_trees(n)
    for rank, world in ((0, 1), (1, 3), (2, 3)):
        common = dict(batch_size=4, shuffle=True, seed=7, rank=rank, world_size=world)
        image_order = torch.cat(
            [y for _, y in DeviceLoader(images, labels, mean=(0.0,) * 3, std=(1.0,) * 3, **common).epoch(5)]
        )
        token_order = torch.cat([y for _, y in TokenLoader(tokens, labels, **common).epoch(5)])
        tree_order = torch.cat([y for _, y in TreeLoader(trees, labels=labels, **common).epoch(5)])
        assert torch.equal(token_order, image_order) and torch.equal(tree_order, image_order)
        assert torch.equal(image_order, epoch_order(n, 7, 5, rank, world))

    # another epoch is another permutation; the ranks of one epoch share out one permutation
    def share(rank: int) -> list[int]:
        source = TokenLoader(tokens, labels, batch_size=4, shuffle=True, seed=7, rank=rank, world_size=3)
        return torch.cat([y for _, y in source.epoch(5)]).tolist()

    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(7 * 100_003 + 5))
    assert sorted(share(0) + share(1) + share(2)) == sorted(permutation[:21].tolist())  # 23 - 23 % 3 samples
    assert not torch.equal(epoch_order(n, 7, 6), epoch_order(n, 7, 5))


def test_evaluation_shards_cover_every_sample_once_in_order():
    n = 11
    tokens, labels = _documents(n, [3, 9]), torch.arange(n)
    trees = _random_trees(n)
    for make in (
        lambda: TokenLoader(tokens, labels, batch_size=3),
        lambda: TreeLoader(trees, batch_size=3, labels=labels),
    ):
        got = [
            torch.cat([y for _, y in make().epoch(0, shard=SimpleNamespace(rank=r, world_size=4))]) for r in range(4)
        ]
        assert torch.equal(torch.cat(got), labels)
        assert [len(g) for g in got] == [3, 3, 3, 2]


def test_tree_sources_train_on_nodes_and_evaluate_roots():
    trees = _random_trees(9, seed=3)
    sentence = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1])  # evaluation labels, not the root's node label
    train = TreeLoader(trees, batch_size=4, targets="nodes", shuffle=True, seed=1)
    seen = []
    for batch, y in train.epoch(0):
        # every labelled node of the batch's trees, in order, with its node label
        assert batch.target_kind == "nodes" and torch.equal(y, batch.labels) and y.shape[0] == batch.targets.shape[0]
        seen.append(len(batch))
    order = epoch_order(9, 1, 0)
    nodes = torch.cat([trees.take(order[i : i + 4]).labels for i in range(0, 9, 4)])
    assert torch.equal(torch.cat([y for _, y in train.epoch(0)]), nodes)
    assert seen == [4, 4, 1] and train.num_samples == 9 and len(train) == 3
    evaluation = TreeLoader(trees, batch_size=4, labels=sentence)
    got = list(evaluation.epoch(0))
    assert all(b.target_kind == "roots" and y.shape[0] == len(b) for b, y in got)
    assert torch.equal(torch.cat([y for _, y in got]), sentence)
    assert isinstance(evaluation, BatchSource) and isinstance(train, BatchSource)


def test_data_splits_make_sources_of_a_subset_for_any_modality():
    tokens = _documents(10, [5, 50])
    labels = torch.arange(10) % 2
    mod = TokenModality(vocab_size=60, embedding_dim=4, embeddings=torch.zeros(60, 4))
    data = DataSplits(tokens, labels, tokens[:4], labels[:4], tokens[:6], labels[:6], ["a", "b"], mod)
    model = build_model("gpcnn", 2, vocab_size=60, embedding_dim=4)
    src = data.source("train", rows=torch.tensor([7, 2]), batch_size=8, model=model)
    (x, y), *rest = list(src.epoch(0))
    assert not rest and torch.equal(y, labels[[7, 2]]) and x.shape == (2, 50 + model.receptive_field)
    assert data.rows("test") == 6 and data.training_classes == 2
    with pytest.raises(AttributeError, match="no per-channel mean"):
        _ = data.mean
