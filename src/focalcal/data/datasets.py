"""Datasets as whole uint8 tensors: CIFAR-10/100 (image folders or torchvision's files), Tiny-ImageNet (its
official layout), and users' image folders.

A named dataset must be what its name says: after loading, its class count, image counts per split, image
size and (for CIFAR-10) class names are checked against the dataset's published facts
(:data:`DATASET_FACTS`), and anything else is a :class:`~focalcal.errors.DataError` that says what was
found instead. Users' own data goes through ``imagefolder``, which checks only that it is readable.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .download import downloading
from .folder import class_folder_samples, decode_samples, decode_split

DATA_ENV = "FOCALCAL_DATA"
CACHE_ENV = "FOCALCAL_CACHE"

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class DatasetFacts:
    """What a named dataset is: ``classes`` (count), official ``train`` / ``test`` image counts, square image
    ``size``, optionally the class names in label order, and how to lay it out on disk (``layout``)."""

    title: str
    classes: int
    train: int
    test: int
    size: int
    layout: str
    class_names: tuple[str, ...] | None = None


DATASET_FACTS: dict[str, DatasetFacts] = {
    "cifar10": DatasetFacts(
        "CIFAR-10",
        10,
        50_000,
        10_000,
        32,
        "<root>/cifar10/{train,test}/<class>/<image>.png, or torchvision's <root>/cifar-10-batches-py",
        CIFAR10_CLASSES,
    ),
    "cifar100": DatasetFacts(
        "CIFAR-100",
        100,
        50_000,
        10_000,
        32,
        "<root>/cifar100/{train,test}/<class>/<image>.png (100 class folders), or torchvision's "
        "<root>/cifar-100-python",
    ),
    "tiny_imagenet": DatasetFacts(
        "Tiny-ImageNet",
        200,
        100_000,
        10_000,
        64,
        "<root>/tiny-imagenet-200/ as distributed: wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
        "val/val_annotations.txt (the official val split is used as the test split)",
    ),
}
# name -> (torchvision class name, torchvision's folder name)
_TORCHVISION = {"cifar10": ("CIFAR10", "cifar-10-batches-py"), "cifar100": ("CIFAR100", "cifar-100-python")}
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
#: The image data sets (every data set ``--dataset`` accepts: :data:`focalcal.data.DATASETS`, a registry).
IMAGE_DATASETS = ("cifar10", "cifar100", "tiny_imagenet", "imagefolder")


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


def describe_layouts() -> str:
    """How each named dataset is laid out under the data root (for ``--help`` and errors)."""
    return "; ".join(f"{name}: {f.layout}" for name, f in DATASET_FACTS.items())


def check_identity(
    name: str, where: Path, classes: list[str], n_train: int, n_test: int, size: tuple[int, int] | None = None
) -> None:
    """Raise :class:`DataError` unless a dataset named ``name`` has its published class count, image counts
    per split, image size (when known; folders are checked before any image is decoded) and class names."""
    facts = DATASET_FACTS.get(name)
    if facts is None:
        return
    found = {"classes": len(classes), "train": n_train, "test": n_test, "size": size}
    expected = {"classes": facts.classes, "train": facts.train, "test": facts.test, "size": (facts.size, facts.size)}
    wrong = [k for k in expected if found[k] != expected[k] and not (k == "size" and size is None)]
    if facts.class_names and not wrong and tuple(classes) != facts.class_names:
        wrong.append("class names")
    if not wrong:
        return
    shown = ", ".join(classes[:4]) + (", ..." if len(classes) > 4 else "")
    of_size = f" of {size[0]}x{size[1]}" if size else ""
    raise DataError(
        f"{where} does not hold {facts.title} (wrong {', '.join(wrong)}): found {len(classes)} classes "
        f"({shown}), {n_train:,} train / {n_test:,} test images{of_size}; "
        f"{facts.title} has {facts.classes} classes, {facts.train:,} / {facts.test:,} images of "
        f"{facts.size}x{facts.size}. Lay it out as {facts.layout}, or train on your own data with "
        "--dataset imagefolder"
    )


def _check_loaded(data: ImageData, where: Path) -> None:
    check_identity(
        data.name,
        where,
        data.classes,
        int(data.train_images.shape[0]),
        int(data.test_images.shape[0]),
        tuple(data.train_images.shape[-2:]),
    )


def _folder_root(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    return None


def _safe(path: Path) -> str:
    return str(path.resolve()).strip("/").replace("/", "_")[-80:]


def check_same_classes(folder: Path, train_classes: list[str], test_classes: list[str]) -> None:
    """Raise :class:`DataError` naming the class folders found in only one of ``folder``'s train and test splits."""
    if train_classes == test_classes:
        return

    def shown(names: list[str]) -> str:
        return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "") if names else "none"

    only_train = sorted(set(train_classes) - set(test_classes))
    only_test = sorted(set(test_classes) - set(train_classes))
    raise DataError(
        f"{folder}: train and test have different class folders: only in train/: {shown(only_train)}; only in "
        f"test/: {shown(only_test)}. Rename or move them so that both splits have the same class folders"
    )


def _from_folders(name: str, folder: Path, image_size: int | None, cache_dir: Path | None) -> ImageData:
    cache = None if cache_dir is None else Path(cache_dir) / name / _safe(folder)
    # fail before decoding tens of thousands of images
    classes, train = class_folder_samples(folder / "train")
    test_classes, test = class_folder_samples(folder / "test")
    check_same_classes(folder, classes, test_classes)
    if name in DATASET_FACTS:
        check_identity(name, folder, classes, len(train), len(test))
    facts = DATASET_FACTS.get(name)
    named = (facts.title, facts.size) if facts else None  # a named data set's images are never resized
    train_x, train_y, classes = decode_split(folder / "train", image_size=image_size, cache_dir=cache, dataset=named)
    test_x, test_y, test_classes = decode_split(folder / "test", image_size=image_size, cache_dir=cache, dataset=named)
    check_same_classes(folder, classes, test_classes)
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{folder}: train images are {tuple(train_x.shape[1:])}, test {tuple(test_x.shape[1:])}")
    return ImageData(name, train_x, train_y, test_x, test_y, classes)


def _from_torchvision(name: str, root: Path, download: bool) -> ImageData:
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION[name][0])
    facts = DATASET_FACTS[name]
    by_hand = f"{cls.url} unpacked there, or {facts.layout}".replace("<root>", str(root))
    fetch = downloading(facts.title, root, by_hand, creates=(cls.filename, cls.base_folder))
    try:
        with fetch if download else contextlib.nullcontext():
            splits = [cls(str(root), train=train, download=download) for train in (True, False)]
    except RuntimeError as exc:  # torchvision's integrity check ("Dataset not found or corrupted")
        folder = root / _TORCHVISION[name][1]
        raise DataError(
            f"{folder} fails torchvision's integrity check ({str(exc).split('.')[0]}): a file is missing or "
            f"damaged. Delete {folder} and run again with --download to fetch it, or point --data-dir at a good "
            f"copy laid out as {DATASET_FACTS[name].layout}"
        ) from None

    def to_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return x, torch.as_tensor(ds.targets, dtype=torch.int64)

    (train_x, train_y), (test_x, test_y) = map(to_tensors, splits)
    return ImageData(name, train_x, train_y, test_x, test_y, list(splits[0].classes))


def _tiny_imagenet_root(root: Path) -> Path | None:
    for candidate in (root / "tiny-imagenet-200", root / "tiny_imagenet", root):
        if (candidate / "wnids.txt").is_file() and (candidate / "train").is_dir() and (candidate / "val").is_dir():
            return candidate
    return None


def _from_tiny_imagenet(folder: Path, cache_dir: Path | None) -> ImageData:
    """The official Tiny-ImageNet layout: train/<wnid>/images/*.JPEG is the train split; the official val split
    (val/images, labelled by val/val_annotations.txt) is the test split. Classes: the sorted wnids."""
    wnids = sorted(w.strip() for w in (folder / "wnids.txt").read_text().split() if w.strip())
    index = {w: i for i, w in enumerate(wnids)}
    train_classes, train_samples = class_folder_samples(folder / "train")
    if train_classes != wnids:
        extra, missing = sorted(set(train_classes) - set(wnids)), sorted(set(wnids) - set(train_classes))
        raise DataError(
            f"{folder}/train does not match wnids.txt: class folders not listed there: "
            f"{', '.join(extra[:5]) or 'none'}; listed but missing: {', '.join(missing[:5]) or 'none'}"
        )
    ann = folder / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DataError(f"{ann} is missing: the official val split cannot be labelled")
    test_samples = []
    for line in ann.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        if parts[1] not in index:
            raise DataError(f"{ann}: {parts[0]} is labelled {parts[1]!r}, which wnids.txt does not list")
        test_samples.append((str(folder / "val" / "images" / parts[0]), index[parts[1]]))
    cache = None if cache_dir is None else Path(cache_dir) / "tiny_imagenet" / _safe(folder)
    named = ("Tiny-ImageNet", DATASET_FACTS["tiny_imagenet"].size)  # never resized: odd sizes are files to fix
    train_x, train_y, _ = decode_samples(
        train_samples,
        wnids,
        where=str(folder / "train"),
        cache_file=None if cache is None else cache / "train.pt",
        dataset=named,
    )
    test_x, test_y, _ = decode_samples(
        sorted(test_samples),
        wnids,
        where=str(folder / "val"),
        cache_file=None if cache is None else cache / "val.pt",
        dataset=named,
    )
    return ImageData("tiny_imagenet", train_x, train_y, test_x, test_y, wnids)


def _download_tiny_imagenet(root: Path) -> Path:
    from torchvision.datasets.utils import download_and_extract_archive

    archive = TINY_IMAGENET_URL.rsplit("/", 1)[-1]
    by_hand = f"{TINY_IMAGENET_URL} unzipped there, giving {DATASET_FACTS['tiny_imagenet'].layout}".replace(
        "<root>", str(root)
    )
    with downloading("Tiny-ImageNet", root, by_hand, creates=(archive, "tiny-imagenet-200")):
        download_and_extract_archive(TINY_IMAGENET_URL, str(root))
    return root / "tiny-imagenet-200"


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    image_size: int | None = None,
    cache_dir: str | os.PathLike | None | bool = True,
) -> ImageData:
    """Load a dataset's official train and test splits, decoded once to uint8 tensors.

    Where the data is looked for, under the data root (:func:`resolve_data_dir`), see
    :data:`DATASET_FACTS` (``layout``): image folders ``<root>/<name>/{train,test}/<class>/*.png`` (or
    ``<root>/{train,test}/...``) or torchvision's files for CIFAR, the official layout for Tiny-ImageNet;
    with ``download=True`` torchvision fetches what is missing. ``imagefolder`` is a user's data,
    ``<root>/{train,test}/<class>/<image>``, any size with ``image_size``.

    Args:
        name: one of :data:`IMAGE_DATASETS`; another registered data set (:data:`focalcal.data.DATASETS`)
            returns what its reader returns (a text data set's :class:`~focalcal.data.text.base.TextSplits`).
        data_dir: the data root; ``None`` means ``$FOCALCAL_DATA`` or ``./data``.
        download: let torchvision download the dataset when it is not on disk.
        image_size: resize image-folder images to this square size (required when sizes differ).
        cache_dir: cache for decoded images; ``True`` is :func:`default_cache_dir`, ``None``/``False`` disables it.

    Raises:
        DataError: unknown name (lists valid ones), data not found (names both ways to provide it), or data
            that is not what its name says (see :func:`check_identity`). DownloadError (a DataError): the
            download failed; says where to put the files by hand (what it created is removed).
    """
    if name not in IMAGE_DATASETS:
        from .registry import DATASETS  # other modalities: the registry's reader of the official splits

        if name in DATASETS and DATASETS.entry(name).meta.get("load") is not None:
            return DATASETS.entry(name).meta["load"](data_dir)
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS.names())}")
    root = resolve_data_dir(data_dir)
    cache = default_cache_dir() if cache_dir is True else (Path(cache_dir) if cache_dir else None)
    if name == "tiny_imagenet":
        folder = _tiny_imagenet_root(root) or (_download_tiny_imagenet(root) if download else None)
        if folder is None:
            _not_found(name, root, DATASET_FACTS[name].layout + "; add --download to fetch it")
        data = _from_tiny_imagenet(folder, cache)
        _check_loaded(data, folder)
        return data
    folder = _folder_root(root, name)
    if folder is not None:
        data = _from_folders(name, folder, image_size if name == "imagefolder" else None, cache)
        _check_loaded(data, folder)
        return data
    if name in _TORCHVISION:
        if (root / _TORCHVISION[name][1]).is_dir() or download:
            data = _from_torchvision(name, root, download)
            _check_loaded(data, root / _TORCHVISION[name][1])
            return data
        _not_found(name, root, DATASET_FACTS[name].layout + "; add --download to fetch it with torchvision")
    _not_found(name, root, f"{root}/{{train,test}}/<class>/<image>")


def _not_found(name: str, root: Path, hint: str) -> None:
    raise DataError(
        f"{name} data not found under {root.resolve()}: expected {hint}. "
        f"Point to the data with --data-dir PATH or the environment variable {DATA_ENV}=PATH."
    )
