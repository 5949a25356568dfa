"""Data shared by the engine tests."""

import pytest

from focalcal.data import load_dataset, make_splits


@pytest.fixture(scope="module")
def tiny(cifar_subset_root):
    """Splits of the small real CIFAR-10 copy: 256 train, 100 validation, 100 test images."""
    data = load_dataset("imagefolder", cifar_subset_root / "cifar10", cache_dir=None)
    return make_splits(data, val_size=100, train_size=256, test_size=100)
