"""Adding a loss is one registration: it then shows in `focalcal list`, presets, tables and plot legends."""

import json

import torch

from focalcal.cli.main import main
from focalcal.engine import TrainConfig
from focalcal.evaluation import read_run
from focalcal.experiments.presets import resolve_preset
from focalcal.losses import LOSSES, CalibrationLoss, build_loss, loss_label, register_loss
from focalcal.plots import Curves, epoch_metric_figure
from focalcal.registry import as_float


class PowerLoss(CalibrationLoss):
    """(1 - p)^power: a toy loss defined in the test module."""

    def __init__(self, num_classes: int, power: float = 2.0, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.power = power

    def per_sample_loss(self, logits, labels, keep):
        p = torch.softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)
        return (1 - p) ** self.power


def test_a_new_loss_registered_once_is_everywhere(tmp_path, capsys):
    register_loss(
        "power_test", PowerLoss, description="(1-p)^power, a test loss", label="PW-{power}", options={"power": as_float}
    )
    try:
        loss = build_loss("power_test", num_classes=3, power="3")
        assert loss.power == 3.0 and float(loss(torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([0]))) > 0
        assert main(["list"]) == 0
        assert "power_test" in capsys.readouterr().out
        preset = tmp_path / "p.yaml"
        preset.write_text("loss: power_test\nloss_options: {power: 3}\nepochs: 2\n")
        TrainConfig.from_dict(resolve_preset(str(preset))).validate()
        assert loss_label("power_test", {"power": 3}) == "PW-3" and loss_label("power_test") == "PW-2"
        run = tmp_path / "run"
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"loss": "power_test", "loss_options": {"power": 3}}))
        (run / "log.jsonl").write_text(json.dumps({"epoch": 1, "lr": 0.1, "test_nll": 1.0}) + "\n")
        log = read_run(run)
        assert log.label == "PW-3"
        fig = epoch_metric_figure(
            [Curves(log.label, log.epochs, {"test_nll": log.column("test_nll")})], "test_nll", ylabel="NLL", title="t"
        )
        assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["PW-3"]
    finally:
        LOSSES.unregister("power_test")
    assert "power_test" not in LOSSES
