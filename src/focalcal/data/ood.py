"""Out-of-distribution and dataset-shift evaluation sets, by name, as uint8 tensors.

Names understood by :func:`load_ood_set` (``<root>`` is the data root of :func:`resolve_data_dir`):

- ``cifar10c:<corruption>:<severity>`` (also ``cifar100c:...``, with the same 32x32 settings): the
  official CIFAR-10 (CIFAR-100) test split corrupted as in CIFAR-10-C (:mod:`focalcal.data.corruptions`),
  generated on first use and cached under :func:`default_cache_dir`. A *shifted* set: it keeps the labels.
- ``svhn``: the SVHN test split, ``<root>/svhn/test_32x32.mat`` or ``<root>/test_32x32.mat`` (the official
  MATLAB file); with ``download=True`` torchvision fetches it into ``<root>/svhn``.
- ``cifar100`` / ``cifar10``: that dataset's official test split, found as :func:`load_dataset` finds it
  (CIFAR-100 is the usual near-OOD set for a CIFAR-10 model).
- ``fashion_mnist``: the Fashion-MNIST test split from the original idx files (``t10k-images-idx3-ubyte``,
  gzipped or not) in ``<root>/fashion_mnist``, ``<root>/FashionMNIST/raw`` (torchvision's layout) or
  Debian's ``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``); grey 28x28 images are
  resized (bilinear) to the model's size and repeated to three channels. A far-OOD set that exists offline.
- ``folder:<path>``: every image below ``<path>`` (any depth, sorted by path), resized to the model's size;
  unlabelled.

Every set comes back at the requested ``image_size`` as uint8 ``[N, 3, S, S]``; normalising it with the
in-distribution training statistics is the caller's job (``focalcal.evaluation.run_logits`` does it).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import atomic_torch_save
from ..errors import InputError
from .corruptions import CORRUPTIONS, check_corruption, corrupt
from .datasets import DATA_ENV, default_cache_dir, load_dataset, resolve_data_dir
from .download import downloading
from .errors import DataError
from .folder import IMG_EXTENSIONS, _decode

#: Debian's dataset-fashion-mnist package installs the original files here.
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
OOD_SET_PATTERNS = (
    "cifar10c:<corruption>:<severity>",
    "cifar100c:<corruption>:<severity>",
    "svhn",
    "cifar100",
    "cifar10",
    "fashion_mnist",
    "folder:<path>",
)
_CORRUPTED_CACHE_VERSION = 1


@dataclass
class OODSet:
    """An evaluation set for OOD detection or calibration under shift.

    Attributes:
        name: the canonical name it was loaded by (e.g. ``cifar10c:gaussian_noise:5``).
        images: uint8 ``[N, 3, S, S]``.
        labels: int64 ``[N]`` in the classes of ``label_dataset``, or ``None`` when unlabelled.
        kind: ``"shift"`` (the in-distribution classes, labelled: calibration is meaningful) or ``"ood"``.
        label_dataset: the dataset whose classes ``labels`` index (``"cifar10"`` for CIFAR-10-C), or None.
        description: one human-readable line.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor | None
    kind: str
    label_dataset: str | None
    description: str

    def __len__(self) -> int:
        return int(self.images.shape[0])


def describe_ood_sets() -> str:
    """One line listing the accepted names (for help and error messages)."""
    return ", ".join(OOD_SET_PATTERNS) + f"; corruptions: {', '.join(CORRUPTIONS)}; severities 1-5"


# -- readers ---------------------------------------------------------------------------------------------
def read_svhn_mat(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Read an SVHN ``*_32x32.mat`` file: ``X`` uint8 ``[32, 32, 3, N]``, ``y`` ``[N, 1]`` (10 for digit 0).

    Returns:
        ``(images uint8 [N, 3, 32, 32], labels int64 [N] in 0..9)``; label 10 becomes 0, as in torchvision.

    Raises:
        DataError: unreadable file or a layout other than SVHN's.
    """
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except (OSError, ValueError, NotImplementedError) as exc:
        raise DataError(f"cannot read SVHN file {path}: {exc}") from exc
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[2] != 3 or y.reshape(-1).shape[0] != x.shape[3]:
        raise DataError(f"{path} is not in SVHN's layout (X [32, 32, 3, N] uint8 and y [N, 1])")
    images = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1)).astype(np.uint8)))
    labels = torch.from_numpy(y.reshape(-1).astype(np.int64) % 10)
    return images, labels


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (MNIST / Fashion-MNIST format; ``.gz`` or plain) into a uint8 numpy array.

    Raises:
        DataError: unreadable file, a type other than unsigned byte, or a size that does not match the header.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DataError(f"cannot read idx file {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte idx file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(dims)):
        raise DataError(f"{path}: {len(raw) - header} data bytes, header says {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of uint8 ``[N, C, H, W]`` to ``[N, C, size, size]`` (anti-aliased when shrinking)."""
    if images.shape[-2:] == (size, size):
        return images
    out = []
    for chunk in images.split(2048):
        y = F.interpolate(
            chunk.float(),
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=chunk.shape[-1] > size or chunk.shape[-2] > size,
        )
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def _to_rgb(images: torch.Tensor) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images


# -- the sets --------------------------------------------------------------------------------------------
def _fashion_mnist_dirs(root: Path) -> list[Path]:
    return [
        root / "fashion_mnist",
        root / "fashion-mnist",
        root / "FashionMNIST" / "raw",
        root,
        SYSTEM_FASHION_MNIST,
    ]


def _fashion_mnist(root: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    def find(stem: str, folder: Path) -> Path | None:
        return next((folder / n for n in (stem + ".gz", stem) if (folder / n).is_file()), None)

    for folder in _fashion_mnist_dirs(root):
        images_path = find("t10k-images-idx3-ubyte", folder)
        labels_path = find("t10k-labels-idx1-ubyte", folder)
        if images_path and labels_path:
            break
    else:
        if not download:
            raise DataError(
                "Fashion-MNIST test files (t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) "
                "not found in "
                f"{', '.join(str(d) for d in _fashion_mnist_dirs(root))}. On Debian/Ubuntu install them with "
                "`apt-get install dataset-fashion-mnist`, or add --download to fetch them with torchvision"
            )
        import torchvision.datasets as tvd

        by_hand = (
            f"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from {tvd.FashionMNIST.mirrors[0]} in "
            f"{root / 'fashion_mnist'}, or `apt-get install dataset-fashion-mnist`"
        )
        with downloading("the Fashion-MNIST test split", root, by_hand, creates=("FashionMNIST",)):
            tvd.FashionMNIST(str(root), train=False, download=True)
        return _fashion_mnist(root, download=False)
    x = torch.from_numpy(read_idx(images_path).copy())
    y = torch.from_numpy(read_idx(labels_path).astype(np.int64))
    if x.ndim != 3 or y.shape != (x.shape[0],):
        raise DataError(
            f"{images_path}: expected images [N, 28, 28] and N labels; got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    return x.unsqueeze(1), y


def _svhn(root: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    for path in (root / "svhn" / "test_32x32.mat", root / "test_32x32.mat"):
        if path.is_file():
            return read_svhn_mat(path)
    if not download:
        raise DataError(
            f"SVHN test split not found: expected {root / 'svhn' / 'test_32x32.mat'} "
            f"(or {root / 'test_32x32.mat'}), "
            "the official file from http://ufldl.stanford.edu/housenumbers/. Add --download to fetch it with "
            f"torchvision, or point --data-dir / {DATA_ENV} to the folder holding it"
        )
    import torchvision.datasets as tvd

    by_hand = f"{root / 'svhn' / 'test_32x32.mat'}, from {tvd.SVHN.split_list['test'][0]}"
    with downloading("the SVHN test split", root / "svhn", by_hand, creates=("test_32x32.mat",)):
        tvd.SVHN(str(root / "svhn"), split="test", download=True)  # checks the md5 of the downloaded file
    return read_svhn_mat(root / "svhn" / "test_32x32.mat")


def _folder(path: Path, image_size: int) -> torch.Tensor:
    if not path.is_dir():
        raise DataError(f"folder:{path}: no such folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise DataError(f"folder:{path}: no images found (extensions {', '.join(IMG_EXTENSIONS)})")
    return torch.stack([_decode(str(p), image_size) for p in files])


def _fingerprint(images: torch.Tensor) -> str:
    h = hashlib.sha1(f"v{_CORRUPTED_CACHE_VERSION}|{tuple(images.shape)}".encode())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def corrupted_test_split(
    base: str,
    corruption: str,
    severity: int,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    download: bool = False,
    cache_dir: str | os.PathLike | None | bool = True,
    clean: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``base``'s official test split corrupted with :func:`focalcal.data.corruptions.corrupt`, cached.

    The cache file (under ``cache_dir / "corrupted"``) is keyed by the corruption, severity, seed and a hash
    of the clean images, so a different test split never reuses a stale file. ``clean`` passes the clean
    ``(images, labels)`` test split when the caller has already loaded it (otherwise it is loaded here).

    Returns:
        ``(images uint8 [N, 3, H, W], labels int64 [N])``.

    Raises:
        DataError: the base data set is missing; InputError (a ValueError): unknown corruption or severity.
    """
    check_corruption(corruption, severity)
    if clean is None:
        data = load_dataset(base, data_dir, download=download)
        clean = (data.test_images, data.test_labels)
    clean, labels = clean
    cache = default_cache_dir() if cache_dir is True else (Path(cache_dir) if cache_dir else None)
    path = None
    if cache is not None:
        path = cache / "corrupted" / f"{base}c-{corruption}-{severity}-seed{seed}-{_fingerprint(clean)}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True), labels
    images = corrupt(clean, corruption, severity, seed=seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(images, path)
    return images, labels


def image_hashes(images: torch.Tensor) -> set[bytes]:
    """A digest of each uint8 image (to find images shared by two sets)."""
    flat = images.contiguous().view(images.shape[0], -1).numpy()
    return {hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat}


def check_disjoint(ood: OODSet, in_distribution: torch.Tensor, what: str) -> None:
    """Raise :class:`DataError` when ``ood`` shares images with the in-distribution ``[N, 3, S, S]`` images."""
    shared = len(image_hashes(ood.images) & image_hashes(in_distribution))
    if shared:
        raise DataError(
            f"OOD set {ood.name!r} shares {shared} of its {len(ood)} images with {what}: it is not "
            "out-of-distribution data; check the data root (--data-dir) and the set's name"
        )


def load_ood_set(name: str, data_dir: str | os.PathLike | None = None, **options: Any) -> OODSet:
    """Load one OOD or shifted evaluation set by name (see the module docstring for the names): the one set of
    ``load_ood_sets([name], data_dir, **options)``, with the same ``options`` (see :func:`load_ood_sets`).

    Raises:
        as :func:`load_ood_sets`.
    """
    return load_ood_sets([name], data_dir, **options)[0]


def load_ood_sets(
    names: Sequence[str],
    data_dir: str | os.PathLike | None = None,
    *,
    image_size: int = 32,
    seed: int = 0,
    max_images: int | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None | bool = True,
    in_distribution: str | None = None,
) -> list[OODSet]:
    """Load OOD or shifted evaluation sets by name (see the module docstring), each clean CIFAR test split once.

    Args:
        names: e.g. ``cifar10c:gaussian_noise:5``, ``svhn``, ``cifar100``, ``fashion_mnist``, ``folder:/imgs``.
        data_dir: the data root; ``None`` means ``$FOCALCAL_DATA`` or ``./data``.
        image_size: the model's input size ``S``; every set is returned as ``[N, 3, S, S]``.
        seed: seed of the corruption noise and of the ``max_images`` subset.
        max_images: keep a seeded random subset of at most this many images (in their original order).
        download: let torchvision download SVHN / Fashion-MNIST / CIFAR when missing.
        cache_dir: cache for the corrupted sets (``True``: :func:`default_cache_dir`; None/False: off).
        in_distribution: the dataset the model was trained on; naming that dataset itself as an OOD set
            is an error (its test split is the in-distribution data).

    Returns:
        One :class:`OODSet` per name, in order.

    Raises:
        DataError: ``in_distribution`` among the names; an unknown name (lists the valid ones) or data not
            found (says where it was looked for and how to get it); DownloadError (a DataError): a download
            failed (says where to put the files by hand). InputError (a ValueError): an unknown corruption or
            a severity outside 1..5. The first name that fails raises.
    """
    if in_distribution is not None and in_distribution in names:
        raise DataError(
            f"{in_distribution!r} is the run's own dataset: its test split is the in-distribution data, not OOD; "
            f"choose another set ({describe_ood_sets()})"
        )
    tests: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def test_split(base: str) -> tuple[torch.Tensor, torch.Tensor]:
        if base not in tests:
            data = load_dataset(base, data_dir, download=download)
            tests[base] = (data.test_images, data.test_labels)
        return tests[base]

    def load(name: str) -> OODSet:
        root = resolve_data_dir(data_dir)
        kind, label_dataset, labels = "ood", None, None
        head, _, rest = name.partition(":")
        if head in ("cifar10c", "cifar100c"):
            corruption, _, sev = rest.partition(":")
            if not sev.isdigit():
                raise DataError(f"{name!r}: expected {head}:<corruption>:<severity>, e.g. {head}:gaussian_noise:5")
            base = head[:-1]
            try:
                check_corruption(corruption, int(sev))
            except InputError as exc:
                raise InputError(f"OOD set {name!r}: {exc} (e.g. {head}:gaussian_noise:5)") from None
            images, labels = corrupted_test_split(
                base, corruption, int(sev), seed=seed, cache_dir=cache_dir, clean=test_split(base)
            )
            kind, label_dataset = "shift", base
            desc = f"{base} test split, {corruption} severity {sev} (CIFAR-C settings, seed {seed})"
            name = f"{head}:{corruption}:{int(sev)}"
        elif name == "svhn":
            images, labels = _svhn(root, download)
            desc = "SVHN test split (far OOD)"
        elif name in ("cifar100", "cifar10"):
            (images, labels), label_dataset = test_split(name), name
            desc = f"{name} test split"
        elif name in ("fashion_mnist", "fashion-mnist"):
            images, labels = _fashion_mnist(root, download)
            name, desc = (
                "fashion_mnist",
                "Fashion-MNIST test split, grey 28x28 resized bilinearly and repeated to RGB",
            )
        elif head == "folder" and rest:
            images = _folder(Path(rest).expanduser(), image_size)
            desc = f"images under {rest}"
        else:
            raise DataError(f"unknown OOD set {name!r}; use one of: {describe_ood_sets()}")

        if max_images is not None and max_images < 1:
            raise DataError(f"max_images must be >= 1; got {max_images}")
        if max_images is not None and max_images < images.shape[0]:
            g = torch.Generator().manual_seed(seed)
            keep = torch.randperm(images.shape[0], generator=g)[:max_images].sort().values
            images = images[keep]
            labels = labels[keep] if labels is not None else None
            desc += f", seeded subset of {max_images}"
        images = resize_images(_to_rgb(images), image_size)
        return OODSet(name, images.contiguous(), labels, kind, label_dataset, desc)

    return [load(name) for name in names]
