"""Two-process training on the CPU through torchrun (gloo): sharding, DDP, rank-0-only files."""

import json
import os
import subprocess
import sys

import torch

from focalcal.data import DeviceLoader


def test_shards_are_disjoint_equal_and_cover_the_permutation():
    x = torch.zeros(10, 3, 2, 2, dtype=torch.uint8)
    y = torch.arange(10)
    kw = dict(batch_size=2, mean=(0,) * 3, std=(1,) * 3, shuffle=True, seed=3)
    shards = [torch.cat([b for _, b in DeviceLoader(x, y, rank=r, world_size=3, **kw).epoch(1)]) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]  # 10 // 3 each: equal step counts on every rank
    together = torch.cat(shards)
    assert len(set(together.tolist())) == 9
    single = torch.cat([b for _, b in DeviceLoader(x, y, **kw).epoch(1)])
    assert set(together.tolist()) <= set(single.tolist()) and len(single) == 10


def test_torchrun_two_processes_train_and_only_rank0_writes(cifar_subset_root, tmp_path):
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "focalcal.cli.main",
        "train",
        "--dataset",
        "imagefolder",
        "--data-dir",
        str(cifar_subset_root / "cifar10"),
        "--model",
        "resnet20",
        "--loss",
        "ce",
        "--epochs",
        "2",
        "--train-size",
        "256",
        "--val-size",
        "64",
        "--test-size",
        "64",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        "--dynamics-train-size",
        "32",
        "--no-progress",
        "--out",
        str(run),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]  # one line per epoch: rank 1 did not write
    assert all(0 <= r["train_acc"] <= 1 and r["train_loss"] > 0 for r in log)
    assert (run / "final.pt").is_file() and (run / "report.json").is_file()
    assert proc.stdout.count("test error") == 1


_AGREE = """
import sys
from pathlib import Path

from focalcal.engine.distributed import all_ranks_true, init_from_env

info = init_from_env("cpu")
# rank 0 has fast bf16, rank 1 does not; both want channels_last only with bf16; the last flag is true everywhere
agreed = all_ranks_true([info.rank == 0, info.rank == 0, True], info)
Path(sys.argv[1], f"rank{info.rank}.txt").write_text(str(agreed))  # one file each: stdout lines would interleave
"""


def test_ranks_on_different_hardware_agree_on_precision(tmp_path):
    script = tmp_path / "agree.py"
    script.write_text(_AGREE)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    cmd.append(str(tmp_path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text() == "[False, False, True]"
