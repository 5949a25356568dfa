"""The tools that read image runs read text runs unchanged: ``calibrate`` on a text run's saved logits, ``table``
and ``plot all`` on its folder, each checked against the run's own report and log (REAL archives, small slices:
these tests fail, never skip, without them)."""

from __future__ import annotations

import csv
import json

import pytest

from focalcal.cli.main import main

SLICE = ["--train-size", "48", "--val-size", "24", "--test-size", "40", "--epochs", "2", "--no-amp"]
SLICE += ["--device", "cpu", "--no-progress", "--dynamics-train-size", "16", "--dynamics-test-size", "16"]


@pytest.fixture(scope="module", params=["sst2/treelstm/ce", "20newsgroups/gpcnn/flsd53"])
def text_run(request, text_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("text") / "run"
    argv = ["train", "--preset", f"paper_text/{request.param}", "--data-dir", str(text_root.parent), *SLICE]
    assert main([*argv, "--out", str(run)]) == 0
    return run, json.loads((run / "report.json").read_text())


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_calibrate_reads_a_text_runs_logits_as_the_run_scored_them(text_run, tmp_path):
    run, report = text_run
    out = tmp_path / "cal"
    argv = ["calibrate", "--kind", "logits", "--data", str(run / "logits.pt"), "--out", str(out), "--n-boot", "0"]
    assert main([*argv, "--n-bins", str(report["n_bins"]), "--bin-closed", report["bin_closed"]]) == 0
    result = json.loads((out / "calibration.json").read_text())
    assert result["num_classes"] == (2 if report["dataset"] == "sst2" else 20)
    assert (result["n_val"], result["n_test"]) == (report["n_val"], report["n_test"])
    for key in ("error", "nll", "ece", "adaptive_ece"):
        assert result["uncalibrated"][key]["estimate"] == pytest.approx(report["test"]["before"][key], abs=1e-6)


def test_table_and_plots_read_a_text_run(text_run, tmp_path):
    run, report = text_run
    assert main(["table", str(run), "--out", str(tmp_path / "table")]) == 0
    cells = {(r["metric"], r["stage"]): float(r["value"]) for r in _rows(tmp_path / "table" / "table.csv")}
    for stage in ("before", "after"):
        assert cells[("ece", stage)] == pytest.approx(report["test"][stage]["ece"], abs=1e-9)
    assert main(["plot", "all", str(run), "--out", str(tmp_path / "plots")]) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    curves = _rows(tmp_path / "plots" / "nll_entropy.csv")
    assert [int(r["epoch"]) for r in curves] == [1, 2]
    for row, record in zip(curves, log, strict=True):
        assert float(row["test_nll"]) == pytest.approx(record["test_nll"])
        assert float(row["train_eval_entropy"]) == pytest.approx(record["train_eval_entropy"])
    counts = [int(r["count"]) for r in _rows(tmp_path / "plots" / "reliability.csv") if r["stage"] == "before"]
    assert sum(counts) == report["n_test"]
    assert (tmp_path / "plots" / "sheet.png").stat().st_size > 10_000
