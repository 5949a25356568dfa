"""Datasets as whole uint8 tensors: CIFAR-10/100 (image folders or torchvision) and users' image folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError
from .folder import decode_split

DATA_ENV = "FOCALCAL_DATA"
CACHE_ENV = "FOCALCAL_CACHE"

# name -> (torchvision class name, torchvision's folder name, number of classes)
_TORCHVISION = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", 10),
    "cifar100": ("CIFAR100", "cifar-100-python", 100),
}
DATASETS = ("cifar10", "cifar100", "imagefolder")


@dataclass
class ImageData:
    """A dataset's official train and test splits as uint8 tensors ``[N, 3, H, W]`` and int64 labels."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data root: the explicit argument, else ``$FOCALCAL_DATA``, else ``./data``."""
    return Path(data_dir or os.environ.get(DATA_ENV) or "data").expanduser()


def default_cache_dir() -> Path:
    """Where decoded tensors are cached: ``$FOCALCAL_CACHE``, else ``~/.cache/focalcal``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "focalcal").expanduser()


def _folder_root(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    return None


def _from_folders(name: str, folder: Path, image_size: int | None, cache_dir: Path | None) -> ImageData:
    cache = None if cache_dir is None else Path(cache_dir) / name / _safe(folder)
    train_x, train_y, classes = decode_split(folder / "train", image_size=image_size, cache_dir=cache)
    test_x, test_y, test_classes = decode_split(folder / "test", image_size=image_size, cache_dir=cache)
    if test_classes != classes:
        raise DataError(
            f"{folder}: train and test have different class folders "
            f"({len(classes)} vs {len(test_classes)}); they must match"
        )
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(
            f"{folder}: train images are {tuple(train_x.shape[1:])}, test {tuple(test_x.shape[1:])}"
        )
    return ImageData(name, train_x, train_y, test_x, test_y, classes)


def _safe(path: Path) -> str:
    return str(path.resolve()).strip("/").replace("/", "_")[-80:]


def _from_torchvision(name: str, root: Path, download: bool) -> ImageData:
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION[name][0])
    splits = [cls(str(root), train=train, download=download) for train in (True, False)]

    def to_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return x, torch.as_tensor(ds.targets, dtype=torch.int64)

    (train_x, train_y), (test_x, test_y) = map(to_tensors, splits)
    return ImageData(name, train_x, train_y, test_x, test_y, list(splits[0].classes))


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    image_size: int | None = None,
    cache_dir: str | os.PathLike | None | bool = True,
) -> ImageData:
    """Load a dataset's official train and test splits, decoded once to uint8 tensors.

    Where the data is looked for, under the data root (:func:`resolve_data_dir`):

    - ``cifar10`` / ``cifar100``: the image-folder layout ``<root>/<name>/{train,test}/<class>/*.png`` (or
      ``<root>/{train,test}/...``), else torchvision's files (``<root>/cifar-10-batches-py``), else, with
      ``download=True``, torchvision downloads them into ``<root>``.
    - ``imagefolder``: a user's data, ``<root>/{train,test}/<class>/<image>``; any size with ``image_size``.

    Args:
        name: one of ``cifar10``, ``cifar100``, ``imagefolder``.
        data_dir: the data root; ``None`` means ``$FOCALCAL_DATA`` or ``./data``.
        download: let torchvision download CIFAR when it is not on disk.
        image_size: resize image-folder images to this square size (required when sizes differ).
        cache_dir: cache for decoded image folders; ``True`` is :func:`default_cache_dir`, ``None``/``False``
            disables it.

    Raises:
        DataError: unknown name (lists valid ones) or data not found (names both ways to provide it).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    root = resolve_data_dir(data_dir)
    cache = default_cache_dir() if cache_dir is True else (Path(cache_dir) if cache_dir else None)
    folder = _folder_root(root, name)
    if folder is not None:
        return _from_folders(name, folder, image_size, cache)
    if name in _TORCHVISION:
        if (root / _TORCHVISION[name][1]).is_dir() or download:
            return _from_torchvision(name, root, download)
        hint = (
            f"expected {root / name}/{{train,test}}/<class>/*.png or torchvision's {root / _TORCHVISION[name][1]}"
            "; add --download to fetch it with torchvision"
        )
    else:
        hint = f"expected {root}/{{train,test}}/<class>/<image>"
    raise DataError(
        f"{name} data not found under {root.resolve()}: {hint}. "
        f"Point to the data with --data-dir PATH or the environment variable {DATA_ENV}=PATH."
    )
