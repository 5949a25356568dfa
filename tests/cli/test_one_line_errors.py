"""Bad input, or a machine that lacks something, gives ONE line naming the problem and the fix (exit status 2),
never a traceback or a misleading message; and a failed command leaves behind no folder it created."""

from __future__ import annotations

import dataclasses
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from focalcal.calibration import compare as compare_mod
from focalcal.calibration.compare import default_candidates
from focalcal.cli.main import main
from focalcal.data import datasets as datasets_mod
from focalcal.data import load_dataset
from focalcal.errors import DataError


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("focalcal: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _copy(src: Path, dst: Path, per_class: dict[str, int]) -> Path:
    """A copy of ``src/{train,test}/<class>/*.png`` keeping the first ``per_class[split]`` images of each class."""
    for split, n in per_class.items():
        for cls_dir in sorted((src / split).iterdir()):
            (dst / split / cls_dir.name).mkdir(parents=True)
            for f in sorted(cls_dir.iterdir())[:n]:
                shutil.copy(f, dst / split / cls_dir.name / f.name)
    return dst


@pytest.fixture(scope="module")
def run_dir(cifar_subset_root, tmp_path_factory) -> Path:
    """A one-epoch run on its own copy of the small CIFAR-10 subset (so that OOD sets are looked for there)."""
    base = tmp_path_factory.mktemp("one_line")
    data = _copy(cifar_subset_root / "cifar10", base / "data" / "cifar10", {"train": 60, "test": 20})
    run = base / "run"
    args = ["train", "--dataset", "imagefolder", "--data-dir", str(data), "--epochs", "1", "--train-size", "64"]
    args += ["--val-size", "32", "--test-size", "32", "--batch-size", "32", "--dynamics-train-size", "0"]
    args += ["--dynamics-test-size", "0", "--device", "cpu", "--no-amp", "--no-channels-last", "--no-progress"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FOCALCAL_CACHE", str(base / "cache"))
        assert main([*args, "--out", str(run), "--no-eval"]) == 0
    return run


# -- devices this machine does not have --------------------------------------------------------------------
@pytest.mark.parametrize("device", ["cuda", "tpu"])
@pytest.mark.parametrize("command", ["train", "evaluate", "ood"])
def test_a_device_this_machine_lacks_is_one_line(command, device, run_dir, tmp_path, train_args, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU, wherever this runs
    out = tmp_path / "new_run"
    argv = {
        "train": train_args(out, device=device),
        "evaluate": ["evaluate", str(run_dir), "--device", device],
        "ood": ["ood", str(run_dir), "--ood", "cifar10c:gaussian_noise:5", "--device", device],
    }[command]
    assert main(argv) == 2
    line = _one_line_error(capsys)
    assert repr(device) in line or f"--device {device}" in line
    assert "--device cpu" in line or "cpu" in line.split(":", 2)[-1]
    if device == "cuda":
        assert "no usable CUDA GPU" in line
    else:
        assert "unknown device 'tpu'" in line and "auto, cpu, cuda or cuda:N" in line
    assert not out.exists()  # train refused before creating its run folder


# -- CIFAR-10-C names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,expected",
    [
        ("cifar10c:nosuch:5", "gaussian_noise, shot_noise, impulse_noise, defocus_blur, contrast, brightness"),
        ("cifar10c:gaussian_noise:9", "1, 2, 3, 4, 5"),
    ],
)
def test_unknown_corruption_or_severity_lists_the_valid_ones(name, expected, run_dir, capsys):
    assert main(["ood", str(run_dir), "--ood", name, "--device", "cpu"]) == 2
    line = _one_line_error(capsys)
    assert name in line and expected in line


# -- calibrate's input files ----------------------------------------------------------------------------------
def _outputs(path: Path, n: int = 40, k: int = 4, seed: int = 0) -> Path:
    g = np.random.default_rng(seed)
    np.savez(path, logits=g.normal(size=(n, k)).astype(np.float32), labels=g.integers(0, k, n))
    return path


def test_calibrate_an_empty_file_says_it_is_empty(tmp_path, capsys):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    test = _outputs(tmp_path / "test.npz")
    argv = ["calibrate", "--kind", "logits", "--val", str(empty), "--test", str(test)]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    line = _one_line_error(capsys)
    assert str(empty) in line and "empty (0 bytes)" in line and ".npz" in line
    assert not (tmp_path / "o").exists()


def test_calibrate_a_directory_says_it_is_a_directory_and_what_files_are_read(tmp_path, capsys):
    folder = tmp_path / "outputs"
    folder.mkdir()
    test = _outputs(tmp_path / "test.npz")
    argv = ["calibrate", "--kind", "logits", "--val", str(folder), "--test", str(test)]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    line = _one_line_error(capsys)
    assert f"{folder} is a directory" in line and "does not exist" not in line
    assert all(suffix in line for suffix in (".pt", ".npz", ".npy", ".csv"))


@pytest.mark.parametrize("content", ['{"a": 1}', "[1, 2]", '{"name": "temperature"}', '{"calibrator": {"name": "x"}}'])
def test_a_json_file_that_is_not_a_calibrator_is_named(content, tmp_path, capsys):
    bogus = tmp_path / "bogus.json"
    bogus.write_text(content)
    scores = tmp_path / "scores.npy"
    np.save(scores, np.zeros((5, 3), dtype=np.float32))
    argv = ["calibrate", "--kind", "logits", "--apply", str(bogus), "--input", str(scores)]
    assert main([*argv, "--out", str(tmp_path / "p.npy")]) == 2
    line = _one_line_error(capsys)
    assert str(bogus) in line and "not a calibrator" in line and "calibrator.json" in line
    assert not (tmp_path / "p.npy").exists()


# -- sweep without SLURM ---------------------------------------------------------------------------------------
def test_sweep_on_slurm_where_there_is_none_says_what_to_use(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no sbatch / srun here, whatever the machine has
    out = tmp_path / "sweep"
    assert main(["sweep", "cpu", "--launcher", "slurm", "--out", str(out), "--set", "epochs=1"]) == 2
    line = _one_line_error(capsys)
    assert "SLURM is not available here" in line and "--launcher local" in line
    assert not out.exists()


# -- downloads without a network ------------------------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch):
    """Every URL fails as it does on a machine without a network (torchvision downloads through urlopen)."""

    def fail(*_args, **_kw):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", fail)


def test_train_download_without_network_says_where_to_put_the_files(no_network, tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-batches-py").mkdir()  # damaged: the integrity check advises --download
    argv = ["train", "--dataset", "cifar10", "--data-dir", str(root), "--epochs", "1", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert "--download" in _one_line_error(capsys)
    shutil.rmtree(root / "cifar-10-batches-py")  # as advised, then --download: the network fails
    assert main([*argv, "--out", str(tmp_path / "run"), "--download"]) == 2
    line = _one_line_error(capsys)
    assert "downloading CIFAR-10" in line and "failed" in line and "Name or service not known" in line
    assert "by hand" in line and str(root / "cifar10") in line and "cifar-10-python.tar.gz" in line
    assert list(root.iterdir()) == [] and not (tmp_path / "run").exists()  # nothing left that it created

    missing = tmp_path / "new" / "root"  # a data root that does not exist: not created either
    argv[argv.index(str(root))] = str(missing)
    assert main([*argv, "--out", str(tmp_path / "run"), "--download"]) == 2
    assert "downloading CIFAR-10" in _one_line_error(capsys)
    assert not (tmp_path / "new").exists() and not (tmp_path / "run").exists()


def test_ood_download_without_network_leaves_no_empty_svhn_folder(no_network, run_dir, capsys):
    data = Path(json.loads((run_dir / "config.json").read_text())["data_dir"])
    assert main(["ood", str(run_dir), "--ood", "svhn", "--download", "--device", "cpu"]) == 2
    line = _one_line_error(capsys)
    assert "downloading the SVHN test split" in line and "failed" in line
    assert str(data / "svhn" / "test_32x32.mat") in line and "by hand" in line
    assert not (data / "svhn").exists()


# -- run folders -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["evaluate", "ood"])
def test_a_file_given_as_a_run_folder_says_so(command, run_dir, capsys):
    argv = [command, str(run_dir / "config.json")] + (["--ood", "svhn"] if command == "ood" else [])
    assert main(argv) == 2
    line = _one_line_error(capsys)
    assert "is a file, not a run folder" in line and f"{run_dir} is the run's folder" in line
    assert "File exists" not in line


# -- image folders -------------------------------------------------------------------------------------------------
def test_different_class_folders_are_named(cifar_subset_root, tmp_path, train_args, capsys):
    root = tmp_path / "three"
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("airplane", "bird", "cat"):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((cifar_subset_root / "cifar10" / split / cls).iterdir())[:n]:
                shutil.copy(f, root / split / cls / f.name)
    (root / "test" / "cat").rename(root / "test" / "kitten")
    assert main(train_args(tmp_path / "run", data_dir=str(root), train_size="8", val_size="4", test_size="4")) == 2
    line = _one_line_error(capsys)
    assert "only in train/: cat" in line and "only in test/: kitten" in line


def test_a_wrong_size_png_in_cifar10_names_the_file_and_what_works(cifar_subset_root, tmp_path, monkeypatch):
    root = _copy(cifar_subset_root / "cifar10", tmp_path / "cifar10", {"train": 6, "test": 2})
    # the copy passes as CIFAR-10 except for its image counts, which this test is not about
    facts = dataclasses.replace(datasets_mod.DATASET_FACTS["cifar10"], train=60, test=20)
    monkeypatch.setitem(datasets_mod.DATASET_FACTS, "cifar10", facts)
    odd = sorted((root / "train" / "cat").iterdir())[0]
    Image.new("RGB", (40, 40), (0, 128, 255)).save(odd)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", tmp_path, cache_dir=None)
    msg = str(info.value)
    assert str(odd) in msg and "(40x40)" in msg and "32x32" in msg and "1 image(s)" in msg
    assert "--dataset imagefolder --image-size" in msg and "remove" in msg
    assert "\n" not in msg


# -- calibrators whose cost is prohibitive for the input ------------------------------------------------------------
def test_the_cost_of_each_calibrator_grows_as_its_fits_do():
    """Isotonic regression fits one map per class (6 times with the 5 cross-validation folds): its estimate is
    linear in the classes; the paper's grid makes 100 passes over the scores where the NLL fit makes about 30."""
    cost = compare_mod.cv_seconds
    cands = {c.label: c for c in default_candidates(100_000)}
    iso = cands["isotonic regression"]
    assert cost(iso, 50, 100_000) == pytest.approx(10 * cost(iso, 50, 10_000), rel=1e-9)
    assert cost(cands["TS (ECE grid)"], 5000, 100) / cost(cands["TS (NLL)"], 5000, 100) == pytest.approx(100 / 30)
    # 600,000 isotonic fits at >= 1 ms each is over the limit; CIFAR-100's 5,000 x 100 skips nothing
    kept, skipped = compare_mod.affordable(default_candidates(100_000), 50, 100_000)
    assert {c.label for c, _ in skipped} >= {"isotonic regression", "vector scaling"}
    assert all(s > compare_mod.MAX_DEFAULT_FIT_SECONDS for _, s in skipped)
    assert cost(iso, 50, 100_000) >= 6 * 100_000 * 1e-3
    assert kept[0].label == "TS (NLL)" and "histogram binning" in {c.label for c in kept}
    assert compare_mod.affordable(default_candidates(100), 5000, 100)[1] == []


def test_calibrate_skips_prohibitive_calibrators_with_one_note_and_fits_them_when_named(tmp_path, capsys, monkeypatch):
    val, test = _outputs(tmp_path / "val.npz", n=60, k=5, seed=1), _outputs(tmp_path / "test.npz", n=60, k=5, seed=2)
    monkeypatch.setattr(compare_mod, "MAX_DEFAULT_FIT_SECONDS", 0.0)  # every default is "too slow" but the first
    base = ["calibrate", "--kind", "logits", "--val", str(val), "--test", str(test), "--n-boot", "0"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: skipped")]
    assert len(notes) == 1
    report = json.loads((tmp_path / "a" / "calibration.json").read_text())
    assert [c["label"] for c in report["calibrators"]] == ["TS (NLL)"]
    skipped = [s["label"] for s in report["skipped"]]
    assert skipped == [c.label for c in default_candidates(5)[1:]]
    assert all(label in notes[0] for label in skipped) and "--calibrators" in notes[0]
    assert "isotonic" in notes[0].split("--calibrators", 1)[1]
    # named explicitly, a calibrator is fitted whatever its estimated cost, without a note
    assert main([*base, "--out", str(tmp_path / "b"), "--calibrators", "isotonic"]) == 0
    assert "note: skipped" not in capsys.readouterr().out
    report = json.loads((tmp_path / "b" / "calibration.json").read_text())
    assert [c["name"] for c in report["calibrators"]] == ["isotonic"] and report["skipped"] == []
