"""Shared fixtures. Tests that need real CIFAR-10 FAIL (never skip) when it is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def cifar10_root() -> Path:
    """The data root holding ``cifar10/{train,test}``: $FOCALCAL_DATA, else ../shared/data."""
    candidates = [os.environ.get("FOCALCAL_DATA"), REPO.parent / "shared" / "data", REPO / "data"]
    for c in candidates:
        if c and (Path(c) / "cifar10" / "train").is_dir() and (Path(c) / "cifar10" / "test").is_dir():
            return Path(c)
    pytest.fail(
        "real CIFAR-10 not found: expected <root>/cifar10/{train,test}/<class>/*.png with root = $FOCALCAL_DATA "
        f"or {REPO.parent / 'shared' / 'data'}; these tests must not be skipped"
    )


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    return cifar10_root()


@pytest.fixture(scope="session")
def cifar_subset_root(tmp_path_factory, cifar_root) -> Path:
    """A small real CIFAR-10 copy: 60 train and 20 test PNGs per class, in the same image-folder layout."""
    root = tmp_path_factory.mktemp("cifar_subset")
    for split, n in (("train", 60), ("test", 20)):
        for cls_dir in sorted((cifar_root / "cifar10" / split).iterdir()):
            dst = root / "cifar10" / split / cls_dir.name
            dst.mkdir(parents=True)
            for f in sorted(cls_dir.iterdir())[:n]:
                shutil.copy(f, dst / f.name)
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep decoded-image caches of tests out of the user's ~/.cache."""
    monkeypatch.setenv("FOCALCAL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
