import random

import pytest
import torch

from focalcal.data.trees import Trees, batch_trees
from focalcal.errors import InputError


def random_tree(rng, n_leaves, shape="random", order="merge", vocab=50, n_classes=3):
    """(words, left, right, labels) lists of a random full binary tree with ``n_leaves`` leaves.

    shape: "random" merges random neighbours, "left"/"right" build a chain of depth n_leaves - 1;
    order: "merge" lists the leaves first then internal nodes in merge order, "post" renumbers in post-order.
    Some labels are -1 (unlabelled)."""
    nodes = [(rng.randrange(vocab), -1, -1) for _ in range(n_leaves)]
    frontier = list(range(n_leaves))
    while len(frontier) > 1:
        j = {"random": rng.randrange(len(frontier) - 1), "left": 0, "right": len(frontier) - 2}[shape]
        nodes.append((-1, frontier[j], frontier[j + 1]))
        frontier[j : j + 2] = [len(nodes) - 1]
    if order == "post":
        new_order = []

        def visit(k):
            if nodes[k][1] >= 0:
                visit(nodes[k][1])
                visit(nodes[k][2])
            new_order.append(k)

        visit(len(nodes) - 1)
        pos = {old: new for new, old in enumerate(new_order)}
        nodes = [(w, pos.get(l, -1), pos.get(r, -1)) for w, l, r in (nodes[k] for k in new_order)]
    labels = [rng.randrange(-1, n_classes) for _ in nodes]
    words, left, right = (list(col) for col in zip(*nodes))
    return words, left, right, labels


def random_trees(seed, n=12):
    rng = random.Random(seed)
    out = [random_tree(rng, 1), random_tree(rng, 7, "left"), random_tree(rng, 6, "right", "post")]
    out += [random_tree(rng, rng.randrange(1, 20), order=rng.choice(["merge", "post"])) for _ in range(n - 3)]
    return out


def height(tree, k):
    words, left, right, _ = tree
    return 0 if left[k] < 0 else 1 + max(height(tree, left[k]), height(tree, right[k]))


def test_hand_example_batches_two_trees():
    # "(2 (2 (1 a) (0 b)) (2 c))" in post-order, then a one-word sentence
    t0 = ([3, 4, -1, 5, -1], [-1, -1, 0, -1, 2], [-1, -1, 1, -1, 3], [1, 0, 2, 2, 2])
    t1 = ([9], [-1], [-1], [-1])
    trees = Trees.from_lists([t0, t1])
    assert len(trees) == 2 and trees.offsets.tolist() == [0, 5, 6]
    assert trees.root_labels.tolist() == [2, -1]
    batch = batch_trees(trees, torch.tensor([1, 0]), targets="nodes")
    # tree 1 comes first: its leaf is global node 0, tree 0's nodes are 1..5
    assert batch.words.tolist() == [9, 3, 4, -1, 5, -1]
    assert batch.left.tolist() == [-1, -1, -1, 1, -1, 3] and batch.right.tolist() == [-1, -1, -1, 2, -1, 4]
    assert [lv.tolist() for lv in batch.levels] == [[0, 1, 2, 4], [3], [5]]
    assert batch.targets.tolist() == [1, 2, 3, 4, 5] and batch.labels.tolist() == [1, 0, 2, 2, 2]
    assert len(batch) == 2 and batch.roots.tolist() == [0, 5] and batch.target_kind == "nodes"
    roots = batch_trees(trees, [1, 0])
    assert roots.targets.tolist() == [0, 5] and roots.labels.tolist() == [-1, 2] and roots.target_kind == "roots"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_levels_are_heights_and_indices_are_global(seed):
    lists = random_trees(seed)
    trees = Trees.from_lists(lists)
    idx = torch.randperm(len(lists), generator=torch.Generator().manual_seed(seed))[:9]
    batch = batch_trees(trees, idx, targets="nodes")
    chosen = [lists[i] for i in idx.tolist()]
    # expected global layout, built from the lists independently
    words, left, right, labels, heights, roots = [], [], [], [], [], []
    for tree in chosen:
        base = len(words)
        words += tree[0]
        left += [-1 if v < 0 else v + base for v in tree[1]]
        right += [-1 if v < 0 else v + base for v in tree[2]]
        labels += tree[3]
        heights += [height(tree, k) for k in range(len(tree[0]))]
        roots.append(len(words) - 1)
    assert batch.words.tolist() == words and batch.left.tolist() == left and batch.right.tolist() == right
    assert len(batch.levels) == max(heights) + 1
    for h, level in enumerate(batch.levels):
        assert level.tolist() == [k for k, hk in enumerate(heights) if hk == h]
    assert batch.targets.tolist() == [k for k, y in enumerate(labels) if y >= 0]
    assert batch.labels.tolist() == [y for y in labels if y >= 0]
    assert batch.roots.tolist() == roots and len(batch) == len(chosen)
    root_batch = batch_trees(trees, idx)
    assert root_batch.targets.tolist() == roots and root_batch.labels.tolist() == [labels[r] for r in roots]
    assert all(t.dtype == torch.int64 for t in [batch.words, batch.left, batch.targets, *batch.levels])


def test_take_keeps_idx_order_and_repeats():
    lists = random_trees(5)
    trees = Trees.from_lists(lists)
    sub = trees.take(torch.tensor([4, 0, 4, 11]))
    expected = Trees.from_lists([lists[4], lists[0], lists[4], lists[11]])
    for name in ("words", "left", "right", "labels", "offsets"):
        assert torch.equal(getattr(sub, name), getattr(expected, name))
    assert sub.root_labels.tolist() == [lists[i][3][-1] for i in (4, 0, 4, 11)]
    with pytest.raises(InputError, match="out of range"):
        trees.take([12])


def test_batch_moves_to_a_device():
    batch = batch_trees(Trees.from_lists(random_trees(3)), targets="nodes").to("meta")
    tensors = [batch.words, batch.left, batch.right, batch.targets, batch.labels, batch.roots, *batch.levels]
    assert all(t.device.type == "meta" for t in tensors) and batch.target_kind == "nodes"


@pytest.mark.parametrize(
    "tree,message",
    [
        (([1, 2, -1], [-1, -1, 2], [-1, -1, 1], [0, 0, 0]), "before its parent"),
        (([1, 2, -1, -1], [-1, -1, 0, 0], [-1, -1, 1, 1], [0] * 4), "more than one parent"),
        (([1, -1, 2], [-1, 0, -1], [-1, 2, -1], [0] * 3), "before its parent"),
        (([1, 2, -1, 3], [-1, -1, 0, -1], [-1, -1, 1, -1], [0] * 4), "root must be last"),
        (([1, -1, -1], [-1, 0, -1], [-1, -1, -1], [0] * 3), "two children or none"),
        (([-1], [-1], [-1], [0]), "vocabulary id"),
        (([1, 2, 7], [-1, -1, 0], [-1, -1, 1], [0] * 3), "word -1"),
        (([1], [-1], [-1], [-2]), "labels"),
        (([1, 2], [-1], [-1], [0]), "four equally long"),
    ],
)
def test_malformed_trees_are_one_clear_error(tree, message):
    with pytest.raises(InputError, match=message):
        Trees.from_lists([([4], [-1], [-1], [1]), tree])


def test_empty_tree_and_bad_targets_are_errors():
    trees = Trees.from_lists([([4], [-1], [-1], [-1])])
    with pytest.raises(InputError, match="no nodes"):
        Trees(trees.words, trees.left, trees.right, trees.labels, torch.tensor([0, 0, 1]))
    with pytest.raises(InputError, match="targets must be one of"):
        batch_trees(trees, targets="leaves")
    with pytest.raises(InputError, match="no node of these trees is labelled"):
        batch_trees(trees, targets="nodes")
    with pytest.raises(InputError, match="zero trees"):
        batch_trees(trees, [])
