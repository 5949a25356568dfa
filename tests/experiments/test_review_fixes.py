"""One reading of a report's temperature, one name for Fig. 7, one builder per figure input, the text loaders'
shared options, and `focalcal calibrate` kept out of run folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcal.cli.main import main
from focalcal.data.errors import DataError
from focalcal.data.text import load_text_file, load_text_folder
from focalcal.engine import RunFolder
from focalcal.evaluation.report import main_temperature, tracker_scalars
from focalcal.evaluation.runlog import Reliability, RunLog, curves_of, reliability_panels

RUNS = Path(__file__).resolve().parents[2] / "docs" / "claims" / "runs" / "cifar10" / "resnet20"


# -- the report's main temperature ------------------------------------------------------------------------------
def _report(ts_method: str = "ece_grid") -> dict:
    return {
        "ts_method": ts_method,
        "temperature": {"nll": {"value": 1.25}, "ece_grid": {"value": 2.5}},
        "test": {"before": {"ece": 0.125, "nll": 0.75}, "after": {"ece": 0.0625, "nll": 0.5}},
        "epochs_trained": 3,
    }


def test_main_temperature_is_the_temperature_of_the_reports_main_method():
    assert main_temperature(_report("ece_grid")) == 2.5  # not the first method listed
    assert main_temperature(_report("nll")) == 1.25
    old = _report()
    del old["ts_method"]  # a report written before the entry: a KeyError, as every reader raised before
    with pytest.raises(KeyError):
        main_temperature(old)


def test_a_committed_reports_temperature_and_the_table_agree():
    from focalcal.experiments.table import build

    report = json.loads((RUNS / "CE" / "seed1" / "report.json").read_text())
    by_hand = report["temperature"][report["ts_method"]]["value"]
    assert main_temperature(report) == by_hand
    tables = build([str(RUNS / "CE" / "seed1")], bootstrap=False)
    (run,) = [r for runs in tables.groups.values() for r in runs]
    assert run.temperature == by_hand


def test_trackers_take_plain_numbers_from_the_caller(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from focalcal.engine.trackers import TensorBoardTracker

    scalars = tracker_scalars(_report())
    assert scalars == {
        "test_before_ts/ece": 0.125,
        "test_before_ts/nll": 0.75,
        "test_after_ts/ece": 0.0625,
        "test_after_ts/nll": 0.5,
        "temperature": 2.5,
    }
    run = RunFolder(tmp_path)
    tracker = TensorBoardTracker(run)
    tracker.log_evaluation(scalars, 3, run)
    tracker.close()
    ea = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0})
    ea.Reload()
    assert [(e.step, e.value) for e in ea.Scalars("temperature")] == [(3, 2.5)]
    assert [(e.step, e.value) for e in ea.Scalars("test_after_ts/ece")] == [(3, 0.0625)]


# -- figure inputs ------------------------------------------------------------------------------------------------
def test_curves_of_a_run_log_take_its_columns_with_nan_where_not_logged():
    records = (
        {"epoch": 1, "lr": 0.1, "test_nll": 1.5, "note": "x", "flag": True},
        {"epoch": 2, "lr": 0.01, "test_nll": None, "train_acc": 0.5},
        {"epoch": 3, "lr": 0.01, "test_nll": 1.25, "train_acc": 0.75},
    )
    run = RunLog(Path("r"), "CE", {"loss": "ce"}, records)
    (every,) = curves_of([run])
    assert set(every.columns) == {"epoch", "lr", "test_nll", "train_acc"}  # numbers only: no text, no bool
    np.testing.assert_array_equal(every.columns["test_nll"], [1.5, np.nan, 1.25])
    np.testing.assert_array_equal(every.columns["train_acc"], [np.nan, 0.5, 0.75])
    assert every.label == "CE" and every.epochs.tolist() == [1, 2, 3] and tuple(every.lr_drops) == (1,)
    (some,) = curves_of([run], ["train_acc"])
    assert list(some.columns) == ["train_acc"]


def test_reliability_panels_are_two_per_run_with_the_temperature_in_the_title():
    item = Reliability(Path("r"), "FL-3", 1.234, "nll", "bins0", "bins1", {"ece": 0.1}, {"ece": 0.05})
    assert reliability_panels([item]) == [
        ("FL-3: before TS", "bins0", {"ece": 0.1}),
        ("FL-3: after TS (T=1.23)", "bins1", {"ece": 0.05}),
    ]


def test_table_and_claims_write_fig7_under_one_name(tmp_path):
    runs = [str(RUNS / "CE"), str(RUNS / "FL-2")]
    assert main(["table", *runs, "--out", str(tmp_path / "table"), "--no-bootstrap"]) == 0
    assert main(["claims", *runs, "--out", str(tmp_path / "claims")]) == 0
    sets = sorted(json.loads((RUNS / "CE" / "seed1" / "ood.json").read_text())["sets"])
    expected = {f"fig7_roc_{s.replace(':', '-')}.png" for s in sets}  # the names docs/claims/claims.md links
    assert expected and {p.name for p in (tmp_path / "table").glob("fig7*.png")} == expected
    assert {p.name for p in (tmp_path / "claims").glob("fig7*.png")} == expected


# -- the text loaders' shared options -----------------------------------------------------------------------------
def test_text_loaders_take_the_shared_options_and_name_the_valid_ones(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "docs" / cls).mkdir(parents=True)
        for i in range(5):
            (tmp_path / "docs" / cls / f"{i}.txt").write_text(f"{cls} word{i} more words here")
    data = load_text_folder(tmp_path / "docs", maxlen=3, val_size=2, test_size=2, seed=3)
    assert tuple(data.train.inputs.shape) == (6, 3) and (len(data.val), len(data.test)) == (2, 2)
    table = tmp_path / "t.csv"
    table.write_text("text,label\n" + "".join(f"w{i} x,{i % 2}\n" for i in range(10)))
    assert tuple(load_text_file(table, maxlen=4, val_size=1, test_size=3).test.inputs.shape) == (3, 4)
    for load, path in ((load_text_folder, tmp_path / "docs"), (load_text_file, table)):
        with pytest.raises(DataError, match=r"no option 'max_len'; its options are num_words, maxlen, .*encoding"):
            load(path, max_len=3)


# -- `focalcal calibrate --out` ----------------------------------------------------------------------------------
def test_calibrate_refuses_a_run_folder_as_out_and_leaves_it_untouched(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=g)
    z = 3.0 * torch.nn.functional.one_hot(y, 3) + 1.5 * torch.randn(300, 3, generator=g)
    data = tmp_path / "o.pt"
    torch.save({"val_logits": z[:150], "val_labels": y[:150], "test_logits": z[150:], "test_labels": y[150:]}, data)
    run = RunFolder(tmp_path / "run")
    with run.lock():
        run.write_config({"model": "resnet20"})
    figure = run / "reliability_before.png"
    figure.write_bytes(b"the run's own figure")
    before = sorted(p.name for p in run.path.iterdir())
    args = ["calibrate", "--data", str(data), "--kind", "logits", "--calibrators", "temperature", "--n-boot", "0"]
    assert main([*args, "--out", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "is a run folder" in err and "choose another --out" in err
    assert figure.read_bytes() == b"the run's own figure" and sorted(p.name for p in run.path.iterdir()) == before
    # a folder that is not a run still gets the report and its figures
    assert main([*args, "--out", str(tmp_path / "cal")]) == 0
    report = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert math.isfinite(report["uncalibrated"]["ece"]["estimate"])
    assert (tmp_path / "cal" / "reliability_before.png").is_file()
