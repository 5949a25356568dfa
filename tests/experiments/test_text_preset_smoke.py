"""Every text preset trains on a small slice of the REAL archives (these tests fail, never skip, without them)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from focalcal.engine import TrainConfig, Trainer
from focalcal.engine.trainer import prepare_data
from focalcal.experiments import presets

LOSSES = ("ce", "brier", "mmce_weighted", "ls", "fl1", "fl2", "fl3", "flsc531", "flsd53")
SLICE = {"train_size": 24, "val_size": 12, "test_size": 12, "dynamics_train_size": 0, "dynamics_test_size": 0}
RUNTIME = {"device": "cpu", "amp": False, "channels_last": False, "epochs": 1}


def _config(name: str, text_root) -> TrainConfig:
    return presets.experiment(name).train_config(data_dir=str(text_root), **SLICE, **RUNTIME)


@pytest.fixture(scope="module", params=["sst2/treelstm", "20newsgroups/gpcnn"])
def sliced(request, text_root):
    """The data set of one text protocol, read from the real archive once, sliced small."""
    config = _config(f"paper_text/{request.param}/ce", text_root)
    config.validate()
    return request.param, prepare_data(config)


@pytest.mark.parametrize("loss", LOSSES)
def test_each_text_preset_takes_real_training_steps(sliced, loss, tmp_path, text_root):
    which, data = sliced
    config = _config(f"paper_text/{which}/{loss}", text_root)
    assert data.num_classes == (2 if which.startswith("sst2") else 20)
    trainer = Trainer(config, tmp_path / loss, data=data, progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    record = json.loads((tmp_path / loss / "log.jsonl").read_text().splitlines()[0])
    assert math.isfinite(record["train_loss"]) and record["train_loss"] > 0
    assert 0 <= record["val_acc"] <= 1 and record["selected_epoch"] == 1
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any("classifier" in k or "fc" in k or "out" in k for k in changed), changed
    frozen = [k for k in changed if k.startswith("embedding")]
    # 20 Newsgroups keeps its word vectors frozen; SST fine-tunes them (plain SGD at lr 0.1)
    assert bool(frozen) == which.startswith("sst2")
