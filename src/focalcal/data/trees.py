"""Binary constituency trees stored flat, and batches of them for level-by-level evaluation.

A set of N binary trees is five int64 CPU tensors (:class:`Trees`): tree ``i``'s nodes are the rows
``offsets[i]:offsets[i+1]``; within a tree children come before their parent and the root is the last row;
``left`` / ``right`` hold child indices local to the tree (-1 at leaves), ``words`` the vocabulary id of each
leaf (-1 at internal nodes) and ``labels`` a class index per node (-1 where unlabelled). Every internal node has
exactly two children (a full binary tree, as the Stanford Sentiment Treebank's constituency trees).

:func:`batch_trees` renumbers a subset of trees globally and groups the nodes by height (:class:`TreeBatch`),
so a model evaluates every node of one height in every tree of the batch at once (one step per level, no
per-node work; see :class:`focalcal.models.text.TreeLSTM`).

>>> trees = Trees.from_lists([
...     ([5, 7, -1], [-1, -1, 0], [-1, -1, 1], [2, 0, 2]),  # "(2 (2 a) (0 b))": two leaves, then the root
...     ([9], [-1], [-1], [1]),  # a one-word sentence: its root is a leaf
... ])
>>> len(trees), trees.root_labels.tolist()
(2, [2, 1])
>>> batch = batch_trees(trees, targets="nodes")
>>> [level.tolist() for level in batch.levels], batch.targets.tolist(), batch.labels.tolist()
([[0, 1, 3], [2]], [0, 1, 2, 3], [2, 0, 2, 1])
>>> batch = batch_trees(trees, torch.tensor([1, 0]))  # roots (the default), in idx order
>>> batch.targets.tolist(), batch.labels.tolist(), len(batch)
([0, 3], [1, 2], 2)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["TARGETS", "TreeBatch", "Trees", "batch_trees"]

#: The node sets a :class:`TreeBatch` can return logits for (see :func:`batch_trees`).
TARGETS = ("roots", "nodes")


def _as_index_vector(value, name: str) -> Tensor:
    tensor = torch.as_tensor(value)
    if tensor.dim() != 1:
        raise InputError(f"{name} must be a 1-D integer tensor; got shape {tuple(tensor.shape)}")
    if tensor.numel() and (tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool):
        raise InputError(f"{name} must hold integers; got dtype {tensor.dtype}")
    return tensor.to(device="cpu", dtype=torch.int64)


@dataclass
class Trees:
    """A set of N full binary trees stored flat (M nodes in all); every tensor is int64 on the CPU.

    Attributes:
        words: ``[M]`` vocabulary id at leaves (>= 0), -1 at internal nodes.
        left: ``[M]`` index of the left child within its tree (local, ``0 <= left < own local index``),
            -1 at leaves.
        right: ``[M]`` index of the right child, as ``left``.
        labels: ``[M]`` class index of each node (>= 0), -1 where unlabelled.
        offsets: ``[N+1]`` tree ``i``'s nodes are the rows ``offsets[i]:offsets[i+1]``; ``offsets[0] == 0``,
            ``offsets[N] == M``; children come before their parent, the root is each tree's last row.

    Construction checks the structure (vectorised, O(M)): equal lengths, every tree non-empty, leaves carry a
    word and no children, internal nodes have two children earlier in the same tree and no word, every node
    but the last of its tree has exactly one parent and the last none (so each tree is one tree rooted at its
    last row), labels >= -1.

    Raises:
        InputError: any of the above fails (the message names the first offending tree and node).
    """

    words: Tensor
    left: Tensor
    right: Tensor
    labels: Tensor
    offsets: Tensor

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _as_index_vector(getattr(self, f.name), f"Trees.{f.name}"))
        self._validate()

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    @property
    def num_nodes(self) -> int:
        """M, the number of nodes of all trees."""
        return self.words.numel()

    @property
    def sizes(self) -> Tensor:
        """``[N]`` int64 node count of each tree."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def roots(self) -> Tensor:
        """``[N]`` int64 row of each tree's root (its last row)."""
        return self.offsets[1:] - 1

    @property
    def root_labels(self) -> Tensor:
        """``[N]`` int64 label of each tree's root (-1 where unlabelled)."""
        return self.labels[self.roots]

    def take(self, idx: Tensor | Sequence[int]) -> Trees:
        """The trees ``idx`` (``[n]`` int64 tree indices, repeats allowed), in ``idx`` order.

        Raises:
            InputError: ``idx`` is not a 1-D integer vector or holds an index outside ``[0, N)``.
        """
        idx = _as_index_vector(idx, "idx")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise InputError(
                f"tree index out of range: idx spans [{int(idx.min())}, {int(idx.max())}] but there are "
                f"{len(self)} trees; pass indices in [0, {len(self)})"
            )
        sizes = self.sizes[idx]
        offsets = torch.zeros(idx.numel() + 1, dtype=torch.int64)
        torch.cumsum(sizes, 0, out=offsets[1:])
        rows = torch.repeat_interleave(self.offsets[idx] - offsets[:-1], sizes) + torch.arange(int(offsets[-1]))
        return Trees(self.words[rows], self.left[rows], self.right[rows], self.labels[rows], offsets)

    @classmethod
    def from_lists(cls, trees: Iterable[tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[int]]]) -> Trees:
        """Trees from per-tree ``(words, left, right, labels)`` integer lists (local indices, root last).

        Raises:
            InputError: a tree's four lists differ in length, or the structure is invalid (see :class:`Trees`).
        """
        columns: tuple[list[int], list[int], list[int], list[int]] = ([], [], [], [])
        offsets = [0]
        for i, tree in enumerate(trees):
            parts = [list(part) for part in tree]
            if len(parts) != 4 or len({len(p) for p in parts}) != 1:
                raise InputError(
                    f"tree {i}: expected four equally long lists (words, left, right, labels); "
                    f"got lengths {[len(p) for p in parts]}"
                )
            for column, part in zip(columns, parts):
                column.extend(part)
            offsets.append(offsets[-1] + len(parts[0]))
        return cls(*(torch.tensor(c, dtype=torch.int64) for c in columns), torch.tensor(offsets, dtype=torch.int64))

    def _validate(self) -> None:
        m = self.words.numel()
        lengths = {f.name: getattr(self, f.name).numel() for f in fields(self) if f.name != "offsets"}
        if len(set(lengths.values())) != 1:
            raise InputError(f"Trees: words, left, right and labels must have one length; got {lengths}")
        off = self.offsets
        if off.numel() < 1 or int(off[0]) != 0 or int(off[-1]) != m:
            raise InputError(f"Trees.offsets must start at 0 and end at the node count {m}; got {off[:5].tolist()}...")
        if bool((off[1:] <= off[:-1]).any()):
            bad = int(torch.nonzero(off[1:] <= off[:-1])[0])
            raise InputError(f"Trees: tree {bad} has no nodes (offsets must increase strictly)")
        if m == 0:
            return
        tree = torch.repeat_interleave(torch.arange(len(self)), self.sizes)
        local = torch.arange(m) - off[tree]
        leaf = self.left < 0

        def fail(mask: Tensor, problem: str) -> None:
            if bool(mask.any()):
                node = int(torch.nonzero(mask)[0])
                raise InputError(f"Trees: tree {int(tree[node])}, node {int(local[node])}: {problem}")

        fail((self.left < -1) | (self.right < -1), "child index below -1")
        fail(leaf != (self.right < 0), "exactly one child is -1 (a binary tree's node has two children or none)")
        fail(leaf & (self.words < 0), "a leaf needs a vocabulary id >= 0")
        fail(~leaf & (self.words != -1), "an internal node must have word -1")
        fail(~leaf & ((self.left >= local) | (self.right >= local)), "a child must come before its parent")
        fail(self.labels < -1, "labels must be class indices >= 0, or -1 where unlabelled")
        base = off[tree]
        children = torch.cat([(self.left + base)[~leaf], (self.right + base)[~leaf]])
        parents = torch.bincount(children, minlength=m)
        is_root = torch.zeros(m, dtype=torch.bool)
        is_root[self.roots] = True
        fail(parents > 1, "has more than one parent")
        fail(~is_root & (parents == 0), "has no parent but is not its tree's last row (the root must be last)")
        fail(is_root & (parents > 0), "the last row (root) is a child of another node")


@dataclass
class TreeBatch:
    """One batch of trees, nodes renumbered globally (0..M_b-1, tree by tree); tensors int64.

    Attributes:
        words: ``[M_b]`` vocabulary id at leaves, -1 at internal nodes.
        left, right: ``[M_b]`` global index of each node's children, -1 at leaves.
        levels: ``levels[h]`` = ``[n_h]`` the nodes of height ``h`` (``levels[0]``: every leaf; an internal node's
            height is one more than its higher child's), ascending; every node is in exactly one level.
        targets: ``[T]`` the nodes whose logits a model returns: every labelled node, ascending (``"nodes"``), or
            each tree's root in batch order (``"roots"``).
        labels: ``[T]`` the targets' labels (-1 for an unlabelled root).
        roots: ``[N_b]`` global index of each tree's root, in batch order.
        target_kind: ``"roots"`` or ``"nodes"``, which of the two ``targets`` are.
    """

    words: Tensor
    left: Tensor
    right: Tensor
    levels: list[Tensor]
    targets: Tensor
    labels: Tensor
    roots: Tensor
    target_kind: str = "roots"

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> TreeBatch:
        """This batch with every tensor on ``device``."""

        def move(t: Tensor) -> Tensor:
            return t.to(device, non_blocking=non_blocking)

        return TreeBatch(
            move(self.words),
            move(self.left),
            move(self.right),
            [move(level) for level in self.levels],
            move(self.targets),
            move(self.labels),
            move(self.roots),
            self.target_kind,
        )

    def __len__(self) -> int:
        """Number of trees (the batch's sample count)."""
        return self.roots.numel()

    @property
    def num_nodes(self) -> int:
        """M_b, the number of nodes in the batch."""
        return self.words.numel()


def node_heights(left: Tensor, right: Tensor) -> Tensor:
    """``[M]`` int64 height of each node (0 at leaves) from global child indices (``-1`` at leaves).

    Vectorised: one pass per tree level (the loop runs max-height times over all nodes at once).

    Raises:
        InputError: the child links contain a cycle (some height never resolves).
    """
    m = left.numel()
    height = torch.full((m,), -1, dtype=torch.int64)
    leaf = left < 0
    height[leaf] = 0
    pending = torch.nonzero(~leaf).flatten()
    h = 0
    while pending.numel():
        h += 1
        hl, hr = height[left[pending]], height[right[pending]]
        ready = (hl >= 0) & (hr >= 0)
        if not bool(ready.any()):
            raise InputError("tree child links contain a cycle; children must come before their parents")
        height[pending[ready]] = torch.maximum(hl[ready], hr[ready]) + 1
        pending = pending[~ready]
    return height


def batch_trees(trees: Trees, idx: Tensor | Sequence[int] | None = None, *, targets: str = "roots") -> TreeBatch:
    """Renumber the trees ``idx`` (all trees when ``None``) globally and group their nodes by height.

    Args:
        trees: the tree set.
        idx: ``[n]`` tree indices, in batch order (repeats allowed).
        targets: ``"nodes"``: every labelled node (training on the treebank's phrase labels); ``"roots"``: each
            tree's root in batch order (sentence-level prediction and evaluation).

    Returns:
        A :class:`TreeBatch` on the CPU (move it with ``.to(device)``).

    Raises:
        InputError: ``targets`` is not one of :data:`TARGETS`, ``idx`` is empty or out of range, or
            ``targets="nodes"`` but no node of the batch is labelled.
    """
    if targets not in TARGETS:
        raise InputError(f"targets must be one of {', '.join(TARGETS)}; got {targets!r}")
    subset = trees if idx is None else trees.take(idx)
    if len(subset) == 0:
        raise InputError("cannot batch zero trees; pass at least one tree index")
    base = torch.repeat_interleave(subset.offsets[:-1], subset.sizes)
    leaf = subset.left < 0
    left = torch.where(leaf, subset.left, subset.left + base)
    right = torch.where(leaf, subset.right, subset.right + base)
    height = node_heights(left, right)
    order = torch.argsort(height, stable=True)
    counts = torch.bincount(height).tolist()
    levels = list(torch.split(order, counts))
    roots = subset.roots
    if targets == "roots":
        target_nodes = roots
    else:
        target_nodes = torch.nonzero(subset.labels >= 0).flatten()
        if target_nodes.numel() == 0:
            raise InputError('targets="nodes" but no node of these trees is labelled (all labels are -1)')
    return TreeBatch(
        subset.words, left, right, levels, target_nodes, subset.labels[target_nodes], roots, target_kind=targets
    )
