"""The bf16-vs-fp32 inference comparison runs on a trained run folder and prints every monitoring number."""

import subprocess
import sys
from pathlib import Path

from focalcal.cli.main import main as cli

REPO = Path(__file__).resolve().parents[2]


def test_eval_precision_compares_each_number_of_a_trained_run(train_args, tmp_path):
    run = tmp_path / "run"
    assert cli(train_args(run, epochs="1")) == 0
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "eval_precision.py"), str(run), "--n", "64"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    (row,) = [ln.split() for ln in lines if ln.split()[0].endswith("/run")]  # labelled by its last folders
    nll, ece, error = (float(v) for v in row[1:7:2])  # (fp32 value, bf16 - fp32) per number
    assert 0 < nll < 10 and 0 <= ece <= 100 and 0 <= error <= 100  # NLL in nats, ECE and error in %
    worst = [float(v) for v in next(ln for ln in lines if ln.startswith("largest |delta|")).split()[2:]]
    assert len(worst) == 7 and all(0 <= v < 10 for v in worst)
    assert max(worst) > 0  # bf16 logits do differ: the autocast pass really ran in bf16
    assert "inference time, all runs" in lines[-1]
