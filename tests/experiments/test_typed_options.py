"""Loss and model options are stored typed once, at validation, and an experiment is what it trains.

``--loss fl2``, ``--loss focal --loss-opt gamma=2`` and ``gamma=2.0`` build the same loss (fl2 is the registry's
focal loss with gamma fixed at 2), so their runs share one table cell; runs made when options were stored as
strings (``"gamma": "2"`` in ``config.json``) read and group the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from focalcal.cli.main import main
from focalcal.engine import TrainConfig
from focalcal.experiments import table as T
from focalcal.experiments.presets import experiment
from focalcal.losses import build_loss, loss_label


def test_validation_stores_typed_loss_and_model_options():
    cfg = TrainConfig(
        loss="focal",
        loss_options={"gamma": "2", "reduction": "sum"},
        model="torchvision:resnet18",
        model_options={"pretrained": "false"},
    )
    cfg.validate()
    assert cfg.loss_options == {"gamma": 2.0, "reduction": "sum"} and type(cfg.loss_options["gamma"]) is float
    assert cfg.model_options == {"pretrained": False}
    assert json.loads(json.dumps(cfg.to_dict()))["loss_options"]["gamma"] == 2.0  # a number in config.json


def test_the_three_spellings_build_one_loss_and_have_one_identity():
    from focalcal.losses import loss_identity

    logits, labels = torch.randn(16, 5, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 5
    spellings = [("fl2", {}), ("focal", {"gamma": "2"}), ("focal", {"gamma": 2.0})]
    values = [float(build_loss(n, num_classes=5, **o)(logits, labels)) for n, o in spellings]
    assert values[0] == values[1] == values[2]  # the same loss, so the same experiment
    assert len({json.dumps(loss_identity(n, o), sort_keys=True) for n, o in spellings}) == 1
    assert {loss_label(n, o) for n, o in spellings} == {"FL-2"}
    assert loss_identity("fl3") == loss_identity("focal")  # focal's default gamma is 3
    assert loss_identity("fl2") != loss_identity("fl3")
    assert loss_identity("focal", {"gamma": 2, "reduction": "sum"}) != loss_identity("fl2")  # a real difference


def _run(root: Path, name: str, loss: str, options: dict, seed: int, ece: float) -> Path:
    """A run folder as training and evaluation write it; ``options`` exactly as they land in the files."""
    run = root / name
    run.mkdir(parents=True)
    cfg = experiment("cpu/cifar10/resnet20/ce").train_config(seed=seed).to_dict()
    cfg.update(loss=loss, loss_options=options)
    (run / "config.json").write_text(json.dumps(cfg))
    metrics = {"error": 0.3, "nll": 1.0, "ece": ece, "adaptive_ece": ece, "classwise_ece": ece / 3}
    report = {
        "dataset": "cifar10",
        "model": "resnet20",
        "loss": loss,
        "loss_options": options,
        "n_bins": 15,
        "ts_method": "nll",
        "temperature": {"nll": {"value": 1.5}},
        "test": {"before": metrics, "after": metrics},
    }
    (run / "report.json").write_text(json.dumps(report))
    return run


def test_the_three_spellings_land_in_one_table_cell(tmp_path):
    eces = [0.10, 0.13, 0.16]
    _run(tmp_path, "a", "fl2", {}, 1, eces[0])
    _run(tmp_path, "b", "focal", {"gamma": "2"}, 2, eces[1])  # a run made before options were typed
    _run(tmp_path, "c", "focal", {"gamma": 2.0}, 3, eces[2])
    _run(tmp_path, "d", "fl3", {}, 1, 0.05)  # another experiment: its own cell
    tables = T.build([str(tmp_path)], bootstrap=False)
    assert sorted(label for _, _, label in tables.groups) == ["FL-2", "FL-3"]
    fl2 = tables.groups[("cifar10", "resnet20", "FL-2")]
    assert sorted(r.seed for r in fl2) == [1, 2, 3]
    cell = {r["loss"]: r for r in tables.main}["FL-2"]["ece_before"]
    assert cell.n == 3 and cell.value == pytest.approx(sum(eces) / 3, abs=1e-15)


def test_a_run_with_string_options_resumes_under_typed_ones():
    old = experiment("cpu/cifar10/resnet20/ce").train_config().replace(loss="focal", loss_options={"gamma": "2"})
    new = old.replace(loss_options={"gamma": 2.0})
    assert old.protocol_dict() == new.protocol_dict()  # what resume and the sweep compare
    assert old.protocol_dict() != new.replace(loss_options={"gamma": 3.0}).protocol_dict()


def test_training_through_the_cli_writes_a_number(train_args, tmp_path):
    run = tmp_path / "run"
    argv = [*train_args(run, epochs="1", loss="focal", train_size="64", val_size="32", test_size="32")]
    assert main([*argv, "--loss-opt", "gamma=2", "--no-eval"]) == 0
    saved = json.loads((run / "config.json").read_text())["loss_options"]
    assert saved == {"gamma": 2.0} and isinstance(saved["gamma"], float)
    state = torch.load(run / "final.pt", weights_only=True)
    assert state["config"]["loss_options"] == {"gamma": 2.0}
