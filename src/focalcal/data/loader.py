"""Batches from uint8 tensors that live on the training device; augmentation and normalisation per batch."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .augment import random_crop_flip
from .sources import SampleOrder, epoch_generator, shard_range


class DeviceLoader(SampleOrder):
    """Iterate ``(images float32 [B, C, H, W] normalised, labels int64 [B])`` batches.

    The uint8 images are moved to ``device`` once. Each epoch draws its shuffling and augmentation from a
    generator seeded with ``(seed, epoch)``, so a resumed run sees exactly the batches it would have seen.
    Normalisation ``(x / 255 - mean) / std`` is one fused multiply-add per batch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        if images.dtype != torch.uint8:
            raise TypeError(f"DeviceLoader expects uint8 images, got {images.dtype}")
        super().__init__(
            images.shape[0], batch_size=batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size
        )
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.augment, self.channels_last = augment, channels_last
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -mean_t / std_t

    def normalise(self, images_u8: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(self._shift, images_u8.float(), self._scale)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def shard_range(self, rank: int, world_size: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of an evaluation shard: contiguous, sizes differing by at most one, every
        row in exactly one shard (:func:`~focalcal.data.sources.shard_range`)."""
        return shard_range(self.images.shape[0], rank, world_size)

    def epoch(self, epoch: int = 0, *, shard=None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass. With ``shuffle``, all ranks draw the same permutation and take every world_size-th
        sample from their rank on (the last ``n % world_size`` of the permutation are left out that epoch);
        augmentation draws come from a per-rank stream.

        ``shard`` (an evaluation pass under torch.distributed: an object with ``rank`` and ``world_size``):
        iterate only this rank's :meth:`shard_range` of an unshuffled loader.
        """
        g = epoch_generator(self.seed, epoch)
        n = self.images.shape[0]
        order = None
        if shard is not None and shard.world_size > 1:
            if self.shuffle:
                raise ValueError("shard= is for evaluation passes; a shuffled loader is sharded by rank already")
            start, stop = self.shard_range(shard.rank, shard.world_size)
            for s in range(start, stop, self.batch_size):
                e = min(s + self.batch_size, stop)
                yield self.normalise(self.images[s:e]), self.labels[s:e]
            return
        if self.shuffle:
            usable = n - n % self.world_size  # equal shards, so every rank takes the same number of steps
            order = torch.randperm(n, generator=g)[:usable][self.rank :: self.world_size].to(self.device)
            n = order.shape[0]
        if self.rank:
            g = torch.Generator().manual_seed((self.seed * 100_003 + epoch) * 1_000 + self.rank)
        for start in range(0, n, self.batch_size):
            if order is None:
                x, y = (
                    self.images[start : start + self.batch_size],
                    self.labels[start : start + self.batch_size],
                )
            else:
                idx = order[start : start + self.batch_size]
                x, y = self.images[idx], self.labels[idx]
            if self.augment:
                x = random_crop_flip(x, 4, generator=g)
            yield self.normalise(x), y

    __iter__ = epoch
