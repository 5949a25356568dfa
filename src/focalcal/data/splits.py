"""The paper's train/validation split, optional subsets, and per-channel normalisation statistics."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .datasets import ImageData
from .errors import DataError


@dataclass
class DataSplits:
    """Train / validation / test uint8 images ``[N, 3, H, W]``, int64 labels, and normalisation stats.

    ``mean`` and ``std`` are per-channel, on the 0..1 scale, computed from the training images actually
    used (never from test, never from another dataset).
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and (population) std of uint8 images ``[N, C, H, W]``, on the 0..1 scale."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
        raise DataError(f"channel_stats expects non-empty uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        hist = torch.bincount(images[:, c].reshape(-1), minlength=256).double()
        n = hist.sum()
        mean = (hist * values).sum() / n
        var = (hist * (values - mean) ** 2).sum() / n
        means.append(float(mean))
        stds.append(float(var.sqrt().clamp_min(1e-6)))
    return tuple(means), tuple(stds)


def _take(n: int | None, available: int, what: str) -> int:
    if n is None:
        return available
    if not 0 < n <= available:
        raise DataError(f"{what} must be in 1..{available}, got {n}")
    return n


def make_splits(
    data: ImageData,
    *,
    val_size: int | float = 0.1,
    split_seed: int = 1,
    train_size: int | None = None,
    test_size: int | None = None,
) -> DataSplits:
    """Hold out a validation split from the official train split, as the paper does (45,000 / 5,000).

    The official train split is shuffled with ``split_seed`` (independent of the training seed, so every run
    with the same seed sees the same validation images); the first ``val_size`` images become validation,
    the next ``train_size`` (default: all the rest) the training set. ``test_size`` takes a seeded random
    subset of the official test split (default: all of it).

    Args:
        val_size: an int count, or a float fraction in (0, 1) of the official train split (default 0.1);
            1.0 is refused as ambiguous.

    Raises:
        DataError: sizes out of range.
    """
    n = data.train_images.shape[0]
    if (
        isinstance(val_size, bool)
        or not isinstance(val_size, (int, float))
        or val_size == 1.0
        and isinstance(val_size, float)
    ):
        raise DataError(f"val_size must be an image count (int) or a fraction in (0, 1); got {val_size!r}")
    n_val = int(round(val_size * n)) if isinstance(val_size, float) and val_size < 1 else int(val_size)
    if not 0 < n_val < n:
        raise DataError(
            f"validation size must leave training data: got {n_val} of {n} images; "
            "pass a smaller --val-size (a count or a fraction such as 0.1)"
        )
    g = torch.Generator().manual_seed(split_seed)
    perm = torch.randperm(n, generator=g)
    val_idx = perm[:n_val]
    train_idx = perm[n_val : n_val + _take(train_size, n - n_val, "train size")]
    test_n = data.test_images.shape[0]
    test_idx = torch.randperm(test_n, generator=g)[: _take(test_size, test_n, "test size")].sort().values
    train_x = data.train_images[train_idx]
    mean, std = channel_stats(train_x)
    return DataSplits(
        train_x,
        data.train_labels[train_idx],
        data.train_images[val_idx],
        data.train_labels[val_idx],
        data.test_images[test_idx],
        data.test_labels[test_idx],
        list(data.classes),
        mean,
        std,
    )
