"""The README's "Use with your own model" section runs as written: its three commands and its Python."""

import re
import shlex
import shutil
import subprocess
import sys
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


def test_the_readme_commands_run(cifar_subset_root, tmp_path):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (400,), generator=g)
    z = 3 * torch.nn.functional.one_hot(y, 10) + 2 * torch.randn(400, 10, generator=g)
    np.savez(tmp_path / "val_outputs.npz", logits=z[:200].numpy(), labels=y[:200].numpy())
    np.savez(tmp_path / "test_outputs.npz", logits=z[200:].numpy(), labels=y[200:].numpy())
    np.save(tmp_path / "new_logits.npy", torch.randn(20, 10, generator=g).numpy())
    for split, n in (("train", 20), ("test", 10)):  # a small image folder of one's own: 2 classes
        for cls in ("cat", "dog"):
            dst = tmp_path / "my_images" / split / cls
            dst.mkdir(parents=True)
            for f in sorted((cifar_subset_root / "cifar10" / split / cls).iterdir())[:n]:
                shutil.copy(f, dst / f.name)
    (commands,) = _blocks("bash")
    lines = [ln for ln in commands.splitlines() if ln.strip()]
    assert len(lines) == 3
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == ".venv/bin/focalcal"
        quiet = ["--no-progress"] if argv[1] == "train" else []
        cmd = [sys.executable, "-m", "focalcal.cli.main", *argv[1:], *quiet]
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, (line, proc.stderr[-2000:])
    probs = np.load(tmp_path / "new_probs.npy")
    assert probs.shape == (20, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (tmp_path / "calibration" / "calibration.md").is_file()
    assert (tmp_path / "runs" / "mine" / "report.json").is_file()


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
