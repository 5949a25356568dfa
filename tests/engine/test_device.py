"""Precision defaults: bfloat16 autocast and channels_last where they are measured to pay off."""

import sys

import pytest
import torch

from focalcal.engine import TrainConfig, Trainer
from focalcal.engine import device as dev
from focalcal.engine.device import bf16_is_fast, resolve_device, resolve_precision

CPU = torch.device("cpu")


def _cpuinfo_has_bf16() -> bool:
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    return "amx_bf16" in flags or "avx512_bf16" in flags


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo as the reference")
def test_cpu_bf16_detection_agrees_with_proc_cpuinfo():
    assert bf16_is_fast(CPU) == _cpuinfo_has_bf16()


def test_cpu_without_bf16_instructions_stays_float32(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_f": True, "amx_bf16": False})
    assert not bf16_is_fast(CPU)
    assert resolve_precision(CPU, None, None) == (False, False)

    def missing():
        raise AttributeError("no capability query in this torch")

    monkeypatch.setattr(torch.cpu, "get_capabilities", missing)
    assert not bf16_is_fast(CPU)


def test_cpu_with_bf16_defaults_to_autocast_and_channels_last(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True})
    assert resolve_precision(CPU, None, None) == (True, True)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})
    assert resolve_precision(CPU, None, None) == (True, True)


@pytest.mark.parametrize("amp", [True, False])
@pytest.mark.parametrize("channels_last", [True, False, None])
def test_explicit_settings_win(amp, channels_last):
    got = resolve_precision(CPU, amp, channels_last)
    assert got == (amp, amp if channels_last is None else channels_last)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_defaults():
    assert resolve_precision(torch.device("cuda"), None, None) == (torch.cuda.is_bf16_supported(), True)


def test_unknown_device_is_named():
    with pytest.raises(ValueError, match="use auto, cpu, cuda"):
        resolve_device("tpu9")


def test_trainer_applies_and_logs_the_resolved_precision(monkeypatch, tmp_path):
    monkeypatch.setattr(dev, "bf16_is_fast", lambda device: True)
    from focalcal.data import ImageData, make_splits

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (96,), generator=g)
    data = make_splits(ImageData("random", x, y, x[:32], y[:32], [str(i) for i in range(10)]), val_size=32)
    cfg = TrainConfig(epochs=1, batch_size=32, device="cpu", dynamics_train_size=0, dynamics_test=False)
    trainer = Trainer(cfg, tmp_path / "run", data=data, progress=False)
    assert (trainer.amp, trainer.channels_last) == (True, True)
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    trainer.fit()
    import json

    record = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert record["amp"] is True and record["channels_last"] is True
