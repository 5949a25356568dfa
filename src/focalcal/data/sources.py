"""Batch sources: the one notion of "where the trainer's and evaluation's batches come from".

A batch source is any object with

- ``epoch(epoch=0, *, shard=None) -> Iterator[(inputs, labels)]``: one pass; ``labels`` are int64 ``[T]`` on
  ``device`` (one per target the model returns logits for), ``inputs`` whatever the model takes (float images
  ``[B, C, H, W]``, int64 token ids ``[B, L]``, a :class:`~focalcal.data.trees.TreeBatch`); ``len(inputs)`` is
  the batch's sample count;
- ``len(source)``: batches per epoch; ``num_samples``: samples this rank sees per epoch;
- ``labels``: int64 ``[N]``, one per sample (what evaluation scores); ``device``.

A shuffled (training) source draws its order from a generator seeded with ``(seed, epoch)`` and, under
torch.distributed, every rank takes every ``world_size``-th sample of one shared permutation
(:func:`epoch_order`), so a resumed run sees exactly the batches an uninterrupted one would. An unshuffled
(evaluation) source iterates its samples in order; ``shard=`` (an object with ``rank`` and ``world_size``)
restricts it to a contiguous :func:`shard_range`. :class:`~focalcal.data.loader.DeviceLoader` (images) is one;
:class:`TokenLoader` (token sequences) and :class:`TreeLoader` (trees) are the others. All three build on
:class:`SampleOrder` (batch count, samples per rank; the two here take their batches' rows from it too).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch

from .errors import DataError
from .trees import TARGETS, Trees, batch_trees

__all__ = ["BatchSource", "SampleOrder", "TokenLoader", "TreeLoader", "epoch_order", "front_padding", "shard_range"]


@runtime_checkable
class BatchSource(Protocol):
    """What the engine asks for batches (see the module docstring)."""

    device: torch.device
    labels: torch.Tensor

    def __len__(self) -> int: ...

    @property
    def num_samples(self) -> int: ...

    def epoch(self, epoch: int = 0, *, shard: Any = None) -> Iterator[tuple[Any, torch.Tensor]]: ...


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of one epoch's order (the same seeding as :class:`~focalcal.data.DeviceLoader`)."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def epoch_order(n: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """This rank's int64 CPU sample order of one shuffled epoch: a permutation of ``n`` seeded with ``(seed,
    epoch)``, cut to a multiple of ``world_size`` (equal shards; the last ``n % world_size`` sit out that
    epoch), every ``world_size``-th entry from ``rank`` on. Equal to :class:`~focalcal.data.DeviceLoader`'s."""
    usable = n - n % world_size
    return torch.randperm(n, generator=epoch_generator(seed, epoch))[:usable][rank::world_size]


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of an evaluation shard: contiguous, sizes differing by at most one, every row in
    exactly one shard."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class SampleOrder:
    """What every batch source shares: ``n`` samples in batches of ``batch_size``, in order (evaluation) or, with
    ``shuffle``, this rank's share of each epoch's :func:`epoch_order` (training); ``len()`` and ``num_samples``
    as :class:`BatchSource`.

    Raises:
        ValueError: ``batch_size < 1``, or ``rank`` not in ``[0, world_size)``.
    """

    def __init__(self, n: int, *, batch_size: int, shuffle: bool, seed: int, rank: int, world_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got {rank} of {world_size}")
        self._n = int(n)
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, seed
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return (self.num_samples + self.batch_size - 1) // self.batch_size

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (all of them in a single process)."""
        return self._n // self.world_size if self.shuffle else self._n

    def batch_rows(self, epoch: int = 0, *, shard: Any = None) -> Iterator[torch.Tensor]:
        """The int64 CPU row indices of each batch of one pass: this rank's share of a shuffled epoch, the
        contiguous :func:`shard_range` of ``shard`` (an evaluation pass; an object with ``rank`` and
        ``world_size``), or all rows in order.

        Raises:
            ValueError: ``shard`` of more than one rank given to a shuffled source.
        """
        if shard is not None and shard.world_size > 1:
            if self.shuffle:
                raise ValueError("shard= is for evaluation passes; a shuffled source is sharded by rank already")
            start, stop = shard_range(self._n, shard.rank, shard.world_size)
            rows = torch.arange(start, stop)
        elif self.shuffle:
            rows = epoch_order(self._n, self.seed, epoch, self.rank, self.world_size)
        else:
            rows = torch.arange(self._n)
        yield from torch.split(rows, self.batch_size)


def front_padding(tokens: torch.Tensor, pad: int = 0) -> torch.Tensor:
    """``[N]`` int64: how many leading ``pad`` ids each row of ``tokens [N, L]`` has (``L`` for an empty row)."""
    if tokens.ndim != 2:
        raise DataError(f"token ids must be [N, L]; got shape {tuple(tokens.shape)}")
    real = tokens != pad
    first = real.to(torch.int8).argmax(1)  # first non-pad position (0 for an all-pad row: fixed below)
    return torch.where(real.any(1), first, torch.full_like(first, tokens.shape[1])).long()


class TokenLoader(SampleOrder):
    """Batches ``(token ids int64 [B, L_b], labels int64 [B])`` of front-padded token sequences.

    Args:
        tokens: int64 ``[N, L]`` token ids, front-padded with ``pad`` (0) to the common length ``L``.
        labels: int64 ``[N]``.
        batch_size: documents per batch.
        device: where the ids live (moved there once).
        shuffle, seed, rank, world_size: a training source, ordered as :func:`epoch_order`.
        trim_margin: ``None``: every batch keeps all ``L`` columns. An int ``m``: each batch keeps its last
            ``min(L, longest + m)`` columns (``longest``: the longest document of the batch), rounded up to
            a multiple of ``trim_multiple``, i.e. only leading padding the model provably ignores is dropped
            (the model's exact trimming margin; see :mod:`focalcal.models.text`). The logits are then the
            full-length ones up to float rounding.
        trim_multiple: the kept length is a multiple of this (pooling strides the alignment depends on).
        pad: the padding id.

    Raises:
        DataError: ``tokens`` is not an integer ``[N, L]`` tensor, or ``labels`` does not have ``N`` rows.
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        trim_margin: int | None = None,
        trim_multiple: int = 1,
        pad: int = 0,
    ):
        if tokens.ndim != 2 or tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise DataError(f"TokenLoader expects integer token ids [N, L]; got {tokens.dtype} {tuple(tokens.shape)}")
        if labels.shape != (tokens.shape[0],):
            raise DataError(f"labels must be [N] = [{tokens.shape[0]}]; got {tuple(labels.shape)}")
        super().__init__(
            tokens.shape[0], batch_size=batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size
        )
        if trim_margin is not None and trim_margin < 0:
            raise ValueError(f"trim_margin must be >= 0 or None, got {trim_margin}")
        self.device = torch.device(device)
        self.tokens = tokens.long().to(self.device)
        self.labels = labels.long().to(self.device)
        self.lengths = tokens.shape[1] - front_padding(tokens.cpu(), pad)  # CPU: per-batch widths cost no sync
        self.trim_margin, self.trim_multiple = trim_margin, max(1, int(trim_multiple))

    def width(self, rows: torch.Tensor) -> int:
        """Columns kept for the batch of ``rows`` (CPU indices); see ``trim_margin``."""
        full = self.tokens.shape[1]
        if self.trim_margin is None or rows.numel() == 0:
            return full
        keep = int(self.lengths[rows].max()) + self.trim_margin
        keep = -(-keep // self.trim_multiple) * self.trim_multiple
        return min(full, keep)

    def epoch(self, epoch: int = 0, *, shard: Any = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass (see :class:`BatchSource`)."""
        contiguous = not self.shuffle
        for rows in self.batch_rows(epoch, shard=shard):
            w = self.width(rows)
            if contiguous:
                s, e = int(rows[0]), int(rows[-1]) + 1
                yield self.tokens[s:e, -w:], self.labels[s:e]
            else:
                idx = rows.to(self.device)
                yield self.tokens[idx, -w:], self.labels[idx]

    __iter__ = epoch


class TreeLoader(SampleOrder):
    """Batches ``(TreeBatch on device, labels int64 [T])`` of constituency trees.

    Args:
        trees: the split's :class:`~focalcal.data.trees.Trees`.
        batch_size: trees per batch.
        device: where each batch is moved.
        targets: ``"nodes"`` (training: every labelled node, labels ``[T]`` the node labels) or ``"roots"``
            (evaluation: one root per tree, labels the sentence labels).
        labels: the per-tree labels ``[N]`` (what evaluation scores; default: the root labels). A task whose
            root classes differ from the node labels (binary SST) passes them; the root targets of each batch
            are then labelled from it.
        shuffle, seed, rank, world_size: a training source, ordered as :func:`epoch_order`.

    Raises:
        DataError: ``targets`` unknown, or ``labels`` does not have one row per tree.
    """

    def __init__(
        self,
        trees: Trees,
        *,
        batch_size: int,
        device: torch.device | str = "cpu",
        targets: str = "roots",
        labels: torch.Tensor | None = None,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if targets not in TARGETS:
            raise DataError(f"targets must be one of {', '.join(TARGETS)}; got {targets!r}")
        super().__init__(
            len(trees), batch_size=batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size
        )
        self.trees = trees
        self.device = torch.device(device)
        labels = trees.root_labels if labels is None else labels.long().cpu()
        if labels.shape != (len(trees),):
            raise DataError(f"labels must be [N] = [{len(trees)}] (one per tree); got {tuple(labels.shape)}")
        self._labels_cpu = labels
        self.labels = labels.to(self.device)
        self.targets = targets

    def epoch(self, epoch: int = 0, *, shard: Any = None) -> Iterator[tuple[Any, torch.Tensor]]:
        """One pass (see :class:`BatchSource`)."""
        for rows in self.batch_rows(epoch, shard=shard):
            batch = batch_trees(self.trees, rows, targets=self.targets)
            labels = batch.labels if self.targets == "nodes" else self._labels_cpu[rows]
            yield batch.to(self.device), labels.to(self.device)

    __iter__ = epoch
