"""The paper's text protocols as presets: a family whose datasets have their own base and models."""

from __future__ import annotations

import pytest

from focalcal.engine import TrainConfig
from focalcal.errors import ConfigError
from focalcal.experiments import presets
from focalcal.losses import build_loss


def test_paper_text_pairs_each_dataset_with_its_own_model_and_protocol():
    exps = presets.family_experiments("paper_text")
    assert len(exps) == 18  # 2 datasets x 1 model each x 9 losses, not the 2 x 2 x 9 product
    assert {(e.dataset, e.model) for e in exps} == {("20newsgroups", "gpcnn"), ("sst2", "treelstm")}
    ng = presets.experiment("paper_text/20newsgroups/gpcnn/ce").config
    sst = presets.experiment("paper_text/sst2/treelstm/ce").config
    assert (ng["optimizer"], ng["lr"], ng["batch_size"], ng["epochs"]) == ("adam", 0.001, 128, 50)
    assert (sst["optimizer"], sst["lr"], sst["batch_size"], sst["epochs"]) == ("adagrad", 0.05, 25, 25)
    assert sst["loss_normalization"] == "per_sample" and sst["param_groups"][0]["lr"] == 0.1
    for cfg in (ng, sst):
        assert (cfg["select_epoch"], cfg["ts_method"], cfg["lr_schedule"]) == ("best_val_acc", "ece_grid", "constant")
        TrainConfig.from_dict(cfg).validate()


@pytest.mark.parametrize(
    "name,epochs,expected",
    [
        # the authors' text code switches gamma at epochs 14 and 35 of 50 (20 Newsgroups), 3 and 7 of 25 (SST)
        ("paper_text/20newsgroups/gpcnn/flsc531", 50, [5.0] * 14 + [3.0] * 21 + [1.0] * 15),
        ("paper_text/sst2/treelstm/flsc531", 25, [5.0] * 3 + [3.0] * 4 + [1.0] * 18),
    ],
)
def test_text_flsc531_switches_at_the_authors_epochs(name, epochs, expected):
    exp = presets.experiment(name)
    assert exp.label == "FLSc-531"
    loss = build_loss(exp.config["loss"], num_classes=3, **exp.config["loss_options"])
    assert [loss.gamma_at(e, epochs) for e in range(epochs)] == expected


def test_text_flsd53_threshold_and_label():
    ng = presets.experiment("paper_text/20newsgroups/gpcnn/flsd53")
    assert ng.label == "FLSD-53"
    loss = build_loss(ng.config["loss"], num_classes=20, **ng.config["loss_options"])
    assert loss.thresholds.tolist() == pytest.approx([0.19]) and loss.gammas.tolist() == [5.0, 3.0]


def test_a_dataset_mapping_must_cover_every_dataset(monkeypatch):
    real = presets._packaged

    def fake(kind, name):
        if kind == "families" and name == "paper_text":
            data = dict(real(kind, name))
            data["axes"] = {**data["axes"], "model": {"20newsgroups": ["gpcnn"]}}
            return data
        return real(kind, name)

    monkeypatch.setattr(presets, "_packaged", fake)
    with pytest.raises(ConfigError, match="axes.model as a mapping must give every dataset"):
        presets.load_family("paper_text")


def test_make_reproduce_text_plans_the_central_losses_first_then_the_rest(tmp_path):
    """The two sweeps of ``make reproduce-text``: CE, FL-3 and FLSD-53 (18 runs), then all 54, in the run-folder
    layout the page reads; text runs have no OOD step."""
    from focalcal.experiments.sweep import plan

    datasets = {"dataset": ["sst2", "20newsgroups"]}
    first = plan("paper_text", [1, 2, 3], tmp_path, only={**datasets, "loss": ["ce", "fl3", "flsd53"]})
    assert len(first) == 18 and {j.experiment.split("/")[-1] for j in first} == {"ce", "fl3", "flsd53"}
    assert [j.experiment.split("/")[1] for j in first[:9]] == ["sst2"] * 9  # SST first: minutes a run
    job = next(j for j in first if j.experiment.endswith("20newsgroups/gpcnn/flsd53") and j.seed == 2)
    assert job.run_dir == str(tmp_path / "20newsgroups" / "gpcnn" / "flsd53" / "seed2")
    everything = plan("paper_text", [1, 2, 3], tmp_path, only=datasets)
    assert len(everything) == 54 and {j.name for j in first} < {j.name for j in everything}
    assert all(j.ood == () for j in everything)
