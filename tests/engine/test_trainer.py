import json

import pytest
import torch

from focalcal.atomic import atomic_torch_save
from focalcal.engine import RunFolder, TrainConfig, Trainer
from focalcal.errors import ResumeMismatchError, RunExistsError
from focalcal.models import last_linear


def _config(**kw):
    base = dict(
        model="resnet20",
        loss="flsd53",
        epochs=3,
        batch_size=64,
        device="cpu",
        dynamics_train_size=64,
    )
    base.update(kw)
    if base["epochs"] >= 3 and "milestones" not in kw:
        base["milestones"] = [1, 2]
    return TrainConfig(**base)


def test_log_has_protocol_fields_and_lr_steps_after_optimiser(tiny, tmp_path):
    Trainer(_config(), tmp_path / "run", data=tiny, progress=False).fit()
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    # lr used in each epoch: 0.1, then /10 after milestone 1, /100 after milestone 2
    assert [r["lr"] for r in lines] == pytest.approx([0.1, 0.01, 0.001])
    for r in lines:
        for key in (
            "train_loss",
            "train_acc",
            "val_nll",
            "val_ece",
            "val_acc",
            "seconds",
            "fc_weight_norm",
            "test_nll_correct",
            "test_entropy_incorrect",
            "train_eval_nll",
        ):
            assert key in r, key
        assert 0 <= r["val_ece"] <= 1 and r["val_nll"] > 0
    ckpt = torch.load(tmp_path / "run" / "final.pt", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["mean"] == tiny.mean
    # the logged weight norm is the checkpoint's
    assert lines[-1]["fc_weight_norm"] == pytest.approx(float(ckpt["model"]["fc.weight"].norm()), rel=1e-6)
    assert not list((tmp_path / "run").rglob("*.tmp")), "temporary checkpoint files left behind"


def test_resume_after_crash_reproduces_uninterrupted_run(tiny, tmp_path, monkeypatch):
    cfg = _config(loss="ce")
    Trainer(cfg, tmp_path / "a", data=tiny, progress=False).fit()

    crashing = Trainer(cfg, tmp_path / "b", data=tiny, progress=False)
    original = Trainer._run_epoch

    def crash_on_third(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt("simulated crash")
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "_run_epoch", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        crashing.fit()
    monkeypatch.setattr(Trainer, "_run_epoch", original)
    assert len((tmp_path / "b" / "log.jsonl").read_text().splitlines()) == 2
    with pytest.raises(RunExistsError, match="--resume"):
        Trainer(cfg, tmp_path / "b", data=tiny, progress=False).fit()
    Trainer(cfg, tmp_path / "b", data=tiny, progress=False).fit(resume=True)

    a = torch.load(tmp_path / "a" / "final.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "final.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    log_a = [json.loads(s)["train_loss"] for s in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(s)["train_loss"] for s in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert log_b == pytest.approx(log_a, rel=1e-5)


def test_resume_refuses_a_different_config(tiny, tmp_path):
    Trainer(_config(epochs=1), tmp_path / "r", data=tiny, progress=False).fit()
    with pytest.raises(ResumeMismatchError, match="cannot resume.*loss"):
        Trainer(_config(epochs=1, loss="ce"), tmp_path / "r", data=tiny, progress=False).fit(resume=True)


def test_atomic_checkpoint_keeps_old_file_when_write_fails(tmp_path):
    path = tmp_path / "c.pt"
    atomic_torch_save({"v": 1}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"v": Boom()}, path)
    assert torch.load(path, weights_only=True)["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_milestones_scale_with_epochs():
    assert TrainConfig(epochs=350).resolved_milestones() == [150, 250]
    assert TrainConfig(epochs=35).resolved_milestones() == [15, 25]
    assert TrainConfig(epochs=30).resolved_milestones() == [13, 21]


def test_weight_norm_found_by_registry(tiny, tmp_path):
    t = Trainer(_config(epochs=1), tmp_path / "w", data=tiny, progress=False)
    assert last_linear(t.model) is t.model.fc


def test_torn_log_line_is_dropped_on_resume_and_overwrite_clears_old_results(tiny, tmp_path):
    run = tmp_path / "t"
    Trainer(_config(epochs=2, loss="ce"), run, data=tiny, progress=False).fit()
    lines = (run / "log.jsonl").read_text().splitlines()
    # simulate a crash in epoch 2 after its log line was half written and before its checkpoint
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["epoch"] = 1
    RunFolder(run).save_checkpoint(state)
    (run / "log.jsonl").write_text(lines[0] + "\n" + lines[1][:25])
    Trainer(_config(epochs=2, loss="ce"), run, data=tiny, progress=False).fit(resume=True)
    epochs = [json.loads(s)["epoch"] for s in (run / "log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]

    (run / "report.json").write_text("{}")
    Trainer(_config(epochs=1, loss="ce"), run, data=tiny, progress=False).fit(overwrite=True)
    assert not (run / "report.json").exists(), "a stale report survived --overwrite"


def test_divergence_is_one_clear_error(tiny, tmp_path):
    from focalcal.engine.trainer import TrainingDiverged

    cfg = _config(epochs=1, loss="ce", lr=1e6, grad_clip=None, dynamics_train_size=0)
    with pytest.raises(TrainingDiverged, match="lower --lr"):
        Trainer(cfg, tmp_path / "d", data=tiny, progress=False).fit()


def test_metrics_never_see_autocast_logits(tiny, tmp_path, monkeypatch):
    import focalcal.engine.trainer as tr

    calls = []
    real = tr.predict_logits

    def spy(model, loader, *, amp=False, dist=None):
        calls.append(amp)
        return real(model, loader, amp=amp, dist=dist)

    monkeypatch.setattr(tr, "predict_logits", spy)
    Trainer(_config(epochs=1, loss="ce", amp=True), tmp_path / "a", data=tiny, progress=False).fit()
    assert calls and not any(calls)


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="epochs must be a number"):
        TrainConfig(epochs="ten").validate()
    with pytest.raises(ValueError, match="milestones"):
        TrainConfig(epochs=10, milestones=[5, 12]).validate()


def test_evaluation_batch_defaults_per_device_and_a_set_value_wins(tiny, tmp_path):
    from focalcal.engine.device import default_eval_batch

    assert default_eval_batch(torch.device("cpu")) == 64 and default_eval_batch(torch.device("cuda", 0)) == 1024
    assert TrainConfig().eval_batch_size is None
    t = Trainer(_config(epochs=1), tmp_path / "a", data=tiny, progress=False)
    assert t.eval_batch == 64
    assert {t.val_loader.batch_size, t.test_loader.batch_size, t.dyn_train_loader.batch_size} == {64}
    t = Trainer(_config(epochs=1, eval_batch_size=16), tmp_path / "b", data=tiny, progress=False)
    assert {t.val_loader.batch_size, t.test_loader.batch_size, t.dyn_train_loader.batch_size} == {16}
    with pytest.raises(ValueError, match="eval_batch_size must be >= 1, or null"):
        TrainConfig(eval_batch_size=0).validate()
    with pytest.raises(ValueError, match="eval_batch_size must be a whole number, or null"):
        TrainConfig(eval_batch_size="big").validate()
