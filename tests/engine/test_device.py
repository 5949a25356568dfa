"""Precision defaults: bfloat16 autocast and channels_last where they are measured to pay off."""

import json
import platform
import sys

import pytest
import torch

from focalcal.engine import TrainConfig, Trainer
from focalcal.engine import device as dev
from focalcal.engine.device import bf16_is_fast, exact_float32, resolve_device, resolve_precision

CPU = torch.device("cpu")


def _cpuinfo_flags() -> set[str]:
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() == "x86_64")
    or not hasattr(torch.cpu, "get_capabilities"),
    reason="reads x86 /proc/cpuinfo flags as the reference; needs torch.cpu.get_capabilities",
)
def test_cpu_bf16_detection_agrees_with_proc_cpuinfo():
    assert bf16_is_fast(CPU) == ("amx_bf16" in _cpuinfo_flags())


def test_cpu_without_amx_stays_float32(monkeypatch):
    # AVX512-BF16 alone (Cooper Lake, Zen 4) is not measured: float32 unless --amp
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True, "amx_bf16": False}, raising=False)
    assert not bf16_is_fast(CPU)
    assert resolve_precision(CPU, None, None) == (False, False)
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)  # a torch without the query
    assert not bf16_is_fast(CPU)


def test_cpu_with_amx_defaults_to_autocast_and_channels_last(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True}, raising=False)
    assert resolve_precision(CPU, None, None) == (True, True)


@pytest.mark.parametrize("amp", [True, False])
@pytest.mark.parametrize("channels_last", [True, False, None])
def test_explicit_settings_win(amp, channels_last):
    got = resolve_precision(CPU, amp, channels_last)
    assert got == (amp, amp if channels_last is None else channels_last)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_defaults():
    native = torch.cuda.get_device_properties(0).major >= 8  # Ampere or newer: bf16 tensor cores
    assert resolve_precision(torch.device("cuda", 0), None, None) == (native, True)


def test_exact_float32_turns_tf32_off_and_restores():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    try:
        cudnn.allow_tf32 = matmul.allow_tf32 = True
        with exact_float32(torch.device("cuda")):  # the flags are global: no GPU is needed to check them
            assert not cudnn.allow_tf32 and not matmul.allow_tf32
        assert cudnn.allow_tf32 and matmul.allow_tf32
        with exact_float32(CPU):
            assert cudnn.allow_tf32 and matmul.allow_tf32
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


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
    # the training forward really runs in bfloat16; evaluation (validation metrics) in float32
    dtypes = {True: set(), False: set()}
    trainer.model.fc.register_forward_hook(lambda mod, inp, out: dtypes[mod.training].add(out.dtype))
    trainer.fit()
    assert dtypes == {True: {torch.bfloat16}, False: {torch.float32}}
    record = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert record["amp"] is True and record["channels_last"] is True
    from focalcal.engine import load_run

    run = load_run(tmp_path / "run", device="cpu")
    assert run.precision == {"amp": True, "channels_last": True}
    from focalcal.engine import evaluate
    from focalcal.engine.report import report_markdown

    report, _ = evaluate(run, data)
    assert report["training_precision"] == {"amp": True, "channels_last": True}
    md = report_markdown(report, "t")
    assert "trained in bfloat16 autocast, channels_last; evaluated in float32" in md
    report["training_precision"] = None  # a run saved before the precision was recorded
    assert "trained in an unrecorded precision" in report_markdown(report, "t")
