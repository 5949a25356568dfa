"""Decode an image-folder split (``<split>/<class>/<image>``) once into uint8 tensors, with a disk cache."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from ..atomic import atomic_torch_save
from .errors import DataError

CACHE_VERSION = 1


def _decode(path: str, image_size: int | None) -> torch.Tensor:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if image_size is not None and im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
            arr = np.array(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}. Remove or replace the corrupt file.") from exc
    return torch.from_numpy(arr).permute(2, 0, 1)


def _fingerprint(samples: list[tuple[str, int]], image_size: int | None) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}|{image_size}".encode())
    for path, label in samples:
        st = os.stat(path)
        h.update(f"{path}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def class_folder_samples(split_dir: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """``(classes, [(path, label), ...])`` of ``split_dir/<class>/<image>`` (classes sorted by name).

    Raises:
        DataError: the folder is missing, has no class folders, or a class folder holds no image (named).
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} does not exist: expected {split_dir}/<class>/<image>.png")
    try:
        classes, class_to_idx = find_classes(str(split_dir))
    except (FileNotFoundError, OSError):
        raise DataError(f"no class folders in {split_dir}: expected {split_dir}/<class>/<image>.png") from None
    samples = make_dataset(str(split_dir), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    counts = Counter(label for _, label in samples)
    empty = [c for c in classes if not counts[class_to_idx[c]]]
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise DataError(
            f"class folder(s) {shown} under {split_dir} hold no image (extensions {', '.join(IMG_EXTENSIONS)}); "
            "add images or remove the empty folders"
        )
    return classes, samples


def decode_samples(
    samples: list[tuple[str, int]],
    classes: list[str],
    *,
    where: str,
    image_size: int | None = None,
    cache_file: Path | None = None,
    workers: int = 4,
    dataset: tuple[str, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode ``(path, label)`` samples to ``(images uint8 [N, 3, H, W], labels int64 [N], classes)``, cached
    in ``cache_file`` (its name gets a fingerprint of the paths, sizes and modification times).

    ``dataset``: ``(title, size)`` of a named data set whose images are all ``size x size`` (never resized), so
    that images of another size are reported as files to fix, not as a reason to resize.

    Raises:
        DataError: a corrupt image (named), or mixed sizes without ``image_size`` (naming the odd files).
    """
    if cache_file is not None:
        cache_file = cache_file.with_name(f"{cache_file.stem}-{_fingerprint(samples, image_size)}.pt")
        if cache_file.exists():
            data = torch.load(cache_file, weights_only=True)
            return data["images"], data["labels"], list(data["classes"])
    with ThreadPoolExecutor(max(1, workers)) as pool:
        images = list(pool.map(lambda s: _decode(s[0], image_size), samples, chunksize=256))
    shapes = Counter(tuple(im.shape[1:]) for im in images)
    if len(shapes) > 1:
        raise DataError(_mixed_sizes(samples, images, shapes, where, dataset))
    images_t = torch.stack(images)
    labels_t = torch.tensor([label for _, label in samples], dtype=torch.int64)
    if cache_file is not None:
        atomic_torch_save({"images": images_t, "labels": labels_t, "classes": classes}, cache_file)
    return images_t, labels_t, classes


def _mixed_sizes(
    samples: list[tuple[str, int]],
    images: list[torch.Tensor],
    shapes: Counter,
    where: str,
    dataset: tuple[str, int] | None,
) -> str:
    """The one-line message for images of different sizes: the odd files (those not of the usual size, or not
    of the data set's size; sizes as width x height) and what fixes them."""
    usual = (dataset[1], dataset[1]) if dataset else shapes.most_common(1)[0][0]
    odd = [(path, tuple(im.shape[1:])) for (path, _), im in zip(samples, images) if tuple(im.shape[1:]) != usual]
    shown = ", ".join(f"{p} ({w}x{h})" for p, (h, w) in odd[:3]) + (f" and {len(odd) - 3} more" if len(odd) > 3 else "")
    if dataset:
        title, size = dataset
        return (
            f"{len(odd)} image(s) under {where} are not {size}x{size} like every {title} image: {shown}. Replace or "
            f"remove them (named data sets are never resized; to train on resized images of your own use "
            "--dataset imagefolder --image-size N)"
        )
    return (
        f"images under {where} have different sizes: {sum(shapes.values()) - len(odd):,} are {usual[1]}x{usual[0]}, "
        f"{len(odd):,} are not: {shown}. Pass --image-size N to resize them all, or replace or remove those files"
    )


def decode_split(
    split_dir: Path,
    *,
    image_size: int | None = None,
    cache_dir: Path | None = None,
    workers: int = 4,
    dataset: tuple[str, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode every image of ``split_dir/<class>/*`` to one uint8 tensor.

    Classes are the sub-folder names sorted alphabetically (torchvision's ImageFolder convention), which for
    CIFAR-10 gives the official label order.

    Args:
        split_dir: folder with one sub-folder per class.
        image_size: resize every image to ``image_size x image_size``; ``None`` requires equal sizes.
        cache_dir: where to keep the decoded tensors (keyed by paths, sizes and modification times);
            ``None`` disables caching.
        workers: decoding threads.
        dataset: ``(title, size)`` of a named data set (its images must all be ``size x size``).

    Returns:
        ``(images uint8 [N, 3, H, W], labels int64 [N], classes)``.

    Raises:
        DataError: no class folders, an empty class folder (named), a corrupt image (named), or mixed sizes
            without ``image_size``.
    """
    split_dir = Path(split_dir)
    classes, samples = class_folder_samples(split_dir)
    cache_file = None if cache_dir is None else Path(cache_dir) / f"{split_dir.name}.pt"
    return decode_samples(
        samples,
        classes,
        where=str(split_dir),
        image_size=image_size,
        cache_file=cache_file,
        workers=workers,
        dataset=dataset,
    )
