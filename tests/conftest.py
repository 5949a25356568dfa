"""Shared fixtures. Tests that need real CIFAR-10 FAIL (never skip) when it is missing."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n N` (pytest-xdist): one torch thread per worker process and per command the tests start, so that
    # N workers on N cores do not oversubscribe them
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


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


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory) -> Path:
    """``$FOCALCAL_CACHE`` for the whole session, set before any fixture of any scope runs (so module-scoped
    ones too keep decoded images and precision measurements out of the user's ~/.cache), and shared by the
    workers of ``pytest -n N`` (every write to it is atomic)."""
    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FOCALCAL_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def cifar_root(_session_cache) -> Path:
    """The real CIFAR-10's data root, its 60,000 images decoded into the session's cache on first use (by one
    worker, the others wait: decoding takes ~15 s of a core)."""
    from focalcal.data import load_dataset

    root = cifar10_root()
    _session_cache.mkdir(parents=True, exist_ok=True)
    with open(_session_cache / ".cifar10.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        load_dataset("cifar10", root)
    return root


@pytest.fixture(scope="session")
def cifar_subset_root(tmp_path_factory) -> Path:
    """A small real CIFAR-10 copy: 60 train and 20 test PNGs per class, in the same image-folder layout."""
    root = tmp_path_factory.mktemp("cifar_subset")
    full = cifar10_root()
    for split, n in (("train", 60), ("test", 20)):
        for cls_dir in sorted((full / "cifar10" / split).iterdir()):
            dst = root / "cifar10" / split / cls_dir.name
            dst.mkdir(parents=True)
            for f in sorted(cls_dir.iterdir())[:n]:
                shutil.copy(f, dst / f.name)
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(_session_cache, monkeypatch):
    """Keep decoded-image caches of tests out of the user's ~/.cache (a test that changed it gets it back)."""
    monkeypatch.setenv("FOCALCAL_CACHE", str(_session_cache))


@pytest.fixture
def quick_precision(monkeypatch):
    """The CPU precision measurements (``focalcal.engine.precision``: training setting and evaluation layout)
    with one warm-up step and one timed round per candidate instead of 2 and 5: their code runs in full, for a
    test that needs them to run but not to time well (they pick a run's speed; the tests using this fixture
    assert nothing that depends on the pick)."""
    from focalcal.engine import precision

    monkeypatch.setattr(precision, "WARMUP", 1)
    monkeypatch.setattr(precision, "STEPS", 1)


def tiny_train_args(data_root: Path, out: Path, **overrides: str) -> list[str]:
    """``focalcal train`` arguments for a few-second run on the small image-folder copy of CIFAR-10 (float32,
    NCHW, CPU); ``overrides`` replace or add flags (``epochs="3"`` -> ``--epochs 3``; ``""`` drops a flag's value)."""
    flags = {
        "dataset": "imagefolder",
        "data-dir": str(data_root / "cifar10"),
        "loss": "ce",
        "epochs": "2",
        "train-size": "128",
        "val-size": "64",
        "test-size": "64",
        "batch-size": "64",
        "dynamics-train-size": "32",
        "dynamics-test-size": "32",
        "device": "cpu",
        "out": str(out),
    }
    flags.update({k.replace("_", "-"): v for k, v in overrides.items()})
    args = ["train"]
    for k, v in flags.items():
        args += [f"--{k}"] + ([v] if v != "" else [])
    return [*args, "--no-amp", "--no-channels-last", "--no-progress"]


@pytest.fixture(scope="session")
def train_args(cifar_subset_root):
    """:func:`tiny_train_args` bound to the small CIFAR-10 copy: ``train_args(out, epochs="3")``."""
    return lambda out, **overrides: tiny_train_args(cifar_subset_root, out, **overrides)


TEXT_ARCHIVES = ("20news-19997.tar.gz", "trainDevTestTrees_PTB.zip")


@pytest.fixture(scope="session")
def text_root() -> Path:
    """The folder holding the real text archives (20 Newsgroups, SST): <root>/text with root = $FOCALCAL_DATA,
    else ../shared/data. Tests that need it FAIL (never skip) when it is missing."""
    for root in (os.environ.get("FOCALCAL_DATA"), REPO.parent / "shared" / "data", REPO / "data"):
        if root and all((Path(root) / "text" / name).is_file() for name in TEXT_ARCHIVES):
            return Path(root) / "text"
    pytest.fail(
        f"real text data not found: expected <root>/text/{{{','.join(TEXT_ARCHIVES)}}} with root = $FOCALCAL_DATA "
        f"or {REPO.parent / 'shared' / 'data'}; these tests must not be skipped"
    )
