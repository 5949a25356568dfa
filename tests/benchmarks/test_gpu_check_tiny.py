"""The GPU check's tiny CPU mode runs end to end (so that the script is ready the day a GPU is lent)."""

import json
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
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(report["device"]["matmul_tflops"]) >= {"bf16", "fp32"}
    pipelines = [r["pipeline"] for r in report["throughput"]]
    assert pipelines[0].startswith("baseline") and any(p.startswith("engine: bf16") for p in pipelines)
    # MFU is against the matmul rate measured in the same run, not a hardware limit (CI's CPU ran convolutions
    # faster than a square torch.mm): its arithmetic and units are checked, not its size
    peaks = report["device"]["matmul_tflops"]
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
    assert 0 < by_every[2] < by_every[1] < 1  # the same passes, half as often
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| resnet20 | baseline" in md and "CUDA-only tests: no CUDA device" in md
    assert "Evaluation share of a resnet20 epoch" in md
