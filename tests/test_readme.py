"""The README's "Use with your own model" section runs as written: its three commands and its Python."""

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## Use with your own model")
    return text[start : text.index("\n## ", start + 10)]


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", _section(), flags=re.S)


def _commands() -> list[str]:
    (commands,) = _blocks("bash")
    lines = [ln for ln in commands.splitlines() if ln.strip()]
    assert len(lines) == 3 and all(shlex.split(ln)[0] == ".venv/bin/focalcal" for ln in lines)
    return lines


def _run(line: str, *extra: str) -> None:
    """One README command as written (``main`` is what ``.venv/bin/focalcal`` calls), in the current folder."""
    from focalcal.cli.main import main

    assert main([*shlex.split(line)[1:], *extra]) == 0, line


def test_the_readme_calibrate_commands_run(tmp_path, monkeypatch):
    """The two ``calibrate`` commands as written: fit on saved outputs, then apply the calibrator."""
    monkeypatch.chdir(tmp_path)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (400,), generator=g)
    z = 3 * torch.nn.functional.one_hot(y, 10) + 2 * torch.randn(400, 10, generator=g)
    np.savez(tmp_path / "val_outputs.npz", logits=z[:200].numpy(), labels=y[:200].numpy())
    np.savez(tmp_path / "test_outputs.npz", logits=z[200:].numpy(), labels=y[200:].numpy())
    np.save(tmp_path / "new_logits.npy", torch.randn(20, 10, generator=g).numpy())
    fit, apply = _commands()[:2]
    _run(fit)
    _run(apply)
    probs = np.load(tmp_path / "new_probs.npy")
    assert probs.shape == (20, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (tmp_path / "calibration" / "calibration.md").is_file()


def test_the_readme_train_command_runs(cifar_subset_root, tmp_path, monkeypatch, quick_precision):
    """The ``train`` command as written, on an image folder of 3 + 2 real images per class, with two flags
    appended: ``--no-progress`` and ``--epochs 2`` (the line's own 30 epochs only set the cost: every flag as
    written is still parsed and used, and the last given wins), under the shortest CPU precision measurement
    (``quick_precision``)."""
    monkeypatch.chdir(tmp_path)
    for split, n in (("train", 3), ("test", 2)):  # a small image folder of one's own: 2 classes
        for cls in ("cat", "dog"):
            dst = tmp_path / "my_images" / split / cls
            dst.mkdir(parents=True)
            for f in sorted((cifar_subset_root / "cifar10" / split / cls).iterdir())[:n]:
                shutil.copy(f, dst / f.name)
    _run(_commands()[2], "--no-progress", "--epochs", "2")
    config = json.loads((tmp_path / "runs" / "mine" / "config.json").read_text())
    wanted = {
        "dataset": "imagefolder",
        "data_dir": str((tmp_path / "my_images").resolve()),  # the relative path as given, stored absolute
        "image_size": 32,
        "model": "timm:resnet18",
    }
    assert {k: config[k] for k in wanted} == wanted and config["model_options"] == {"cifar_stem": True}
    report = json.loads((tmp_path / "runs" / "mine" / "report.json").read_text())
    assert (report["loss"], report["epochs_trained"], report["n_test"]) == ("flsd53", 2, 4)


def test_the_readme_python_runs():
    (code,) = _blocks("python")
    g = torch.Generator().manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    y = torch.randint(0, 10, (300,), generator=g)
    z = 2 * torch.nn.functional.one_hot(y, 10) + torch.randn(300, 10, generator=g)
    namespace = {
        "model": model,
        "images": torch.randn(16, 3, 8, 8, generator=g),
        "labels": torch.randint(0, 10, (16,), generator=g),
        "val_logits": z[:150],
        "val_labels": y[:150],
        "test_logits": z[150:],
        "test_labels": y[150:],
    }
    exec(compile(code, "README.md", "exec"), namespace)
    assert torch.isfinite(namespace["loss"]) and 0.5 < namespace["ts"].temperature < 5
