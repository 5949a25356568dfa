"""Run readers (`focalcal table`, `plot`, `claims`) on real folders: a demo's summary beside its runs, damaged
files, symlinked runs, a run killed while evaluating; and the run folder's cleanup of killed writes."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from focalcal.cli.main import main
from focalcal.engine import RunFolder
from focalcal.experiments import table as T


@pytest.fixture(scope="module")
def evaluated_run(cifar_subset_root, tmp_path_factory) -> Path:
    """One real run (CE, ResNet-20, 1 epoch on 128 CIFAR-10 images), evaluated by `focalcal train`."""
    run = tmp_path_factory.mktemp("readers") / "run"
    flags = {
        "dataset": "imagefolder",
        "data-dir": str(cifar_subset_root / "cifar10"),
        "loss": "ce",
        "epochs": "1",
        "train-size": "128",
        "val-size": "64",
        "test-size": "64",
        "batch-size": "64",
        "dynamics-train-size": "32",
        "dynamics-test-size": "32",
        "device": "cpu",
        "out": str(run),
    }
    args = ["train", *[a for k, v in flags.items() for a in (f"--{k}", v)]]
    assert main([*args, "--no-amp", "--no-channels-last", "--no-progress"]) == 0
    return run


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


def _report(run: Path) -> dict:
    return json.loads((run / "report.json").read_text())


def _table(tmp_path: Path, *paths: Path) -> list[dict[str, str]]:
    out = tmp_path / "tables"
    assert main(["table", *map(str, paths), "--out", str(out), "--no-figures", "--no-bootstrap"]) == 0
    return list(csv.DictReader(open(out / "table.csv")))


def _cell(rows: list[dict[str, str]], metric: str, stage: str) -> dict[str, str]:
    (row,) = [r for r in rows if r["table"] == "main" and r["metric"] == metric and r["stage"] == stage]
    return row


def test_table_reads_the_runs_of_a_demo_folder_and_ignores_its_summary(evaluated_run, tmp_path, capsys):
    demo = tmp_path / "runs" / "demo"
    ce = _copy(evaluated_run, demo / "ce")
    rep = _report(ce)
    summary = {"config": {}, "losses": ["ce"], "verdict": [], "runs": {"ce": rep}}  # the demo's summary shape
    # the name the demo writes now, and the one an earlier demo left at the top of runs/demo
    for name in ("demo.json", "report.json"):
        (demo / name).write_text(json.dumps(summary))
    (demo / "report.md").write_text("# focalcal demo\n")
    rows = _table(tmp_path, tmp_path / "runs")
    err = capsys.readouterr().err
    assert "config.json" not in err
    ece = _cell(rows, "ece", "before")
    assert (ece["loss"], ece["n"], float(ece["value"])) == ("CE", "1", rep["test"]["before"]["ece"])
    assert not RunFolder(demo).is_run() and RunFolder(ce).is_run()
    # the figures read the same folder: its runs, not its summary
    assert main(["plot", "weight-norm", str(demo), "--out", str(tmp_path / "fig")]) == 0
    norms = [float(r["fc_weight_norm"]) for r in csv.DictReader(open(tmp_path / "fig" / "weight_norm.csv"))]
    assert norms == [json.loads(line)["fc_weight_norm"] for line in (ce / "log.jsonl").read_text().splitlines()]


def test_the_demo_names_its_summary_apart_from_a_runs_report():
    from focalcal.experiments import demo

    assert {demo.SUMMARY_JSON, demo.SUMMARY_MD}.isdisjoint({"report.json", "report.md", "config.json"})


def test_a_damaged_config_or_report_skips_that_run_with_a_note(evaluated_run, tmp_path, capsys):
    root = tmp_path / "runs"
    good = _copy(evaluated_run, root / "a")
    bad_config = _copy(evaluated_run, root / "b")
    (bad_config / "config.json").write_text('{"model": "resnet20", ')  # torn
    bad_report = _copy(evaluated_run, root / "c")
    (bad_report / "report.json").write_text("{}")  # valid JSON, not a report
    torn_report = _copy(evaluated_run, root / "d")
    (torn_report / "report.json").write_text('{"dataset": "cifar10", ')  # torn

    rows = _table(tmp_path, root)
    ece = _cell(rows, "ece", "before")
    assert (ece["n"], float(ece["value"])) == ("1", _report(good)["test"]["before"]["ece"])  # run a only
    notes = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert len(notes) == 3, notes
    for damaged in (bad_config / "config.json", bad_report / "report.json", torn_report / "report.json"):
        assert sum(str(damaged) in line for line in notes) == 1, (damaged, notes)

    # the dynamics figures go on with the readable run, and say which one they left out
    assert main(["plot", "test-nll", str(good), str(bad_config), "--out", str(tmp_path / "fig")]) == 0
    err = capsys.readouterr().err
    assert f"skipped {bad_config / 'config.json'} is damaged" in err
    plotted = {r["run"] for r in csv.DictReader(open(tmp_path / "fig" / "test_nll.csv"))}
    assert plotted == {str(good)}


def test_table_follows_symlinked_runs_once_even_through_a_link_cycle(evaluated_run, tmp_path):
    elsewhere = _copy(evaluated_run, tmp_path / "elsewhere" / "run")
    root = tmp_path / "runs"
    root.mkdir()
    os.symlink(elsewhere, root / "linked")
    os.symlink(elsewhere, root / "again")  # the same run through two links counts once
    os.symlink(root, root / "loop")  # a cycle
    rows = _table(tmp_path, root)
    ece = _cell(rows, "ece", "before")
    assert (ece["n"], float(ece["value"])) == ("1", _report(elsewhere)["test"]["before"]["ece"])
    runs, notes = RunFolder.find([root])
    assert [r.path for r in runs] == [root / "again"] and notes == []


def test_finding_runs_includes_unfinished_ones_and_names_paths_without_runs(evaluated_run, tmp_path):
    done = _copy(evaluated_run, tmp_path / "runs" / "done")
    started = tmp_path / "runs" / "started"
    started.mkdir()
    shutil.copy(done / "config.json", started / "config.json")  # training has begun, nothing more
    (tmp_path / "runs" / "notes").mkdir()
    runs, notes = RunFolder.find([tmp_path / "runs", tmp_path / "missing", tmp_path / "runs" / "notes"])
    assert [r.path for r in runs] == [done, started]
    assert notes == [
        f"{tmp_path / 'missing'}: no such file or folder",
        f"{tmp_path / 'runs' / 'notes'}: no run folder (no config.json) at or under it",
    ]
    assert T.find_runs([str(tmp_path / "runs")]) == ([done], [])


def test_plot_all_drops_only_the_reliability_of_a_run_killed_while_evaluating(evaluated_run, tmp_path, capsys):
    whole = _copy(evaluated_run, tmp_path / "whole")
    killed = _copy(evaluated_run, tmp_path / "killed")
    (killed / "logits.pt").unlink()  # report.json written, logits.pt not yet
    out = tmp_path / "fig"
    assert main(["plot", "all", str(whole), str(killed), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert (out / "reliability.png").is_file() and (out / "sheet.png").is_file()
    rows = list(csv.DictReader(open(out / "reliability.csv")))
    assert {r["run"] for r in rows} == {str(whole)}
    # the diagram's numbers are the whole run's, recomputed from its saved logits
    import torch

    from focalcal.metrics import reliability_bins

    saved = torch.load(whole / "logits.pt", weights_only=True)
    bins = reliability_bins(logits=saved["test_logits"].float(), labels=saved["test_labels"], n_bins=15)
    before = [r for r in rows if r["stage"] == "before"]
    assert [int(r["count"]) for r in before] == [int(c) for c in bins.counts]
    (note,) = [line for line in err.splitlines() if str(killed) in line]
    assert "reliability" in note and "focalcal evaluate" in note


def test_the_next_ood_removes_temporary_files_a_killed_ood_left(evaluated_run, cifar_subset_root, tmp_path):
    run = _copy(evaluated_run, tmp_path / "run")
    leftovers = [run / ".ood.json.k1ll3d_a.tmp", run / ".ood_roc_entropy.png.x9w8e7r6.tmp"]  # as mkstemp names
    for p in leftovers:
        p.write_bytes(b"partial")
    ood_set = f"folder:{cifar_subset_root / 'cifar10' / 'train' / 'cat'}"  # images outside the run's test split
    assert main(["ood", str(run), "--ood", ood_set, "--max-images", "32", "--device", "cpu"]) == 0
    assert RunFolder(run).has_ood() and not any(p.exists() for p in leftovers)
