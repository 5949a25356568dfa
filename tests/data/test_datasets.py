import shutil

import pytest
import torch
from PIL import Image

from focalcal.data import DataError, load_dataset

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_subset_loads_as_uint8_with_official_class_order(cifar_subset_root):
    d = load_dataset("imagefolder", cifar_subset_root / "cifar10", cache_dir=None)
    assert d.classes == CIFAR10_CLASSES
    assert d.train_images.shape == (600, 3, 32, 32) and d.train_images.dtype == torch.uint8
    assert d.test_images.shape == (200, 3, 32, 32)
    assert torch.bincount(d.train_labels).tolist() == [60] * 10
    # pixel-exact against PIL on one file
    first = sorted((cifar_subset_root / "cifar10" / "train" / "airplane").iterdir())[0]
    ref = torch.from_numpy(__import__("numpy").array(Image.open(first).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(d.train_images[0], ref)


def test_cache_round_trip(cifar_subset_root, tmp_path):
    a = load_dataset("imagefolder", cifar_subset_root / "cifar10", cache_dir=tmp_path)
    assert list(tmp_path.rglob("*.pt")), "decoded split was not cached"
    b = load_dataset("imagefolder", cifar_subset_root / "cifar10", cache_dir=tmp_path)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)


def test_missing_data_names_both_ways(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path / "nowhere")
    msg = str(e.value)
    assert "--data-dir" in msg and "FOCALCAL_DATA" in msg and "--download" in msg


def test_unknown_dataset_lists_valid():
    valid = "20newsgroups, cifar10, cifar100, imagefolder, sst2, sst5, textfile, textfolder, tiny_imagenet"
    with pytest.raises(DataError, match=valid):
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


# -- a named dataset must be what it says (issue: CIFAR-100 pointed at CIFAR-10 trained on 10 classes) -----------
def test_real_cifar10_passes_the_identity_check(cifar_root):
    d = load_dataset("cifar10", cifar_root)
    assert d.classes == CIFAR10_CLASSES and d.train_images.shape[0] == 50_000 and d.test_images.shape[0] == 10_000


def test_cifar100_pointed_at_cifar10_is_refused(cifar_root, tmp_path):
    (tmp_path / "cifar100").symlink_to(cifar_root / "cifar10", target_is_directory=True)
    with pytest.raises(DataError, match=r"does not hold CIFAR-100 \(wrong classes\): found 10 classes"):
        load_dataset("cifar100", tmp_path)


def test_a_partial_copy_is_not_cifar10(cifar_subset_root):
    with pytest.raises(DataError, match=r"does not hold CIFAR-10 \(wrong train, test\).*600 train / 200 test"):
        load_dataset("cifar10", cifar_subset_root, cache_dir=None)


def test_wrong_class_names_are_not_cifar10(cifar_root, tmp_path):
    for split in ("train", "test"):
        for i, cls in enumerate(CIFAR10_CLASSES):
            (tmp_path / "cifar10" / split).mkdir(parents=True, exist_ok=True)
            (tmp_path / "cifar10" / split / f"c{i}").symlink_to(cifar_root / "cifar10" / split / cls)
    with pytest.raises(DataError, match="wrong class names"):
        load_dataset("cifar10", tmp_path, cache_dir=None)


def test_an_empty_class_folder_is_named(cifar_subset_root, tmp_path):
    _copy_folder(cifar_subset_root, tmp_path)
    (tmp_path / "train" / "zebra").mkdir()
    with pytest.raises(DataError, match="class folder\\(s\\) zebra under .*train hold no image"):
        load_dataset("imagefolder", tmp_path, cache_dir=None)


def test_torchvision_files_failing_the_integrity_check_say_how_to_fix(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"truncated")
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path)
    msg = str(e.value)
    assert "integrity check" in msg and str(folder) in msg and "--download" in msg and "--data-dir" in msg
    assert "download=True" not in msg


def test_tiny_imagenet_official_layout(cifar_subset_root, tmp_path):
    """A small written copy of the official layout: train/<wnid>/images, val/images + val_annotations.txt."""
    from focalcal.data import check_identity, make_splits

    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01", "n03"]  # unsorted on purpose: labels follow the sorted wnids
    (root).mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    src = sorted((cifar_subset_root / "cifar10" / "train" / "cat").iterdir())
    lines = []
    for i, w in enumerate(wnids):
        (root / "train" / w / "images").mkdir(parents=True)
        for j in range(4):
            Image.open(src[4 * i + j]).resize((64, 64)).save(root / "train" / w / "images" / f"{w}_{j}.JPEG")
    (root / "val" / "images").mkdir(parents=True)
    for k in range(6):
        name = f"val_{k}.JPEG"
        Image.open(src[20 + k]).resize((64, 64)).save(root / "val" / "images" / name)
        lines.append(f"{name}\t{wnids[k % 3]}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="does not hold Tiny-ImageNet .*found 3 classes"):
        load_dataset("tiny_imagenet", tmp_path, cache_dir=None)
    from focalcal.data import datasets

    data = datasets._from_tiny_imagenet(root, None)  # the reader itself, without the identity check
    assert data.classes == ["n01", "n02", "n03"] and data.train_images.shape == (12, 3, 64, 64)
    assert data.test_labels.tolist() == [1, 0, 2, 1, 0, 2]  # val_k is wnids[k % 3] = n02, n01, n03, ...
    assert torch.bincount(data.train_labels).tolist() == [4, 4, 4]
    splits = make_splits(data, val_size=3)  # validation comes out of train: the official val split stays test
    assert splits.val_images.shape[0] == 3 and splits.test_images.shape[0] == 6
    with pytest.raises(DataError, match="wrong classes, train, test"):
        check_identity("tiny_imagenet", root, data.classes, 12, 6, (64, 64))


def test_val_size_one_point_zero_is_refused():
    from focalcal.data import ImageData, make_splits

    x = torch.zeros(10, 3, 4, 4, dtype=torch.uint8)
    d = ImageData("x", x, torch.zeros(10, dtype=torch.int64), x, torch.zeros(10, dtype=torch.int64), ["a", "b"])
    with pytest.raises(DataError, match="1.0"):
        make_splits(d, val_size=1.0)
    assert make_splits(d, val_size=1).val_images.shape[0] == 1
    assert make_splits(d, val_size=0.2).val_images.shape[0] == 2
