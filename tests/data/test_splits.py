import pytest
import torch

from focalcal.data import DataError, channel_stats, load_dataset, make_splits


@pytest.fixture(scope="module")
def full_cifar(cifar_root):
    return load_dataset("cifar10", cifar_root)


def test_paper_split_and_train_statistics(full_cifar):
    s = make_splits(full_cifar, val_size=5000, split_seed=1)
    assert s.train_images.shape[0] == 45000 and s.val_images.shape[0] == 5000 and s.test_images.shape[0] == 10000
    # the data README's official statistics of the full train split, to 3 decimals, from our 45k portion
    assert s.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=1.5e-3)
    assert s.std == pytest.approx((0.2470, 0.2435, 0.2616), abs=1.5e-3)
    again = make_splits(full_cifar, val_size=5000, split_seed=1)
    assert torch.equal(s.val_labels, again.val_labels) and torch.equal(s.val_images, again.val_images)
    other = make_splits(full_cifar, val_size=5000, split_seed=2)
    assert not torch.equal(s.val_images, other.val_images)


def test_split_is_disjoint_and_fractional(cifar_subset_root):
    d = load_dataset("imagefolder", cifar_subset_root / "cifar10", cache_dir=None)
    s = make_splits(d, val_size=0.1, split_seed=1, train_size=100, test_size=50)
    assert (s.val_images.shape[0], s.train_images.shape[0], s.test_images.shape[0]) == (60, 100, 50)
    val = {bytes(x.numpy().tobytes()) for x in s.val_images}
    assert not any(bytes(x.numpy().tobytes()) in val for x in s.train_images)
    with pytest.raises(DataError, match="train size"):
        make_splits(d, val_size=60, train_size=10_000)


def test_channel_stats_exact():
    x = torch.tensor([0, 255, 0, 255], dtype=torch.uint8).view(1, 1, 2, 2).repeat(2, 3, 1, 1)
    mean, std = channel_stats(x)
    assert mean == pytest.approx((0.5,) * 3) and std == pytest.approx((0.5,) * 3)
    y = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    m, sd = channel_stats(y)
    ref = y.double() / 255
    assert m == pytest.approx(tuple(ref.mean((0, 2, 3)).tolist()))
    assert sd == pytest.approx(tuple(ref.std((0, 2, 3), unbiased=False).tolist()))
