import shutil

import pytest
import torch
from PIL import Image

from focalcal.data import DataError, load_dataset

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_subset_loads_as_uint8_with_official_class_order(cifar_subset_root):
    d = load_dataset("cifar10", cifar_subset_root, cache_dir=None)
    assert d.classes == CIFAR10_CLASSES
    assert d.train_images.shape == (600, 3, 32, 32) and d.train_images.dtype == torch.uint8
    assert d.test_images.shape == (200, 3, 32, 32)
    assert torch.bincount(d.train_labels).tolist() == [60] * 10
    # pixel-exact against PIL on one file
    first = sorted((cifar_subset_root / "cifar10" / "train" / "airplane").iterdir())[0]
    ref = torch.from_numpy(__import__("numpy").array(Image.open(first).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(d.train_images[0], ref)


def test_cache_round_trip(cifar_subset_root, tmp_path):
    a = load_dataset("cifar10", cifar_subset_root, cache_dir=tmp_path)
    assert list(tmp_path.rglob("*.pt")), "decoded split was not cached"
    b = load_dataset("cifar10", cifar_subset_root, cache_dir=tmp_path)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)


def test_missing_data_names_both_ways(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path / "nowhere")
    msg = str(e.value)
    assert "--data-dir" in msg and "FOCALCAL_DATA" in msg and "--download" in msg


def test_unknown_dataset_lists_valid():
    with pytest.raises(DataError, match="cifar10, cifar100, imagefolder"):
        load_dataset("imagenette")


def _copy_folder(src, dst, n=3):
    for split in ("train", "test"):
        for cls in ("airplane", "cat"):
            (dst / split / cls).mkdir(parents=True)
            for f in sorted((src / "cifar10" / split / cls).iterdir())[:n]:
                shutil.copy(f, dst / split / cls / f.name)


def test_corrupt_image_names_the_file(cifar_subset_root, tmp_path):
    _copy_folder(cifar_subset_root, tmp_path)
    bad = tmp_path / "train" / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match="broken.png"):
        load_dataset("imagefolder", tmp_path, cache_dir=None)


def test_imagefolder_mixed_sizes_need_image_size(cifar_subset_root, tmp_path):
    _copy_folder(cifar_subset_root, tmp_path)
    Image.new("RGB", (40, 24), (255, 0, 0)).save(tmp_path / "train" / "cat" / "big.png")
    with pytest.raises(DataError, match="--image-size"):
        load_dataset("imagefolder", tmp_path, cache_dir=None)
    d = load_dataset("imagefolder", tmp_path, cache_dir=None, image_size=16)
    assert d.classes == ["airplane", "cat"]
    assert d.train_images.shape == (7, 3, 16, 16)
    # the resized solid-red image stays solid red
    red = d.train_images[d.train_labels == 1][-1]
    assert red[0].min() == 255 and red[1].max() == 0
