"""Runs where people look: log.csv always, TensorBoard and Weights & Biases (offline) when asked."""

import csv
import json

import pytest

from focalcal.cli.main import main


def test_log_csv_holds_the_same_numbers_as_log_jsonl(train_args, tmp_path):
    run = tmp_path / "r"
    assert main([*train_args(run), "--no-eval"]) == 0
    records = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines()]
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert len(rows) == len(records) == 2
    for rec, row in zip(records, rows):
        for key in ("epoch", "train_loss", "val_nll", "val_ece", "test_nll", "fc_weight_norm"):
            assert float(row[key]) == pytest.approx(rec[key], rel=1e-12), key


def test_tensorboard_event_files_hold_every_epoch_and_the_evaluation(train_args, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "r"
    assert main([*train_args(run), "--tensorboard"]) == 0
    ea = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    records = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines()]
    val_nll = [(e.step, e.value) for e in ea.Scalars("val_nll")]
    assert val_nll == [(r["epoch"], pytest.approx(r["val_nll"], rel=1e-6)) for r in records]
    report = json.loads((run / "report.json").read_text())
    assert ea.Scalars("test_after_ts/ece")[-1].value == pytest.approx(report["test"]["after"]["ece"], rel=1e-6)
    assert {"reliability_before", "reliability_after"} <= set(ea.Tags()["images"])


def test_wandb_offline_receives_every_epoch_and_the_reliability_diagrams(train_args, tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logged = []
    real = wandb.sdk.wandb_run.Run.log

    def spy(self, data, *a, **k):
        logged.append((k.get("step"), dict(data)))
        return real(self, data, *a, **k)

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", spy)
    run = tmp_path / "r"
    assert main([*train_args(run), "--wandb", "focalcal-test"]) == 0
    records = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines()]
    epochs = [(step, d) for step, d in logged if "val_nll" in d]
    assert [s for s, _ in epochs] == [1, 2]
    assert [d["val_nll"] for _, d in epochs] == pytest.approx([r["val_nll"] for r in records], rel=1e-12)
    final = logged[-1][1]
    assert isinstance(final["reliability_after"], wandb.Image) and "test_after_ts/ece" in final
    assert list((run / "wandb").glob("offline-run-*"))  # written offline into the run folder, nothing sent


def test_a_missing_tracker_package_is_one_line(train_args, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *a, **k):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    rc = main([*train_args(tmp_path / "r", epochs="1"), "--tensorboard", "--no-eval"])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install tensorboard" in err and "Traceback" not in err
