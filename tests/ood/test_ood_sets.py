"""OOD / shifted set loaders: SVHN's .mat layout, Fashion-MNIST idx files, image folders, the registry."""

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from focalcal.data import DataError, load_ood_set
from focalcal.data import ood as ood_mod
from focalcal.data.ood import read_idx, read_svhn_mat, resize_images


def _write_svhn(path, n=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = np.array([[10], [1], [2], [10], [9], [5], [0 + 3]], dtype=np.uint8)[:n]
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"X": x, "y": y})
    return x, y


def test_svhn_reader_layout_and_label_10_is_0(tmp_path):
    x, y = _write_svhn(tmp_path / "test_32x32.mat")
    images, labels = read_svhn_mat(tmp_path / "test_32x32.mat")
    assert images.dtype == torch.uint8 and images.shape == (7, 3, 32, 32)
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 1, 2, 0, 9, 5, 3]
    # images[n, c, h, w] == X[h, w, c, n]
    assert images[4, 2, 10, 20] == x[10, 20, 2, 4] and images[0, 0, 31, 0] == x[31, 0, 0, 0]
    np.testing.assert_array_equal(images[6].permute(1, 2, 0).numpy(), x[..., 6])


def test_svhn_set_by_name_and_missing_file(tmp_path):
    _write_svhn(tmp_path / "svhn" / "test_32x32.mat")
    s = load_ood_set("svhn", tmp_path)
    assert s.kind == "ood" and len(s) == 7 and s.images.shape == (7, 3, 32, 32)
    with pytest.raises(DataError, match="--download"):
        load_ood_set("svhn", tmp_path / "nothing")
    savemat(str(tmp_path / "bad.mat"), {"A": np.zeros(3)})
    with pytest.raises(DataError, match="layout"):
        read_svhn_mat(tmp_path / "bad.mat")


def _write_idx(path, arr):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_reader_and_local_fashion_mnist_copy(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"  # torchvision's layout; found before Debian's copy
    raw.mkdir(parents=True)
    imgs = np.zeros((3, 28, 28), np.uint8)
    imgs[0] = 200
    imgs[1, :, :14] = 255
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", imgs)
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.array([4, 0, 9]))
    np.testing.assert_array_equal(read_idx(raw / "t10k-images-idx3-ubyte.gz"), imgs)
    s = load_ood_set("fashion_mnist", tmp_path)
    assert s.images.shape == (3, 3, 32, 32) and s.labels.tolist() == [4, 0, 9] and s.kind == "ood"
    assert (s.images[0] == 200).all()  # a constant image stays constant through the bilinear resize
    assert torch.equal(s.images[1, 0], s.images[1, 2])  # grey repeated to RGB
    assert s.images[1, 0, :, 0].eq(255).all() and s.images[1, 0, :, -1].eq(0).all()
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01"))
    with pytest.raises(DataError, match="magic"):
        read_idx(raw / "t10k-labels-idx1-ubyte.gz")


def test_fashion_mnist_from_the_debian_package(tmp_path):
    assert ood_mod.SYSTEM_FASHION_MNIST.is_dir(), "apt-get install dataset-fashion-mnist"
    s = load_ood_set("fashion_mnist", tmp_path, max_images=500, seed=1)
    assert s.images.shape == (500, 3, 32, 32) and s.images.dtype == torch.uint8
    assert set(s.labels.unique().tolist()) == set(range(10))
    assert torch.equal(s.images[:, 0], s.images[:, 1])
    again = load_ood_set("fashion_mnist", tmp_path, max_images=500, seed=1)
    assert torch.equal(s.images, again.images)


def test_missing_fashion_mnist_names_the_apt_package(tmp_path, monkeypatch):
    monkeypatch.setattr(ood_mod, "SYSTEM_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_ood_set("fashion_mnist", tmp_path)


def test_image_folder_of_mixed_sizes(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "a" / "x.png")
    Image.new("L", (32, 32), 128).save(tmp_path / "a" / "b" / "y.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    s = load_ood_set(f"folder:{tmp_path}")
    assert s.images.shape == (2, 3, 32, 32) and s.labels is None
    # sorted by path: a/b/y.jpg (grey 128), then a/x.png (red, resized from 40x20)
    assert s.images[0].eq(128).all()
    assert s.images[1, 0].float().mean() > 250 and s.images[1, 1].float().mean() < 5
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_ood_set(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="no such folder"):
        load_ood_set(f"folder:{tmp_path / 'absent'}")


def test_cifar10c_is_a_labelled_shift_of_the_test_split(cifar_root):
    s = load_ood_set("cifar10c:contrast:5", cifar_root, max_images=50)
    assert s.kind == "shift" and s.label_dataset == "cifar10" and s.name == "cifar10c:contrast:5"
    assert s.images.shape == (50, 3, 32, 32) and s.labels.shape == (50,)


@pytest.mark.parametrize(
    "name,err,match",
    [
        ("mnist9", DataError, "fashion_mnist"),
        ("cifar10c:gaussian_noise", DataError, "severity"),
        ("cifar10c:gaussian_noise:9", ValueError, "1, 2, 3, 4, 5"),
        ("cifar10c:snowstorm:1", ValueError, "impulse_noise"),
    ],
)
def test_bad_names_raise_clearly(cifar_root, name, err, match):
    with pytest.raises(err, match=match):
        load_ood_set(name, cifar_root)


def test_missing_cifar100_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="--download"):
        load_ood_set("cifar100", tmp_path)


def test_resize_keeps_dtype_and_shape():
    x = torch.randint(0, 256, (4, 3, 28, 28), dtype=torch.uint8)
    y = resize_images(x, 32)
    assert y.dtype == torch.uint8 and y.shape == (4, 3, 32, 32)
    assert resize_images(x, 28) is x


def test_several_sets_load_the_clean_split_once(cifar_root, monkeypatch):
    calls = []
    real = ood_mod.load_dataset
    monkeypatch.setattr(ood_mod, "load_dataset", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    names = ["cifar10c:gaussian_noise:1", "cifar10c:contrast:2", "cifar10"]
    sets = ood_mod.load_ood_sets(names, cifar_root, max_images=40)
    assert calls == ["cifar10"] and [s.name for s in sets] == names
    assert torch.equal(sets[1].images, load_ood_set(names[1], cifar_root, max_images=40).images)
    assert torch.equal(sets[0].labels, sets[2].labels)  # the same seeded subset of the same test split
