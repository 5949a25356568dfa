"""The data fingerprint: a run's checkpoint and report keep a hash of its validation and test splits, and
``focalcal evaluate`` refuses data whose splits differ (same classes, one test image swapped) without writing."""

from __future__ import annotations

import importlib
import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from focalcal.cli.main import main
from focalcal.data import DataSplits, ImageModality, TokenModality, TreeModality
from focalcal.data.trees import Trees

E = importlib.import_module("focalcal.evaluation.evaluate")  # the module (the package exports a function of that name)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("focalcal: error:") and "Traceback" not in err, err
    return lines[0]


def _after_five_test_images(folder: str, names: list[str]) -> list[str]:
    return sorted(names)[5:] if Path(folder).parent.name == "test" else []


@pytest.fixture(scope="module")
def trained(cifar_subset_root, train_args, tmp_path_factory):
    """A tiny run trained and evaluated on a copy of the small CIFAR-10 with 5 test images per class (all 50
    evaluated), and a second copy of that data with one test PNG replaced by another image of the same class
    (training images untouched, so the normalisation still matches)."""
    root = tmp_path_factory.mktemp("fingerprint")
    own = shutil.copytree(cifar_subset_root, root / "own", ignore=_after_five_test_images)
    run = root / "run"
    args = train_args(
        run, data_dir=str(own / "cifar10"), test_size="50", epochs="1", dynamics_train_size="0", dynamics_test_size="0"
    )
    assert main(args) == 0
    swapped = shutil.copytree(own, root / "swapped")
    target = sorted((swapped / "cifar10" / "test" / "cat").iterdir())[3]
    other = sorted((own / "cifar10" / "train" / "cat").iterdir())[0]
    assert target.read_bytes() != other.read_bytes()
    shutil.copyfile(other, target)
    return run, own / "cifar10", swapped / "cifar10"


def test_a_swapped_test_image_is_refused_before_any_work_and_nothing_is_written(trained, capsys, monkeypatch):
    run, _, swapped = trained
    stored = torch.load(run / "final.pt", weights_only=False)["data_fingerprint"]
    assert set(stored) == {"val", "test"}
    assert json.loads((run / "report.json").read_text())["data_fingerprint"] == stored
    before = _snapshot(run)
    monkeypatch.setattr(E, "run_logits", lambda *a, **k: pytest.fail("computed logits on refused data"))
    assert main(["evaluate", str(run), "--data-dir", str(swapped), "--device", "cpu"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "test split differs" in line and "validation" not in line, line
    assert stored["test"] in line and "--data-dir" in line and "focalcal calibrate" in line, line
    assert _snapshot(run) == before  # report.json (bytes) and everything else untouched


def test_the_same_data_elsewhere_evaluates_to_the_same_numbers(trained, tmp_path):
    run, own, _ = trained
    first = json.loads((run / "report.json").read_text())
    moved = shutil.copytree(own, tmp_path / "moved")
    assert main(["evaluate", str(run), "--data-dir", str(moved), "--device", "cpu"]) == 0
    again = json.loads((run / "report.json").read_text())
    assert again["data_fingerprint"] == first["data_fingerprint"]
    assert again["n_test"] == 50
    for stage in ("before", "after"):
        assert again["test"][stage] == pytest.approx(first["test"][stage], rel=1e-5, abs=1e-7)


def test_a_checkpoint_without_fingerprint_is_evaluated_as_before(trained, tmp_path):
    run, _, swapped = trained
    old = shutil.copytree(run, tmp_path / "old_run")
    state = torch.load(old / "final.pt", weights_only=False)
    del state["data_fingerprint"]  # as runs made before fingerprints
    torch.save(state, old / "final.pt")
    assert main(["evaluate", str(old), "--data-dir", str(swapped), "--device", "cpu"]) == 0
    report = json.loads((old / "report.json").read_text())
    first = json.loads((run / "report.json").read_text())
    # the report names the data it scored: the swapped test split, the same validation split
    assert report["data_fingerprint"]["val"] == first["data_fingerprint"]["val"]
    assert report["data_fingerprint"]["test"] != first["data_fingerprint"]["test"]


def _splits(inputs, labels, modality) -> DataSplits:
    return DataSplits(inputs, labels, inputs, labels, inputs, labels, ["a", "b", "c"], modality)


def test_every_modality_fingerprints_inputs_and_labels():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8, generator=g)
    tokens = torch.randint(0, 50, (6, 7), generator=g)
    trees = Trees.from_lists([([5, 7, -1], [-1, -1, 0], [-1, -1, 1], [2, 0, 2]), ([9], [-1], [-1], [1])] * 3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    cases = [
        (images, ImageModality((0.5,) * 3, (0.2,) * 3)),
        (tokens, TokenModality(vocab_size=50, embedding_dim=None)),
        (trees, TreeModality(vocab_size=50, embedding_dim=None)),
    ]
    for inputs, modality in cases:
        fp = _splits(inputs, labels, modality).fingerprint()
        assert set(fp) == {"val", "test"} and fp["val"] == fp["test"] and len(fp["test"]) == 16
        same = _splits(modality.take(inputs, torch.arange(6)), labels.clone(), modality).fingerprint()
        assert same == fp  # equal data in other memory: equal fingerprint
        other_labels = labels.clone()
        other_labels[4] = 0
        assert _splits(inputs, other_labels, modality).fingerprint()["test"] != fp["test"]
        swapped = modality.take(inputs, torch.tensor([0, 1, 2, 3, 5, 4]))  # two samples exchanged
        assert _splits(swapped, labels, modality).fingerprint()["test"] != fp["test"], modality.name
    # one leaf's word changed (the tree's structure and labels kept)
    words = trees.words.clone()
    words[0] = 6
    changed = Trees(words, trees.left, trees.right, trees.labels, trees.offsets)
    tree_mod = cases[2][1]
    assert tree_mod.fingerprint(changed, labels) != tree_mod.fingerprint(trees, labels)


def test_fingerprinting_cifar10_sized_test_split_takes_well_under_a_second():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10_000, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (10_000,), generator=g)
    modality = ImageModality((0.5,) * 3, (0.2,) * 3)
    start = time.perf_counter()
    fp = modality.fingerprint(images, labels)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, elapsed
    images[9_999, 2, 31, 31] ^= 1  # the last byte of the last image
    assert modality.fingerprint(images, labels) != fp
