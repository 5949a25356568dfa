"""A run's evaluation settings (bins, bin rule, temperature method, batch): one set of defaults, one resolver,
one command-line group; the per-epoch validation metrics in log.jsonl follow the run's bin rule as its report
does."""

from __future__ import annotations

import argparse
import json
import math
import re

import pytest
import torch

from focalcal.cli.main import build_parser, main
from focalcal.data import load_dataset, make_splits
from focalcal.defaults import N_BINS
from focalcal.engine import TrainConfig, Trainer
from focalcal.errors import ConfigError, InputError
from focalcal.eval_settings import EvalSettings, resolve_settings
from focalcal.evaluation import evaluate_run
from focalcal.metrics import calibration_summary, ece, reliability_bins

LN2 = math.log(2.0)


@pytest.fixture(scope="module")
def splits(cifar_subset_root):
    """Splits of the small real CIFAR-10 copy: 64 train, 60 validation, 40 test images."""
    data = load_dataset("imagefolder", cifar_subset_root / "cifar10", cache_dir=None)
    return make_splits(data, val_size=60, train_size=64, test_size=40)


def _edge_logits(labels: torch.Tensor, k: int = 10) -> torch.Tensor:
    """``[N, k]`` logits whose even rows give the label exactly p = 0.5 (logits 0, -ln 2, -ln 2, the rest -200:
    softmax 0.5, 0.25, 0.25, 0 in float32), the inner edge of 4 equal-width bins, and whose odd rows give a wrong
    class p = 1/3 (0 and four at -ln 2), inside the bin (0.25, 0.5) under either rule."""
    z = torch.full((len(labels), k), -200.0)
    for i, y in enumerate(labels.tolist()):
        if i % 2 == 0:
            z[i, y] = 0.0
            z[i, [(y + 1) % k, (y + 2) % k]] = -LN2
        else:
            z[i, (y + 1) % k] = 0.0
            z[i, [(y + j) % k for j in range(2, 6)]] = -LN2
    return z


# -- (a) the per-epoch validation ECE follows the run's bin rule ------------------------------------------
def test_logged_val_ece_uses_the_runs_bin_rule(splits, tmp_path, quick_precision):
    y = splits.val_labels
    edge = _edge_logits(y)
    conf = torch.softmax(edge, 1).amax(1)
    assert bool((conf[::2] == torch.linspace(0, 1, 5)[2]).all())  # exactly on the edge 0.5
    # by hand, 30 rows of each kind: (lo, hi] puts all 60 rows in (0.25, 0.5]: 30 right, confidence sum 30 * 0.5
    # + 30 / 3 = 25, |30 - 25| / 60 = 1/12; [lo, hi) splits them: 0.5 -> [0.5, 0.75): |30 - 15| / 60, and the
    # 1/3 rows |0 - 10| / 60: 5/12
    right = ece(logits=edge, labels=y, n_bins=4, closed="right")
    left = ece(logits=edge, labels=y, n_bins=4, closed="left")
    assert right == pytest.approx(1 / 12, abs=1e-6) and left == pytest.approx(5 / 12, abs=1e-6)

    config = TrainConfig(
        loss="ce",
        epochs=2,
        batch_size=64,
        milestones=[1],
        device="cpu",
        amp=False,
        channels_last=False,
        dynamics_train_size=0,
        dynamics_test_size=0,
        n_bins=4,
        bin_closed="right",
    )
    run = tmp_path / "run"
    trainer = Trainer(config, run, data=splits, progress=False)
    predict, val_passes = trainer.predict, []

    def predict_with_edges(loader):
        """The model's logits, except in the first validation pass: the edge logits (a trained model's
        confidences are never exactly on a bin edge), so that the two bin rules give different numbers."""
        logits = predict(loader)
        if loader is trainer.val_loader:
            val_passes.append(logits)
            if len(val_passes) == 1:
                return edge
        return logits

    trainer.predict = predict_with_edges
    trainer.fit()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["val_ece"] == pytest.approx(right, abs=1e-12)
    assert log[0]["val_ece"] != pytest.approx(left, abs=0.1)
    # the second epoch's: the run's real validation logits, with its 4 bins (lo, hi]
    assert log[1]["val_ece"] == pytest.approx(ece(logits=val_passes[1], labels=y, n_bins=4, closed="right"), abs=1e-12)
    # and the final report measures the same model's validation split with the same bins and rule
    report, arrays = evaluate_run(run, data=splits, device="cpu")
    assert (report["n_bins"], report["bin_closed"]) == (4, "right")
    assert report["val"]["before"]["ece"] == pytest.approx(log[1]["val_ece"], abs=1e-6)
    # one pass per test stage gives exactly the numbers of the separate metric calls
    kw = {"labels": arrays["test_labels"], "n_bins": 4, "closed": "right"}
    after = arrays["test_logits"] / arrays["temperature"]
    assert report["test"]["before"] == calibration_summary(logits=arrays["test_logits"], **kw)
    assert report["test"]["after"] == calibration_summary(logits=after, **kw)
    assert report["test_after_by_method"][report["ts_method"]] == report["test"]["after"]
    for got, logits in ((arrays["bins_before"], arrays["test_logits"]), (arrays["bins_after"], after)):
        want = reliability_bins(logits=logits, **kw)
        assert got.counts.tolist() == want.counts.tolist()
        assert got.accuracy.tolist() == want.accuracy.tolist()
        assert got.mean_confidence.tolist() == want.mean_confidence.tolist()


# -- (b) the resolver --------------------------------------------------------------------------------------
def test_resolver_takes_the_runs_settings_unless_overridden():
    config = TrainConfig(n_bins=10, bin_closed="right", ts_method="ece_grid", eval_batch_size=32)
    assert resolve_settings(config) == EvalSettings(10, "right", "ece_grid", 32)
    assert resolve_settings(config, n_bins=20, bin_closed="left", eval_batch_size=8) == EvalSettings(
        20, "left", "ece_grid", 8
    )
    assert resolve_settings(config, ts_method="nll").ts_methods == ("nll", "ece_grid")  # the main one first
    assert resolve_settings(config).ts_methods == ("ece_grid", "nll")
    # a report.json: its keys; one written before bin_closed existed was binned [lo, hi), the default
    report = {"n_bins": 7, "ts_method": "nll", "temperature": {}}
    assert resolve_settings(report) == EvalSettings(7, "left", "nll", None)
    assert resolve_settings(None) == EvalSettings(N_BINS, "left", "nll", None) == EvalSettings()
    assert resolve_settings(resolve_settings(config), n_bins=3) == EvalSettings(3, "right", "ece_grid", 32)
    # the defaults are the paper's bins and torchmetrics' bin rule
    assert TrainConfig().n_bins == EvalSettings().n_bins == 15


def test_settings_compute_with_their_bins_and_rule():
    logits = _edge_logits(torch.arange(10).repeat(2))
    labels = torch.arange(10).repeat(2)
    s = resolve_settings({"n_bins": 4, "bin_closed": "right"})
    assert s.summary(logits, labels)["ece"] == pytest.approx(1 / 12, abs=1e-6)
    assert resolve_settings(s, bin_closed="left").summary(logits, labels)["ece"] == pytest.approx(5 / 12, abs=1e-6)
    summary, bins = s.summary_and_bins(logits, labels)
    assert summary == calibration_summary(logits=logits, labels=labels, n_bins=4, closed="right")
    assert bins.counts.tolist() == [0, 20, 0, 0]
    assert s.binning == "equal-width bins (lo, hi] (the authors' code)"
    t = s.temperature("ece_grid")
    assert (t.method, t.n_bins, t.closed) == ("ece_grid", 4, "right")


RULE = "must be >= 1 (a whole number; the paper uses 15)"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"n_bins": 0}, f"n_bins {RULE}; got 0"),
        ({"n_bins": "x"}, f"n_bins {RULE}; got 'x'"),
        ({"n_bins": 2.5}, f"n_bins {RULE}; got 2.5"),
        ({"n_bins": True}, f"n_bins {RULE}; got True"),
        ({"bin_closed": "both"}, "bin_closed must be one of left, right (got 'both')"),
        ({"ts_method": "grid"}, "ts_method must be one of nll, ece_grid (got 'grid')"),
        ({"eval_batch_size": 0}, "eval_batch_size must be >= 1, or null for the device's default (got 0)"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(override, message):
    with pytest.raises(InputError) as given:
        resolve_settings(TrainConfig(), **override)
    assert str(given.value) == f"invalid evaluation settings: {message}"
    with pytest.raises(InputError) as stored:  # the same value stored in a run is named as the run's
        resolve_settings(dict(override))
    assert str(stored.value).startswith(f"invalid evaluation settings: {message} (the run's value")
    assert "\n" not in str(stored.value)
    if not isinstance(next(iter(override.values())), (str, bool)) or "n_bins" not in override:
        with pytest.raises(ConfigError, match=re.escape(message)):  # a configuration states the same rule
            TrainConfig(**override).validate()


def test_an_override_replaces_a_bad_stored_value_and_every_problem_is_named():
    assert resolve_settings({"n_bins": 0}, n_bins=5).n_bins == 5
    with pytest.raises(InputError) as exc:
        resolve_settings({"bin_closed": "up"}, n_bins=-1)
    text = str(exc.value)
    assert f"n_bins {RULE}; got -1;" in text and "bin_closed must be one of left, right (got 'up') (the run's" in text


# -- (c) every command's --n-bins --------------------------------------------------------------------------
def _commands_with(flag: str) -> list[list[str]]:
    """Every (sub-)command of ``focalcal`` that takes ``flag``, as the argv prefix that selects it."""
    found = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if flag in action.option_strings:
                found.append(prefix)
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return found


@pytest.mark.parametrize("bad", ["0", "x", "-3", "2.5"])
def test_every_command_refuses_a_bad_n_bins_with_one_message(bad, capsys):
    commands = _commands_with("--n-bins")
    assert {"train", "evaluate", "ood", "calibrate", "plot"} <= {c[0] for c in commands}
    messages = set()
    for argv in commands:
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--n-bins", bad])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if ": error: " in line]
        assert len(lines) == 1, (argv, err)
        messages.add(lines[0].split(": error: ", 1)[1])
    shown = int(bad) if bad.lstrip("-").isdigit() else bad  # the library's one message: a whole number, or the text
    assert messages == {f"argument --n-bins: n_bins {RULE}; got {shown!r}"}
