"""The GPU check's tiny CPU mode runs end to end (so that the script is ready the day a GPU is lent)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_tiny_mode_prints_every_section(cifar_root, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--tiny", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FOCALCAL_DATA": str(cifar_root)},  # the real CIFAR-10, wherever pytest was started
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(report["device"]["matmul_tflops"]) >= {"bf16", "fp32"}
    pipelines = [r["pipeline"] for r in report["throughput"]]
    assert pipelines[0].startswith("baseline") and any(p.startswith("engine: bf16") for p in pipelines)
    # MFU is against the matmul rate measured in the same run, not a hardware limit (CI's CPU ran convolutions
    # faster than a square torch.mm): its arithmetic and units are checked, not its size
    peaks = report["device"]["matmul_tflops"]
    assert all(1e-3 < v < 1e4 for v in peaks.values())  # TFLOP/s: a 2-core CPU ~0.2, a current GPU ~1000
    for r in report["throughput"]:
        peak = peaks["bf16" if "bf16" in r["pipeline"] else "fp32"] * 1e12
        assert r["images_per_s"] > 0
        assert r["mfu"] == pytest.approx(r["images_per_s"] * r["gflop_per_image"] * 1e9 / peak)
        # ResNet-20: about 41 M multiply-adds forward (He et al. 2016), x2 FLOPs, x3 with the backward pass
        assert 0.23 < r["gflop_per_image"] < 0.26
    assert [r["loss"] for r in report["real_run"]] == ["ce", "flsd53"]
    assert all(0 <= r["error"] <= 1 and r["epochs"] == 1 for r in report["real_run"])
    assert "resnet20" in report["projection"]["one_run_hours"]
    e = report["eval_share"]
    assert e["model"] == "resnet20" and e["train_s_per_image"] > 0 and e["eval_s_per_image"] > 0
    by_every = {r["dynamics_every"]: r["share"] for r in e["shares"] if r["dynamics_test_size"] is None}
    tt, te = e["train_s_per_image"], e["eval_s_per_image"]  # by hand: 45,000 training images per epoch,
    for every, n_eval in ((1, 5000 + 2000 + 10000), (2, 5000 + (2000 + 10000) / 2)):  # 5,000 val every epoch
        assert by_every[every] == pytest.approx(n_eval * te / (45000 * tt + n_eval * te))
    assert [r["dynamics_every"] for r in e["shares"] if r["preset"]] == [2]  # the paper preset's choice
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| resnet20 | baseline" in md and "CUDA-only tests: no CUDA device" in md
    assert "Evaluation share of a resnet20 epoch" in md
