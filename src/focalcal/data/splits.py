"""The data a run trains and evaluates on (:class:`DataSplits`, any modality), the paper's train/validation
split of image data sets, optional subsets, and per-channel normalisation statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .datasets import ImageData
from .errors import DataError
from .modality import ImageModality, Modality
from .sources import BatchSource

SPLITS = ("train", "val", "test")
#: the splits whose numbers evaluation reports and whose fingerprints a checkpoint keeps
EVALUATED = ("val", "test")


@dataclass
class DataSplits:
    """Train / validation / test inputs and int64 labels ``[N]``, the evaluation ``classes``, and the
    :class:`~focalcal.data.modality.Modality` that says how to batch the inputs, what the model needs from the
    data and what checkpoints and reports keep.

    Inputs per modality: uint8 images ``[N, 3, H, W]`` (``ImageModality``: ``mean`` and ``std`` per channel, on
    the 0..1 scale, computed from the training images actually used), int64 token ids ``[N, L]``, or
    :class:`~focalcal.data.trees.Trees`. ``labels`` index ``classes`` (what evaluation scores).
    ``head_classes``: the width of the model's training head when it differs from ``len(classes)`` (binary
    SST trains on 3 node classes), else ``None``. ``info``: JSON-able facts every report repeats (where the
    data came from, how it was split).

    ``train_images`` / ``val_images`` / ``test_images``, ``mean`` and ``std`` remain as aliases for image data.
    """

    train_inputs: Any
    train_labels: torch.Tensor
    val_inputs: Any
    val_labels: torch.Tensor
    test_inputs: Any
    test_labels: torch.Tensor
    classes: list[str]
    modality: Modality
    head_classes: int | None = None
    info: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        """Evaluation classes: the width of the logits evaluation scores."""
        return len(self.classes)

    @property
    def training_classes(self) -> int:
        """The width of the model's training head (``head_classes``, else ``num_classes``)."""
        return self.head_classes or self.num_classes

    def inputs(self, split: str) -> Any:
        """The inputs of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        if split not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
        return getattr(self, f"{split}_inputs")

    def labels(self, split: str) -> torch.Tensor:
        """The int64 labels ``[N]`` of ``split``."""
        if split not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
        return getattr(self, f"{split}_labels")

    def rows(self, split: str) -> int:
        """Samples in ``split``."""
        return self.modality.rows(self.inputs(split))

    def fingerprint(self, splits: tuple[str, ...] = EVALUATED) -> dict[str, str]:
        """``{split: hash}``: a short hash of each split's inputs and labels (:meth:`Modality.fingerprint`; by
        default the splits evaluation scores, validation and test). A checkpoint stores it so that evaluation can
        refuse other data with the same classes.

        Raises:
            DataError: an unknown split name.
        """
        return {split: self.modality.fingerprint(self.inputs(split), self.labels(split)) for split in splits}

    def source(self, split: str, *, rows: torch.Tensor | None = None, **kw: Any) -> BatchSource:
        """A batch source over ``split`` (or its samples ``rows``, int64 ``[n]``); keyword arguments as
        :meth:`Modality.source`."""
        inputs, labels = self.inputs(split), self.labels(split)
        if rows is not None:
            inputs, labels = self.modality.take(inputs, rows), labels[rows]
        return self.modality.source(inputs, labels, **kw)

    # -- image aliases (the public names before other modalities) --------------------------------------
    @property
    def train_images(self) -> torch.Tensor:
        return self.train_inputs

    @property
    def val_images(self) -> torch.Tensor:
        return self.val_inputs

    @property
    def test_images(self) -> torch.Tensor:
        return self.test_inputs

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the training images (image data only)."""
        return self._image_modality().mean

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel std of the training images (image data only)."""
        return self._image_modality().std

    def _image_modality(self) -> ImageModality:
        if not isinstance(self.modality, ImageModality):
            raise AttributeError(f"{self.modality.name} data has no per-channel mean / std")
        return self.modality


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
        ImageModality(mean, std),
        info={"split": f"validation: {n_val} of the official train split (split seed {split_seed})"},
    )
