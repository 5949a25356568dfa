"""One source per setting: the run's evaluation settings after its evaluation (``run_settings``), the evaluation
batch (``EvalSettings.batch``), ``--set`` (``presets.apply_overrides``), typed data options, one ``n_bins``
message and the derived files' names built from the run folder's constants."""

from __future__ import annotations

import argparse
import ast
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from focalcal.calibration import TemperatureScaling
from focalcal.cli import train as train_cli
from focalcal.cli.common import n_bins_arg
from focalcal.cli.main import build_parser, main
from focalcal.data import DATASETS
from focalcal.engine import TrainConfig, runfolder
from focalcal.engine.trainer import prepare_data
from focalcal.errors import ConfigError, InputError
from focalcal.eval_settings import EvalSettings, resolve_settings, run_settings
from focalcal.evaluation import evaluate, load_run
from focalcal.experiments import presets, sweep
from focalcal.experiments.table import RunResult, group
from focalcal.validation import check_n_bins


@pytest.fixture(scope="module")
def trained(train_args, tmp_path_factory) -> Path:
    """A one-epoch run on the small real CIFAR-10 copy, not evaluated (128 train, 64 val, 64 test images)."""
    run = tmp_path_factory.mktemp("one_source") / "run"
    assert main([*train_args(run, epochs="1", dynamics_train_size="0", dynamics_test_size="0"), "--no-eval"]) == 0
    return run


# -- 1. after evaluation, the report's settings ----------------------------------------------------------------
def test_ood_after_an_evaluate_override_fits_the_report_temperature(trained, cifar_subset_root, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    # the config says nll, 15 bins, [lo, hi); the evaluation overrides all three
    config = json.loads((run / "config.json").read_text())
    assert (config["ts_method"], config["n_bins"], config["bin_closed"]) == ("nll", 15, "left")
    flags = ["--ts-method", "ece_grid", "--n-bins", "7", "--bin-closed", "right", "--device", "cpu"]
    assert main(["evaluate", str(run), *flags]) == 0, capsys.readouterr().err
    report = json.loads((run / "report.json").read_text())
    assert (report["ts_method"], report["n_bins"], report["bin_closed"]) == ("ece_grid", 7, "right")

    # images of the training set that are in none of the run's splits' test images: an unlabelled OOD folder
    ood_dir = cifar_subset_root / "cifar10" / "train" / "airplane"
    args = ["--ood", f"folder:{ood_dir}", "--max-images", "20", "--scores", "entropy", "--device", "cpu"]
    assert main(["ood", str(run), *args]) == 0, capsys.readouterr().err
    ood = json.loads((run / "ood.json").read_text())
    assert (ood["ts_method"], ood["n_bins"], ood["bin_closed"]) == ("ece_grid", 7, "right")
    assert ood["temperature"] == report["temperature"]["ece_grid"]["value"]
    # the reference: the paper's ECE-grid fit with those bins on the saved validation logits
    saved = torch.load(run / "logits.pt", weights_only=True)
    reference = TemperatureScaling(method="ece_grid", n_bins=7, closed="right").fit(
        saved["val_logits"], saved["val_labels"]
    )
    assert ood["temperature"] == pytest.approx(float(reference.temperature), rel=1e-12)
    after = ood["in_distribution"]["calibration"]["after"]
    assert after["ece"] == pytest.approx(report["test"]["after"]["ece"], abs=1e-9)  # 7 right-closed bins


def _write(folder: Path, name: str, value: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(value))


def test_run_settings_take_the_report_when_there_is_one_else_the_config(tmp_path):
    config = {**TrainConfig(n_bins=10, bin_closed="right", ts_method="nll", eval_batch_size=32).to_dict()}
    _write(tmp_path / "run", "config.json", config)
    assert run_settings(tmp_path / "run") == EvalSettings(10, "right", "nll", 32)  # not evaluated: the config's
    _write(tmp_path / "run", "report.json", {"n_bins": 7, "bin_closed": "left", "ts_method": "ece_grid"})
    # evaluated: the report's bins, rule and method; the batch (never in a report) stays the config's
    assert run_settings(tmp_path / "run") == EvalSettings(7, "left", "ece_grid", 32)
    assert run_settings(tmp_path / "run", n_bins=3) == EvalSettings(3, "left", "ece_grid", 32)
    # a report written before bin_closed: the default rule, not the config's
    _write(tmp_path / "run", "report.json", {"n_bins": 7, "ts_method": "ece_grid"})
    assert run_settings(tmp_path / "run").bin_closed == "left"
    # the tables read the same
    result = RunResult(tmp_path, "cifar10", "resnet20", "ce", {}, 0, {"n_bins": 5, "ts_method": "ece_grid"}, None)
    assert result.settings == run_settings(report={"n_bins": 5, "ts_method": "ece_grid"})
    assert (result.settings.n_bins, result.settings.ts_method) == (5, "ece_grid")


# -- 2. the evaluation batch: the settings' ---------------------------------------------------------------------
def test_settings_batch_is_the_given_batch_else_the_device_default():
    assert EvalSettings(eval_batch_size=5).batch("cuda") == 5
    assert EvalSettings().batch("cpu") == 64 and EvalSettings().batch(torch.device("cuda", 0)) == 1024


def test_evaluate_runs_in_the_batches_its_settings_give(trained):
    run = load_run(trained, device="cpu")
    assert run.config.eval_batch_size is None  # the run's own: the CPU default, 64
    data = prepare_data(run.config, word_vectors=False)
    sizes = []

    def record(module, args):
        if module is run.model:  # not the copies a layout measurement may time
            sizes.append(int(args[0].shape[0]))

    handle = run.model.register_forward_pre_hook(record)
    try:
        report, _ = evaluate(run, data, settings=EvalSettings(eval_batch_size=7))
    finally:
        handle.remove()
    splits = [len(data.val_labels), len(data.test_labels), len(data.train_labels)]
    assert splits == [64, 64, 128]
    expected = [b for n in splits for b in [7] * (n // 7) + ([n % 7] if n % 7 else [])]
    assert sorted(sizes) == sorted(expected) and len(sizes) == sum(math.ceil(n / 7) for n in splits)
    assert report["n_test"] == 64


# -- 3. --set: one parser and merger ---------------------------------------------------------------------------
def test_apply_overrides_parses_yaml_values_and_merges_mappings():
    config = {"epochs": 5, "lr": 0.1, "loss_options": {"reduction": "sum"}, "milestones": None, "model": "x"}
    overrides = {
        "epochs": "10",
        "lr": "0.05",
        "milestones": "[2, 3]",
        "grad_clip": "null",
        "model": "resnet20",
        "loss_options": "{gamma: 3}",
        "data_dir": "/data/cifar 10",
    }
    assert presets.apply_overrides(config, overrides) == {  # by hand
        "epochs": 10,
        "lr": 0.05,
        "loss_options": {"reduction": "sum", "gamma": 3},
        "milestones": [2, 3],
        "model": "resnet20",
        "grad_clip": None,
        "data_dir": "/data/cifar 10",
    }
    assert config["loss_options"] == {"reduction": "sum"}  # not changed
    assert presets.apply_overrides({}, {"epochs": 4}) == {"epochs": 4}  # already parsed: kept
    with pytest.raises(ConfigError, match=r"--set milestones=\[1,: not a YAML value"):
        presets.apply_overrides(config, {"milestones": "[1,"})


def test_train_and_sweep_apply_set_through_the_one_helper(monkeypatch, tmp_path):
    calls = []

    def spy(config, overrides):
        calls.append(dict(overrides))
        return presets.apply_overrides(config, overrides)

    monkeypatch.setattr(train_cli, "apply_overrides", spy)
    monkeypatch.setattr(sweep, "apply_overrides", spy)
    name = "paper_cifar/cifar10/resnet50/ls"
    sets = ["epochs=10", "loss_options={smoothing: 0.2}", "milestones=[3, 6]"]
    argv = ["train", "--preset", name, "--seed", "4", "--out", str(tmp_path / "r")]
    args = build_parser().parse_args([*argv, *(a for s in sets for a in ("--set", s))])
    trained = train_cli.config_from_args(args)
    overrides = dict(s.split("=", 1) for s in sets)
    job = sweep.Job(name, 4, str(tmp_path / "r"), overrides=overrides)
    assert sweep.expected_config(job) == trained.protocol_dict()
    assert calls == [overrides, overrides]
    assert (trained.epochs, trained.milestones, trained.loss_options) == (
        10,
        [3, 6],
        {"reduction": "sum", "smoothing": 0.2},
    )
    jobs = sweep.plan(
        "paper_cifar",
        [4],
        tmp_path,
        only={"dataset": ["cifar10"], "model": ["resnet50"], "loss": ["ls"]},
        overrides=overrides,
    )
    assert [j.experiment for j in jobs] == [name] and calls[2:] == [overrides]


# -- 4. data options typed as the loss and model options --------------------------------------------------------
def test_data_options_spelled_as_text_or_numbers_are_one_protocol():
    text = TrainConfig(dataset="20newsgroups", model="gpcnn", data_options={"maxlen": "1000", "fit_on": "train"})
    typed = TrainConfig(dataset="20newsgroups", model="gpcnn", data_options={"maxlen": 1000, "fit_on": "train"})
    converter = DATASETS.entry("20newsgroups").options["maxlen"]
    assert converter("1000") == 1000  # the registry's converter: the reference
    assert text.protocol_dict() == typed.protocol_dict()
    assert text.protocol_dict()["data_options"] == {"maxlen": 1000, "fit_on": "train"}
    assert text.protocol_dict() != typed.replace(data_options={"maxlen": 999}).protocol_dict()
    # the table groups such runs as one experiment
    runs = [
        RunResult(Path(f"r{s}"), "20newsgroups", "gpcnn", "ce", {}, s, {}, None, c.replace(seed=s).to_dict())
        for s, c in ((1, text), (2, typed))
    ]
    assert [len(v) for v in group(runs).values()] == [2]
    text.validate()  # and validation stores them typed
    assert text.data_options == {"maxlen": 1000, "fit_on": "train"}


# -- 5. one n_bins check, one message; the derived files named once ---------------------------------------------
RULE = "n_bins must be >= 1 (a whole number; the paper uses 15)"


@pytest.mark.parametrize(
    "bad, shown, typed", [(0, "0", "0"), (-2, "-2", "-2"), (2.5, "2.5", "'2.5'"), ("x", "'x'", "'x'")]
)
def test_every_n_bins_check_says_one_message(bad, shown, typed):
    message = f"{RULE}; got {shown}"
    with pytest.raises(InputError) as library:
        check_n_bins(bad)
    assert str(library.value) == message
    with pytest.raises(InputError) as settings:
        resolve_settings(None, n_bins=bad)
    assert str(settings.value) == f"invalid evaluation settings: {message}"
    with pytest.raises(argparse.ArgumentTypeError) as command:  # the command line's text: a whole number or not
        n_bins_arg(str(bad))
    assert str(command.value) == f"{RULE}; got {typed}"


def test_derived_file_globs_are_built_from_the_run_folder_constants():
    names = [runfolder.REPORT, runfolder.REPORT_MD, runfolder.LOGITS, runfolder.OOD, runfolder.OOD_MD]
    assert runfolder.DERIVED_GLOBS == (
        *map(str, names[:3]),
        "reliability_*.png",
        *map(str, names[3:]),
        "ood_roc_*.png",
    )
    tree = ast.parse(Path(runfolder.__file__).read_text())
    scopes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = {
        id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, scopes) and ast.get_docstring(n) is not None
    }
    literals = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]
    for name in names:  # each spelled once: its constant's definition
        assert literals.count(str(name)) == 1, name
    assert not {"reliability_*.png", "ood_roc_*.png"} & set(literals)
