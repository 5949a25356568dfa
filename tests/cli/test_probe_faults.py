"""Faults a probe of the command line found: bootstrap memory with many classes, the claims page without
FL-3 / FLSD-53 runs, and a sweep's device checked before any job starts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcal.cli.main import main
from focalcal.metrics import bootstrap as bootstrap_mod
from focalcal.metrics import bootstrap_ci

NEEDS_FOCAL = "not measurable: needs FL-3 or FLSD-53 runs"
RUNS = Path(__file__).resolve().parents[2] / "docs" / "claims" / "runs" / "cifar10" / "resnet20"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("focalcal: error:")]
    assert len(lines) == 1, err
    return lines[0]


# -- 1. bootstrap of classwise-ECE: memory bounded by the block it allocates -------------------------------------
def _record_blocks(monkeypatch) -> list[int]:
    """The number of elements of each ``[resamples, 5 K n_bins]`` block the classwise batches allocate."""
    sizes: list[int] = []
    inner = bootstrap_mod._classwise_batch

    def recording(d, idx, n_bins, closed="left"):
        sizes.append(idx.shape[0] * 5 * d.k * n_bins)
        return inner(d, idx, n_bins, closed)

    monkeypatch.setattr(bootstrap_mod, "_classwise_batch", recording)
    return sizes


def test_classwise_bootstrap_blocks_stay_bounded_with_the_same_interval(monkeypatch):
    g = torch.Generator().manual_seed(3)
    n, k, n_bins, n_boot = 60, 300, 15, 40
    logits = 4.0 * torch.randn(n, k, generator=g)
    labels = torch.randint(0, k, (n,), generator=g)
    kw = {"logits": logits, "labels": labels, "n_bins": n_bins, "n_boot": n_boot, "seed": 7}

    monkeypatch.setattr(bootstrap_mod, "CHUNK_ELEMENTS", 1 << 40)  # every resample in one block
    whole = bootstrap_ci("calibration_summary", **kw)
    whole_cw = bootstrap_ci("classwise_ece", **kw)

    limit = 5 * k * n_bins * 3  # three resamples' worth: the old chunking (by N only) put all 40 in one block
    monkeypatch.setattr(bootstrap_mod, "CHUNK_ELEMENTS", limit)
    sizes = _record_blocks(monkeypatch)
    split = bootstrap_ci("calibration_summary", **kw)
    split_cw = bootstrap_ci("classwise_ece", **kw)

    assert sizes and max(sizes) <= limit
    assert sum(s // (5 * k * n_bins) for s in sizes) >= 2 * n_boot  # every resample computed (and the identity)
    for a, b in ((whole["classwise_ece"], split["classwise_ece"]), (whole_cw, split_cw)):
        np.testing.assert_allclose(b.samples, a.samples, rtol=1e-12, atol=1e-15)
        assert (b.low, b.high) == pytest.approx((a.low, a.high), rel=1e-12, abs=1e-15)
        assert b.estimate == a.estimate
    for key in ("ece", "nll", "error"):  # the other metrics share the resamples
        np.testing.assert_allclose(split[key].samples, whole[key].samples, rtol=1e-12, atol=1e-15)


def test_fifty_rows_of_a_hundred_thousand_classes_run_in_bounded_blocks(monkeypatch):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 100_000, generator=g)
    labels = torch.randint(0, 100_000, (50,), generator=g)
    sizes = _record_blocks(monkeypatch)
    ci = bootstrap_ci("calibration_summary", logits=logits, labels=labels, n_bins=15, n_boot=3, seed=0)
    width = 5 * 100_000 * 15  # one resample's block: 60 MB of float64
    assert max(sizes) == width <= bootstrap_mod.CHUNK_ELEMENTS  # one resample at a time, not 3 (or 1000)
    cw = ci["classwise_ece"]
    assert cw.low <= cw.estimate <= cw.high and len(cw.samples) == 3


# -- 2. the claims page without FL-3 / FLSD-53 runs ---------------------------------------------------------------
def _hand_nll_rise(run: Path) -> float:
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    drop = next(log[i]["epoch"] for i in range(len(log) - 1) if log[i + 1]["lr"] < log[i]["lr"])
    after = [r["test_nll"] for r in log if r["epoch"] > drop and r.get("test_nll") is not None]
    return after[-1] - min(after)


def test_claims_without_fl3_or_flsd53_write_the_page_saying_what_is_not_measurable(tmp_path, capsys):
    out = tmp_path / "page"
    assert main(["claims", str(RUNS / "CE"), str(RUNS / "FL-2"), "--out", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    with open(out / "claims.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_claim: dict[int, list[dict]] = {}
    for r in rows:
        by_claim.setdefault(int(r["claim"]), []).append(r)
    for number in (1, 2, 3, 6, 7):  # the committed runs have OOD results, so claim 7 is listed too
        assert [r["verdict"] for r in by_claim[number]] == [NEEDS_FOCAL], number
        assert by_claim[number][0]["n"] == "0"
    (rise,) = by_claim[5]  # FL-2 alone still orders against CE
    assert rise["what"] == "NLL rise, FL-2 - CE (nats)" and rise["n"] == "3"
    seeds = sorted(p.name for p in (RUNS / "CE").glob("seed*"))
    diffs = [_hand_nll_rise(RUNS / "FL-2" / s) - _hand_nll_rise(RUNS / "CE" / s) for s in seeds]
    assert float(rise["mean"]) == pytest.approx(np.mean(diffs), abs=1e-12)
    page = (out / "claims.md").read_text()
    assert page.count(NEEDS_FOCAL) >= 5 and "nan" not in page.split("## The claims")[1].split("| Dataset")[0]
    assert (out / "runs").is_dir() and (out / "table.csv").exists()


def test_claims_of_short_runs_without_fl3_or_flsd53_write_a_whole_page(tmp_path, capsys):
    """Runs stopped before the first lr drop (no NLL dynamics) and no FL-3 / FLSD-53: no claim has a number."""
    runs = tmp_path / "runs"
    for loss in ("CE", "FL-2"):
        for seed in sorted((RUNS / loss).glob("seed*")):
            dest = runs / loss / seed.name
            dest.mkdir(parents=True)
            for f in seed.iterdir():
                (dest / f.name).write_text(f.read_text())
            log = (seed / "log.jsonl").read_text().splitlines(keepends=True)
            (dest / "log.jsonl").write_text("".join(log[:10]))  # the first lr drop is after epoch 14
    out = tmp_path / "page"
    assert main(["claims", str(runs), "--out", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    with open(out / "claims.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["claim"]), r["verdict"]) for r in rows] == [(c, NEEDS_FOCAL) for c in (1, 2, 3, 6, 7)]
    assert (out / "claims.md").read_text().count(NEEDS_FOCAL) == 10  # a row and an overall line per claim
    assert (out / "table.csv").exists()


def test_claims_without_ce_refuse_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "page"
    assert main(["claims", str(RUNS / "FL-2"), "--out", str(out)]) == 2
    assert "no CE runs" in _one_line_error(capsys)
    assert not out.exists()


# -- 3. sweep: the device is checked before planning ---------------------------------------------------------------
@pytest.mark.parametrize("dry", [True, False])
@pytest.mark.parametrize("device", ["tpu", "cuda"])
def test_sweep_refuses_a_device_this_machine_lacks_in_one_line(device, dry, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU, wherever this runs
    out = tmp_path / "sweep"
    argv = ["sweep", "cpu", "--out", str(out), "--set", "epochs=1", "--device", device]
    argv += ["--only", "loss=ce", *(["--dry-run"] * dry)]  # at most one job, should the check ever be lost
    assert main(argv) == 2
    line = _one_line_error(capsys)
    if device == "cuda":
        assert "no usable CUDA GPU" in line and "--device cpu" in line
    else:
        assert "unknown device 'tpu'" in line and "auto, cpu, cuda or cuda:N" in line
    assert not out.exists()


def test_sweep_on_slurm_checks_the_device_name_not_this_machines_gpus(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the submitting host has no GPU
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # and no SLURM: the next check after the device's
    base = ["sweep", "cpu", "--launcher", "slurm", "--out", str(tmp_path / "s"), "--set", "epochs=1", "--device"]
    assert main([*base, "cuda"]) == 2
    assert "SLURM is not available here" in _one_line_error(capsys)  # cuda passed: the nodes have the GPUs
    assert main([*base, "tpu"]) == 2
    assert "unknown device 'tpu'" in _one_line_error(capsys)
